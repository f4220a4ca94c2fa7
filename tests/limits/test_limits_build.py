"""build_limits against a real DuckDB file with hand-built upstream tables."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import duckdb
import pytest

from livefin_etl import limits, warehouse
from livefin_etl.config import LivefinError, get_settings

D = date(2026, 11, 20)


@pytest.fixture
def wh(tmp_path, monkeypatch, bench):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    settings = get_settings()
    con = warehouse.connect(settings)
    frames = bench.make_upstream(con, D, 300, seed=1)
    yield settings, con, frames
    con.close()


def test_build_writes_one_row_per_merchant_with_contract_columns(wh):
    settings, con, frames = wh
    res = limits.build_limits(con, settings, D, run_id="r1")
    assert res["merchants"] == 300 and sum(res["by_decision"].values()) == 300
    cols = [r[0] for r in con.execute("describe limits.financing_limits").fetchall()]
    contract = (
        "merchant_id as_of_date limit_amount currency decision pd score grade tier expected_loss "
        "data_asset_value repayment_capacity collateral_component outstanding_exposure "
        "reason_codes reason_texts guardrail_scale model_version policy_version valid_from "
        "valid_until run_id"
    ).split()
    assert set(contract) <= set(cols)
    row = con.execute(
        """select count(*), count(distinct merchant_id), min(policy_version), min(run_id),
                  bool_and(valid_until > valid_from), sum(limit_amount)
           from limits.financing_limits where as_of_date = ?""",
        [D],
    ).fetchone()
    assert row[:4] == (300, 300, "policy-v1", "r1") and row[4]
    assert row[5] == pytest.approx(res["total_limit"])
    # Every column and view is documented.
    undocumented = con.execute(
        """select column_name from duckdb_columns()
           where schema_name = 'limits' and table_name = 'financing_limits' and comment is null"""
    ).fetchall()
    assert undocumented == []
    views = dict(
        con.execute(
            "select view_name, comment from duckdb_views() where schema_name='limits'"
        ).fetchall()
    )
    assert set(views) == {"current", "merchant_360", "portfolio_summary"}
    assert all(views.values())


def test_rerun_replaces_the_date_and_keeps_history(wh, bench):
    settings, con, _ = wh
    limits.build_limits(con, settings, D, run_id="r1")
    d2 = D + timedelta(days=1)
    bench.make_upstream(con, d2, 300, seed=2)
    limits.build_limits(con, settings, d2, run_id="r2")
    limits.build_limits(con, settings, D, run_id="r3")
    runs = con.execute(
        "select as_of_date, list(distinct run_id), count(*) from limits.financing_limits group by 1 order by 1"
    ).fetchall()
    assert runs == [(D, ["r3"], 300), (d2, ["r2"], 300)]
    # limits.current shows the latest row per merchant, once.
    cur = con.execute(
        "select count(*), count(distinct merchant_id), min(as_of_date) from limits.current"
    ).fetchone()
    assert cur == (300, 300, d2)
    summary = con.execute(
        "select sum(merchants), sum(total_limit) from limits.portfolio_summary where as_of_date = ?",
        [d2],
    ).fetchone()
    assert summary[0] == 300
    assert summary[1] == pytest.approx(
        con.execute(
            "select sum(limit_amount) from limits.financing_limits where as_of_date=?", [d2]
        ).fetchone()[0]
    )
    m360 = con.execute(
        "select count(*), count(reconciled_value), count(gmv_net_adj_30d) from limits.merchant_360"
    ).fetchone()
    assert m360 == (300, 300, 300)


def test_exposure_default_streamer_and_failed_partition_come_from_raw_tables(wh):
    settings, con, frames = wh
    loans = frames["raw.loans"]
    loan, m_loan = loans["loan_id"].iloc[0], loans["merchant_id"].iloc[0]
    # Latest repayment row before D says 90 dpd; a row dated D itself must be ignored.
    con.execute("update raw.repayments set dpd = 90, outstanding = 12345 where loan_id = ?", [loan])
    con.execute(
        """insert into raw.repayments (loan_id, merchant_id, repay_date, amount_repaid,
               outstanding, dpd)
           values (?, ?, ?, 0, 0.0, 0)""",
        [loan, m_loan, D],
    )
    # A loan funded before D with no repayment row yet owes principal + fee.
    con.execute(
        """insert into raw.loans (loan_id, merchant_id, origination_date, principal, fee_amount,
               withhold_rate, term_days, legacy_limit)
           values ('Lnew', 'm0000299', ?, 1000, 80, 0.1, 90, 0)""",
        [D - timedelta(days=1)],
    )
    # m0000010 sold in a failed orders partition within the window.
    bad_day = D - timedelta(days=10)
    con.execute(
        """insert into raw.orders (order_id, merchant_id, order_ts, paid_amount, refund_amount,
               status, streamer_id, _dt)
           values ('x1', 'm0000010', ?, 1e9, 0, 'completed', 'bigstar', ?)""",
        [datetime.combine(bad_day, time(12)), bad_day],
    )
    con.execute(
        "insert into dq.partition_status values ('orders', ?, 'failed', 'v1', 'x', ?)",
        [bad_day, datetime.combine(bad_day, time(23))],
    )
    limits.build_limits(con, settings, D, run_id="r1")
    got = {
        r[0]: r[1:]
        for r in con.execute(
            """select merchant_id, decision, reason_codes, outstanding_exposure, top_streamer_id
               from limits.financing_limits where merchant_id in (?, 'm0000299', 'm0000010')""",
            [m_loan],
        ).fetchall()
    }
    assert got[m_loan][0] == "decline" and got[m_loan][1][0] == "IN_DEFAULT"
    assert got[m_loan][2] == pytest.approx(12345.0)
    assert got["m0000299"][2] >= 1080.0
    assert got["m0000010"][0] == "decline" and "DQ_CRITICAL" in got["m0000010"][1]
    assert got["m0000010"][3] == "bigstar"  # most GMV in the trailing 90 days


def test_missing_upstream_is_a_clear_error(tmp_path, monkeypatch, bench):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    settings = get_settings()
    con = warehouse.connect(settings)
    with pytest.raises(LivefinError, match="features"):
        limits.build_limits(con, settings, D, run_id="r1")
    bench.make_upstream(con, D, 20)
    with pytest.raises(LivefinError, match="no features for 2026-11-21"):
        limits.build_limits(con, settings, D + timedelta(days=1), run_id="r1")
    con.execute("delete from credit.merchant_scores")
    with pytest.raises(LivefinError, match="no credit scores"):
        limits.build_limits(con, settings, D, run_id="r1")
    assert con.execute("select count(*) from limits.financing_limits").fetchone()[0] == 0
    con.close()


def test_a_failing_write_leaves_the_previous_rows(wh):
    settings, con, _ = wh
    limits.build_limits(con, settings, D, run_id="r1")
    con.execute("update credit.merchant_scores set grade = 'Z' where merchant_id = 'm0000005'")
    with pytest.raises(LivefinError, match="grade"):
        limits.build_limits(con, settings, D, run_id="r2")
    assert con.execute(
        "select list(distinct run_id), count(*) from limits.financing_limits"
    ).fetchone() == (
        ["r1"],
        300,
    )


def test_file_is_readable_by_a_fresh_read_only_connection(wh):
    settings, con, _ = wh
    limits.build_limits(con, settings, D, run_id="r1")
    con.close()
    ro = duckdb.connect(str(settings.warehouse), read_only=True)
    assert ro.execute("select count(*) from limits.current").fetchone()[0] == 300
    ro.close()
