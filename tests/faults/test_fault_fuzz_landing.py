"""Bad-input sweep: mutated landing files for date L never crash livefin and never lose a row.

A seeded sweep over (mutation kind, source): truncated files, random bytes, whole-file garbage,
empty and header-only files, shuffled / dropped / unknown columns, a 1 MB cell, UTF-16, latin-1,
a BOM on GBK bytes, wrong Parquet types, a duplicated file (part-1 = part-0) and rows of
another day. Each example loads the mutated (source, L) into a copy of the warehouse in-process
(``pipeline.ingest_range``: extract then the quality gate, what ``livefin run`` does) and checks:

* no exception other than livefin's own user-facing errors;
* nothing lost: per file rows_read = rows_loaded + rows_quarantined, raw.<source> holds exactly
  the loaded rows and meta.quarantine the quarantined ones, rows_read matches an independent
  count of the mutated file where one exists; a refused file leaves the partition untouched
  and is recorded (manifest 'rejected' + a file_error quarantine row);
* a refused or failed partition closes the gate for L (so nothing can be published for it).

A few cases also run the real CLI in a subprocess: no traceback, exit code 0/1/2, and the
published snapshot and exports from before are untouched when the delivery is bad.

Examples: ``LIVEFIN_FUZZ_EXAMPLES`` (default: one per mutation kind), ``LIVEFIN_FUZZ_SEED``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

FORMAT = {
    "merchants": "csv",
    "orders": "csv",
    "fulfillment": "csv",
    "traffic": "jsonl",
    "loans": "parquet",
    "repayments": "parquet",
}
EXT = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
HUGE = 1 << 20  # a 1 MB cell

# --------------------------------------------------------------------------- text helpers


def decode(data: bytes) -> tuple[str, str] | None:
    """The encodings the platform sends (UTF-8 with/without BOM, GBK); None if none fits."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            return None
    for enc in ("utf-8", "gbk"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            pass
    return None


def encode(text: str, enc: str) -> bytes:
    return text.encode(enc)


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def pq_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def jsonl_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


# --------------------------------------------------------------------------- mutations
# Each returns ({file name: bytes}, expected rows_read or None when no independent count exists).


def m_truncate(fmt, data, other, rng):
    cut = rng.randrange(1, max(2, len(data) - 1))
    return {"part-0": data[:cut]}, None


def m_random_bytes(fmt, data, other, rng):
    b = bytearray(data)
    at = rng.randrange(0, len(b))
    span = rng.randint(1, 64)
    b[at : at + span] = bytes(rng.getrandbits(8) for _ in range(span))
    return {"part-0": bytes(b)}, None


def m_garbage(fmt, data, other, rng):
    return {"part-0": bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))}, None


def m_empty(fmt, data, other, rng):
    return {"part-0": b""}, None


def m_header_only(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        return {"part-0": pq_bytes(t.slice(0, 0))}, 0
    if fmt == "jsonl":
        return {"part-0": b"\n\n"}, None
    text, enc = decode(data)
    return {"part-0": encode(csv_text(csv_rows(text)[:1]), enc)}, 0


def _csv_rewrite(data, fn):
    text, enc = decode(data)
    rows = csv_rows(text)
    header, body = fn(rows[0], rows[1:])
    return encode(csv_text([header, *body]), enc), len(body)


def m_shuffle_columns(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        names = t.column_names[:]
        rng.shuffle(names)
        return {"part-0": pq_bytes(t.select(names))}, t.num_rows
    if fmt == "jsonl":
        lines = []
        for x in jsonl_lines(data.decode()):
            items = list(json.loads(x).items())
            rng.shuffle(items)
            lines.append(json.dumps(dict(items), ensure_ascii=False))
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)

    def fn(header, body):
        order = list(range(len(header)))
        rng.shuffle(order)
        return [header[i] for i in order], [[r[i] for i in order] for r in body]

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_drop_column(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        return {"part-0": pq_bytes(t.drop([rng.choice(t.column_names)]))}, t.num_rows
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode())
        key = rng.choice(list(json.loads(lines[0]))) if lines else "x"
        out = [json.dumps({k: v for k, v in json.loads(x).items() if k != key}) for x in lines]
        return {"part-0": ("\n".join(out) + "\n").encode()}, len(out)

    def fn(header, body):
        i = rng.randrange(len(header))
        return header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in body]

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_extra_column(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        return {"part-0": pq_bytes(t.append_column("x_extra", pa.array(["?"] * t.num_rows)))}, None
    if fmt == "jsonl":
        lines = [json.dumps({**json.loads(x), "x_extra": 1}) for x in jsonl_lines(data.decode())]
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)
    out, _ = _csv_rewrite(data, lambda h, b: (h + ["x_extra"], [r + ["?"] for r in b]))
    return {"part-0": out}, None


