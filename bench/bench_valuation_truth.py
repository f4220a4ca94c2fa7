"""Does the data-asset value carry information on true data quality beyond net GMV?

Reads a home after `livefin demo` (`demo` preset, seed 42), re-values its last night with the current
config (``valuation.build_values``), joins the simulator's truth (``_truth/merchants.parquet``:
``quality``, ``churn_date``) and reports the Spearman partial correlation of the value with true
quality given net GMV (``valuation.partial_rank_correlation``), per GB/T dimension, and the offers
of merchants that churned. ``--write`` puts the table in BENCHMARKS.md (bench:valuation-truth).

    LIVEFIN_HOME=/tmp/demo livefin demo
    .venv/bin/python bench/bench_valuation_truth.py --home /tmp/demo --write
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, write_section  # noqa: E402

from livefin_etl import valuation  # noqa: E402

DIMS = valuation.DIMENSIONS


def measure(home: Path, revalue: bool = True, landing: Path | None = None) -> dict:
    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"))
    con.execute(f"SET threads = {int(os.environ.get('LIVEFIN_THREADS', '1'))}")
    last: date = con.execute("select max(as_of_date) from valuation.data_asset_values").fetchone()[
        0
    ]
    if revalue:
        valuation.build_values(con, last)
    v = con.execute(
        "select v.merchant_id, v.reconciled_value, v.income_value, v.quality_q, "
        f"v.activity_factor, v.days_since_last_order, {', '.join('v.' + d for d in DIMS)}, "
        "f.gmv_net_365d, f.gmv_net_adj_365d, f.quality_q as dq_quality_q, l.limit_amount "
        "from valuation.data_asset_values v join features.merchant_features f "
        "using (merchant_id, as_of_date) left join limits.financing_limits l "
        "using (merchant_id, as_of_date) where v.as_of_date = ?",
        [last],
    ).df()
    assumptions = con.execute(
        "select any_value(assumptions_version) from valuation.data_asset_values "
        "where as_of_date = ?",
        [last],
    ).fetchone()[0]
    con.close()
    landing = landing or home / "landing"
    truth = pd.read_parquet(landing / "_truth" / "merchants.parquet")
    p = json.loads((landing / "_truth" / "params.json").read_text())
    sim = p.get("simulator_version", "?")
    world = f"`{p.get('scale', '?')}` ({p.get('merchants', 0):,} x {p.get('days', 0)}), seed {p.get('seed')}"
    df = v.merge(truth[["merchant_id", "quality", "churn_date"]], on="merchant_id")
    pc = valuation.partial_rank_correlation
    q, gmv = df["quality"], df["gmv_net_365d"].fillna(0.0)
    churned = pd.to_datetime(df["churn_date"]) <= pd.Timestamp(last) - pd.Timedelta(days=30)
    return {
        "last": last,
        "sim": sim,
        "world": world,
        "assumptions": assumptions,
        "n": len(df),
        "value": pc(df["reconciled_value"], q, gmv),
        "value_adj": pc(df["reconciled_value"], q, df["gmv_net_adj_365d"].fillna(0.0)),
        "income": pc(df["income_value"], q, gmv),
        "q_measured": pc(df["quality_q"], q, gmv),
        "dq_q": pc(df["dq_quality_q"].fillna(0.8), q, gmv),
        "dims": {d: pc(df[d].fillna(1.0), q, gmv) for d in DIMS},
        "spearman_gmv": float(df["reconciled_value"].rank().corr(gmv.rank())),
        "q_p01_p99": [float(x) for x in np.nanquantile(df["quality_q"], [0.01, 0.99])],
        "churned": int(churned.sum()),
        "churned_offer_max": float(df.loc[churned, "limit_amount"].fillna(0).max())
        if churned.any()
        else 0.0,
        "churned_value_median": float(df.loc[churned, "reconciled_value"].median())
        if churned.any()
        else 0.0,
    }


def render(r: dict) -> str:
    dims = " · ".join(f"{d} {v:+.3f}" for d, v in r["dims"].items())
    return "\n".join(
        [
            f"Data-asset value against the simulator's truth: {r['world']}, night {r['last']}, "
            f"{r['n']:,} merchants, simulator `{r['sim']}`, assumptions `{r['assumptions']}`. Spearman partial "
            "correlation with true quality (`_truth/merchants.parquet` `quality`) given net GMV "
            f"365d (`valuation.partial_rank_correlation`). {machine_line()}.",
            "",
            "| figure | value |",
            "|---|---:|",
            f"| reconciled value vs true quality, given net GMV | **{r['value']:.3f}** |",
            f"| reconciled value vs true quality, given brushing-adjusted net GMV | {r['value_adj']:.3f} |",
            f"| income value vs true quality, given net GMV | {r['income']:.3f} |",
            f"| Q from the six GB/T dimensions vs true quality, given net GMV | {r['q_measured']:.3f} |",
            f"| the quality stage's Q (features `quality_q`) vs true quality, given net GMV | {r['dq_q']:.3f} |",
            f"| Spearman of the value with net GMV | {r['spearman_gmv']:.3f} |",
            f"| Q, 1st–99th percentile | {r['q_p01_p99'][0]:.2f}–{r['q_p01_p99'][1]:.2f} |",
            f"| merchants churned ≥ 30 days before the night (truth) | {r['churned']} |",
            f"| their largest offer (CNY) | {r['churned_offer_max']:,.0f} |",
            f"| their median data-asset value (CNY) | {r['churned_value_median']:,.0f} |",
            "",
            f"Per measured dimension (partial correlation given net GMV): {dims}.",
            "",
            "Command: "
            + r.get(
                "command",
                "`LIVEFIN_HOME=/tmp/demo livefin demo`, then "
                "`.venv/bin/python bench/bench_valuation_truth.py --home /tmp/demo --write`",
            ),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a LIVEFIN_HOME after livefin demo")
    ap.add_argument("--no-revalue", action="store_true", help="read the stored values as they are")
    ap.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    ap.add_argument(
        "--landing", type=Path, help="the landing with _truth/ (default: <home>/landing)"
    )
    args = ap.parse_args()
    r = measure(args.home, revalue=not args.no_revalue, landing=args.landing)
    scale = r["world"].split("`")[1]
    if scale != "demo":
        r["command"] = (
            f"a night on a `{scale}` home (docs/simulator.md), then `.venv/bin/python "
            f"bench/bench_valuation_truth.py --home {args.home} --landing {args.landing} --write`"
        )
    text = render(r)
    print(text)
    if args.write:
        write_section("valuation-truth" if scale == "demo" else f"valuation-truth-{scale}", text)


if __name__ == "__main__":
    main()
