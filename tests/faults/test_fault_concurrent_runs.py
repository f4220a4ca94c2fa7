"""Two ``livefin run`` on one warehouse: the second is refused at once with a clear message.

The first run is a real process paused inside its first extract transaction (it holds the writer
lock and has uncommitted rows). The second exits non-zero with "locked by another livefin
process (pid N)" naming the first, and no traceback. Then the first is SIGKILLed: its lock dies
with it, the warehouse opens with nothing of the killed transaction, and a new writer can start.
"""

from __future__ import annotations

import re
import shutil

import duckdb


def test_second_run_is_refused_while_one_holds_the_warehouse(fl, pre_l, tmp_path):
    from livefin_etl.config import get_settings
    from livefin_etl.warehouse import writer_lock

    L = pre_l.last
    home = fl.copy_home(pre_l.home, tmp_path / "home", docs=False)
    before = fl.warehouse_digest(home / "warehouse" / "livefin.duckdb")
    visible = fl.published_digest(home)
    marker = tmp_path / "paused"
    point = "extract.before_commit"
    first = fl.spawn(["run", "--start", str(L)], home, pre_l.landing, point, marker)
    try:
        fl.wait_paused(first, marker, point)
        second = fl.run_cli(["run", "--start", str(L)], home, pre_l.landing)
        fl.assert_clean_failure(second, codes=(1,))
        err = " ".join(second.stderr.split())
        m = re.search(r"locked by another livefin process \(pid (\d+)\)", err)
        assert m, err
        assert int(m.group(1)) == first.pid
        # Other writers are refused the same way (the Airflow task path and the extract command).
        extract = fl.run_cli(
            ["extract", "--source", "orders", "--date", str(L)], home, pre_l.landing
        )
        fl.assert_clean_failure(extract, codes=(1,))
        assert "locked by another livefin process" in " ".join(extract.stderr.split())
        assert first.poll() is None, "the refused run disturbed the one holding the lock"
    finally:
        fl.kill9(first)

    # The killed holder released the lock (flock dies with the process) and left nothing behind.
    with fl.env(home, LIVEFIN_LANDING=str(pre_l.landing)), writer_lock(get_settings()):
        pass
    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"))  # read-write: WAL replay
    try:
        assert con.execute("pragma database_size").fetchone() is not None
        n = con.execute("select count(*) from raw.merchants where _dt = ?", [L]).fetchone()[0]
        assert n == 0, "rows of the killed, uncommitted extract are visible"
    finally:
        con.close()
    assert not fl.diff_digests(fl.warehouse_digest(home / "warehouse" / "livefin.duckdb"), before)
    assert fl.published_digest(home) == visible
    shutil.rmtree(home, ignore_errors=True)