def m_huge_field(fmt, data, other, rng):
    big = "x" * HUGE
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        strings = [i for i, f in enumerate(t.schema) if pa.types.is_string(f.type)]
        if not t.num_rows or not strings:
            return {"part-0": data}, t.num_rows
        i = rng.choice(strings)
        col = t.column(i).to_pylist()
        col[rng.randrange(len(col))] = big
        return {"part-0": pq_bytes(t.set_column(i, t.schema[i], pa.array(col, pa.string())))}, (
            t.num_rows
        )
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode())
        if lines:
            j = rng.randrange(len(lines))
            obj = json.loads(lines[j])
            obj[rng.choice(list(obj))] = big
            lines[j] = json.dumps(obj)
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)

    def fn(header, body):
        if body:
            r = rng.randrange(len(body))
            body[r][rng.randrange(len(header))] = big
        return header, body

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_wrong_types(fmt, data, other, rng):
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        cols = [
            pa.array([None if v is None else f"~{v}" for v in c.to_pylist()], pa.string())
            for c in t.columns
        ]
        return {"part-0": pq_bytes(pa.table(cols, names=t.column_names))}, t.num_rows
    if fmt == "jsonl":
        lines = [
            json.dumps({k: [v] for k, v in json.loads(x).items()})
            for x in jsonl_lines(data.decode())
        ]
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)

    def fn(header, body):
        return header, [[c if rng.random() < 0.7 else "bad#" for c in r] for r in body]

    out, n = _csv_rewrite(data, fn)
    return {"part-0": out}, n


def m_utf16(fmt, data, other, rng):
    if fmt == "parquet":
        return m_garbage(fmt, data, other, rng)
    text, _ = decode(data)
    return {"part-0": text.encode("utf-16")}, None


def m_latin1(fmt, data, other, rng):
    if fmt == "parquet":
        return m_truncate(fmt, data, other, rng)
    text, _ = decode(data)
    return {"part-0": text.encode("latin-1", errors="replace")}, None


def m_bom_on_gbk(fmt, data, other, rng):
    if fmt == "parquet":
        return m_random_bytes(fmt, data, other, rng)
    text, _ = decode(data)
    return {"part-0": b"\xef\xbb\xbf" + text.encode("gbk")}, None


def m_duplicate_file(fmt, data, other, rng):
    n = count_rows(fmt, data)
    return {"part-0": data, "part-1": data}, (None if n is None else 2 * n)


