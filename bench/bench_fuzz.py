"""Fuzz at volume: thousands of mutated landing files through the real extract, a sample of them
through the quality gate and the real CLI, and checks that nothing crashes, nothing is lost and
no raw personal data reaches any table, message or captured output.

    .venv/bin/python bench/bench_fuzz.py --files 10000 --write      # BENCHMARKS.md section
    .venv/bin/python bench/bench_fuzz.py --files 200                # a smoke run

The world is the tiny simulated platform (seed 7), ingested once up to its last date L and
cached under bench/.cache. Every example is a re-delivery of one (source, date) of the last
``--dates`` days, mutated by one kind of ``livefin_etl.testing.mutations`` (every kind once per
round, sources rotating), loaded into one working warehouse with ``extract.extract_partitions``
(what ``livefin extract`` and the ingest tasks run). Per example:

* no exception but livefin's own user-facing errors (anything else counts as a traceback);
* per loaded file rows_read = rows_loaded + rows_quarantined, raw holds exactly the loaded rows
  and meta.quarantine the quarantined ones, and rows_read equals an independent count of the
  mutated file where one exists;
* a refused file leaves the partition as it was and is recorded (manifest ``rejected`` + a
  ``file_error`` quarantine row); a re-delivery with no valid row never empties a partition;
* every stored message is bounded; for CSV files each quarantined row's line is the physical
  line where its record starts (checked by the record's key);
* every ``--gate-every``-th example also runs the GX gate (the date must be blocked when its
  delivery was refused), every ``--cli-every``-th runs ``livefin extract`` as a subprocess.

At the end every text column of every table in the warehouse, every captured message, log
record and CLI output is scanned for the raw PII values (buyer phone, name, address, phones
also as bare digits) of every base file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import CACHE, REPO, cached_sample, machine_line, write_section  # noqa: E402
from livefin_etl.testing.tiny_config import tiny_config_dir  # noqa: E402

# The finale trains on the tiny world: its model config, as the test suite's (before
# livefin_etl.config is imported, which reads LIVEFIN_CONFIG_DIR once).
os.environ.setdefault("LIVEFIN_CONFIG_DIR", tiny_config_dir())

from livefin_etl.privacy import MAX_ERROR_CHARS as MESSAGE_BOUND  # noqa: E402

SEED_WORLD = 7


class Capture(logging.Handler):
    """Every log record's text, as a log store would receive it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


def base_home(landing: Path, last: date) -> Path:
    """The tiny world ingested (extract + gate) up to L, once."""
    home = CACHE / f"fuzz-tiny-s{SEED_WORLD}" / "base"
    done = home / ".ingested"
    if done.exists():
        return home
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings, livefin_env

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    first = date.fromisoformat(
        json.loads((landing / "_truth" / "params.json").read_text())["start"]
    )
    with livefin_env(home, LIVEFIN_LANDING=str(landing)):
        out = pipeline.ingest(first, last, settings=get_settings())
    done.write_text(json.dumps({"failed": len(out["failed"])}))
    return home


def pii_values(landing: Path, dates: list[date]) -> set[str]:
    """Raw values of every declared PII column in the base files (as read, before hashing)."""
    from livefin_etl.contracts import list_sources, load_contract
    from livefin_etl.extract.read import landing_files, read_file

    values: set[str] = set()
    for source in list_sources():
        contract = load_contract(source)
        cols = [c.name for c in contract.columns.values() if c.pii]
        for as_of_date in dates if cols else []:
            for p in landing_files(landing / source / f"dt={as_of_date}", contract):
                frame = read_file(p.name, p.read_bytes(), "", contract).frame
                for c in cols:
                    if c in frame.columns:
                        values.update(v for v in frame[c].cast(str).drop_nulls() if len(v) >= 4)
    digits = {re.sub(r"\D", "", v) for v in values}
    return values | {d for d in digits if len(d) >= 7}


def _record_starts(text: str) -> dict[int, list[str]]:
    """Physical start line of each CSV record (1 = header), as the csv module reads quoted
    newlines."""
    reader = csv.reader(io.StringIO(text))
    out, prev = {}, 0
    for row in reader:
        out[prev + 1] = row
        prev = reader.line_num
    return out


