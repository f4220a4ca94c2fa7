"""Extract throughput vs DuckDB's own reader (the floor), on cached sample data.

    .venv/bin/python bench/bench_extract.py --scale demo --days 30 --write
    .venv/bin/python bench/bench_extract.py --scale large --days 3 --write
    .venv/bin/python bench/bench_extract.py --scale demo --days 90 --backfill --write

Without ``--backfill`` every day is its own ``extract_partition`` (what a nightly task does);
with it each source's days go through one ``extract_partitions`` call, the path of
``livefin ingest`` and the demo's history backfill (chunked transactions, next chunk read ahead).

Each measurement runs in a fresh child process so peak RSS is the stage's own. The floor is
DuckDB alone loading the same files into a table (`read_csv` / `read_json` / `read_parquet`);
GBK files are transcoded to UTF-8 *before* the floor is timed, because DuckDB cannot read GBK,
so the floor is a strict lower bound of the real work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    cached_sample,
    floor_input,
    floor_reader,
    machine_line,
    run_measured,
    write_section,
)  # noqa: E402

SOURCES = ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments"]

EXTRACT = """
import json, os, time
from datetime import date, timedelta
from livefin_etl.config import get_settings
from livefin_etl.warehouse import connect
from livefin_etl.extract import extract_partition, extract_partitions
s = get_settings(); con = connect(s)
days = [date.fromisoformat(d) for d in json.loads(os.environ['B_DAYS'])]
out = {}
for src in json.loads(os.environ['B_SOURCES']):
    t0 = time.perf_counter(); c0 = time.process_time(); rows = 0
    if os.environ.get('B_BACKFILL'):
        rows = sum(r['rows_read'] for r in extract_partitions(con, s, src, days, force=True))
    else:
        for d in days:
            rows += extract_partition(con, s, src, d, force=True)['rows_read']
    out[src] = {'s': time.perf_counter() - t0, 'cpu': time.process_time() - c0, 'rows': rows}
print(json.dumps(out))
"""

FLOOR = """
import json, os, time, duckdb
readers = json.loads(os.environ['B_READERS'])
con = duckdb.connect(os.environ['B_DB']); con.execute("set threads = " + os.environ.get('LIVEFIN_THREADS', '2'))
out = {}
for src, rel in readers.items():
    t0 = time.perf_counter()
    con.execute(f"create or replace table {src} as select * from {rel}")
    out[src] = {'s': time.perf_counter() - t0}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="demo")
    ap.add_argument("--days", type=int, default=30, help="Number of landing days to extract")
    ap.add_argument(
        "--sample-days", type=int, default=None, help="Days to generate (default: preset)"
    )
    ap.add_argument("--merchants", type=int, default=None, help="Merchants (default: preset)")
    ap.add_argument(
        "--backfill", action="store_true", help="one extract_partitions call per source"
    )
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    landing = cached_sample(args.scale, days=args.sample_days, merchants=args.merchants)
    params = json.loads((landing / "_truth" / "params.json").read_text())
    all_days = sorted(p.name.removeprefix("dt=") for p in (landing / "orders").iterdir())
    days = all_days[: args.days]

    with tempfile.TemporaryDirectory(dir=landing.parent) as tmp:
        tmp = Path(tmp)
        # Merchants must be loaded for every day first (orders reference them).
        env = {
            "LIVEFIN_HOME": str(tmp / "home"),
            "LIVEFIN_LANDING": str(landing),
            "LIVEFIN_PII_KEY": "bench",
            "B_DAYS": json.dumps(days),
            "B_SOURCES": json.dumps(SOURCES),
            **({"B_BACKFILL": "1"} if args.backfill else {}),
        }
        ours = run_measured(EXTRACT, env)
        # Floor input: same files; GBK transcoded to UTF-8 outside the timing.
        files = {
            src: [
                str(floor_input(f, tmp))
                for d in days
                for f in sorted((landing / src / f"dt={d}").iterdir())
            ]
            for src in SOURCES
        }
        readers = {src: floor_reader(paths) for src, paths in files.items()}
        floor = run_measured(
            FLOOR, {"B_READERS": json.dumps(readers), "B_DB": str(tmp / "floor.duckdb")}
        )
        mb = {src: sum(Path(p).stat().st_size for p in files[src]) / 1e6 for src in SOURCES}

    rows = []
    for src in SOURCES:
        s, f = ours[src]["s"], floor[src]["s"]
        n = ours[src]["rows"]
        rows.append(
            (
                src,
                n,
                mb[src],
                s,
                n / s if s else 0,
                mb[src] / s if s else 0,
                f,
                s / f if f else float("nan"),
            )
        )
    tot_s = sum(r[3] for r in rows)
    tot_f = sum(r[6] for r in rows)
    tot_n = sum(r[1] for r in rows)
    tot_mb = sum(r[2] for r in rows)
    kind = "Extract backfill" if args.backfill else "Extract"
    cpu = sum(ours[src]["cpu"] for src in SOURCES)
    lines = [
        f"## {kind} ({args.scale}: {params.get('merchants', '?')} merchants, {len(days)} days)",
        "",
        f"Command: `.venv/bin/python bench/bench_extract.py --scale {args.scale} --days {args.days}"
        + (f" --sample-days {args.sample_days}" if args.sample_days else "")
        + (f" --merchants {args.merchants}" if args.merchants else "")
        + (" --backfill" if args.backfill else "")
        + " --write`  ",
        f"Machine: {machine_line()}, 1-min load average {os.getloadavg()[0]:.1f} at the end. "
        f"Peak RSS of the extract process: {ours['peak_rss_mb']} MB; "
        f"of the floor process: {floor['peak_rss_mb']} MB. Extract CPU time (all threads): "
        f"{cpu:.1f} s; per partition (wall, all sources): {tot_s / len(days):.3f} s.",
        "",
        "| source | rows | MB | extract s | rows/s | MB/s | floor s (DuckDB read_*) | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r[0]} | {r[1]:,} | {r[2]:.1f} | {r[3]:.2f} | {r[4]:,.0f} | {r[5]:.1f} | {r[6]:.2f} | {r[7]:.2f}× |"
        )
    lines.append(
        f"| **total** | {tot_n:,} | {tot_mb:.1f} | {tot_s:.2f} | {tot_n / tot_s:,.0f} | {tot_mb / tot_s:.1f} | {tot_f:.2f} | {tot_s / tot_f:.2f}× |"
    )
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section(f"extract-{args.scale}" + ("-backfill" if args.backfill else ""), body)


if __name__ == "__main__":
    main()