def m_mixed_dates(fmt, data, other, rng):
    """Rows of another day appended to L's file (in L's encoding)."""
    if fmt == "parquet":
        a, b = pq.read_table(io.BytesIO(data)), pq.read_table(io.BytesIO(other))
        return {"part-0": pq_bytes(pa.concat_tables([a, b.cast(a.schema)]))}, (
            a.num_rows + b.num_rows
        )
    if fmt == "jsonl":
        lines = jsonl_lines(data.decode()) + jsonl_lines(other.decode())
        return {"part-0": ("\n".join(lines) + "\n").encode()}, len(lines)
    (text, enc), (other_text, _) = decode(data), decode(other)
    rows, extra = csv_rows(text), csv_rows(other_text)
    if sorted(extra[0]) == sorted(rows[0]):  # same columns, maybe another order
        idx = [extra[0].index(h) for h in rows[0]]
        extra_body = [[r[i] for i in idx] for r in extra[1:]]
    else:  # another mapping of the same source: its rows as they are
        extra_body = extra[1:]
    body = rows[1:] + extra_body
    try:
        out = encode(csv_text([rows[0], *body]), enc)
    except UnicodeEncodeError:
        return {"part-0": data, "part-1": other}, None
    return {"part-0": out}, len(body)


MUTATIONS = {
    name.removeprefix("m_"): fn for name, fn in list(globals().items()) if name.startswith("m_")
}


def count_rows(fmt: str, data: bytes) -> int | None:
    """Independent count of the data rows in an unmutated-looking file (None: unknowable)."""
    if fmt == "parquet":
        try:
            return pq.read_metadata(io.BytesIO(data)).num_rows
        except Exception:  # noqa: BLE001 - unreadable: no count
            return None
    dec = decode(data)
    if dec is None:
        return None
    if fmt == "jsonl":
        return len(jsonl_lines(dec[0]))
    return max(0, len(csv_rows(dec[0])) - 1)


# --------------------------------------------------------------------------- fixtures


def source_file(landing: Path, source: str, day: date) -> Path:
    return next((landing / source / f"dt={day}").glob(f"*{EXT[FORMAT[source]]}"))


def other_day_file(landing: Path, source: str, last: date) -> bytes:
    """A delivery of an earlier day (outside L's late window) that has rows."""
    fmt = FORMAT[source]
    for back in range(3, 400):
        p = source_file(landing, source, last - timedelta(days=back))
        data = p.read_bytes()
        if count_rows(fmt, data):
            return data
    raise AssertionError(f"no earlier {source} delivery with rows")


def write_partition(landing: Path, source: str, day: date, files: dict[str, bytes]) -> Path:
    folder = landing / source / f"dt={day}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / f"{name}{EXT[FORMAT[source]]}").write_bytes(data)
    return folder


def full_landing(tiny: Path, dst: Path, day: date) -> Path:
    """Date ``day`` of every source (copied), for a whole ``livefin run --start day``."""
    for source in FORMAT:
        shutil.copytree(tiny / source / f"dt={day}", dst / source / f"dt={day}")
    (dst / "_truth").symlink_to(tiny / "_truth")
    return dst


@pytest.fixture(scope="module")
def fuzz_docs(fl, pre_l, tmp_path_factory) -> Path:
    """One GX project for every example (its context is cached per docs folder in-process)."""
    root = tmp_path_factory.mktemp("fuzz_docs")
    fl.copy_home(pre_l.home / "docs", root / "docs")
    return root / "docs"


def sweep(n: int, seed: int) -> list[tuple[str, str, int]]:
    """(mutation, source, seed): every mutation kind once per round, sources rotating."""
    rng = random.Random(seed)
    kinds = sorted(MUTATIONS)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        out.append((kind, rng.choice(sorted(FORMAT)), rng.randrange(1 << 30)))
    return out


N_EXAMPLES = int(os.environ.get("LIVEFIN_FUZZ_EXAMPLES", "0")) or 2 * len(MUTATIONS)
SEED = int(os.environ.get("LIVEFIN_FUZZ_SEED", "20251027"))


# --------------------------------------------------------------------------- in-process sweep


