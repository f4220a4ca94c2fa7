"""Property tests: the policy's invariants hold for random merchants and random policies."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livefin_etl.limits import HARD_DECLINES, INPUT_COLUMNS, compute_limits, load_policy

BASE_POLICY = load_policy()
POLICY_CODES = set(BASE_POLICY["reason_texts"])

money = st.floats(min_value=0, max_value=5e7, allow_nan=False)
share = st.floats(min_value=0, max_value=1, allow_nan=False)
# Mostly healthy merchants, so that offers exist and the guardrails bind; some of each failure.
rare = st.sampled_from([False] * 9 + [True])
maybe_q = st.one_of(st.none(), st.floats(min_value=0.4, max_value=1, allow_nan=False))

raw_merchant = st.fixed_dictionaries(
    {
        "category": st.sampled_from([f"c{i}" for i in range(8)]),
        "tenure_days": st.integers(60, 3000),
        "daily": st.floats(0, 60_000, allow_nan=False),
        "r30": st.floats(0, 4, allow_nan=False),
        "r90": st.floats(0, 2, allow_nan=False),
        "adj": st.floats(0.3, 1, allow_nan=False),
        "gmv_cv_90d": st.floats(0, 3, allow_nan=False),
        "seasonal_trend_ratio": st.one_of(st.none(), st.floats(0, 5, allow_nan=False)),
        "brushing_score": st.floats(0, 0.8, allow_nan=False),
        "top_streamer_share_90d": share,
        "top_streamer_id": st.one_of(st.none(), st.sampled_from([f"s{i}" for i in range(12)])),
        "quality_q": st.one_of(st.floats(0.5, 1, allow_nan=False), st.sampled_from([None, 0.9])),
        "failed_partition": rare,
        "pd": st.one_of(st.floats(0, 0.25, allow_nan=False), st.sampled_from([None, 0.01])),
        "data_asset_value": st.one_of(st.none(), money),
        "outstanding_exposure": st.one_of(st.just(0.0), st.floats(0, 2e5, allow_nan=False)),
        "in_default": rare,
    }
)


def _expand(r: dict) -> dict:
    r = dict(r)
    daily, r30, r90, adj = r.pop("daily"), r.pop("r30"), r.pop("r90"), r.pop("adj")
    r["gmv_net_365d"] = daily * 365
    r["gmv_net_adj_365d"] = daily * 365 * adj
    r["gmv_net_adj_90d"] = daily * 90 * r90 * adj
    r["gmv_net_adj_30d"] = daily * 30 * r30 * adj
    return r


merchant = raw_merchant.map(_expand)


def grade_for(p: float | None) -> str | None:
    if p is None:
        return None
    return (
        next(g for cut, g in ((0.01, "A"), (0.03, "B"), (0.07, "C"), (0.15, "D")) if p < cut)
        if p < 0.15
        else "E"
    )


def to_frame(rows: list[dict]) -> pd.DataFrame:
    out = []
    for i, r in enumerate(rows):
        r = dict(r, merchant_id=f"m{i}", grade=grade_for(r["pd"]), model_version="mv")
        r["score"] = None if r["pd"] is None else 600.0
        for k in range(1, 5):
            r[f"reason_code_{k}"] = "model_reason" if k == 1 and r["pd"] is not None else None
            r[f"reason_text_{k}"] = "text" if k == 1 and r["pd"] is not None else None
        out.append(r)
    return pd.DataFrame(out, columns=list(INPUT_COLUMNS))


policies = st.fixed_dictionaries(
    {
        "el_budget": st.floats(0, 2e6, allow_nan=False),
        "max_category_share": st.floats(0.2, 1.0),
        "max_streamer_share": st.floats(0.05, 1.0),
        "min_limit": st.sampled_from([0, 1000, 20000]),
    }
)


def seeded_merchants(seed: int, n: int) -> list[dict]:
    """Realistic random merchants (mostly healthy): offers exist and guardrails bind often."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        daily = float(rng.lognormal(8.5, 1.3))
        adj = float(rng.uniform(0.7, 1.0))
        rows.append(
            {
                "category": f"c{min(int(rng.exponential(2)), 7)}",
                "tenure_days": int(rng.integers(60, 2500)),
                "gmv_net_365d": daily * 365,
                "gmv_net_adj_365d": daily * 365 * adj,
                "gmv_net_adj_90d": daily * 90 * adj * rng.uniform(0.5, 1.5),
                "gmv_net_adj_30d": daily * 30 * adj * rng.uniform(0.3, 3),
                "gmv_cv_90d": float(rng.gamma(2, 0.3)),
                "seasonal_trend_ratio": float(rng.uniform(0.6, 2.5)),
                "brushing_score": float(rng.beta(1, 8)),
                "top_streamer_share_90d": float(rng.beta(2, 3)),
                "top_streamer_id": None
                if rng.random() < 0.1
                else f"s{min(int(rng.exponential(3)), 11)}",
                "quality_q": float(rng.beta(20, 1.5)),
                "failed_partition": bool(rng.random() < 0.03),
                "pd": None if rng.random() < 0.02 else float(rng.beta(1.2, 25)),
                "data_asset_value": float(rng.lognormal(10, 1.5)),
                "outstanding_exposure": float(rng.uniform(0, 80_000))
                if rng.random() < 0.2
                else 0.0,
                "in_default": bool(rng.random() < 0.03),
            }
        )
    return rows


