"""The top streamer of the limit inputs counts each order once, as its latest version delivered
before the business date (sql/limits/limit_inputs.sql: arg_max per order over every version)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd

from livefin_etl import limits, warehouse
from livefin_etl.config import get_settings, load_config

D = date(2026, 11, 20)


def _version(order_id, streamer, paid, refund, status, delivered: date, line: int) -> dict:
    return {
        "order_id": order_id,
        "streamer_id": streamer,
        "paid_amount": paid,
        "refund_amount": refund,
        "status": status,
        "order_ts": datetime.combine(D - timedelta(days=12), datetime.min.time()),
        "_dt": delivered,
        "_line": line,
    }


def test_top_streamer_reads_the_latest_version_before_the_date(tmp_path, monkeypatch, bench):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    con = warehouse.connect(get_settings())
    frames = bench.make_upstream(con, D, 30, seed=3)
    m = str(frames["features.merchant_features"]["merchant_id"].iloc[0])
    con.execute("delete from raw.orders where merchant_id = ?", [m])
    versions = pd.DataFrame(
        [
            # the biggest sale, refunded in full by its later version: counts 0
            _version("big", "S_BIG", 1000.0, 0.0, "completed", D - timedelta(days=10), 7),
            _version("big", "S_BIG", 1000.0, 1000.0, "refunded", D - timedelta(days=8), 2),
            _version("mid", "S_MID", 100.0, 0.0, "completed", D - timedelta(days=9), 3),
            # its version delivered on D itself is not yet known: counts 50, not 5000
            _version("late", "S_LATE", 50.0, 0.0, "paid", D - timedelta(days=7), 4),
            _version("late", "S_LATE", 5000.0, 0.0, "completed", D, 1),
        ]
    ).assign(merchant_id=m)
    warehouse.insert_frame(con, "raw.orders", versions)

    inputs = limits.load_inputs(con, D, load_config("policy"))
    con.close()
    top = inputs.set_index("merchant_id").loc[m, "top_streamer_id"]
    assert top == "S_MID", f"top streamer {top}: an older or a future version of an order counted"