def check_example(fl, pre_l, docs: Path, work: Path, kind: str, source: str, seed: int) -> str:
    """Run one example; return a one-word outcome. Assertion messages carry the repro."""
    import duckdb

    from livefin_etl import pipeline, quality
    from livefin_etl.config import LivefinError, StageBlocked, get_settings

    L = pre_l.last
    fmt = FORMAT[source]
    rng = random.Random(seed)
    base = source_file(pre_l.landing, source, L).read_bytes()
    files, expected = MUTATIONS[kind](fmt, base, other_day_file(pre_l.landing, source, L), rng)
    repro = f"[{kind} {source} seed={seed}]"

    home = work / "home"
    shutil.rmtree(work, ignore_errors=True)
    (home / "warehouse").mkdir(parents=True)
    shutil.copyfile(pre_l.warehouse, home / "warehouse" / "livefin.duckdb")
    landing = work / "landing"
    folder = write_partition(landing, source, L, files)

    with fl.env(home, LIVEFIN_LANDING=str(landing), LIVEFIN_DOCS=str(docs)):
        s = get_settings()
        try:
            with pipeline.session(s) as (_s, con):
                results = pipeline.ingest_range(con, s, [L], sources=[source])
        except LivefinError as exc:  # a clean, user-facing refusal is fine; a crash is not
            pytest.fail(f"{repro} ingest of one bad partition raised instead of refusing it: {exc}")

        con = duckdb.connect(str(s.warehouse), read_only=True)
        try:
            man = con.execute(
                "select file, status, rows_read, rows_loaded, rows_quarantined from "
                "meta.load_manifest where source = ? and dt = ?",
                [source, L],
            ).fetchall()
            raw_n = con.execute(f"select count(*) from raw.{source} where _dt = ?", [L]).fetchone()[
                0
            ]
            q = dict(
                con.execute(
                    "select line = 0, count(*) from meta.quarantine where source = ? and dt = ? "
                    "group by 1",
                    [source, L],
                ).fetchall()
            )
            status = con.execute(
                "select status from dq.partition_status where source = ? and dt = ?", [source, L]
            ).fetchone()
            gate_open = True
            try:
                quality.require_passed(con, L, sources=[source])
            except StageBlocked:
                gate_open = False
        finally:
            con.close()

    rejected = [m for m in man if m[1] == "rejected"]
    loaded = [m for m in man if m[1] == "loaded"]
    refused = [
        r
        for r in results
        if r.get("status") == "failed" and "failed_expectations" in r and not r.get("run_id")
    ]
    if rejected:
        # The file was refused whole: recorded, partition untouched, date blocked.
        assert not loaded and raw_n == 0, f"{repro} refused partition was written: {man}"
        assert q.get(True, 0) == len(rejected) and not q.get(False), f"{repro} quarantine {q}"
        assert refused, f"{repro} refusal not reported: {results}"
        assert status == ("failed",) and not gate_open, f"{repro} refused partition passed the gate"
        return "refused"
    assert loaded, f"{repro} nothing loaded and nothing refused: {man} {results}"
    names = sorted(p.name for p in folder.iterdir())
    assert sorted(m[0] for m in loaded) == names, f"{repro} manifest files {man} vs {names}"
    for f, _st, read, ok, bad in loaded:
        assert read == ok + bad, f"{repro} {f}: rows_read {read} != {ok} loaded + {bad} quarantined"
    assert raw_n == sum(m[3] for m in loaded), f"{repro} raw has {raw_n} rows, manifest {man}"
    assert q.get(False, 0) == sum(m[4] for m in loaded), f"{repro} quarantine {q}, manifest {man}"
    if expected is not None:
        assert sum(m[2] for m in loaded) == expected, f"{repro} read {man}, file has {expected}"
    assert status is not None, f"{repro} loaded partition was never validated: {results}"
    assert gate_open == (status[0] != "failed"), f"{repro} gate {gate_open} vs status {status}"
    return status[0]


