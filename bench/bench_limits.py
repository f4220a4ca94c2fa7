"""Benchmark: build_limits + publish on synthetic upstream tables (default 100k merchants).

    .venv/bin/python bench/bench_limits.py [--merchants 100000] [--write]

The floor is one hand-written SQL statement with a simple limit formula + COPY to Parquet on
the same tables. ``--write`` updates the ``bench:limits`` section of BENCHMARKS.md.

The upstream tables come from ``livefin_etl.testing.limits_world.make_upstream``, the same
synthetic world the limits and publish tests use (no other stage needed).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from datetime import date
from pathlib import Path

from livefin_etl.testing.limits_world import make_upstream

REPO = Path(__file__).resolve().parent.parent


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
    from livefin_etl import limits, publish, warehouse
    from livefin_etl.config import get_settings

    as_of_date = date(2026, 11, 20)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LIVEFIN_HOME"] = tmp
        settings = get_settings()
        settings.ensure_dirs()
        con = warehouse.connect(settings)
        t0 = time.perf_counter()
        make_upstream(con, as_of_date, n)
        t_gen = time.perf_counter() - t0

        t0 = time.perf_counter()
        con.execute(FLOOR_SQL.format(path=f"{tmp}/floor.parquet"), {"d": as_of_date})
        t_floor = time.perf_counter() - t0

        t0 = time.perf_counter()
        res = limits.build_limits(con, settings, as_of_date, run_id="bench1")
        t_limits = time.perf_counter() - t0

        t0 = time.perf_counter()
        publish.publish(con, settings, as_of_date, run_id="bench1", check_gates=False)
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
            f"({date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"LIVEFIN_THREADS={os.environ.get('LIVEFIN_THREADS', 'all')})",
            "",
            "| step | seconds |",
            "|---|---|",
            f"| floor: one SQL limit formula + COPY to Parquet | {r['floor_s']:.2f} |",
            f"| build_limits (inputs SQL, policy, guardrails, write, views) | {r['build_limits_s']:.2f} |",
            f"| publish (snapshot, atomic replace, exports) | {r['publish_s']:.2f} |",
            f"| **total** (target <= 30 s) | **{r['total_s']:.2f}** ({ratio:.0f}x floor) |",
            "",
            f"{r['merchants']:,} synthetic merchants (livefin_etl.testing.limits_world make_upstream); "
            f"decisions {r['decisions']} (at this book size the absolute EL budget binds, so "
            "every offer is a guardrail-scaled reduce).",
        ]
    )
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
