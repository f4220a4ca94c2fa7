"""Brushing audit: can any single raw per-merchant share separate brushers? (issue 16, item 5)

Pure functions over the landing files and ``_truth/merchants.parquet``: no warehouse, no
pipeline. Every share is computed per merchant over the whole landing window; its AUC against
the truth is reported as max(AUC, 1 - AUC), so a share separates in either direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from .audit import read_csv_file, read_latest

ODD_HOURS = (0, 5)  # [start, end) hours counted as odd
LIGHT_GRAMS = 100.0
FAST_SHIP_HOURS = 6.0


def read_orders(landing: Path) -> pl.DataFrame:
    """Latest version of each order: id, merchant, buyer, time, paid, status, session, channel.
    Columns by position: the header names drift across contract versions."""

    def prepare(df: pl.DataFrame) -> pl.DataFrame:
        cols = df.columns
        keep = {
            cols[0]: "order_id",
            cols[1]: "merchant_id",
            cols[2]: "buyer",
            cols[5]: "order_ts",
            cols[7]: "paid",
            cols[8]: "status",
            cols[10]: "session_id",
            cols[13]: "update_ts",
            cols[15]: "as_type",
        }
        if len(cols) > 20:
            keep[cols[20]] = "channel"
        return (
            df.select(list(keep))
            .rename(keep)
            .with_columns(
                pl.col("order_ts").str.to_datetime("%Y-%m-%d %H:%M:%S"),
                pl.col("paid").cast(pl.Float64),
                # only "is there one" is read downstream: keep a bool, not the string
                pl.col("session_id").is_null().alias("no_session"),
                pl.col("as_type").is_not_null().alias("after_sale"),
            )
            .drop("session_id", "as_type")
        )

    return read_latest(landing, "orders", prepare, key="order_id", order_by="update_ts")


def read_fulfilment(landing: Path) -> pl.DataFrame:
    """Shipped and complaint events (the only ones the shares read)."""
    frames = [
        read_csv_file(f)
        .filter(pl.col("event_type").is_in(["shipped", "complaint"]))
        .select(
            "order_id",
            "event_type",
            pl.col("event_ts").str.to_datetime("%Y-%m-%d %H:%M:%S"),
            pl.col("tracking_no").is_null().alias("no_tracking"),
            pl.col("parcel_weight_g").cast(pl.Float64),
        )
        for f in sorted((landing / "fulfillment").glob("dt=*/part-0.csv*"))
    ]
    return pl.concat(frames)


def merchant_shares(orders: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Every raw per-merchant share we could think of, one row per merchant."""
    ship = events.filter(pl.col("event_type") == "shipped").select(
        "order_id",
        pl.col("event_ts").alias("ship_ts"),
        pl.col("no_tracking").alias("no_track"),
        (pl.col("parcel_weight_g") < LIGHT_GRAMS).fill_null(False).alias("light"),
    )
    complaints = (
        events.filter(pl.col("event_type") == "complaint").select("order_id").unique()
    ).with_columns(pl.lit(True).alias("complaint"))
    buyer_n = orders.group_by("merchant_id", "buyer").agg(pl.len().alias("buyer_orders"))
    buyer_shops = orders.group_by("buyer").agg(pl.col("merchant_id").n_unique().alias("shops"))
    o = (
        orders.join(ship, on="order_id", how="left")
        .join(complaints, on="order_id", how="left")
        .join(buyer_n, on=["merchant_id", "buyer"], how="left")
        .join(buyer_shops, on="buyer", how="left")
        .with_columns(
            hour=pl.col("order_ts").dt.hour(),
            ship_h=(pl.col("ship_ts") - pl.col("order_ts")).dt.total_seconds() / 3600,
        )
    )
    hour = pl.col("hour")
    return o.group_by("merchant_id").agg(
        pl.len().alias("orders"),
        ((hour >= ODD_HOURS[0]) & (hour < ODD_HOURS[1])).mean().alias("odd_hour_share"),
        pl.col("no_track").fill_null(False).mean().alias("no_track_share"),
        pl.col("light").fill_null(False).mean().alias("light_parcel_share"),
        (pl.col("ship_h") < FAST_SHIP_HOURS).fill_null(False).mean().alias("fast_ship_share"),
        (pl.col("buyer_orders") >= 2).mean().alias("repeat_buyer_share"),
        (pl.col("shops") >= 2).mean().alias("shared_buyer_share"),
        pl.col("no_session").mean().alias("non_live_share"),
        pl.col("status").is_in(["已退款", "部分退款"]).mean().alias("refund_share"),
        (pl.col("status") == "已取消").mean().alias("cancel_share"),
        pl.col("after_sale").mean().alias("after_sale_share"),
        pl.col("complaint").fill_null(False).mean().alias("complaint_share"),
        (pl.col("paid").std() / pl.col("paid").mean()).alias("amount_cv"),
        pl.col("ship_h").median().alias("median_ship_hours"),
    )


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half; NaN scores rank lowest."""
    s = np.nan_to_num(np.asarray(score, float), nan=-np.inf)
    y = np.asarray(label, bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = pl.Series(np.concatenate([pos, neg])).rank("average").to_numpy()
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def pr_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve at the sample's prevalence)."""
    y = np.asarray(label, bool)[np.argsort(-np.nan_to_num(np.asarray(score, float), nan=-np.inf))]
    if not y.any():
        return float("nan")
    hits = np.cumsum(y)
    return float((hits[y] / (np.flatnonzero(y) + 1)).mean())


def single_share_aucs(shares: pl.DataFrame, truth: pl.DataFrame, min_orders: int = 30) -> dict:
    """max(AUC, 1 - AUC) of each share against the truth, merchants with >= min_orders."""
    df = shares.join(truth.select("merchant_id", "brushing"), on="merchant_id").filter(
        pl.col("orders") >= min_orders
    )
    y = df["brushing"].to_numpy().astype(bool)
    out = {}
    for c in df.columns:
        if c in ("merchant_id", "orders", "brushing"):
            continue
        a = auc(df[c].to_numpy(), y)
        out[c] = max(a, 1 - a)
    return out


def streamers_per_merchant(landing: Path) -> np.ndarray:
    """Number of merchants each streamer hosted sessions for (from the traffic files)."""
    frames = [
        _read_ndjson(f).select("merchant_id", "streamer_id").unique() for f in _traffic(landing)
    ]
    df = pl.concat(frames).unique()
    return df.group_by("streamer_id").len()["len"].to_numpy()


def _read_ndjson(f: Path) -> pl.DataFrame:
    import gzip
    import io

    data = f.read_bytes()
    return pl.read_ndjson(io.BytesIO(gzip.decompress(data) if f.name.endswith(".gz") else data))


def _traffic(landing: Path) -> list[Path]:
    return sorted((landing / "traffic").glob("dt=*/*.jsonl*"))
