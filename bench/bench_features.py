"""Benchmark: features + data-asset values for one as_of date vs a hand-written floor query.

    python bench/bench_features.py                              # 10k merchants, 20k orders/day
    python bench/bench_features.py --merchants 100000 --orders-per-day 300000   # full size
    python bench/bench_features.py --warehouse state/warehouse/livefin.duckdb --as-of 2025-06-01
    python bench/bench_features.py --write                      # update BENCHMARKS.md

Synthetic raw history (numpy -> parquet -> DuckDB raw.*) of 365 days ending the day before
--as-of, plus one more day. Timed: the floor (one aggregate: 365-day net GMV per merchant), the
cold build (daily blocks backfilled + features + values for D), and the nightly run for D + 1
(one new day of blocks + features + values). Peak RSS from getrusage; generation runs in a child
process so it does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARK_START, MARK_END = "<!-- bench:features -->", "<!-- /bench:features -->"


def generate(
    path: Path, merchants: int, orders_per_day: int, days: int, end: date, seed: int
) -> None:
    """Write raw.* tables for days [end - days + 1, end] into the DuckDB file ``path``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_raw_"))
    start = end - timedelta(days=days - 1)
    weight = rng.lognormal(0, 1.0, merchants)
    weight /= weight.sum()
    brushing = rng.random(merchants) < 0.05
    epoch0 = np.datetime64(start.isoformat(), "s").astype(np.int64)
    chunk = 30
    for c0 in range(0, days, chunk):
        nd = min(chunk, days - c0)
        n = orders_per_day * nd
        m = rng.choice(merchants, size=n, p=weight)
        day = c0 + rng.integers(0, nd, size=n)
        hour = rng.choice(
            24, size=n, p=np.r_[np.full(8, 0.01), np.full(10, 0.04), np.full(6, 0.0867)] / 1.0002
        )
        ring = brushing[m] & (rng.random(n) < 0.2)
        hour = np.where(ring, rng.integers(1, 5, size=n), hour)
        ts = epoch0 + day * 86400 + hour * 3600 + rng.integers(0, 3600, size=n)
        buyer = np.where(
            ring,
            -(m * 10 + rng.integers(0, 5, size=n)) - 1,
            m * 1000 + rng.integers(0, 800, size=n),
        )
        u = rng.random(n)
        status = np.select(
            [u < 0.05, u < 0.12, u < 0.15], [1, 2, 3], 0
        )  # cancelled/refunded/partial
        paid = np.round(rng.lognormal(4.3, 0.8, size=n), 2)
        refund = np.where(status == 2, paid, np.where(status == 3, np.round(paid * 0.3, 2), 0.0))
        oid = np.int64(c0) * orders_per_day + np.arange(n)
        pq.write_table(
            pa.table({"oid": oid, "m": m, "buyer": buyer, "ts": ts, "paid": paid, "status": status,
                      "refund": refund, "streamer": m * 3 + rng.integers(0, 3, size=n)}),
            tmp / f"orders_{c0:04d}.parquet",
        )  # fmt: skip
        ship = status != 1
        sts = ts[ship] + rng.integers(2 * 3600, 72 * 3600, size=ship.sum())
        empty = ring[ship] & (rng.random(ship.sum()) < 0.5)
        deliver = rng.random(ship.sum()) < 0.8
        dts = sts[deliver] + rng.integers(86400, 5 * 86400, size=deliver.sum())
        pq.write_table(
            pa.table({"oid": np.r_[oid[ship], oid[ship][deliver]], "m": np.r_[m[ship], m[ship][deliver]],
                      "kind": np.r_[np.zeros(ship.sum(), np.int8), np.ones(deliver.sum(), np.int8)],
                      "ts": np.r_[sts, dts], "empty": np.r_[empty, np.zeros(deliver.sum(), bool)]}),
            tmp / f"fulfillment_{c0:04d}.parquet",
        )  # fmt: skip
        sm = np.repeat(np.arange(merchants), nd)
        sd = np.tile(np.arange(c0, c0 + nd), merchants)
        keep = rng.random(sm.size) < 0.3
        sm, sd = sm[keep], sd[keep]
        pq.write_table(
            pa.table({"m": sm, "ts": epoch0 + sd * 86400 + 19 * 3600, "viewers": rng.integers(10, 5000, size=sm.size)}),
            tmp / f"traffic_{c0:04d}.parquet",
        )  # fmt: skip
    _load(path, tmp, start, merchants)


