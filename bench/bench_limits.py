"""Benchmark: build_limits + publish on synthetic upstream tables (default 100k merchants).

    .venv/bin/python bench/bench_limits.py [--merchants 100000] [--write]

The floor is one hand-written SQL statement with a simple limit formula + COPY to Parquet on
the same tables. ``--write`` updates the ``bench:limits`` section of BENCHMARKS.md.

``make_upstream`` is also the fixture generator of tests/limits and tests/publish: upstream
tables with the columns of docs/architecture.md, built by hand (no other stage needed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
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


def _grade(pd_: np.ndarray) -> np.ndarray:
    out = np.full(len(pd_), "E", dtype=object)
    for cut, g in reversed(MASTER_SCALE):
        out[pd_ < cut] = g
    return out


def merchant_frames(date: dt.date, n: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Random but plausible upstream rows for ``n`` merchants on business date ``date``."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"m{i:07d}" for i in range(n)], dtype=object)
    category = rng.choice(CATEGORIES, size=n, p=CATEGORY_P / CATEGORY_P.sum())
    tenure = rng.integers(30, 2000, size=n)
    daily = rng.lognormal(mean=8.5, sigma=1.2, size=n)  # ~5k CNY/day median
    hist = np.minimum(tenure, 365)
    season = rng.uniform(0.7, 1.8, size=n)
    noise = rng.uniform(0.8, 1.2, size=(3, n))
    gmv365 = daily * hist
    adj = 1.0 - rng.beta(1, 20, size=n)  # share of GMV surviving brushing adjustment
    features = pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": date,
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
    pd_ = np.clip(rng.beta(1.2, 30, size=n), 0.0005, 0.99)
    reasons = np.array(["refund_rate_30d", "gmv_cv_90d", "tenure_days", "brushing_score"])
    scores = pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": date,
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
    values = pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": date,
            "cost_value": rng.lognormal(10, 1, size=n),
            "income_value": rng.lognormal(11, 1, size=n),
            "market_value": rng.lognormal(10.5, 1, size=n),
        }
    )
    values["reconciled_value"] = values[["cost_value", "income_value", "market_value"]].mean(axis=1)
    values["currency"] = "CNY"
    values["quality_q"] = features["quality_q"]
    values["assumptions_version"] = "valuation-bench"
    dims = ("completeness", "validity", "accuracy", "consistency", "timeliness", "uniqueness")
    quality = pd.DataFrame(
        {
            "merchant_id": ids,
            "as_of_date": date,
            **{d: features["quality_q"] for d in dims},
            "quality_q": features["quality_q"],
            "quality_version": "quality-bench",
        }
    )
    has_loan = rng.random(n) < 0.2
    lids = ids[has_loan]
    principal = np.round(rng.uniform(5_000, 100_000, size=len(lids)), 2)
    loans = pd.DataFrame(
        {
            "loan_id": [f"L{m}" for m in lids],
            "merchant_id": lids,
            "origination_date": date - dt.timedelta(days=60),
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
            "repay_date": date - dt.timedelta(days=1),
            "amount_repaid": 100.0,
            "outstanding": principal * rng.uniform(0.1, 0.9, size=len(lids)),
            "dpd": dpd,
        }
    )
    # Orders: the top streamer (Zipf-popular pool, so a few streamers serve many merchants)
    # carries top_streamer_share_90d of each merchant's trailing-90-day GMV.
    n_streamers = max(20, n // 50)
    pop = 1.0 / np.arange(1, n_streamers + 1) ** 1.1
    top = rng.choice(n_streamers, size=n, p=pop / pop.sum())
    share = features["top_streamer_share_90d"].to_numpy()
    g90 = features["gmv_net_90d"].to_numpy()
    ts = pd.Timestamp(date) - pd.Timedelta(days=3)
    orders = pd.DataFrame(
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
            "_dt": (ts.date()),
        }
    )
    status = pd.DataFrame(
        {
            "source": ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments"],
            "dt": date - dt.timedelta(days=1),
            "status": "passed",
            "run_id": "bench",
            "failed_expectations": "",
            "updated_at": pd.Timestamp(date),
        }
    )
    return {
        "features.merchant_features": features,
        "credit.merchant_scores": scores,
        "valuation.data_asset_values": values,
        "dq.merchant_quality": quality,
        "raw.loans": loans,
        "raw.repayments": repayments,
        "raw.orders": orders,
        "dq.partition_status": status,
    }


def write_frames(con: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> None:
    """Append each frame to its table (created from the frame's columns on first use)."""
    for table, frame in frames.items():
        schema = table.split(".")[0]
        con.execute(f"create schema if not exists {schema}")
        con.register("_frame", frame)
        try:
            con.execute(f"create table if not exists {table} as select * from _frame limit 0")
            con.execute(f"insert into {table} by name select * from _frame")
        finally:
            con.unregister("_frame")


def make_upstream(
    con: duckdb.DuckDBPyConnection, date: dt.date, n: int, seed: int = 0
) -> dict[str, pd.DataFrame]:
    frames = merchant_frames(date, n, seed)
    write_frames(con, frames)
    return frames


FLOOR_SQL = """
copy (
    select f.merchant_id, f.as_of_date,
        case when s.pd > 0.2 then 0
             else least(0.08 * f.gmv_net_365d,
                        least(f.gmv_net_adj_30d / 30, f.gmv_net_adj_90d / 90) * 90 * 0.1)
        end as limit_amount
    from features.merchant_features as f
    join credit.merchant_scores as s using (merchant_id, as_of_date)
    where f.as_of_date = $d
) to '{path}' (format parquet)
"""


def run(n: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    from livefin_etl import limits, publish, warehouse
    from livefin_etl.config import get_settings

    date = dt.date(2026, 11, 20)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LIVEFIN_HOME"] = tmp
        settings = get_settings()
        settings.ensure_dirs()
        con = warehouse.connect(settings)
        t0 = time.perf_counter()
        make_upstream(con, date, n)
        t_gen = time.perf_counter() - t0

        t0 = time.perf_counter()
        con.execute(FLOOR_SQL.format(path=f"{tmp}/floor.parquet"), {"d": date})
        t_floor = time.perf_counter() - t0

        t0 = time.perf_counter()
        res = limits.build_limits(con, settings, date, run_id="bench1")
        t_limits = time.perf_counter() - t0

        t0 = time.perf_counter()
        publish.publish(con, settings, date, run_id="bench1", check_gates=False)
        t_publish = time.perf_counter() - t0
        con.close()
    return {
        "merchants": n,
        "generate_s": t_gen,
        "floor_s": t_floor,
        "build_limits_s": t_limits,
        "publish_s": t_publish,
        "total_s": t_limits + t_publish,
        "decisions": res["by_decision"],
    }


def write_section(text: str) -> None:
    path = REPO / "BENCHMARKS.md"
    start, end = "<!-- bench:limits -->", "<!-- /bench:limits -->"
    body = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text}\n{end}"
    if start in body and end in body:
        body = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, body, flags=re.S)
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--merchants", type=int, default=100_000)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    r = run(args.merchants)
    ratio = r["total_s"] / r["floor_s"] if r["floor_s"] else float("nan")
    text = "\n".join(
        [
            "## Limits + publish",
            "",
            f"`.venv/bin/python bench/bench_limits.py --merchants {args.merchants} --write` "
            f"({dt.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"LIVEFIN_THREADS={os.environ.get('LIVEFIN_THREADS', 'all')})",
            "",
            "| step | seconds |",
            "|---|---|",
            f"| floor: one SQL limit formula + COPY to Parquet | {r['floor_s']:.2f} |",
            f"| build_limits (inputs SQL, policy, guardrails, write, views) | {r['build_limits_s']:.2f} |",
            f"| publish (snapshot, atomic replace, exports) | {r['publish_s']:.2f} |",
            f"| **total** (target <= 30 s) | **{r['total_s']:.2f}** ({ratio:.0f}x floor) |",
            "",
            f"{r['merchants']:,} synthetic merchants (bench/bench_limits.py make_upstream); "
            f"decisions {r['decisions']} (at this book size the absolute EL budget binds, so "
            "every offer is a guardrail-scaled reduce).",
        ]
    )
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
