"""A backfill reads the next partitions on a worker thread (extract/prepare.py) while it writes
the chunk before them: the result is the one of loading one partition at a time, refusals and
skips included, and a kill -9 mid-way leaves whole partitions (real files, real DuckDB, a real
child process and signal)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from livefin_etl.extract import PartitionRefused, extract_partition, extract_partitions
from livefin_etl.warehouse import connect

START = date(2025, 1, 1)
DAYS = [START + timedelta(days=i) for i in range(8)]
REFUSED = DAYS[4]
TIMESTAMPS = {"_loaded_at", "loaded_at", "quarantined_at"}
TABLES = ["raw.merchants", "raw.orders", "meta.load_manifest", "meta.quarantine", "meta.load_shape"]
WAIT_LIMIT_S = 120  # a guard against a hung child, not a timing assertion

CHILD = """
import os
from datetime import date, timedelta
from livefin_etl.config import get_settings
from livefin_etl.extract import extract_partitions
from livefin_etl.warehouse import connect
days = [date(2025, 1, 1) + timedelta(days=i) for i in range(8)]
s = get_settings(); con = connect(s)
extract_partitions(con, s, "merchants", days)
extract_partitions(con, s, "orders", days[:2])
os.environ["LIVEFIN_TEST_PAUSE_AT"] = "extract.before_commit"
extract_partitions(con, s, "orders", days[2:], chunk_days=2)
"""


def _landing(tiny_landing: Path, dst: Path, unreadable: bool) -> Path:
    """Eight tiny days of merchants and orders; the orders file of REFUSED is unreadable."""
    for source in ("merchants", "orders"):
        for d in DAYS:
            shutil.copytree(tiny_landing / source / f"dt={d}", dst / source / f"dt={d}")
    for f in (dst / "orders" / f"dt={REFUSED}").iterdir() if unreadable else []:
        f.write_bytes(b"\x00\xff not a csv \xfe\n")
    return dst


def _env(monkeypatch, home: Path, landing: Path, threads: int) -> None:
    monkeypatch.setenv("LIVEFIN_HOME", str(home))
    monkeypatch.setenv("LIVEFIN_LANDING", str(landing))
    monkeypatch.setenv("LIVEFIN_THREADS", str(threads))


def _rows(con: duckdb.DuckDBPyConnection, table: str, where: str = "true") -> list[tuple]:
    """A table's rows sorted, timestamps left out."""
    schema, name = table.split(".")
    cols = [
        c
        for (c,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        ).fetchall()
        if c not in TIMESTAMPS
    ]
    sel = ", ".join(f'"{c}"' for c in cols)
    return con.execute(f"select {sel} from {table} where {where} order by all").fetchall()


def _dump(path: Path) -> dict[str, list[tuple]]:
    """Every table extract writes."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: _rows(con, t) for t in TABLES}
    finally:
        con.close()


def _one_at_a_time(monkeypatch, tmp_path: Path, landing: Path) -> Path:
    from livefin_etl.config import get_settings

    _env(monkeypatch, tmp_path / "ref", landing, threads=1)
    s = get_settings()
    con = connect(s)
    for source in ("merchants", "orders"):
        for d in DAYS:
            try:
                extract_partition(con, s, source, d)
            except PartitionRefused:  # the chunked run must refuse the same date
                assert (source, d) == ("orders", REFUSED)
    con.close()
    return s.warehouse


def test_read_ahead_backfill_equals_one_partition_at_a_time(tmp_path, monkeypatch, tiny_landing):
    from livefin_etl.config import get_settings
    from livefin_etl.extract import ExtractErrors

    landing = _landing(tiny_landing, tmp_path / "landing", unreadable=True)
    reference = _dump(_one_at_a_time(monkeypatch, tmp_path, landing))

    _env(monkeypatch, tmp_path / "ahead", landing, threads=2)
    s = get_settings()
    con = connect(s)
    extract_partitions(con, s, "merchants", DAYS)
    try:
        extract_partitions(con, s, "orders", DAYS, chunk_days=3)
        raise AssertionError("the unreadable orders file was not refused")
    except ExtractErrors as exc:
        assert list(exc.refused) == [REFUSED]
        assert len(exc.results) == len(DAYS) - 1
    # unchanged partitions are skipped, read ahead or not
    again = {r["dt"]: r for r in extract_partitions(con, s, "merchants", DAYS)}
    assert all(r["skipped"] for r in again.values()) and len(again) == len(DAYS)
    con.close()
    assert not [t for t in threading.enumerate() if t.name == "livefin-extract-read"]
    got = _dump(s.warehouse)
    assert reference["raw.orders"], "the tiny days hold no orders"
    for t in TABLES:
        assert got[t] == reference[t], f"{t} differs from loading one partition at a time"


def test_kill9_during_a_read_ahead_backfill_leaves_whole_partitions(
    tmp_path, monkeypatch, tiny_landing
):
    from livefin_etl.config import get_settings

    landing = _landing(tiny_landing, tmp_path / "landing", unreadable=False)
    reference = _one_at_a_time(monkeypatch, tmp_path, landing)

    home = tmp_path / "killed"
    marker = tmp_path / "paused"
    env = {
        **os.environ,
        "LIVEFIN_HOME": str(home),
        "LIVEFIN_LANDING": str(landing),
        "LIVEFIN_THREADS": "2",
        "LIVEFIN_TEST_PAUSE_MARKER": str(marker),
        "LIVEFIN_TEST_PAUSE_SECONDS": "600",
    }
    proc = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached its commit"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()

    # the two committed days are whole, the killed chunk and the days read ahead left nothing
    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    loaded = con.execute("select distinct _dt from raw.orders order by 1").fetchall()
    listed = con.execute(
        "select distinct dt from meta.load_manifest where source = 'orders' order by 1"
    ).fetchall()
    got = _rows(con, "raw.orders")
    con.close()
    assert [d for (d,) in loaded] == DAYS[:2]
    assert [d for (d,) in listed] == DAYS[:2]
    ref = duckdb.connect(str(reference), read_only=True)
    assert got == _rows(ref, "raw.orders", f"_dt <= '{DAYS[1]}'")
    ref.close()

    # the rerun, read ahead again, ends where an uninterrupted load ends
    _env(monkeypatch, home, landing, threads=2)
    s = get_settings()
    con = connect(s)
    extract_partitions(con, s, "orders", DAYS, chunk_days=3)
    con.close()
    assert _dump(s.warehouse) == _dump(reference)