def _load(path: Path, tmp: Path, start: date, merchants: int) -> None:
    """Parquet parts -> raw.* with the architecture's columns and lineage, ordered by time."""
    import duckdb

    con = duckdb.connect(str(path))
    mid = "'M' || lpad(cast(m as varchar), 7, '0')"
    lin = (
        "'bench' as _file, 0::bigint as _line, 'v1' as _contract_version, 'bench' as _mapping, "
        "timestamp '2026-01-01' as _loaded_at"
    )
    con.execute("create schema if not exists raw")
    con.execute(
        f"create or replace table raw.merchants as select {mid} as merchant_id, 'shop' as merchant_name, "
        "['apparel','food','household','beauty','electronics'][1 + m % 5] as category, 'zj' as region, "
        f"date '{start}' - 400 as onboard_date, date '{start}' - 400 as _dt, {lin} "
        f"from range({merchants}) t(m)"
    )
    con.execute(
        f"create or replace table raw.orders as select 'o' || oid as order_id, {mid} as merchant_id, "
        "'h' || buyer as buyer_phone_hash, null::varchar as buyer_id_hash, 'n' || buyer as buyer_name_hash, "
        "'a' || buyer as buyer_address_hash, make_timestamp(ts * 1000000) as order_ts, "
        "paid as item_amount, paid as paid_amount, "
        "['completed','cancelled','refunded','partially_refunded'][status + 1] as status, "
        "refund as refund_amount, null::varchar as session_id, 'S' || streamer as streamer_id, "
        f"'apparel' as category, cast(make_timestamp(ts * 1000000) as date) as _dt, {lin} "
        f"from read_parquet('{tmp}/orders_*.parquet') order by ts"
    )
    con.execute(
        "create or replace table raw.fulfillment as select 'e' || row_number() over () as event_id, "
        f"'o' || oid as order_id, {mid} as merchant_id, "
        "case kind when 0 then 'shipped' else 'delivered' end as event_type, "
        "make_timestamp(ts * 1000000) as event_ts, 'sf' as carrier, "
        "case when empty then '' else 'T' || oid end as tracking_no, "
        "case when empty then 5.0 else 500.0 end as parcel_weight_g, "
        f"cast(make_timestamp(ts * 1000000) as date) as _dt, {lin} "
        f"from read_parquet('{tmp}/fulfillment_*.parquet') order by ts"
    )
    con.execute(
        "create or replace table raw.traffic as select 's' || row_number() over () as session_id, "
        f"{mid} as merchant_id, 'S' || (m * 3) as streamer_id, make_timestamp(ts * 1000000) as start_ts, "
        "make_timestamp((ts + 7200) * 1000000) as end_ts, viewers // 3 as peak_viewers, "
        "viewers as total_viewers, viewers * 4.0 as watch_minutes, 1::bigint as new_followers, "
        f"0.0 as gmv_attributed, cast(make_timestamp(ts * 1000000) as date) as _dt, {lin} "
        f"from read_parquet('{tmp}/traffic_*.parquet') order by ts"
    )
    con.execute("checkpoint")
    con.close()
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(path: Path, as_of: date, threads: int) -> dict:
    from livefin_etl import features, valuation
    from livefin_etl.warehouse import connect

    os.environ["LIVEFIN_THREADS"] = str(threads)
    con = connect(path=path)
    res: dict = {"load_avg": os.getloadavg()[0]}
    counts = {
        s: con.execute(f"select count(*) from raw.{s}").fetchone()[0]
        for s in ("merchants", "orders", "traffic", "fulfillment")
    }
    res["rows"] = counts
    t = time.perf_counter()
    floor = con.execute(
        "select merchant_id, sum(paid_amount - refund_amount) from raw.orders "
        "where order_ts >= cast(? as timestamp) - interval 365 day and order_ts < cast(? as timestamp) "
        "and status <> 'cancelled' group by 1",
        [as_of, as_of],
    ).fetchall()
    res["floor_s"] = time.perf_counter() - t
    res["floor_merchants"] = len(floor)
    for label, day in (("cold", as_of), ("nightly", as_of + timedelta(days=1))):
        t = time.perf_counter()
        n = features.build_features(con, day)
        tf = time.perf_counter() - t
        t = time.perf_counter()
        valuation.build_values(con, day)
        tv = time.perf_counter() - t
        res[label] = {"date": str(day), "feature_rows": n, "features_s": tf, "values_s": tv,
                      "peak_rss_mb": peak_rss_mb()}  # fmt: skip
    con.close()
    return res


