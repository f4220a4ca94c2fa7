"""The limits stage's inputs on the lake: what ``sql/limits/limit_inputs.sql`` reads for one
night, exported once by the single writer and split by merchant shard, so a shard task runs the
same query on its own merchants' rows only (no warehouse copy, no whole-book query per shard).

Each table goes to ``input/<schema>.<table>/`` as Parquet partitioned by ``_shard`` (the stable
merchant shard, ``warehouse.shard_of``), cut to the night's window and to the columns the query
reads; ``dq.partition_status`` (a few rows) goes whole to every shard. A shard task mounts the
files as views under the warehouse's table names (``lake.mount_shard``) and runs the query
unchanged.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from livefin_etl.engine.lake import SHARD_MAP, export_by_shard
from livefin_etl.warehouse import quote_literal

# Sources whose failed partitions decline a merchant (the query's raw_partitions).
FAILED_SOURCES = ("traffic", "fulfillment", "merchants")


def _exports(as_of_date: date, policy: dict[str, Any]) -> dict[str, str]:
    """table -> the query that exports its night's rows with ``_shard`` (a superset of what the
    inputs query keeps; it applies its own filters again)."""
    d = quote_literal(as_of_date.isoformat()) + "::date"
    window = quote_literal(
        (as_of_date - timedelta(days=int(policy["guardrails"]["streamer_window_days"]))).isoformat()
    )
    failed_lo = quote_literal(
        (as_of_date - timedelta(days=int(policy["declines"]["failed_partition_days"]))).isoformat()
    )

    def failed_dts(source: str) -> str:
        # any failed status in the window (the query keeps only the latest status per partition)
        return (
            "select dt from dq.partition_status where status = 'failed' "
            f"and source = {quote_literal(source)} and dt >= {failed_lo}::date and dt <= {d}"
        )

    def night(table: str) -> str:
        return (
            f"select t.*, m._shard from {table} as t join {SHARD_MAP} as m "
            f"using (merchant_id) where t.as_of_date = {d}"
        )

    out = {
        t: night(t)
        for t in (
            "features.merchant_features",
            "credit.merchant_scores",
            "dq.merchant_quality",
            "valuation.data_asset_values",
        )
    }
    out["raw.loans"] = (
        "select l.loan_id, l.merchant_id, l.principal, l.fee_amount, l.origination_date, m._shard "
        f"from raw.loans as l join {SHARD_MAP} as m using (merchant_id) "
        f"where l.origination_date < {d}"
    )
    out["raw.repayments"] = (
        "select r.loan_id, r.outstanding, r.dpd, r.repay_date, l._shard from raw.repayments as r "
        f"join (select distinct l.loan_id, m._shard from raw.loans as l join {SHARD_MAP} as m "
        f"using (merchant_id) where l.origination_date < {d}) as l using (loan_id) "
        f"where r.repay_date < {d}"
    )
    out["raw.orders"] = (
        "select o.order_id, o.merchant_id, o.streamer_id, o.status, o.paid_amount, "
        f"o.refund_amount, o.order_ts, o._dt, o._line, m._shard from raw.orders as o "
        f"join {SHARD_MAP} as m using (merchant_id) "
        f"where (o.order_ts >= {window}::date and o.order_ts < {d} and o._dt < {d}) "
        f"or o._dt in ({failed_dts('orders')})"
    )
    for source in FAILED_SOURCES:
        out[f"raw.{source}"] = (
            f"select distinct r._dt, r.merchant_id, m._shard from raw.{source} as r "
            f"join {SHARD_MAP} as m using (merchant_id) where r._dt in ({failed_dts(source)})"
        )
    return out


def export_inputs(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    as_of_date: date,
    policy: dict[str, Any],
    shards: int,
) -> None:
    """Write the night's limit inputs under ``folder`` (the stage's ``input/``), by shard."""
    ids = [
        r[0]
        for r in con.execute(
            "select merchant_id from features.merchant_features where as_of_date = ?",
            [as_of_date],
        ).fetchall()
    ]
    whole = {"dq.partition_status": "select * from dq.partition_status"}
    export_by_shard(con, folder, ids, shards, _exports(as_of_date, policy), whole)
