"""Issue 16 items 5-6 on the tiny world: brushing no single share gives away, channels, shared
streamers, and a streamer exit that hits every shop the streamer sells for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from livefin_etl.limits.stress import shock_inputs
from livefin_etl.simulator import audit_brushing as audit


@pytest.fixture(scope="module")
def landing_orders(tiny_landing: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return audit.read_orders(tiny_landing), audit.read_fulfilment(tiny_landing)


def test_no_single_raw_share_separates_brushers(tiny_landing, landing_orders):
    orders, events = landing_orders
    truth = pl.read_parquet(tiny_landing / "_truth" / "merchants.parquet")
    aucs = audit.single_share_aucs(audit.merchant_shares(orders, events), truth)
    assert len(aucs) >= 10
    # tiny has ~15 brushers, so allow sampling noise above the 0.85 measured on small
    assert max(aucs.values()) <= 0.93, aucs


def test_non_live_share_and_channel_column(landing_orders):
    orders, _ = landing_orders
    non_live = orders["no_session"].mean()
    assert 0.35 <= non_live <= 0.55
    live = orders.filter(pl.col("channel") == "直播")
    assert not live["no_session"].any()
    assert set(orders["channel"].unique()) == {"直播", "商品卡", "短视频", "搜索"}


def test_genuine_night_orders_and_no_midnight_pile_up(landing_orders):
    orders, _ = landing_orders
    ts = orders["order_ts"]
    assert (ts.dt.hour() < 5).mean() > 0.04
    last = ((ts.dt.hour() == 23) & (ts.dt.minute() == 59)).sum()
    first = ((ts.dt.hour() == 23) & (ts.dt.minute() == 0)).sum()
    assert last < 1.3 * first


def test_half_the_streamers_sell_for_several_shops(tiny_landing):
    per = audit.streamers_per_merchant(tiny_landing)
    assert (per >= 2).mean() >= 0.5


def test_streamer_exit_hits_every_shop_of_the_streamer():
    inputs = pd.DataFrame(
        {
            "merchant_id": ["A", "B", "C"],
            "top_streamer_id": ["S1", "S2", "S3"],
            "top_streamer_share_90d": [0.9, 0.3, 0.5],
            "gmv_net_adj_30d": [100.0] * 3,
            "gmv_net_adj_90d": [300.0] * 3,
            "gmv_net_adj_365d": [1000.0] * 3,
            "gmv_net_365d": [1000.0] * 3,
        }
    )
    # S1 is A's star (dependent) and also sells 20% of B's GMV; C never used S1.
    shares = pd.DataFrame(
        {
            "merchant_id": ["A", "B", "B", "C"],
            "streamer_id": ["S1", "S2", "S1", "S3"],
            "share": [0.9, 0.3, 0.2, 0.5],
        }
    )
    out = shock_inputs(inputs, 0.0, True, 0.6, shares)
    assert np.allclose(out["gmv_net_adj_30d"], [10.0, 80.0, 100.0])
    assert pd.isna(out.loc[0, "top_streamer_id"])


def test_genuine_loyal_buyers_repeat_at_several_shops_of_one_category(tiny_landing, landing_orders):
    # sim-v5: loyal accounts are shared by a community of same-category shops, so a genuine
    # buyer can repeat at two shops, as ring accounts do: the cross-shop ring rule has to earn it.
    orders, _ = landing_orders
    truth = pl.read_parquet(tiny_landing / "_truth" / "merchants.parquet")
    genuine = truth.filter(~pl.col("brushing")).select("merchant_id", "category")
    per = (
        orders.filter(pl.col("status") != "已取消")
        .join(genuine, on="merchant_id")
        .group_by("buyer", "merchant_id")
        .agg(pl.len().alias("n"), pl.col("category").first())
        .filter(pl.col("n") >= 2)
        .group_by("buyer")
        .agg(pl.len().alias("shops"), pl.col("category").n_unique().alias("categories"))
        .filter(pl.col("shops") >= 2)
    )
    assert per.height >= 5, per
    # the shared accounts live inside a category
    assert (per["categories"] == 1).mean() >= 0.9