def write_section(cmd: str, res: dict, threads: int) -> None:
    bench_md = ROOT / "BENCHMARKS.md"
    text = bench_md.read_text(encoding="utf-8") if bench_md.exists() else "# Benchmarks\n"
    r = res["rows"]
    lines = [
        MARK_START,
        "## Features + data-asset valuation (`bench/bench_features.py`)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, DuckDB threads {threads}, "
        f"Python {platform.python_version()}; synthetic raw history of 365 days + 1: "
        f"{r['merchants']:,} merchants, {r['orders']:,} orders, {r['fulfillment']:,} logistics events, "
        f"{r['traffic']:,} sessions. Load average at start {res['load_avg']:.1f} (machine shared "
        "with other jobs: treat times as upper bounds).",
        "",
        "| step | seconds | peak RSS MB | rows |",
        "|---|---:|---:|---:|",
        f"| floor: one query, 365-day net GMV per merchant | {res['floor_s']:.2f} | | {res['floor_merchants']:,} |",
    ]
    for label, what in (
        ("cold", "cold: daily blocks backfilled + features"),
        ("nightly", "nightly (D + 1): one new day + features"),
    ):
        c = res[label]
        lines.append(
            f"| {what} | {c['features_s']:.2f} | {c['peak_rss_mb']:.0f} | {c['feature_rows']:,} |"
        )
        lines.append(
            f"| {label}: data-asset values | {c['values_s']:.2f} | {c['peak_rss_mb']:.0f} | {c['feature_rows']:,} |"
        )
    lines += [
        "",
        "Full size (target: nightly features + values for 100k merchants x 365 days, ~100M orders, "
        "<= 60 s): `python bench/bench_features.py --merchants 100000 --orders-per-day 300000 --write`.",
        MARK_END,
    ]
    section = "\n".join(lines)
    if MARK_START in text:
        text = re.sub(
            re.escape(MARK_START) + ".*?" + re.escape(MARK_END), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    bench_md.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--merchants", type=int, default=10_000)
    ap.add_argument("--orders-per-day", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--as-of", type=date.fromisoformat, default=date(2025, 6, 1))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--warehouse", type=Path, help="existing warehouse with raw.* (copied; not modified)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated warehouse")
    ap.add_argument(
        "--write", action="store_true", help="update the bench:features section of BENCHMARKS.md"
    )
    ap.add_argument("--generate-to", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_to:  # child process: generation only
        # history [D - days, D - 1] plus day D so that the nightly run for D + 1 has a new day
        generate(
            args.generate_to,
            args.merchants,
            args.orders_per_day,
            args.days + 1,
            args.as_of,
            args.seed,
        )
        return
    work = Path(tempfile.mkdtemp(prefix="bench_features_"))
    db = work / "bench.duckdb"
    if args.warehouse:
        import shutil

        shutil.copy(args.warehouse, db)
    else:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--generate-to", str(db), "--merchants", str(args.merchants),
             "--orders-per-day", str(args.orders_per_day), "--days", str(args.days),
             "--as-of", str(args.as_of), "--seed", str(args.seed)],
            check=True,
        )  # fmt: skip
        print(f"generated {db} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    res = run(db, args.as_of, args.threads)
    print(json.dumps(res, indent=2))
    if args.write:
        cmd = (
            "python bench/bench_features.py "
            + " ".join(a for a in sys.argv[1:] if a != "--write")
            + " --write"
        )
        write_section(cmd.replace("  ", " "), res, args.threads)
    if not args.keep:
        db.unlink()
        work.rmdir()
    else:
        print(f"kept {db}", file=sys.stderr)


if __name__ == "__main__":
    main()
