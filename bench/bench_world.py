"""Benchmark: the simulated world's acceptance figures (issue 16 items 1-4), from the landing
files and the truth of a cached sample, plus the same world under a default-rate stress.

    .venv/bin/python bench/bench_world.py [--scale demo] [--seed 42] [--stress 9] [--write]

The stress world multiplies every PD's odds by ``--stress`` (``WorldParams.pd_odds_mult``).
The default 9 is calibrated to the 2009 merchant-cash-advance loss peak against a normal year
(12-13 % vs 3.2 %, about 4x the loss rate): on sim-v5 (the demo preset) it lifts principal lost 4.0x
(docs/simulator.md, Economics); odds x5 lifts it only 2.7x. ``--write`` updates the ``bench:world`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import (
    CACHE,
    cached_sample,
    machine_line,
    sample_compression,
    sample_tag,
    write_section,
)

from livefin_etl.simulator import SIM_VERSION, WorldParams, generate
from livefin_etl.simulator.audit import audit

COMMAND = (
    ".venv/bin/python bench/bench_world.py --scale {scale} --seed {seed} --stress {mult:g} --write"
)


def stressed_sample(scale: str, seed: int, mult: float) -> Path:
    """The same world with every PD's odds multiplied by ``mult`` (cached next to the others)."""
    out = CACHE / f"{sample_tag(scale, seed)}-stress{mult:g}" / "landing"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (out / "_truth" / "params.json").exists():
        generate(
            scale,
            seed,
            None,
            None,
            out,
            force=True,
            progress=False,
            params=WorldParams(pd_odds_mult=mult),
            compress=sample_compression(scale, None),
        )
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def report(base: dict, stress: dict, mult: float, scale: str, seed: int, secs: float) -> str:
    p, d, a, s = base["pnl"], base["delinquency"], base["applications"], base["sizes"]
    sp, sd = stress["pnl"], stress["delinquency"]
    rows = [
        (
            "P&L on closed loans (collected − principal − cost of funds)",
            f"{p['pnl']:,} CNY ({_pct(p['pnl_pct_principal'])} of {p['principal']:,} principal)",
            "≥ 0",
        ),
        (
            "  fees collected / principal lost / cost of funds",
            f"{p['fees_collected']:,} / {p['principal_lost']:,} / {p['funding_cost']:,} CNY",
            "",
        ),
        ("  loss rate (principal lost / principal), closed loans", _pct(p["loss_rate"]), "≈ 1–5 %"),
        (
            f"P&L under stress (PD odds × {mult:g})",
            f"{sp['pnl']:,} CNY ({_pct(sp['pnl_pct_principal'])}); 60+ dpd {_pct(sd['dpd60_rate'])}",
            "< 0 (honest)",
        ),
        (
            "60+ dpd within 180 days (closed windows)",
            f"{_pct(d['dpd60_rate'])} ({d['defaults_60_180']} of {d['loans_closed_window']})",
            "2–8 %",
        ),
        ("30+ dpd loans that cure", _pct(d["cure_share_30"]), "≥ 20 %"),
        (
            "roll rate 30 → 60 / 60 → 90",
            f"{_pct(d['roll_30_60'])} / {_pct(d['roll_60_90'])}",
            "< 100 %",
        ),
        (
            "median merchant net sales a day",
            f"{s['net_sales_day_median']:,} CNY (p90 {s['net_sales_day_p90']:,}, p99 {s['net_sales_day_p99']:,})",
            "≥ 500 CNY",
        ),
        (
            "median loan",
            f"{s['loan_median']:,} CNY (p90 {s['loan_p90']:,}, p99 {s['loan_p99']:,})",
            "≥ 8,000 CNY",
        ),
        (
            "refused applications",
            f"{_pct(a['refusal_share'])} ({a['refused']:,} of {a['applications']:,}: "
            + ", ".join(f"{k} {v}" for k, v in a["refused_by_reason"].items())
            + ")",
            "≥ 20 %",
        ),
        ("orders a day (placed)", f"{s['orders_per_day']:,}", ""),
    ]
    lines = [
        f"## Simulated world ({scale}, seed {seed}, simulator {SIM_VERSION})",
        "",
        f"`{COMMAND.format(scale=scale, seed=seed, mult=mult)}` ({machine_line()}; audit"
        f" {secs:.0f} s over cached samples, both generated when missing).",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        "Loans and 60+ dpd defaults per origination month (defaults: closed 180-day windows):",
        "",
        "| month | loans | closed | defaults |",
        "|---|---:|---:|---:|",
        *(
            f"| {m['month']} | {m['loans']} | {m['closed']} | {m['defaults']} |"
            for m in base["monthly"]
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="demo")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--stress", type=float, default=9.0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = audit(cached_sample(args.scale, args.seed))
    stress = audit(stressed_sample(args.scale, args.seed, args.stress), with_sales=False)
    body = report(base, stress, args.stress, args.scale, args.seed, time.perf_counter() - t0)
    print(body)
    print(
        json.dumps(
            {
                "base": {k: v for k, v in base.items() if k != "monthly"},
                "stress": {k: v for k, v in stress.items() if k != "monthly"},
            }
        ),
        file=sys.stderr,
    )
    if args.write:
        # the demo's section keeps its name; other presets get their own
        write_section("world" if args.scale == "demo" else f"world-{args.scale}", body)


if __name__ == "__main__":
    main()
