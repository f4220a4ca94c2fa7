"""A synthetic upstream world for the limits stage: the tables it reads, filled by hand.

``make_upstream(con, as_of_date, n)`` writes ``n`` random but plausible merchants into
features, credit scores, data-asset values, merchant quality, loans, repayments, orders and
partition status, in tables created by their owners' DDL (the columns of
docs/architecture.md), so the limits and publish tests and ``bench/bench_limits.py`` need no
other stage. Seeded: the same arguments give the same rows.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from livefin_etl.warehouse import insert_frame, run_ddl

CATEGORIES = (
    "womens_clothing",
    "beauty",
    "food",
    "home",
    "electronics",
    "mens_clothing",
    "kids",
    "sports",
    "jewelry",
    "pets",
    "books",
    "health",
)
CATEGORY_P = np.array([0.30, 0.15, 0.1, 0.08, 0.07, 0.07, 0.06, 0.05, 0.04, 0.03, 0.03, 0.02])
MASTER_SCALE = ((0.01, "A"), (0.03, "B"), (0.07, "C"), (0.15, "D"), (1.0, "E"))
QUALITY_DIMENSIONS = (
    "completeness",
    "validity",
    "accuracy",
    "consistency",
    "timeliness",
    "uniqueness",
)


def _grade(pd_: np.ndarray) -> np.ndarray:
    out = np.full(len(pd_), "E", dtype=object)
    for cut, g in reversed(MASTER_SCALE):
        out[pd_ < cut] = g
    return out


def _features(rng: np.random.Generator, ids: np.ndarray, as_of_date: date) -> pd.DataFrame:
    n = len(ids)
    category = rng.choice(CATEGORIES, size=n, p=CATEGORY_P / CATEGORY_P.sum())
    tenure = rng.integers(30, 2000, size=n)
    daily = rng.lognormal(mean=8.5, sigma=1.2, size=n)  # ~5k CNY/day median
    hist = np.minimum(tenure, 365)
    season = rng.uniform(0.7, 1.8, size=n)
    noise = rng.uniform(0.8, 1.2, size=(3, n))
    gmv365 = daily * hist
    adj = 1.0 - rng.beta(1, 20, size=n)  # share of GMV surviving brushing adjustment
    return pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": as_of_date,
            "category": category,
            "tenure_days": tenure,
            "gmv_net_30d": daily * np.minimum(tenure, 30) * season * noise[0],
            "gmv_net_90d": daily * np.minimum(tenure, 90) * noise[1],
            "gmv_net_365d": gmv365,
            "gmv_net_adj_30d": daily * np.minimum(tenure, 30) * season * noise[0] * adj,
            "gmv_net_adj_90d": daily * np.minimum(tenure, 90) * noise[1] * adj,
            "gmv_net_adj_365d": gmv365 * adj,
            "gmv_cv_90d": rng.gamma(2.0, 0.25, size=n),
            "seasonal_trend_ratio": season,
            "brushing_score": rng.beta(1, 8, size=n),
            "top_streamer_share_90d": rng.beta(2, 3, size=n),
            "quality_q": rng.beta(20, 1.5, size=n),
            "feature_version": "features-bench",
        }
    )


def _scores(rng: np.random.Generator, ids: np.ndarray, as_of_date: date) -> pd.DataFrame:
    pd_ = np.clip(rng.beta(1.2, 30, size=len(ids)), 0.0005, 0.99)
    reasons = np.array(["refund_rate_30d", "gmv_cv_90d", "tenure_days", "brushing_score"])
    return pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": as_of_date,
            "pd": pd_,
            "score": 600 + 20 / np.log(2) * np.log((1 - pd_) / pd_ / 50),
            "grade": _grade(pd_),
            **{f"reason_code_{i + 1}": reasons[i] for i in range(4)},
            **{f"reason_text_{i + 1}": f"{reasons[i]} raised the PD" for i in range(4)},
            **{f"reason_shap_{i + 1}": 0.1 for i in range(4)},
            "model_version": "model-bench",
            "run_id": "bench",
        }
    )


def _values(
    rng: np.random.Generator, ids: np.ndarray, as_of_date: date, quality_q: pd.Series
) -> pd.DataFrame:
    n = len(ids)
    values = pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": as_of_date,
            "cost_value": rng.lognormal(10, 1, size=n),
            "income_value": rng.lognormal(11, 1, size=n),
            "market_value": rng.lognormal(10.5, 1, size=n),
        }
    )
    values["reconciled_value"] = values[["cost_value", "income_value", "market_value"]].mean(axis=1)
    values["currency"] = "CNY"
    values["quality_q"] = quality_q
    values["assumptions_version"] = "valuation-bench"
    return values


def _quality(ids: np.ndarray, as_of_date: date, quality_q: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": as_of_date,
            **{d: quality_q for d in QUALITY_DIMENSIONS},
            "quality_q": quality_q,
            "rows_considered": 100,
            "quality_version": "quality-bench",
        }
    )


def _loans(
    rng: np.random.Generator, ids: np.ndarray, as_of_date: date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A fifth of the merchants hold a loan funded 60 days ago; 5% of those are 75 dpd."""
    lids = ids[rng.random(len(ids)) < 0.2]
    principal = np.round(rng.uniform(5_000, 100_000, size=len(lids)), 2)
    loans = pd.DataFrame(
        {
            "loan_id": [f"L{m}" for m in lids],
            "merchant_id": lids,
            "origination_date": as_of_date - timedelta(days=60),
            "principal": principal,
            "fee_amount": principal * 0.08,
            "withhold_rate": 0.1,
            "term_days": 90,
            "legacy_limit": principal * 1.5,
        }
    )
    dpd = np.where(rng.random(len(lids)) < 0.05, 75, 0)
    repayments = pd.DataFrame(
        {
            "loan_id": loans["loan_id"],
            "merchant_id": lids,
            "repay_date": as_of_date - timedelta(days=1),
            "amount_repaid": 100.0,
            "outstanding": principal * rng.uniform(0.1, 0.9, size=len(lids)),
            "dpd": dpd,
        }
    )
    return loans, repayments


