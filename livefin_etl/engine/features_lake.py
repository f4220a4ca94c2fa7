"""The features stage's as-of inputs on the lake: what ``sql/marts/merchant_features.sql`` (and
``stg_order_versions.sql`` before it) reads for one night, exported once by the single writer
and split by merchant shard, so a shard task computes its merchants' features with the same SQL.

The daily blocks stay with the writer: they are built incrementally (one new day a night) and
the buyer-shop graph behind the ring flags crosses merchants, so they are not per-shard work.
What is sharded is the as-of step over them (365 days of blocks, 90 days of order versions).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb

from livefin_etl.engine.lake import SHARD_MAP, export_by_shard
from livefin_etl.warehouse import quote_literal

# What stg_order_versions.sql reads of raw.orders.
ORDER_COLUMNS = (
    "order_id", "merchant_id", "buyer_id_hash", "buyer_phone_hash", "order_ts", "_dt", "_line",
    "status", "paid_amount", "refund_amount",
)  # fmt: skip


def export_inputs(
    con: duckdb.DuckDBPyConnection, folder: Path, as_of_date: date, shards: int
) -> list[str]:
    """Write the night's as-of inputs under ``folder`` by shard, from the writer's temp
    ``stg_active_merchants`` / ``stg_merchants`` / ``stg_merchant_quality`` (features.py made
    them); returns the night's spine merchants."""
    d = quote_literal(as_of_date.isoformat()) + "::date"
    lo = quote_literal((as_of_date - timedelta(days=365)).isoformat()) + "::date"
    # _compute_batch's order versions: orders placed in [D - 90, D - 1]
    orders_lo = quote_literal((as_of_date - timedelta(days=90)).isoformat())
    ids = [r[0] for r in con.execute("select merchant_id from stg_active_merchants").fetchall()]

    def by_merchant(source: str, where: str = "true", columns: str = "t.*") -> str:
        return (
            f"select {columns}, m._shard from {source} as t join {SHARD_MAP} as m "
            f"using (merchant_id) where {where}"
        )

    window = f"t.day >= {lo} and t.day < {d}"
    sharded = {
        "_feature_spine": by_merchant("stg_active_merchants"),
        "stg_merchants": by_merchant("stg_merchants"),
        "stg_merchant_quality": by_merchant("stg_merchant_quality"),
        "features.merchant_daily": by_merchant("features.merchant_daily", window),
        "features.merchant_streamer_daily": by_merchant("features.merchant_streamer_daily", window),
        "raw.orders": by_merchant(
            "raw.orders",
            f"t.order_ts >= cast({orders_lo} as timestamp) and t.order_ts < cast({d} as timestamp)",
            ", ".join(f"t.{c}" for c in ORDER_COLUMNS),
        ),
    }
    whole = {
        "features.platform_daily": (
            f"select * from features.platform_daily where day >= {lo} and day < {d}"
        )
    }
    export_by_shard(con, folder, ids, shards, sharded, whole)
    return ids
