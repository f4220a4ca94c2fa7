"""Read commands during a night: a real `livefin run` paused inside its first extract
transaction holds the writer lock and the warehouse's DuckDB lock; `livefin explain`,
`explain-value`, `status` and `sql` still answer (from the published snapshot), and the run
is not disturbed."""

from __future__ import annotations

import shutil
from datetime import timedelta

import duckdb


def test_read_commands_work_while_a_run_holds_the_writer(fl, pre_l, tmp_path):
    published_day = pre_l.last - timedelta(days=1)  # pre_l published L-1
    home = fl.copy_home(pre_l.home, tmp_path / "home", docs=False)
    con = duckdb.connect(str(home / "published" / "livefin.duckdb"), read_only=True)
    try:
        merchant = con.execute(
            "select merchant_id from credit.merchant_scores where as_of_date = ? "
            "order by merchant_id limit 1",
            [published_day],
        ).fetchone()[0]
    finally:
        con.close()
    marker = tmp_path / "paused"
    point = "extract.before_commit"
    run = fl.spawn(["run", "--start", str(pre_l.last)], home, pre_l.landing, point, marker)
    try:
        fl.wait_paused(run, marker, point)
        # The run really holds the writer: another writer is refused.
        writer = fl.run_cli(
            ["extract", "--source", "orders", "--date", str(pre_l.last)], home, pre_l.landing
        )
        assert writer.returncode == 1 and "locked" in writer.stderr
        day = str(published_day)
        explain = fl.run_cli(["explain", merchant, "--date", day], home, pre_l.landing)
        assert explain.returncode == 0, explain.stderr
        assert f"merchant {merchant}" in explain.stdout and "PD " in explain.stdout
        value = fl.run_cli(["explain-value", merchant, "--date", day], home, pre_l.landing)
        assert value.returncode == 0, value.stderr
        assert "Reconciled value" in value.stdout
        status = fl.run_cli(["status", "--json"], home, pre_l.landing)
        assert status.returncode == 0, status.stderr
        assert "a run is writing the warehouse" in status.stdout
        assert day in status.stdout
        sql = fl.run_cli(
            ["sql", "--format", "csv", "select count(*) from limits.current"], home, pre_l.landing
        )
        assert sql.returncode == 0 and int(sql.stdout.split()[-1]) > 0, sql.stderr
        for cp in (explain, value, status, sql):
            assert "Traceback" not in cp.stderr
        assert run.poll() is None, "a read command disturbed the paused run"
    finally:
        fl.kill9(run)
    shutil.rmtree(home, ignore_errors=True)
