"""Fault tests with real processes and real signals: SIGKILL mid-publish, readers during publish."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_publish import D, prepare, published_run, sha, tree_digest

from livefin_etl import limits, publish, warehouse
from livefin_etl.config import get_settings

REPO = Path(__file__).resolve().parents[2]

PUBLISHER = """
import datetime as dt, sys
from livefin_etl import publish, warehouse
from livefin_etl.config import get_settings
s = get_settings()
con = warehouse.connect(s)
publish.publish(con, s, dt.date.fromisoformat(sys.argv[1]), sys.argv[2])
"""

READER = """
import sys, duckdb
path = sys.argv[1]
q = "select run_id, (select count(*) from limits.current) from meta.publication"
con = duckdb.connect(path, read_only=True)
print("before", *con.execute(q).fetchone(), flush=True)
sys.stdin.readline()                        # the test publishes meanwhile
print("same", *con.execute(q).fetchone(), flush=True)
con.close()
con = duckdb.connect(path, read_only=True)
print("after", *con.execute(q).fetchone(), flush=True)
"""


def wait_for(path: Path, proc: subprocess.Popen, limit_s: float = 120) -> None:
    """Wait until the child reached its pause point (or died, which fails the test)."""
    end = time.monotonic() + limit_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"publisher exited early: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("publisher never reached the pause point")
        time.sleep(0.05)


@pytest.mark.parametrize("point", ["publish.snapshot_building", "publish.before_replace"])
def test_sigkill_during_publish_leaves_previous_publication(tmp_path, monkeypatch, bench, point):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    settings = get_settings()
    con = warehouse.connect(settings)
    prepare(con, settings, bench, D, "r1")
    publish.publish(con, settings, D, "r1")
    limits.build_limits(con, settings, D, run_id="r2")  # a new run of the same date
    con.close()
    pub = settings.published / "livefin.duckdb"
    export = settings.exports / "limits" / f"as_of_date={D}"
    before_pub, before_exp = sha(pub), tree_digest(export)

    marker = tmp_path / "paused"
    env = dict(
        os.environ,
        LIVEFIN_TEST_PAUSE_AT=point,
        LIVEFIN_TEST_PAUSE_MARKER=str(marker),
        PYTHONPATH=str(REPO),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, D.isoformat(), "r2"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL

    assert sha(pub) == before_pub
    assert tree_digest(export) == before_exp
    assert published_run(settings) == "r1"
    assert json.loads((export / "manifest.json").read_text())["run_id"] == "r1"
    assert publish.current(settings)["run_id"] == "r1"
    # The warehouse is intact and the next publish cleans the debris and succeeds.
    con = warehouse.connect(settings)
    try:
        publish.publish(con, settings, D, "r2")
    finally:
        con.close()
    assert published_run(settings) == "r2"
    assert not list((settings.published / "snapshots").glob(".*"))
    assert not list((settings.exports / "limits").glob(".*"))


def test_reader_keeps_its_snapshot_during_publish_and_sees_new_data_on_reconnect(
    tmp_path, monkeypatch, bench
):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    settings = get_settings()
    con = warehouse.connect(settings)
    try:
        prepare(con, settings, bench, D, "r1", n=40)
        publish.publish(con, settings, D, "r1")
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(settings.published / "livefin.duckdb")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout.readline().split() == ["before", "r1", "40"]
        d2 = D + dt.timedelta(days=1)
        prepare(con, settings, bench, d2, "r2", seed=9, n=50)
        publish.publish(con, settings, d2, "r2")  # while the reader holds the old file open
        out, err = reader.communicate("go\n", timeout=120)
    finally:
        con.close()
    assert reader.returncode == 0, err
    assert out.split("\n")[:2] == ["same r1 40", "after r2 50"]
