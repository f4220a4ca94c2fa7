"""Brushing and channels audit of a simulated world (issue 16, items 5-6).

    nice -n 10 .venv/bin/python bench/bench_brushing.py --scale demo --seed 42 [--write]

Generates (or reuses, under bench/.cache/brushing-<tag>) a sample and measures, from its
landing files against _truth: every single raw per-merchant share's AUC (max(AUC, 1 - AUC),
merchants with >= 30 orders), the non-live share and channel mix of orders, night orders, and
how many merchants each streamer sells for. Then the pipeline's brushing score: the landing is
extracted into a warehouse beside it (cached; no validation, the score needs only raw.*), the
features are built as of the night after the last landing day (the ordinary night) and for every
loan application (merchant, application day) of raw.applications, and the score's AUC and PR-AUC
(average precision, at the sample's own prevalence) are measured against _truth. ``--write``
updates the bench:brushing section of BENCHMARKS.md. The cache key carries the simulator version.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from _common import CACHE, machine_line, sample_tag, write_section  # noqa: E402

from livefin_etl import simulator  # noqa: E402
from livefin_etl.simulator import audit_brushing as audit  # noqa: E402


def landing_for(scale: str, seed: int) -> Path:
    out = CACHE / f"brushing-{sample_tag(scale, seed)}" / "landing"
    if not (out / "_truth" / "params.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        simulator.generate(scale, seed, date(2025, 1, 1), None, out, force=True, progress=False)
    return out


def measure(landing: Path) -> dict:
    orders, events = audit.read_orders(landing), audit.read_fulfilment(landing)
    truth = pl.read_parquet(landing / "_truth" / "merchants.parquet")
    shares = audit.merchant_shares(orders, events)
    ts = orders["order_ts"]
    per = audit.streamers_per_merchant(landing)
    return {
        "aucs": audit.single_share_aucs(shares, truth),
        "orders": orders.height,
        "brushers": int(truth["brushing"].sum()),
        "merchants": truth.height,
        "non_live": float(orders["no_session"].mean()),
        "channels": dict(orders["channel"].value_counts().rows()),
        "night": float((ts.dt.hour() < 5).mean()),
        "m2359": int(((ts.dt.hour() == 23) & (ts.dt.minute() == 59)).sum()),
        "m2300": int(((ts.dt.hour() == 23) & (ts.dt.minute() == 0)).sum()),
        "streamers": int(per.size),
        "multi": float((per >= 2).mean()),
        "per_q": [float(x) for x in np.percentile(per, [50, 75, 90, 100])],
    }


def warehouse_for(landing: Path, home: Path | None = None) -> Path:
    """raw.* of the landing in a warehouse beside it (extract only, cached), or the warehouse
    of ``home``, a LIVEFIN_HOME that already ingested every date of the landing."""
    if home is not None:
        os.environ.update(LIVEFIN_HOME=str(home), LIVEFIN_LANDING=str(landing))
        from livefin_etl.config import get_settings

        return get_settings().warehouse
    home = landing.parent / "home"
    os.environ.update(LIVEFIN_HOME=str(home), LIVEFIN_LANDING=str(landing))
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings
    from livefin_etl.contracts import list_sources
    from livefin_etl.extract import load

    s = get_settings()
    done = home / "extracted"
    if not done.exists():
        pipeline.init_home(s)
        days = sorted(date.fromisoformat(p.name[3:]) for p in (landing / "orders").glob("dt=*"))
        with pipeline.session(s) as (s, con):
            for source in list_sources():
                load.extract_partitions(con, s, source, days)
        done.write_text("ok\n")
    return s.warehouse


def _score_auc(rows: list[tuple[float, bool]]) -> tuple[float, float, int, int]:
    score = np.array([x for x, _ in rows], float)
    y = np.array([bool(b) for _, b in rows])
    return audit.auc(score, y), audit.pr_auc(score, y), int(y.sum()), int(y.size)


def measure_score(landing: Path, min_orders: int = 30, home: Path | None = None) -> dict:
    """The brushing score on the ordinary night (merchants with >= min_orders orders in 30
    days) and at every loan application, against truth; with the features stage's time."""
    import duckdb

    from livefin_etl import features

    wh = warehouse_for(landing, home)
    truth = str(landing / "_truth" / "merchants.parquet")
    con = duckdb.connect(str(wh))
    try:
        con.execute("drop table if exists features.merchant_daily_log")  # a cold build each run
        for t in features.DAILY_TABLES + ("merchant_features", "spine_features"):
            con.execute(f"drop table if exists features.{t}")
        night = con.execute("select max(cast(order_ts as date)) from raw.orders").fetchone()[0]
        night += timedelta(days=1)
        t0 = time.perf_counter()
        features.build_features(con, night)
        cold = time.perf_counter() - t0
        con.execute(
            "create or replace temp table app_spine as select distinct merchant_id, "
            "cast(applied_at as date) as as_of_date from raw.applications"
        )
        t0 = time.perf_counter()
        features.build_features_for_spine(con, "app_spine", features.SPINE_TABLE)
        spine_s = time.perf_counter() - t0
        q = (
            "select f.brushing_score, t.brushing from {t} f join read_parquet(?) t "
            "on t.merchant_id = f.merchant_id {w}"
        )
        nightly = con.execute(
            q.format(t=features.FEATURES_TABLE, w="where f.as_of_date = ? and f.orders_30d >= ?"),
            [truth, night, min_orders],
        ).fetchall()
        apps = con.execute(
            q.format(
                t=features.SPINE_TABLE,
                w="join app_spine s on s.merchant_id = f.merchant_id "
                "and s.as_of_date = f.as_of_date",
            ),
            [truth],
        ).fetchall()
        version = str(features._cfg()["version"])
    finally:
        con.close()
    return {
        "night_date": night,
        "night": _score_auc(nightly),
        "apps": _score_auc(apps),
        "cold_s": cold,
        "spine_s": spine_s,
        "version": version,
    }