def run_policy(rows: list[dict], knobs: dict) -> tuple[pd.DataFrame, dict]:
    knobs = dict(knobs)
    policy = copy.deepcopy(BASE_POLICY)
    policy["min_limit"] = knobs.pop("min_limit")
    policy["guardrails"].update(knobs)
    return compute_limits(to_frame(rows), policy), policy


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(merchant, min_size=1, max_size=30), knobs=policies)
def test_policy_invariants_edge_cases(rows, knobs):
    check_invariants(*run_policy(rows, knobs))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 80), knobs=policies)
def test_policy_invariants_realistic_portfolios(seed, n, knobs):
    check_invariants(*run_policy(seeded_merchants(seed, n), knobs))


def check_invariants(out: pd.DataFrame, policy: dict) -> None:
    limit = out["limit_amount"].to_numpy()

    # Never above any cap, never negative, always a round amount.
    assert (limit >= 0).all()
    assert (limit <= out["tier_cap"] + 1e-6).all()
    assert (limit <= out["sales_cap"] + 1e-6).all()
    assert (limit <= out["proposed_limit"] + 1e-6).all()
    head = np.minimum(out["tier_cap"], out["sales_cap"]) - out["outstanding_exposure"]
    assert (limit <= np.maximum(head, 0) + 1e-6).all()
    assert np.allclose(limit % policy["round_to"], 0)

    for _, r in out.iterrows():
        policy_reasons = [c for c in r["reason_codes"] if c in POLICY_CODES]
        if r["decision"] == "decline":
            assert r["limit_amount"] == 0 and len(policy_reasons) >= 1
        else:
            assert r["limit_amount"] >= max(policy["min_limit"], policy["round_to"])
        if r["decision"] == "reduce":
            assert len(policy_reasons) >= 1
        if r["decision"] == "review":
            assert "TIER_MANUAL_REVIEW" in policy_reasons
        if any(c in HARD_DECLINES for c in r["reason_codes"]):
            assert r["decision"] == "decline"
        assert len(r["reason_codes"]) == len(r["reason_texts"])

    # Portfolio guardrails hold after scaling.
    assert out["expected_loss"].sum() <= policy["guardrails"]["el_budget"] + 1e-6
    total = limit.sum()
    info = out.attrs["guardrail_info"]
    if total > 0:
        slack = policy["round_to"] * len(out) / total  # flooring to round amounts
        if info["category_feasible"]:
            cat = out.groupby("category")["limit_amount"].sum() / total
            assert cat.max() <= policy["guardrails"]["max_category_share"] + slack + 1e-9
        if info["streamer_feasible"]:
            st_share = (
                out.dropna(subset=["top_streamer_id"])
                .groupby("top_streamer_id")["limit_amount"]
                .sum()
                / total
            )
            if len(st_share):
                assert st_share.max() <= policy["guardrails"]["max_streamer_share"] + slack + 1e-9
