"""Suites come from JSON plus the contract; Data Docs list the validation runs."""

from __future__ import annotations

import json

import pytest
from conftest import D

from livefin_etl.config import EXPECTATIONS_DIR, LivefinError, load_config
from livefin_etl.quality import build_data_docs, list_suites, load_suite, validate_partition


def test_every_suite_loads():
    assert set(list_suites()) == {
        "merchants",
        "orders",
        "traffic",
        "fulfillment",
        "loans",
        "repayments",
        "applications",
        "merchant_features",
    }
    for name in list_suites():
        spec = load_suite(name)
        assert spec.rows, name
        for s in spec.rows + spec.profile:
            assert s.severity in ("critical", "warning")


def test_contract_derived_expectations_appear():
    spec = load_suite("orders")
    derived = {(s.type, s.column) for s in spec.rows if s.origin == "contract"}
    assert ("expect_column_values_to_not_be_null", "order_id") in derived
    assert ("expect_column_values_to_be_in_type_list", "buyer_phone_hash") in derived  # PII renamed
    # a category a mapping defaulted to `other` is counted by a warning, never blocking
    other = next(s for s in spec.rows if s.type == "expect_column_values_to_not_be_in_set")
    assert (other.column, other.severity, other.kwargs["value_set"]) == (
        "category",
        "warning",
        ["other"],
    )
    assert ("expect_column_values_to_be_unique", "order_id") in derived
    assert ("expect_column_values_to_be_in_set", "status") in derived
    assert ("expect_column_values_to_be_between", "paid_amount") in derived
    assert ("expect_column_values_to_be_in_set", "_ref_merchant_id") in derived
    assert ("expect_column_values_to_be_in_set", "_in_window") in derived
    # the contract's refund_le_paid row check is replaced by the hand-written pair expectation
    assert not any(s.column == "_check_refund_le_paid" for s in spec.rows)
    hand = [s for s in spec.rows if s.origin == "suite"]
    assert [s.type for s in hand] == ["expect_column_pair_values_a_to_be_greater_than_b"]
    # compound key, and contract row checks as helper columns
    rep = load_suite("repayments")
    assert any(s.type == "expect_compound_columns_to_be_unique" for s in rep.rows)
    apps = load_suite("applications")  # refused ones included; the decision is a closed set
    assert ("expect_column_values_to_be_in_set", "decision") in {
        (s.type, s.column) for s in apps.rows
    }
    traffic = load_suite("traffic")
    assert {s.column for s in traffic.rows} >= {"_check_end_after_start", "_check_peak_le_total"}


def test_thresholds_resolved_from_config():
    th = load_config("quality")["thresholds"]
    spec = load_suite("orders")
    dup = next(s for s in spec.profile if s.column == "duplicate_key_rate")
    assert dup.kwargs["max_value"] == th["duplicate_key_rate_max"]
    ratio = next(s for s in spec.profile if s.column == "row_count_ratio")
    assert (ratio.kwargs["min_value"], ratio.kwargs["max_value"]) == (
        th["row_count_ratio_min"],
        th["row_count_ratio_max"],
    )


def test_suite_json_is_readable_and_id_free():
    for path in EXPECTATIONS_DIR.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["name"] == path.stem
        for e in data.get("expectations", []) + data.get("profile_expectations", []):
            assert "id" not in e
            assert e["meta"]["severity"] in ("critical", "warning")


def test_bad_suite_is_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr("livefin_etl.quality.suites.EXPECTATIONS_DIR", tmp_path)
    (tmp_path / "orders.json").write_text('{"name": "orders", "expectations": [{"kwargs": {}}]}')
    with pytest.raises(LivefinError, match="needs a 'type'"):
        load_suite("orders")
    (tmp_path / "orders.json").write_text(
        '{"name": "orders", "expectations": [{"type": '
        '"expect_column_values_to_not_be_null", "kwargs": '
        '{"column": "x"}, "meta": {"severity": "fatal"}}]}'
    )
    with pytest.raises(LivefinError, match="severity 'fatal'"):
        load_suite("orders")


def test_data_docs_list_the_run(con, settings, clean_day):
    r = validate_partition(con, settings, "orders", D, run_id="nightly-42")
    index = build_data_docs(settings)
    assert index == settings.docs / "data_docs" / "index.html"
    html = index.read_text()
    assert "nightly-42" in html
    assert r["run_id"] == "nightly-42"
    # generated GX state stays under settings.docs, not in the repository
    assert (settings.docs / "gx").is_dir()
