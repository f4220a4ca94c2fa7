"""The credit policy on hand-made merchants: each rule fires for the reason it names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from livefin_etl.config import LivefinError
from livefin_etl.limits import (
    INPUT_COLUMNS,
    compute_limits,
    group_share_scale,
    validate_policy,
)


def merchant(i: int = 0, **over) -> dict:
    row = {
        "merchant_id": f"m{i}",
        "category": f"cat{i % 10}",
        "tenure_days": 800,
        "gmv_net_adj_30d": 300_000.0,
        "gmv_net_adj_90d": 900_000.0,
        "gmv_net_adj_365d": 3_650_000.0,
        "gmv_net_365d": 3_700_000.0,
        "gmv_cv_90d": 0.3,
        "seasonal_trend_ratio": 1.0,
        "brushing_score": 0.05,
        "top_streamer_share_90d": 0.2,
        "top_streamer_id": f"s{i}",
        "quality_q": 0.95,
        "failed_partition": False,
        "pd": 0.02,
        "score": 640.0,
        "grade": "B",
        "model_version": "mv1",
        "reason_code_1": "refund_rate_30d",
        "reason_code_2": None,
        "reason_code_3": None,
        "reason_code_4": None,
        "reason_text_1": "Refund rate raised the PD",
        "reason_text_2": None,
        "reason_text_3": None,
        "reason_text_4": None,
        "data_asset_value": 100_000.0,
        "outstanding_exposure": 0.0,
        "in_default": False,
    }
    row.update(over)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(INPUT_COLUMNS))


def loose(policy: dict) -> dict:
    """Guardrails that never bind, to test per-merchant rules alone."""
    policy["guardrails"].update(el_budget=1e18, max_category_share=1.0, max_streamer_share=1.0)
    return policy


def one(policy: dict, **over) -> pd.Series:
    return compute_limits(frame([merchant(**over)]), loose(policy)).iloc[0]


def test_healthy_merchant_is_approved_with_capacity_formula(policy):
    r = one(policy)
    prod = policy["product"]
    daily = 10_000.0  # min(300k/30, 900k/90, 3.65M/365 * 1.25)
    capacity = daily * prod["term_days"] * prod["withhold_rate"]
    assert r["repayment_capacity"] == pytest.approx(capacity)
    expected = capacity / (1 + prod["fee_rate"]) * 0.85 + 0.10 * 100_000
    assert r["proposed_limit"] == pytest.approx(expected)
    assert r["decision"] == "approve"
    assert r["limit_amount"] == np.floor(expected / 100) * 100
    assert r["tier"] == "B" and r["guardrail_scale"] == 1.0
    assert r["reason_codes"] == ["refund_rate_30d"]  # model reason kept, no policy rule fired


def test_double_11_peak_is_not_assumed_to_last(policy):
    calm = one(policy)
    # The last 30 days tripled (a peak): the 90-day and 12-month run-rates cap the forecast.
    peak = one(policy, gmv_net_adj_30d=900_000.0, seasonal_trend_ratio=3.0)
    assert peak["forecast_daily_gmv"] == pytest.approx(calm["forecast_daily_gmv"])
    assert peak["limit_amount"] == calm["limit_amount"]


def test_brushing_adjusted_gmv_drives_capacity(policy):
    honest = one(policy)
    brushed = one(policy, gmv_net_adj_30d=150_000.0, gmv_net_adj_90d=450_000.0)
    assert brushed["repayment_capacity"] == pytest.approx(honest["repayment_capacity"] / 2)


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"pd": 0.5, "grade": "E"}, "PD_ABOVE_CUTOFF"),
        ({"quality_q": 0.3}, "DQ_CRITICAL"),
        ({"failed_partition": True}, "DQ_CRITICAL"),
        ({"brushing_score": 0.9}, "BRUSHING_SUSPECTED"),
        ({"tenure_days": 30}, "TENURE_TOO_SHORT"),
        ({"in_default": True}, "IN_DEFAULT"),
        ({"pd": None, "grade": None}, "NO_SCORE"),
    ],
)
def test_each_hard_decline_has_its_own_code(policy, over, code):
    r = one(policy, **over)
    assert r["decision"] == "decline"
    assert r["limit_amount"] == 0
    assert r["reason_codes"][0] == code
    assert r["reason_texts"][0] == policy["reason_texts"][code]
    assert "CAP_TIER" not in r["reason_codes"]  # only the rules that decided it


def test_caps_and_outstanding_each_reduce_with_reason(policy):
    policy["tiers"]["B"]["cap"] = 50_000
    r = one(policy)
    assert r["decision"] == "reduce" and r["limit_amount"] == 50_000
    assert "CAP_TIER" in r["reason_codes"]

    r = one(policy, gmv_net_365d=500_000.0)  # 8% of 500k = 40k
    assert r["limit_amount"] == 40_000 and "CAP_SALES_SHARE" in r["reason_codes"]

    r = one(policy, gmv_net_365d=500_000.0, outstanding_exposure=15_000.0)
    assert r["limit_amount"] == 25_000 and "OUTSTANDING_EXPOSURE" in r["reason_codes"]

    r = one(policy, gmv_net_365d=500_000.0, outstanding_exposure=39_500.0)
    assert r["decision"] == "decline" and r["reason_codes"][0] == "EXPOSURE_FULLY_USED"


def test_tier_flags_lower_the_tier_and_manual_review_tiers_go_to_review(policy):
    r = one(policy, tenure_days=200, gmv_cv_90d=3.0)
    assert r["tier"] == "D"  # B + new + volatile
    assert {"TIER_DOWN_NEW_MERCHANT", "TIER_DOWN_VOLATILE"} <= set(r["reason_codes"])
    assert r["decision"] == "review" and "TIER_MANUAL_REVIEW" in r["reason_codes"]
    assert r["review_days"] == policy["tiers"]["D"]["review_days"]
    r = one(policy, grade="E", pd=0.18, top_streamer_share_90d=0.9, tenure_days=100)
    assert r["tier"] == "E"  # never below E


def test_unknown_grade_and_bad_policy_are_clear_errors(policy):
    with pytest.raises(LivefinError, match="grade"):
        compute_limits(frame([merchant(grade="Z")]), policy)
    bad = dict(policy, sales_cap_share=3)
    with pytest.raises(LivefinError, match="sales_cap_share"):
        validate_policy(bad)
    with pytest.raises(LivefinError, match="lack columns"):
        compute_limits(pd.DataFrame({"merchant_id": ["m"]}), policy)
    with pytest.raises(LivefinError, match="more than once"):
        compute_limits(frame([merchant(1), merchant(1)]), policy)


def test_water_filling_cuts_only_the_over_concentrated_group():
    amount = np.array([60.0, 20.0, 10.0, 10.0, 10.0])
    groups = np.array(["a", "b", "c", "d", None], dtype=object)
    scale, ok = group_share_scale(amount, groups, 0.3)
    assert ok
    new = amount * scale
    assert scale[1:].tolist() == [1, 1, 1, 1]
    assert new[0] / new.sum() == pytest.approx(0.3)
    # Two groups cannot each be <= 40%: reported infeasible, nothing scaled.
    scale, ok = group_share_scale(np.array([5.0, 5.0]), np.array(["a", "b"], dtype=object), 0.4)
    assert not ok and scale.tolist() == [1, 1]


def test_guardrails_scale_and_mark_rows(policy):
    rows = [merchant(i, category="big" if i < 5 else f"c{i}") for i in range(20)]
    policy["guardrails"].update(el_budget=1e18, max_category_share=0.15, max_streamer_share=1.0)
    out = compute_limits(frame(rows), policy)
    big = out["category"] == "big"
    assert (out.loc[big, "guardrail_scale"] < 1).all()
    assert (out.loc[~big, "guardrail_scale"] == 1).all()
    assert out.loc[big, "reason_codes"].map(lambda c: "GUARDRAIL_CATEGORY" in c).all()
    assert (out.loc[big, "decision"] == "reduce").all()
    assert out.loc[big, "limit_amount"].sum() / out["limit_amount"].sum() <= 0.15 + 1e-3

    policy["guardrails"].update(max_category_share=1.0, el_budget=1000.0)
    out = compute_limits(frame(rows), policy)
    assert out["expected_loss"].sum() <= 1000.0
    assert out["reason_codes"].map(lambda c: "GUARDRAIL_EL_BUDGET" in c).all()
