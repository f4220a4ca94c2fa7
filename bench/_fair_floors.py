"""Fair floors of the night's validate and features stages (issue 19 item 3), run in a child
process by bench_nightly.py after the night's stages, on the bench warehouse.

A fair floor computes what the stage computes, with DuckDB alone and none of the stage's
bookkeeping:

* ``validate``: per source, the grouped DuckDB query that ``quality/sqlcheck.py`` issues for the
  row suite of day N (``row_batch_sql`` with its reference and key-history lookups, every
  row-level expectation counted in one pass) and the partition-profile query
  (``batches.profile_batch``). No GX (no template, no validation records, no Data Docs), no
  dq.* writes. Timed warm (the second of two passes), as the stage runs right after extract.
* ``features``: every column of ``features.merchant_features`` for day N plus the
  ``dq.merchant_quality`` rows its ``quality_q`` comes from (the bench's features step runs both
  stages), with the stage's own SQL files: the daily blocks of the days the night's partition can
  change (N - late_days .. N - 1: staging views, the five daily marts), merchant_quality.sql, the
  spine and merchant_features.sql. No partition fingerprints, no build log, no schema checks, no
  Arrow round trip, no commit: it runs in one transaction that is rolled back, so the warehouse
  is unchanged. Because the floor is the stage's SQL, its ratio measures the stage's overhead
  around that SQL, not how good the SQL is; the bare floors (one hand-written statement each)
  stay beside it for that.

Prints one JSON object: {"validate": s, "features": s, "validate_queries": n, "features_steps":
{sql file: s}}.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta

from livefin_etl import features as feats
from livefin_etl.config import get_settings
from livefin_etl.quality import batches, sqlcheck
from livefin_etl.quality import merchant as mq
from livefin_etl.quality.suites import load_suite
from livefin_etl.warehouse import connect, run_sql_file, stage_memory

SOURCES = ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments"]


def validate_floor(con, as_of_date: date) -> tuple[float, int]:
    """Seconds of the sqlcheck row-count query + the profile query of every source for N."""
    spent, queries = 0.0, 0
    for src in SOURCES:
        spec = load_suite(src)
        params = [[as_of_date]]
        sql = batches.row_batch_sql(con, spec, [as_of_date], ordered=False)
        checks = sqlcheck.compile_checks(spec.rows, sqlcheck.column_types(con, sql, params))
        t0 = time.perf_counter()
        if checks is not None:
            sqlcheck.count_by_date(con, sql, params, spec.partition_column, checks)
            queries += 1
        if spec.has_profile and spec.profile:
            batches.profile_batch(con, spec, [as_of_date])
            queries += 1
        spent += time.perf_counter() - t0
    return spent, queries


def features_floor(con, as_of_date: date, steps: dict[str, float]) -> float:
    """Seconds of the features SQL for N (daily blocks of the changed days, quality, marts);
    ``steps`` gets the seconds of each SQL file."""
    late = int(feats._cfg()["daily"]["late_days"])
    a, b = as_of_date - timedelta(days=late), as_of_date - timedelta(days=1)

    def step(name: str, fn, *args, **kw) -> None:
        t = time.perf_counter()
        fn(*args, **kw)
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - t

    con.execute("begin transaction")
    try:
        t0 = time.perf_counter()
        for view in ("stg_orders", "stg_order_changes", "stg_fulfillment", "stg_traffic"):
            feats._run(con, feats.STAGING / f"{view}.sql", start_day=a, end_day=b)
        for model in feats.DAILY_TABLES:
            day_col = "order_day" if model == "suspect_orders" else "day"
            con.execute(f"delete from features.{model} where {day_col} between ? and ?", [a, b])
            step(model, feats._run, con, feats.MARTS / f"{model}.sql", start_day=a, end_day=b)
        con.execute("delete from dq.merchant_quality where as_of_date = ?", [as_of_date])
        step("merchant_quality", run_sql_file, con, mq.SQL, mq._params(as_of_date))
        feats._prepare_common(con)
        stg = feats.STAGING
        step(
            "active_merchants",
            feats._run,
            con,
            stg / "stg_active_merchants.sql",
            as_of_date=as_of_date,
        )
        feats._run(con, stg / "stg_feature_spine.sql")
        step("merchant_features", feats._compute_batch, con, as_of_date, as_of_date)
        return time.perf_counter() - t0
    finally:
        con.execute("rollback")


def main() -> None:
    as_of_date = date.fromisoformat(os.environ["B_DAY"])
    con = connect(get_settings())
    try:
        # the stage validates right after extract, with the day's data in DuckDB's buffers: the
        # floor is the warm (second) pass
        with stage_memory(con, "validate"):  # the stage's own memory_limit
            v, n = min(validate_floor(con, as_of_date) for _ in range(2))
        steps: dict[str, float] = {}
        with stage_memory(con, "features"):
            f = features_floor(con, as_of_date, steps)
    finally:
        con.close()
    out = {"validate": v, "features": f, "validate_queries": n, "features_steps": steps}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