def check_lines(source: str, files: dict[str, bytes], quarantined: list[tuple]) -> tuple[int, int]:
    """(checked, wrong): quarantined CSV rows whose line does not start the record with their
    key."""
    from livefin_etl.contracts import detect_mapping, load_contract
    from livefin_etl.testing.mutations import decode

    contract = load_contract(source)
    if contract.format != "csv":
        return 0, 0
    key = contract.primary_key[0]
    checked = wrong = 0
    for name, data in files.items():
        dec = decode(data)
        if dec is None:
            continue
        try:
            starts = _record_starts(dec[0])
            mapping = detect_mapping(source, starts[1])
        except Exception:  # noqa: BLE001 - not parseable by the csv module: nothing to compare
            continue
        col = next((h for h, c in mapping.headers.items() if c == key), None)
        if col not in starts[1]:
            continue
        idx = starts[1].index(col)
        for file, line, raw_values in quarantined:
            if not file.startswith(name) or not line or not raw_values:
                continue
            value = json.loads(raw_values).get(key)
            if not value:
                continue
            checked += 1
            row = starts.get(line)
            if row is None or idx >= len(row) or row[idx] != value:
                wrong += 1
    return checked, wrong


class Sweep:
    def __init__(self, args: argparse.Namespace, landing: Path, work: Path, dates: list[date]):
        self.args, self.landing, self.work, self.dates = args, landing, work, dates
        self.counts: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.failures: list[str] = []
        self.captured: list[str] = []
        self.lines = [0, 0]

    def fail(self, repro: str, what: str) -> None:
        self.counts["violations"] += 1
        if len(self.failures) < 50:
            self.failures.append(f"{repro} {what}")

    def example(self, con, s, i: int, kind: str, source: str, seed: int) -> None:
        from livefin_etl import extract as ex
        from livefin_etl.config import LivefinError
        from livefin_etl.testing.mutations import (
            FORMAT,
            MUTATIONS,
            other_day_file,
            source_file,
            write_partition,
        )

        as_of_date = self.dates[i % len(self.dates)]
        rng = random.Random(seed)
        base = source_file(self.landing, source, as_of_date).read_bytes()
        other = other_day_file(self.landing, source, as_of_date)
        files, expected = MUTATIONS[kind](FORMAT[source], base, other, rng)
        write_partition(self.work / "landing", source, as_of_date, files)
        repro = f"[{kind} {source} {as_of_date} seed={seed}]"
        before = self._raw_count(con, source, as_of_date)
        refused = None
        try:
            results = ex.extract_partitions(con, s, source, [as_of_date], force=True)
            self.captured.append(json.dumps(results, default=str, ensure_ascii=False))
        except LivefinError as exc:
            refused = str(exc)
            self.captured.append(refused)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a crash (Rust panics are BaseExceptions)
            self.counts["tracebacks"] += 1
            self.fail(repro, f"traceback {type(exc).__name__}")
            return
        self.kinds[kind] += 1
        self._check(con, source, as_of_date, files, expected, before, refused, repro)
        if self.args.gate_every and i % self.args.gate_every == 0:
            self._gate(con, s, source, as_of_date, refused, repro)

    @staticmethod
    def _raw_count(con, source: str, as_of_date: date) -> int:
        return con.execute(
            f"select count(*) from raw.{source} where _dt = ?", [as_of_date]
        ).fetchone()[0]

    def _check(self, con, source, as_of_date, files, expected, before, refused, repro) -> None:
        man = con.execute(
            "select file, status, rows_read, rows_loaded, rows_quarantined, coalesce(message, '') "
            "from meta.load_manifest where source = ? and dt = ?",
            [source, as_of_date],
        ).fetchall()
        raw_n = self._raw_count(con, source, as_of_date)
        quarantined = con.execute(
            "select file, line, raw_values, reason from meta.quarantine where source = ? and dt = ?",
            [source, as_of_date],
        ).fetchall()
        for m in man:
            if len(m[5]) > MESSAGE_BOUND:
                self.fail(repro, f"manifest message of {len(m[5])} chars")
        for q in quarantined:
            if len(q[3] or "") > MESSAGE_BOUND:
                self.fail(repro, f"quarantine reason of {len(q[3])} chars")
        loaded = [m for m in man if m[1] == "loaded"]
        names = set(files)
        if refused is not None:
            self.counts["refused"] += 1
            if raw_n != before:
                self.fail(repro, f"refused delivery changed the partition: {before} -> {raw_n}")
            rejected = [m for m in man if m[1] == "rejected"]
            if not rejected:
                self.fail(repro, "refusal not in the manifest")
            # Unreadable: a file_error row; readable but no valid row: every row quarantined.
            whole = any(q[1] == 0 for q in quarantined)
            if not whole and any(m[2] != m[4] for m in rejected):
                self.fail(repro, f"rejected re-delivery lost rows: {rejected}")
            return
        self.counts["loaded"] += 1
        if {m[0].rsplit(".", 1)[0].split(".")[0] for m in loaded} != names:
            self.fail(repro, f"manifest files {[m[0] for m in loaded]} vs {sorted(names)}")
        for f, _st, read, ok, bad, _msg in loaded:
            if read != ok + bad:
                self.fail(repro, f"{f}: rows_read {read} != {ok} + {bad}")
        if raw_n != sum(m[3] for m in loaded):
            self.fail(repro, f"raw has {raw_n} rows, manifest says {sum(m[3] for m in loaded)}")
        if sum(1 for q in quarantined if q[1] != 0) != sum(m[4] for m in loaded):
            self.fail(repro, "quarantine rows differ from the manifest's count")
        if expected is not None and sum(m[2] for m in loaded) != expected:
            self.fail(repro, f"read {sum(m[2] for m in loaded)} rows, the file has {expected}")
        if before and raw_n == 0:
            self.fail(repro, "a re-delivery emptied a partition that had rows")
        checked, wrong = check_lines(source, files, [(q[0], q[1], q[2]) for q in quarantined])
        self.lines[0] += checked
        self.lines[1] += wrong
        if wrong:
            self.fail(repro, f"{wrong} of {checked} quarantine lines point at another record")

    def _gate(self, con, s, source, as_of_date, refused, repro) -> None:
        from livefin_etl import pipeline, quality
        from livefin_etl.config import StageBlocked

        results = pipeline.ingest_range(con, s, [as_of_date], sources=[source])
        self.captured.append(json.dumps(results, default=str, ensure_ascii=False))
        self.counts["gated"] += 1
        try:
            quality.require_passed(con, as_of_date, sources=[source])
            gate_open = True
        except StageBlocked as exc:
            self.captured.append(str(exc))
            gate_open = False
        if refused is not None and gate_open:
            self.fail(repro, "a refused delivery left its date's gate open")

    def cli(self, source: str, as_of_date: date) -> None:
        env = {
            **os.environ,
            "LIVEFIN_HOME": str(self.work / "home"),
            "LIVEFIN_LANDING": str(self.work / "landing"),
        }
        cp = subprocess.run(
            [
                sys.executable,
                "-m",
                "livefin_etl.cli",
                "extract",
                "--source",
                source,
                "--date",
                str(as_of_date),
                "--force",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=600,
        )
        self.counts["cli_runs"] += 1
        self.captured += [cp.stdout, cp.stderr]
        if "Traceback" in cp.stderr or cp.returncode not in (0, 1, 2):
            self.counts["tracebacks"] += 1
            self.fail(f"[cli {source} {as_of_date}]", f"exit {cp.returncode}: {cp.stderr[-300:]}")


def finale(work: Path, landing: Path, dates: list[date]) -> dict:
    """The clean deliveries back for the mutated dates, then the night of L end to end (train,
    score, limits, publish), so the snapshot and the lender exports exist to be scanned; the
    warehouse still holds every refusal and quarantine row of the sweep."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings
    from livefin_etl.testing.mutations import FORMAT

    for source in FORMAT:
        for as_of_date in dates:
            folder = work / "landing" / source / f"dt={as_of_date}"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(landing / source / f"dt={as_of_date}", folder)
    last = max(dates)
    report = pipeline.run_range(last, last, get_settings(), ingest_from=min(dates), retrain=True)
    return {"blocked": report.blocked, "published": bool(report.published)}


def _file_texts(root: Path) -> list[tuple[str, str]]:
    """(path, text) of every file under ``root``: Parquet as its rows, DuckDB files skipped
    (scanned table by table), the rest as text."""
    import duckdb

    out = []
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        if p.suffix == ".duckdb":
            continue
        if p.suffix == ".parquet":
            rows = duckdb.sql(f"select * from read_parquet('{p}')").fetchall()
            out.append((str(p), "\n".join(map(str, rows))))
        else:
            out.append((str(p), p.read_bytes().decode("utf-8", errors="ignore")))
    return out


def _pattern(values: set[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def scan_pii(db: Path, texts: list[str], values: set[str]) -> dict[str, int]:
    """Raw PII values found in any text column of any table of ``db``, or in ``texts``."""
    import duckdb

    pattern = _pattern(values)
    found: Counter[str] = Counter()
    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() "
            "where data_type = 'VARCHAR' and database_name = current_database() "
            "and schema_name not in ('information_schema', 'pg_catalog')"
        ).fetchall()
        for schema, table, col in cols:
            q = f'select distinct "{col}" from "{schema}"."{table}" where "{col}" is not null'
            for (text,) in con.execute(q).fetchall():
                if pattern.search(text):
                    found[f"{schema}.{table}.{col}"] += 1
    finally:
        con.close()
    found[f"captured by {db.name}'s run"] = sum(1 for t in texts if t and pattern.search(t))
    return dict(found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--dates", type=int, default=10, help="last N dates of the world mutated")
    ap.add_argument("--gate-every", type=int, default=50)
    ap.add_argument("--cli-every", type=int, default=1000)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    from livefin_etl import pipeline
    from livefin_etl.config import get_settings, livefin_env
    from livefin_etl.testing.mutations import MUTATIONS, sweep

    os.environ.setdefault("LIVEFIN_PII_KEY", "livefin-bench-key")
    landing = cached_sample("tiny", seed=SEED_WORLD)
    params = json.loads((landing / "_truth" / "params.json").read_text())
    last = date.fromisoformat(params["start"]) + timedelta(days=int(params["days"]) - 1)
    dates = [last - timedelta(days=k) for k in range(args.dates)]
    t0 = time.perf_counter()
    base = base_home(landing, last)
    setup_s = time.perf_counter() - t0

    work = CACHE / f"fuzz-tiny-s{SEED_WORLD}" / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work / "home")
    run = Sweep(args, landing, work, dates)
    capture = Capture()
    logging.getLogger().addHandler(capture)
    logging.getLogger().setLevel(logging.INFO)
    t1 = time.perf_counter()
    with livefin_env(work / "home", LIVEFIN_LANDING=str(work / "landing")):
        s = get_settings()
        values = pii_values(landing, dates)
        examples = sweep(args.files, args.seed)
        with pipeline.session(s) as (_s, con):
            for i, (kind, source, seed) in enumerate(examples):
                run.example(con, s, i, kind, source, seed)
                if i and i % 500 == 0:
                    print(f"{i} files, {dict(run.counts)}", file=sys.stderr, flush=True)
        for i, (_kind, source, _seed) in enumerate(examples):
            if args.cli_every and i % args.cli_every == 0:
                run.cli(source, dates[i % len(dates)])
        sweep_s = time.perf_counter() - t1
        night = finale(work, landing, dates)
        files = [t for root in (s.published, s.exports) for _p, t in _file_texts(root)]
        pii = scan_pii(s.warehouse, run.captured + capture.texts, values)
        # Control: the scanner must find the raw values in an unhashed orders file.
        raw_orders = [_file_texts(landing / "orders" / f"dt={d}") for d in dates]
        control = sum(1 for texts in raw_orders for _p, t in texts if _pattern(values).search(t))
        pii.update(scan_pii(s.published / "livefin.duckdb", files, values))
    out = {
        "files": args.files,
        "kinds": len(MUTATIONS),
        "per_kind": dict(sorted(run.kinds.items())),
        **dict(run.counts),
        "tracebacks": run.counts["tracebacks"],
        "violations": run.counts["violations"],
        "quarantine_lines_checked": run.lines[0],
        "quarantine_lines_wrong": run.lines[1],
        "pii_values_searched": len(values),
        "night_after": night,
        "files_scanned": len(files),
        "control_raw_files_with_pii": f"{control} of {len(dates)}",
        "pii_found": {k: v for k, v in pii.items() if v},
        "setup_s": round(setup_s, 1),
        "sweep_s": round(sweep_s, 1),
        "failures": run.failures,
    }
    print(json.dumps(out, indent=1, ensure_ascii=False))
    if args.write:
        write_section("fuzz", report(args, out))
    bad = out["tracebacks"] or out["violations"] or out["pii_found"] or night["blocked"]
    ok = not bad and control == len(dates)
    return 0 if ok else 1


def report(args: argparse.Namespace, out: dict) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in out["per_kind"].items())
    pii = out["pii_found"] or "none"
    return f"""## Fuzz at volume (`bench/bench_fuzz.py`)

`.venv/bin/python bench/bench_fuzz.py --files {args.files} --seed {args.seed} --write` ({machine_line()})

Mutated re-deliveries of the last {args.dates} days of the tiny world (seed {SEED_WORLD}), every
mutation kind once per round: {kinds}.

| measure | value |
|---|---:|
| files loaded through extract | {out["files"]} |
| loaded (rows checked) / refused whole | {out.get("loaded", 0)} / {out.get("refused", 0)} |
| also through the GX gate / through the CLI subprocess | {out.get("gated", 0)} / {out.get("cli_runs", 0)} |
| tracebacks | {out["tracebacks"]} |
| invariant violations (rows read = loaded + quarantined, refusals kept, bounds, gate) | {out["violations"]} |
| quarantine line numbers checked / wrong | {out["quarantine_lines_checked"]} / {out["quarantine_lines_wrong"]} |
| control: raw orders files of those days in which the scanner finds PII | {out["control_raw_files_with_pii"]} |
| the night of L after the sweep (clean files back): published | {out["night_after"]["published"]} |
| raw PII values searched / found in any table (warehouse, snapshot), export or published file ({out["files_scanned"]}), message, log or CLI output | {out["pii_values_searched"]} / {pii} |
| sweep time | {out["sweep_s"]} s ({out["files"] / max(out["sweep_s"], 1e-9):.1f} files/s) |
"""


if __name__ == "__main__":
    sys.exit(main())
