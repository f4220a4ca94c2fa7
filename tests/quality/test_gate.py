"""Each defect class fails the right expectation with the right severity; the gate follows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import (
    D,
    day_rows,
    insert_raw,
    load_day,
    manifest,
    quarantine,
)

from livefin_etl.config import LivefinError, StageBlocked
from livefin_etl.quality import require_passed, validate_partition, validate_range

ALL = ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments"]


def _load_others_clean(con, skip: str) -> None:
    rows = day_rows(D)
    for source, rs in rows.items():
        if source != skip:
            insert_raw(con, source, D, rs)
            manifest(con, source, D, len(rs), len(rs))
    for s in ("merchants", "loans"):
        if s != skip:
            manifest(con, s, D, 0, 0)


def _validate_all(con, settings) -> dict[str, dict]:
    return {s: validate_partition(con, settings, s, D) for s in ALL}


def _result(con, source: str, type_: str, column: str) -> tuple:
    row = con.execute(
        "select success, severity, unexpected_count, observed_value, dimension "
        "from dq.expectation_results where source = ? and dt = ? and expectation_type = ? "
        "and column_name = ?",
        [source, D, type_, column],
    ).fetchall()
    assert len(row) == 1, (type_, column, row)
    return row[0]


def _status(con, source: str) -> str:
    return con.execute(
        "select status from dq.partition_status where source = ? and dt = ?", [source, D]
    ).fetchone()[0]


def test_clean_day_passes_and_gate_opens(con, settings, clean_day):
    results = _validate_all(con, settings)
    assert {s: r["status"] for s, r in results.items()} == dict.fromkeys(ALL, "passed")
    assert results["orders"]["rows"] == 30
    # ~1 after the seasonal calendar adjustment (see profile.calendar in config/quality.yaml)
    assert float(results["orders"]["profile"]["row_count_ratio"]) == pytest.approx(1, abs=0.01)
    require_passed(con, D)  # does not raise
    n = con.execute("select count(*) from dq.validation_runs where dt = ?", [D]).fetchone()[0]
    assert n == 12  # a row suite and a profile suite per source


def test_raw_duplicate_key_is_critical(con, settings):
    _load_others_clean(con, "orders")
    rows = day_rows(D)["orders"]
    rows.append(dict(rows[0]))  # same order_id twice in raw
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows), len(rows))
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "failed"
    assert (
        "orders.expect_column_values_to_be_unique(order_id): 2 unexpected"
        in (r["failed_critical"][0])
    )
    success, severity, count, _, dim = _result(
        con, "orders", "expect_column_values_to_be_unique", "order_id"
    )
    assert (success, severity, count, dim) == (False, "critical", 2, "uniqueness")
    assert _status(con, "orders") == "failed"
    validate_partition(con, settings, "traffic", D)
    with pytest.raises(StageBlocked) as exc:
        require_passed(con, D, sources=["orders", "traffic"])
    assert "orders: failed" in str(exc.value)
    assert "expect_column_values_to_be_unique(order_id)" in str(exc.value)
    assert "traffic" not in str(exc.value)


def test_quarantined_duplicates_fail_profile(con, settings):
    _load_others_clean(con, "orders")
    rows = day_rows(D)["orders"]
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows) + 3, len(rows), 3)
    for line in (31, 32, 33):
        quarantine(con, "orders", D, line, "duplicate_key", column="order_id")
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "failed"
    success, severity, _, observed, dim = _result(
        con, "orders", "expect_column_values_to_be_between", "duplicate_key_rate"
    )
    assert (success, severity, dim) == (False, "critical", "uniqueness")
    assert float(observed) == pytest.approx(3 / 33)
    assert any("duplicate_key_rate" in f for f in r["failed_critical"])


def test_null_key_is_critical(con, settings):
    rows = day_rows(D)["orders"]
    rows[3]["merchant_id"] = None
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows), len(rows))
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "failed"
    assert _result(con, "orders", "expect_column_values_to_not_be_null", "merchant_id")[:3] == (
        False,
        "critical",
        1,
    )


def test_negative_amount_is_critical(con, settings):
    rows = day_rows(D)["orders"]
    rows[0]["paid_amount"] = -5.0
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows), len(rows))
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "failed"
    success, severity, count, observed, dim = _result(
        con, "orders", "expect_column_values_to_be_between", "paid_amount"
    )
    assert (success, severity, count, dim) == (False, "critical", 1, "validity")
    assert json.loads(observed) == [-5.0]
    # refund (0) > paid (-5) as well: the hand-written pair expectation catches it
    assert _result(
        con,
        "orders",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "paid_amount,refund_amount",
    )[:2] == (False, "critical")


def test_unknown_merchant_raw_and_quarantine(con, settings):
    rows = day_rows(D)["orders"]
    rows[5]["merchant_id"] = "M404"
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows) + 1, len(rows), 1)
    quarantine(con, "orders", D, 31, "unknown_reference", merchant_id="M405", column="merchant_id")
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "failed"
    success, severity, count, _, dim = _result(
        con, "orders", "expect_column_values_to_be_in_set", "_ref_merchant_id"
    )
    assert (success, severity, count, dim) == (False, "critical", 1, "consistency")
    assert _result(con, "orders", "expect_column_values_to_be_between", "unknown_reference_rate")[
        :2
    ] == (False, "critical")


def test_late_event_in_raw_is_critical(con, settings):
    rows = day_rows(D)["traffic"]
    rows[0]["start_ts"] = rows[0]["start_ts"] - timedelta(days=3)  # beyond the 48 h window
    rows[0]["end_ts"] = rows[0]["start_ts"] + timedelta(hours=1)
    insert_raw(con, "traffic", D, rows)
    manifest(con, "traffic", D, len(rows), len(rows))
    r = validate_partition(con, settings, "traffic", D)
    assert r["status"] == "failed"
    success, severity, count, _, dim = _result(
        con, "traffic", "expect_column_values_to_be_in_set", "_in_window"
    )
    assert (success, severity, count, dim) == (False, "critical", 1, "timeliness")


def test_late_rows_quarantined_is_warning_only(con, settings):
    _load_others_clean(con, "orders")
    rows = day_rows(D)["orders"]
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows) + 1, len(rows), 1)
    quarantine(con, "orders", D, 31, "outside_partition", column="order_ts")
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "warning"
    assert r["failed_critical"] == []
    assert any("outside_partition_rate" in w for w in r["failed_warnings"])
    assert _result(con, "orders", "expect_column_values_to_be_between", "outside_partition_rate")[
        :2
    ] == (False, "warning")
    assert validate_partition(con, settings, "traffic", D)["status"] == "passed"
    require_passed(con, D, sources=["orders", "traffic"])  # warning does not block


def test_half_size_day_is_critical(con, settings):
    rows = day_rows(D, n_orders=15)["orders"]
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows), len(rows))
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "failed"
    success, severity, _, observed, dim = _result(
        con, "orders", "expect_column_values_to_be_between", "row_count_ratio"
    )
    assert (success, severity, dim) == (False, "critical", "completeness")
    assert float(observed) == pytest.approx(0.5, abs=0.01)


def test_mean_value_shift_is_warning(con, settings):
    rows = day_rows(D, amount=300.0)["orders"]
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows), len(rows))
    r = validate_partition(con, settings, "orders", D)
    assert r["status"] == "warning"
    assert _result(con, "orders", "expect_column_values_to_be_between", "mean_value_ratio")[:2] == (
        False,
        "warning",
    )


def test_missing_validation_blocks(con, settings, clean_day):
    validate_partition(con, settings, "orders", D)
    with pytest.raises(StageBlocked) as exc:
        require_passed(con, D)
    assert "traffic: partition 2026-03-11 was never validated" in str(exc.value)
    require_passed(con, D, sources=["orders"])


def test_missing_delivery_fails(con, settings):
    r = validate_partition(con, settings, "orders", D)  # nothing loaded for D
    assert r["status"] == "failed"
    assert any("files_loaded" in f for f in r["failed_critical"])


def test_rerun_replaces_status(con, settings):
    rows = day_rows(D)["orders"]
    bad = [dict(r) for r in rows]
    bad[0]["paid_amount"] = -1.0
    insert_raw(con, "orders", D, bad)
    manifest(con, "orders", D, len(bad), len(bad))
    assert validate_partition(con, settings, "orders", D, run_id="run-1")["status"] == "failed"
    con.execute("delete from raw.orders where _dt = ?", [D])  # extract replaces the partition
    insert_raw(con, "orders", D, rows)
    assert validate_partition(con, settings, "orders", D, run_id="run-2")["status"] == "passed"
    assert con.execute(
        "select status, run_id from dq.partition_status where source='orders' and dt=?", [D]
    ).fetchall() == [("passed", "run-2")]
    assert con.execute("select count(distinct run_id) from dq.validation_runs").fetchone()[0] == 2


def test_bad_input_is_a_clear_error(con, settings):
    with pytest.raises(LivefinError, match="unknown source 'nope'"):
        validate_partition(con, settings, "nope", D)
    with pytest.raises(LivefinError, match="datetime.date"):
        validate_partition(con, settings, "orders", "2026-03-11")  # type: ignore[arg-type]


def test_range_equals_per_date(con, settings):
    """validate_range gives exactly the per-date results, defects on some dates only."""
    d1, d2, d3 = D, D + timedelta(days=1), D + timedelta(days=2)
    load_day(con, d1, {"orders": day_rows(d1)["orders"]})
    dup = day_rows(d2)["orders"]
    dup.append(dict(dup[1]))
    dup[4]["paid_amount"] = -2.0
    load_day(con, d2, {"orders": dup})
    load_day(con, d3, {"orders": day_rows(d3, n_orders=12)["orders"]})
    dates = [D - timedelta(days=2), D - timedelta(days=1), d1, d2, d3]

    def snapshot():
        return con.execute(
            "select dt, suite, expectation_type, column_name, severity, success, observed_value, "
            "unexpected_count, unexpected_percent, kwargs from dq.expectation_results "
            "order by all"
        ).fetchall()

    ranged = validate_range(con, settings, "orders", dates)
    got_range = snapshot()
    con.execute("delete from dq.expectation_results")
    single = [validate_partition(con, settings, "orders", d) for d in dates]
    got_single = snapshot()
    assert got_range == got_single
    keys = ("dt", "status", "failed_critical", "failed_warnings", "evaluated", "successful", "rows")
    assert [{k: r[k] for k in keys} for r in ranged] == [{k: r[k] for k in keys} for r in single]
    assert [r["status"] for r in ranged] == ["passed", "passed", "passed", "failed", "failed"]


def test_clean_range_is_one_gx_pass_and_keeps_its_record(con, settings, monkeypatch):
    """A wholly clean range goes through GX once per suite, on an empty frame of the batch's
    dtypes (DuckDB counts the rows), and keeps one Data Docs record per suite; a range with one
    dirty date still records its clean dates and gives the dirty one its own run."""
    from great_expectations.validator.v1_validator import Validator

    passes: list[int] = []
    real = Validator.validate_expectation_suite

    def counting(self, *a, **k):
        res = real(self, *a, **k)
        passes.append(len(res.results))
        return res

    monkeypatch.setattr(Validator, "validate_expectation_suite", counting)
    dates = [D + timedelta(days=i) for i in range(3)]
    for d in dates:
        load_day(con, d, {"orders": day_rows(d)["orders"]})
    store = settings.docs / "gx" / "uncommitted" / "validations"

    def range_records(suite: str) -> list:
        return sorted((store / suite.replace(".", "/")).glob("range-*"))  # GX nests on "."

    assert [r["status"] for r in validate_range(con, settings, "orders", dates)] == ["passed"] * 3
    assert passes == [47, 13]  # each suite once, on an empty frame (its template)
    for suite in ("orders", "orders.profile"):
        recs = range_records(suite)
        assert len(recs) == 1, suite
        kept = json.loads(next(recs[0].rglob("*.json")).read_text())
        assert kept["success"] is True
        assert kept["statistics"]["evaluated_expectations"] == len(kept["results"]) > 0
        assert kept["meta"]["run_id"]["run_name"].startswith("range-")

    # one dirty date: the clean dates' record and a per-date run of the dirty date (4 passes)
    passes.clear()
    later = [D + timedelta(days=i) for i in range(3, 6)]
    bad = day_rows(later[1])["orders"]
    bad[0]["paid_amount"] = -1.0
    for d in later:
        load_day(con, d, {"orders": bad if d == later[1] else day_rows(d)["orders"]})
    statuses = [r["status"] for r in validate_range(con, settings, "orders", later)]
    assert statuses == ["passed", "failed", "passed"]
    assert len(range_records("orders")) == 2
    # the templates are reused: only the dirty date's rows go through GX
    assert passes == [47]
    assert len(range_records("orders.profile")) == 2
