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

import json
import os
import random
import shutil
from datetime import date
from pathlib import Path

import pytest

from livefin_etl.testing.mutations import (
    FORMAT,
    MUTATIONS,
    other_day_file,
    source_file,
    sweep,
    write_partition,
)

# --------------------------------------------------------------------------- fixtures


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
