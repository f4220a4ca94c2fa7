"""Brushing and channels audit of a simulated world (issue 16, items 5-6).

    nice -n 10 .venv/bin/python bench/bench_brushing.py --scale small --seed 42 [--write]

Generates (or reuses, under bench/.cache/brushing-<tag>) a sample and measures, from its
landing files against _truth: every single raw per-merchant share's AUC (max(AUC, 1 - AUC),
merchants with >= 30 orders), the non-live share and channel mix of orders, night orders, and
how many merchants each streamer sells for. ``--write`` updates the bench:brushing section of
BENCHMARKS.md. The cache key carries no simulator version: delete it after simulator changes.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
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
        "non_live": float(orders["session_id"].is_null().mean()),
        "channels": dict(orders["channel"].value_counts().rows()),
        "night": float((ts.dt.hour() < 5).mean()),
        "m2359": int(((ts.dt.hour() == 23) & (ts.dt.minute() == 59)).sum()),
        "m2300": int(((ts.dt.hour() == 23) & (ts.dt.minute() == 0)).sum()),
        "streamers": int(per.size),
        "multi": float((per >= 2).mean()),
        "per_q": [float(x) for x in np.percentile(per, [50, 75, 90, 100])],
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
        "- brushing score AUC / PR-AUC (ordinary night, at applications): not measured yet",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--landing", type=Path, help="an existing landing folder instead")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    r = measure(a.landing or landing_for(a.scale, a.seed))
    cmd = f"nice -n 10 .venv/bin/python bench/bench_brushing.py --scale {a.scale} --seed {a.seed}"
    text = render(r, cmd)
    print(text)
    if a.write:
        write_section("brushing", text)


if __name__ == "__main__":
    main()
