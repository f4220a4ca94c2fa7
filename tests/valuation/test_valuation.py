"""Data-asset valuation: hand-computed example, properties of the pure function, the stage."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livefin_etl import features, valuation
from livefin_etl.config import LivefinError, load_config

A = valuation.assumptions()
BASE = dict(
    rows_merchants=1, rows_orders=1000, rows_traffic=100, rows_fulfillment=2000, history_days=365,
    mean_record_age_days=182.5, quality_q=0.9, gmv_net_adj_365d=1_000_000.0, tenure_days=400,
    brushing_score=0.1,
)  # fmt: skip


def test_hand_computed_example() -> None:
    # the worked example of docs/valuation.md: Q given (no dimensions), f(Q) = Q (exponent 1)
    got = valuation.value_one(dataclasses.replace(A, quality_exponent=1.0), "apparel", **BASE)
    rows = 3101
    delta = min(0.8, 0.25 * 182.5 / 365)  # 0.125
    replacement = (
        (1000 * 20 + 100 * 40 + 2000 * 10 + 1 * 5) / 1000  # collection
        + rows / 1000 * 2.0 * 1  # storage, 1 year
        + rows / 1000 * 15.0  # processing
        + 4 * 300.0 * 1  # governance: 4 sources, 1 year
    )
    cost = replacement * (1 - delta) * 0.9
    cf1 = 1_000_000 * 0.08 * 0.15 * 0.9 * (1 - 0.5 * 0.1)
    income = cf1 * (1 / 1.12 + 0.7 / 1.12**2 + 0.49 / 1.12**3)
    market = (
        60.0 * rows / 1000 * (rows / 10000) ** (0.9 - 1) * (0.9 / 0.9) * (1 - delta) * 1.0 * 0.8
    )
    expected = {
        "rows_total": rows, "sources_count": 4, "obsolescence_delta": delta,
        "replacement_cost": replacement, "cost_value": cost, "income_cf_year1": cf1,
        "income_value": income, "market_value": market,
        "reconciled_value": 0.3 * cost + 0.5 * income + 0.2 * market,
    }  # fmt: skip
    for k, v in expected.items():
        assert math.isclose(got[k], v, rel_tol=1e-12), k
    assert math.isclose(got["reconciled_value"], 9_567.92, rel_tol=1e-6)  # docs/valuation.md


volumes = st.integers(min_value=0, max_value=10**8)
inputs = st.fixed_dictionaries(
    {
        "rows_merchants": st.integers(0, 1),
        "rows_orders": volumes,
        "rows_traffic": volumes,
        "rows_fulfillment": volumes,
        "history_days": st.integers(0, 3000),
        "mean_record_age_days": st.floats(0, 3000),
        "quality_q": st.floats(0, 1),
        "gmv_net_adj_365d": st.floats(0, 1e10),
        "tenure_days": st.integers(0, 5000),
        "brushing_score": st.floats(0, 1),
    }
)
categories = st.sampled_from(["apparel", "food", "beauty", "electronics", "household", None])


def ge(a: float, b: float) -> bool:
    return a >= b - 1e-9 * max(1.0, abs(b))


@settings(max_examples=150, deadline=None)
@given(inputs, categories, st.sampled_from(["rows_orders", "rows_traffic", "rows_fulfillment",
                                            "rows_merchants", "gmv_net_adj_365d"]),
       st.integers(1, 10**7))  # fmt: skip
def test_more_clean_volume_never_lowers_value(x, cat, key, more) -> None:
    lo = valuation.value_one(A, cat, **x)
    hi = valuation.value_one(A, cat, **{**x, key: x[key] + more})
    for k in ("cost_value", "income_value", "market_value", "reconciled_value"):
        assert ge(hi[k], lo[k]), k


@settings(max_examples=150, deadline=None)
@given(inputs, categories, st.floats(0, 1), st.floats(0, 1))
def test_lower_quality_lowers_value(x, cat, q1, q2) -> None:
    q_lo, q_hi = sorted((q1, q2))
    lo = valuation.value_one(A, cat, **{**x, "quality_q": q_lo})
    hi = valuation.value_one(A, cat, **{**x, "quality_q": q_hi})
    assert ge(hi["reconciled_value"], lo["reconciled_value"])
    if q_lo < q_hi and hi["reconciled_value"] > 1e-6:
        assert lo["reconciled_value"] < hi["reconciled_value"]


@settings(max_examples=100, deadline=None)
@given(inputs, categories)
def test_no_data_gives_zero(x, cat) -> None:
    empty = {**x, "rows_merchants": 0, "rows_orders": 0, "rows_traffic": 0, "rows_fulfillment": 0,
             "gmv_net_adj_365d": 0.0}  # fmt: skip
    got = valuation.value_one(A, cat, **empty)
    assert got["cost_value"] == got["income_value"] == got["market_value"] == 0.0
    assert got["reconciled_value"] == 0.0


@settings(max_examples=100, deadline=None)
@given(inputs, categories, st.integers(0, 30), st.integers(0, 30))
def test_longer_horizon_never_lowers_income(x, cat, h1, h2) -> None:
    short, long_ = sorted((h1, h2))
    lo = valuation.value_one(dataclasses.replace(A, horizon_years=short), cat, **x)
    hi = valuation.value_one(dataclasses.replace(A, horizon_years=long_), cat, **x)
    assert ge(hi["income_value"], lo["income_value"])


def test_vectorised_equals_scalar() -> None:
    arrays = {k: [v, v * 2] for k, v in BASE.items()}
    arrays.update(quality_q=[0.9, 0.5], brushing_score=[0.1, 0.7],
                  margin=[0.08, 0.08], comparable_price_per_1k=[60.0, 60.0], scarcity_adj=[1.0, 1.0])  # fmt: skip
    vec = valuation.compute_values(arrays, A)
    one = valuation.value_one(A, "apparel", **{k: v[1] for k, v in arrays.items()
                                               if k in BASE})  # fmt: skip
    assert math.isclose(vec["reconciled_value"][1], one["reconciled_value"], rel_tol=1e-12)


def test_bad_assumptions_are_refused() -> None:
    cfg = dict(load_config("valuation"))
    with pytest.raises(LivefinError, match="sum to 1"):
        valuation.Assumptions.from_config(
            {**cfg, "weights": {"cost": 0.5, "income": 0.5, "market": 0.5}}
        )
    with pytest.raises(LivefinError, match="missing or has a bad value"):
        valuation.Assumptions.from_config({k: v for k, v in cfg.items() if k != "income"})
    with pytest.raises(LivefinError, match="inputs missing"):
        valuation.compute_values({"rows_orders": 1}, A)


def test_build_and_explain(tmp_path: Path) -> None:
    from livefin_etl.testing.rawdata import D, scenario  # the feature tests' scenario
    from livefin_etl.warehouse import connect

    con: duckdb.DuckDBPyConnection = connect(path=tmp_path / "w.duckdb")
    scenario().write(con)
    with pytest.raises(LivefinError, match="features"):
        valuation.build_values(con, D)
    features.build_features(con, D)
    assert valuation.build_values(con, D) == 2
    assert valuation.build_values(con, D) == 2  # rerun replaces the date
    df = con.execute("select * from valuation.data_asset_values order by merchant_id").df()
    assert list(df["merchant_id"]) == ["M1", "M2"]
    m1 = df.iloc[0]
    # M1: 14 orders, 3 sessions, 11 logistics events before D, plus its registry row
    assert (m1.rows_orders, m1.rows_traffic, m1.rows_fulfillment, m1.rows_total) == (14, 3, 11, 29)
    assert m1.history_days == 40 and m1.sources_count == 4  # first record 2025-01-20
    assert m1.assumptions_version == A.version and m1.currency == "CNY"
    assert m1.quality_source == "gbt36344"
    assert m1.gmv_net_adj_365d == 400.0
    expect = valuation.value_one(
        A, "apparel", rows_merchants=1, rows_orders=14, rows_traffic=3, rows_fulfillment=11,
        history_days=40, mean_record_age_days=m1.mean_record_age_days, quality_q=0.8,
        gmv_net_adj_365d=400.0, tenure_days=59, brushing_score=m1.brushing_score,
        days_since_last_order=m1.days_since_last_order,
        **{d: m1[d] for d in valuation.DIMENSIONS},
    )  # fmt: skip
    assert math.isclose(m1.reconciled_value, expect["reconciled_value"], rel_tol=1e-12)
    assert math.isclose(
        m1.reconciled_value,
        m1.weight_cost * m1.cost_value + m1.weight_income * m1.income_value
        + m1.weight_market * m1.market_value,
        rel_tol=1e-12,
    )  # fmt: skip
    text = valuation.explain_value(con, "M1", D)
    for part in ("Reconciled value", "Cost approach", "Income approach", "Market approach",
                 A.version, f"{m1.reconciled_value:,.2f}"):  # fmt: skip
        assert part in text
    with pytest.raises(LivefinError, match="no data-asset value"):
        valuation.explain_value(con, "NOPE", D)
    comments = con.execute(
        "select count(*) filter (where comment is null), count(*) from duckdb_columns() "
        "where schema_name = 'valuation' and table_name = 'data_asset_values'"
    ).fetchone()
    assert comments[0] == 0 and comments[1] == len(features.table_spec("data_asset_values").columns)
    con.close()


def test_gbt_dimensions_decide_q_and_a_stale_merchant_loses_value() -> None:
    dims = {d: 1.0 for d in valuation.DIMENSIONS}
    perfect = valuation.value_one(A, "apparel", **BASE, **dims, days_since_last_order=1)
    assert perfect["quality_q"] == pytest.approx(1.0)
    # a dimension at its floor is worth nothing: Q drops by that dimension's weight share
    floor = {**dims, "timeliness": A.dim_floors["timeliness"]}
    worse = valuation.value_one(A, "apparel", **BASE, **floor, days_since_last_order=1)
    share = A.dim_weights["timeliness"] / sum(A.dim_weights.values())
    assert worse["quality_q"] == pytest.approx(1.0 - share)
    assert worse["reconciled_value"] < perfect["reconciled_value"]
    # no order for grace + 2 half-lives: a quarter of the value; never sold: nothing
    idle = A.inactive_grace_days + 2 * A.inactive_half_life_days
    stale = valuation.value_one(A, "apparel", **BASE, **dims, days_since_last_order=idle)
    assert stale["activity_factor"] == pytest.approx(0.25)
    assert stale["reconciled_value"] == pytest.approx(0.25 * perfect["reconciled_value"])
    never = valuation.value_one(A, "apparel", **BASE, **dims, days_since_last_order=float("nan"))
    assert never["reconciled_value"] == 0.0


def test_partial_rank_correlation_removes_the_control() -> None:
    import numpy as np

    rng = np.random.default_rng(2)
    gmv, q = rng.lognormal(0, 1, 3000), rng.random(3000)
    assert abs(valuation.partial_rank_correlation(gmv * 1.01, q, gmv)) < 0.05
    assert valuation.partial_rank_correlation(gmv * q**3, q, gmv) > 0.8


def test_quality_factor_compounds_over_the_six_dimensions() -> None:
    # valuation-v3: f(Q) = Q^6, the product of one factor per GB/T dimension when they agree, so a
    # merchant whose six dimensions all score 0.8 keeps 0.8^6 = 26 % of a perfect merchant's value
    s = 0.8
    dims = {d: A.dim_floors[d] + s * (1 - A.dim_floors[d]) for d in valuation.DIMENSIONS}
    got = valuation.value_one(A, "food", **BASE, **dims, days_since_last_order=1)
    perfect = valuation.value_one(
        A, "food", **BASE, **{d: 1.0 for d in valuation.DIMENSIONS}, days_since_last_order=1
    )
    assert got["quality_q"] == pytest.approx(s)
    assert got["quality_factor"] == pytest.approx(math.prod([s] * len(valuation.DIMENSIONS)))
    assert got["income_value"] == pytest.approx(s**6 * perfect["income_value"])