def render(r: dict, cmd: str) -> str:
    lines = [
        f"Brushing and channels audit ({machine_line()}); `{cmd}`",
        "",
        f"{r['merchants']} merchants, {r['brushers']} brushers, {r['orders']:,} orders.",
        "",
        "| single raw per-merchant share (>= 30 orders) | AUC vs truth (max(AUC, 1-AUC)) |",
        "|---|---|",
    ]
    for k, v in sorted(r["aucs"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:.3f} |")
    ch = ", ".join(f"{k} {v / r['orders']:.1%}" for k, v in sorted(r["channels"].items()))
    q = r["per_q"]
    lines += [
        "",
        f"- non-live orders: {r['non_live']:.1%} of volume (channels: {ch})",
        f"- orders 0-5 am: {r['night']:.1%}; 23:59 minute {r['m2359']:,} vs 23:00 {r['m2300']:,}",
        f"- streamers: {r['streamers']:,}; selling for >= 2 merchants: {r['multi']:.1%};"
        f" merchants per streamer p50/p75/p90/max {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}/{q[3]:.0f}",
    ]
    if "score" in r:
        sc = r["score"]
        a, p, pos, n = sc["night"]
        a2, p2, pos2, n2 = sc["apps"]
        lines += [
            "",
            f"Brushing score ({sc['version']}; features from the landing as a lender receives it):",
            "",
            "| where | rows | brushers | prevalence | AUC | PR-AUC |",
            "|---|---|---|---|---|---|",
            f"| ordinary night {sc['night_date']}, merchants with >= 30 orders in 30 days"
            f" | {n} | {pos} | {pos / n:.1%} | {a:.3f} | {p:.3f} |",
            f"| every loan application (merchant, application day)"
            f" | {n2} | {pos2} | {pos2 / n2:.1%} | {a2:.3f} | {p2:.3f} |",
            "",
            f"- features stage, cold (daily blocks for the whole history + the night):"
            f" {sc['cold_s']:.1f} s; application spine ({n2} rows): {sc['spine_s']:.1f} s",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="demo")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--landing", type=Path, help="an existing landing folder instead")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--no-score", action="store_true", help="only the raw-share audit")
    ap.add_argument(
        "--home",
        type=Path,
        help="score on this LIVEFIN_HOME's warehouse (every landing date ingested) instead of "
        "extracting a copy; its feature tables are rebuilt",
    )
    a = ap.parse_args()
    landing = a.landing or landing_for(a.scale, a.seed)
    r = measure(landing)
    if not a.no_score:
        r["score"] = measure_score(landing, home=a.home)
    cmd = f"nice -n 10 .venv/bin/python bench/bench_brushing.py --scale {a.scale} --seed {a.seed}"
    if a.landing:
        cmd += f" --landing {a.landing}" + (f" --home {a.home}" if a.home else "")
    text = render(r, cmd)
    print(text)
    if a.write:
        write_section("brushing" if a.scale == "demo" else f"brushing-{a.scale}", text)


if __name__ == "__main__":
    main()