def _orders(
    rng: np.random.Generator, ids: np.ndarray, as_of_date: date, features: pd.DataFrame
) -> pd.DataFrame:
    """The top streamer (Zipf-popular pool, so a few streamers serve many merchants) carries
    top_streamer_share_90d of each merchant's trailing-90-day GMV."""
    n = len(ids)
    n_streamers = max(20, n // 50)
    pop = 1.0 / np.arange(1, n_streamers + 1) ** 1.1
    top = rng.choice(n_streamers, size=n, p=pop / pop.sum())
    share = features["top_streamer_share_90d"].to_numpy()
    g90 = features["gmv_net_90d"].to_numpy()
    ts = pd.Timestamp(as_of_date) - pd.Timedelta(days=3)
    return pd.DataFrame(
        {
            "order_id": np.concatenate([[f"o{m}a" for m in ids], [f"o{m}b" for m in ids]]),
            "merchant_id": np.concatenate([ids, ids]),
            "order_ts": ts,
            "paid_amount": np.concatenate([g90 * share, g90 * (1 - share)]),
            "refund_amount": 0.0,
            "status": "completed",
            "streamer_id": np.concatenate(
                [np.array([f"s{t:05d}" for t in top]), np.full(n, None, dtype=object)]
            ),
            "_dt": ts.date(),
        }
    )


def _partition_status(as_of_date: date) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments"],
            "dt": as_of_date - timedelta(days=1),
            "status": "passed",
            "run_id": "bench",
            "failed_expectations": "",
            "updated_at": pd.Timestamp(as_of_date),
        }
    )


def merchant_frames(as_of_date: date, n: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Random but plausible upstream rows for ``n`` merchants on business date ``as_of_date``,
    keyed by the table they belong in."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"m{i:07d}" for i in range(n)], dtype=object)
    features = _features(rng, ids, as_of_date)
    scores = _scores(rng, ids, as_of_date)
    values = _values(rng, ids, as_of_date, features["quality_q"])
    quality = _quality(ids, as_of_date, features["quality_q"])
    loans, repayments = _loans(rng, ids, as_of_date)
    return {
        "features.merchant_features": features,
        "credit.merchant_scores": scores,
        "valuation.data_asset_values": values,
        "dq.merchant_quality": quality,
        "raw.loans": loans,
        "raw.repayments": repayments,
        "raw.orders": _orders(rng, ids, as_of_date, features),
        "dq.partition_status": _partition_status(as_of_date),
    }


def ensure_world_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The upstream tables, created (if missing) from the DDL of the stages that own them."""
    from livefin_etl.features import ensure_table, table_spec
    from livefin_etl.limits.inputs import ensure_upstream

    run_ddl(con, "features")
    ensure_table(con, table_spec("merchant_features"))
    run_ddl(con, "credit")  # credit.merchant_scores
    ensure_upstream(con)


def _unrecorded_statuses(con: duckdb.DuckDBPyConnection, status: pd.DataFrame) -> pd.DataFrame:
    """The gate keeps one status per (source, dt): one a test already recorded stays."""
    have = con.execute("select source, dt from dq.partition_status").fetchall()
    keys = set(have)
    new = [(s, d) not in keys for s, d in zip(status["source"], status["dt"], strict=True)]
    return status[new]


def write_frames(con: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> None:
    """Append each frame to its table, by column name (columns a frame lacks stay NULL)."""
    ensure_world_tables(con)
    for table, frame in frames.items():
        if table == "dq.partition_status":
            frame = _unrecorded_statuses(con, frame)
        insert_frame(con, table, frame)


def make_upstream(
    con: duckdb.DuckDBPyConnection, as_of_date: date, n: int, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Write :func:`merchant_frames` into ``con``'s upstream tables; returns the frames."""
    frames = merchant_frames(as_of_date, n, seed)
    write_frames(con, frames)
    return frames