def test_bad_landing_files_never_crash_and_never_lose_rows(fl, pre_l, fuzz_docs, tmp_path):
    outcomes: dict[str, list[str]] = {}
    for kind, source, seed in sweep(N_EXAMPLES, SEED):
        outcome = check_example(fl, pre_l, fuzz_docs, tmp_path / "ex", kind, source, seed)
        outcomes.setdefault(outcome, []).append(f"{kind}/{source}")
    print("fuzz outcomes:", json.dumps(outcomes, indent=1))
    # The sweep exercised both paths: whole-file refusals and row-level quarantine.
    assert "refused" in outcomes, outcomes
    assert set(outcomes) - {"refused"}, outcomes


# --------------------------------------------------------------------------- CLI subprocesses


@pytest.mark.parametrize(
    "command, source, kind",
    [
        ("run", "orders", "garbage"),  # a critical delivery is unreadable: the date is blocked
        ("extract", "traffic", "utf16"),
        ("extract", "loans", "truncate"),
        ("extract", "fulfillment", "huge_field"),
    ],
)
def test_cli_on_bad_delivery_exits_cleanly_and_keeps_the_publication(
    fl, pre_l, tmp_path, command, source, kind
):
    L = pre_l.last
    home = fl.copy_home(pre_l.home, tmp_path / "home", docs=False)
    landing = full_landing(pre_l.landing, tmp_path / "landing", L)
    rng = random.Random(SEED)
    base = source_file(landing, source, L).read_bytes()
    files, _ = MUTATIONS[kind](FORMAT[source], base, other_day_file(pre_l.landing, source, L), rng)
    write_partition(landing, source, L, files)
    visible = fl.published_digest(home)

    args = (
        ["run", "--start", str(L)]
        if command == "run"
        else ["extract", "--source", source, "--date", str(L)]
    )
    cp = fl.run_cli(args, home, landing)
    fl.assert_clean_failure(cp, codes=(0, 1, 2))
    if command == "run":
        assert cp.returncode == 2, cp.stderr[-3000:]
        assert f"blocked {L}" in " ".join(cp.stderr.split()), cp.stderr[-3000:]
    assert fl.published_digest(home) == visible
    assert not (home / "exports" / "limits" / f"as_of_date={L}").exists()
    # Nothing lost in the subprocess path either.
    import duckdb

    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        bad = con.execute(
            "select file, rows_read, rows_loaded, rows_quarantined from meta.load_manifest "
            "where dt = ? and status = 'loaded' and rows_read <> rows_loaded + rows_quarantined",
            [L],
        ).fetchall()
        assert not bad, bad
        for src in FORMAT:
            raw_n, loaded = con.execute(
                f"select (select count(*) from raw.{src} where _dt = ?), (select coalesce(sum("
                "rows_loaded), 0) from meta.load_manifest where source = ? and dt = ? and "
                "status = 'loaded')",
                [L, src, L],
            ).fetchone()
            assert raw_n == loaded, (src, raw_n, loaded)
    finally:
        con.close()
    shutil.rmtree(home, ignore_errors=True)


def test_refused_redelivery_of_a_validated_partition_closes_the_gate(fl, after_l, tmp_path):
    from livefin_etl import pipeline, quality
    from livefin_etl.config import StageBlocked, get_settings

    ref = after_l["state"]
    L = ref.last
    home = tmp_path / "home"
    (home / "warehouse").mkdir(parents=True)
    shutil.copyfile(ref.warehouse, home / "warehouse" / "livefin.duckdb")
    landing = tmp_path / "landing"
    write_partition(landing, "orders", L, {"part-0": b"\x91\x92 not a csv \xff" * 40})
    with fl.env(home, LIVEFIN_LANDING=str(landing), LIVEFIN_DOCS=str(tmp_path / "docs")):
        s = get_settings()
        with pipeline.session(s) as (_s, con):
            results = pipeline.ingest_range(con, s, [L], sources=["orders"])
            assert [r for r in results if r.get("status") == "failed"], results  # reported
            with pytest.raises(StageBlocked):
                quality.require_passed(con, L)
