"""Hand-made raw.* rows (docs/architecture.md layout) for feature and valuation tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import pandas as pd

LINEAGE = (
    "_dt DATE, _file VARCHAR, _line BIGINT, _contract_version VARCHAR, _mapping VARCHAR, "
    "_loaded_at TIMESTAMP"
)
RAW_COLUMNS = {
    "merchants": "merchant_id VARCHAR, merchant_name VARCHAR, category VARCHAR, region VARCHAR, "
    "onboard_date DATE",
    "orders": "order_id VARCHAR, merchant_id VARCHAR, buyer_phone_hash VARCHAR, "
    "buyer_name_hash VARCHAR, buyer_address_hash VARCHAR, order_ts TIMESTAMP, item_amount DOUBLE, "
    "paid_amount DOUBLE, status VARCHAR, refund_amount DOUBLE, session_id VARCHAR, "
    "streamer_id VARCHAR, category VARCHAR, buyer_id_hash VARCHAR",
    "traffic": "session_id VARCHAR, merchant_id VARCHAR, streamer_id VARCHAR, start_ts TIMESTAMP, "
    "end_ts TIMESTAMP, peak_viewers BIGINT, total_viewers BIGINT, watch_minutes DOUBLE, "
    "new_followers BIGINT, gmv_attributed DOUBLE",
    "fulfillment": "event_id VARCHAR, order_id VARCHAR, merchant_id VARCHAR, event_type VARCHAR, "
    "event_ts TIMESTAMP, carrier VARCHAR, tracking_no VARCHAR, parcel_weight_g DOUBLE",
}


def create_raw(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    for name, cols in RAW_COLUMNS.items():
        con.execute(f"create table if not exists raw.{name} ({cols}, {LINEAGE})")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Raw:
    """Collects rows, then inserts them with _dt = the event's day (or an explicit dt)."""

    merchants: list[tuple] = field(default_factory=list)
    orders: list[tuple] = field(default_factory=list)
    traffic: list[tuple] = field(default_factory=list)
    fulfillment: list[tuple] = field(default_factory=list)
    _n: int = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def merchant(self, mid: str, category: str, onboard: str) -> None:
        d = date.fromisoformat(onboard)
        self.merchants.append((mid, f"shop {mid}", category, "zhejiang", d, d))

    def order(
        self, mid: str, when: str, buyer: str, paid: float, status: str = "completed",
        refund: float = 0.0, streamer: str | None = None, order_id: str | None = None,
        dt: str | None = None,
    ) -> str:  # fmt: skip
        oid = order_id or self._id("o")
        t = ts(when)
        self.orders.append(
            (oid, mid, f"h{buyer}", f"n{buyer}", f"a{buyer}", t, paid, paid, status, refund,
             None, streamer, "apparel", None, date.fromisoformat(dt) if dt else t.date())
        )  # fmt: skip
        return oid

    def session(
        self, mid: str, streamer: str, start: str, viewers: int, watch: float, hours: int = 2
    ) -> None:
        t = ts(start)
        end = t.replace(hour=min(t.hour + hours, 23))
        self.traffic.append(
            (self._id("s"), mid, streamer, t, end, viewers // 2, viewers, watch, 1, 0.0, t.date())
        )

    def event(
        self, mid: str, order_id: str, kind: str, when: str, tracking: str | None = "T",
        weight: float | None = 400.0,
    ) -> None:  # fmt: skip
        t = ts(when)
        self.fulfillment.append(
            (self._id("e"), order_id, mid, kind, t, "sf", tracking, weight, t.date())
        )

    def write(self, con: duckdb.DuckDBPyConnection, loaded_at: str = "2025-06-01 00:00:00") -> None:
        create_raw(con)
        for name in RAW_COLUMNS:
            rows = getattr(self, name)
            if not rows:
                continue
            names = [c.split()[0] for c in RAW_COLUMNS[name].split(", ")] + ["_dt"]
            batch = pd.DataFrame(rows, columns=names)  # noqa: F841 (read by DuckDB below)
            con.execute(
                f"insert into raw.{name} select batch.*, 'f.csv', 1, 'v1', 'm', "
                f"cast('{loaded_at}' as timestamp) from batch"
            )
            setattr(self, name, [])


D = date(2025, 3, 1)


def scenario() -> Raw:
    """Two merchants with every kind of event; expected values are worked out in the tests."""
    r = Raw()
    r.merchant("M1", "apparel", "2025-01-01")
    r.merchant("M2", "food", "2024-12-01")
    r.merchant("M3", "beauty", "2025-03-01")  # onboarded on D: not a merchant as of D
    r.merchant("M4", "household", "2023-01-01")  # last activity > 365 days before D
    # M1 orders
    o1 = r.order("M1", "2025-02-27 10:00:00", "A", 100, streamer="S1")
    o2 = r.order("M1", "2025-02-27 11:00:00", "B", 50, "refunded", 50, streamer="S1")
    o3 = r.order("M1", "2025-02-20 09:00:00", "A", 80, "partially_refunded", 20, streamer="S2")
    r.order("M1", "2025-02-20 12:00:00", "C", 40, "cancelled", 0, streamer="S2")
    o5 = r.order("M1", "2025-01-20 14:00:00", "D", 200, streamer="S1")
    o6 = r.order("M1", "2025-02-28 03:00:00", "E", 30, streamer="S1")
    for day in range(10, 15):  # ring buyer R: 5 orders in 5 days, the 5th is flagged
        r.order("M1", f"2025-02-{day} 15:00:00", "R", 10, streamer="S1")
    burst = [
        r.order("M1", f"2025-02-25 02:{m:02d}:00", b, 20) for m, b in ((1, "F"), (5, "G"), (9, "H"))
    ]
    # M1 logistics
    r.event("M1", o1, "shipped", "2025-02-28 09:00:00")
    r.event("M1", o1, "delivered", "2025-03-01 10:00:00")  # on D: not known as of D
    r.event("M1", o3, "shipped", "2025-02-23 09:00:00")  # 72 h: late
    r.event("M1", o3, "delivered", "2025-02-25 09:00:00")  # 5.0 days after the order
    r.event("M1", o5, "shipped", "2025-01-21 10:00:00")
    r.event("M1", o5, "delivered", "2025-01-24 14:00:00")
    r.event("M1", o6, "shipped", "2025-02-28 10:00:00", tracking="", weight=20.0)  # empty parcel
    r.event("M1", o2, "shipped", "2025-02-27 20:00:00")
    r.event("M1", o2, "returned", "2025-02-28 12:00:00")
    r.event("M1", o2, "complaint", "2025-02-28 13:00:00")
    r.event("M1", burst[0], "shipped", "2025-02-25 10:00:00")
    r.event("M1", burst[0], "lost", "2025-02-27 10:00:00")
    # M1 sessions
    r.session("M1", "S1", "2025-02-27 09:00:00", 1000, 5000.0)
    r.session("M1", "S2", "2025-02-20 08:00:00", 500, 2000.0)
    r.session("M1", "S1", "2025-01-20 13:00:00", 300, 900.0)
    # M2
    r.order("M2", "2025-02-15 10:00:00", "Z", 100, streamer="S9")
    r.order("M2", "2025-01-05 10:00:00", "Z", 300, streamer="S9")
    # M4: old activity only
    r.order("M4", "2023-06-01 10:00:00", "Q", 10)
    return r
