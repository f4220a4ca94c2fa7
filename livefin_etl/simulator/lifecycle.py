"""Order state history: what each nightly orders export knows, and the re-deliveries after it.

An order's future (cancellation, shipping, delivery, after-sales request, refund) is drawn on
its order day; the exports only reveal it as it happens. The export for day D is taken at
``export_time(D)`` (06:00 on D+1): it holds D's new orders in their state as of then, and one
row for every older order whose state changed since the previous export. A row carries the
order's whole state at export and ``update_ts``, the time of the latest change it includes, so
no row ever holds an event later than its file's export time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import DAY, NEVER, Arrays

if TYPE_CHECKING:
    from .world import World

EXPORT_HOUR = 6  # the nightly export is taken at 06:00 the next morning
EXPORT_OFFSET = DAY + EXPORT_HOUR * 3600  # export_time(x) = x * DAY + EXPORT_OFFSET
# export order states: paid (not shipped), shipped, completed (delivered), cancelled, refunded
ORDER_STATES = ("paid", "shipped", "completed", "cancelled", "refunded", "partially_refunded")
ORDER_STATES_ZH = ("待发货", "已发货", "已完成", "已取消", "已退款", "部分退款")
AFTER_SALE_TYPES = ("refund_only", "return_refund")
AFTER_SALE_TYPES_ZH = ("仅退款", "退货退款")
AFTER_SALE_STATES = ("requested", "refunded")
AFTER_SALE_STATES_ZH = ("售后处理中", "退款成功")
AFTER_SALE_REASONS = ("no_reason", "quality", "size", "not_as_described", "lost_parcel")
AFTER_SALE_REASONS_ZH = ("七天无理由退货", "质量问题", "尺码不合适", "与描述不符", "物流丢件")
# reason shares of a non-lost after-sales case: apparel returns are mostly fit, other goods
# mostly no-reason or quality (see docs/simulator.md)
REASON_SHARES_APPAREL = (0.45, 0.15, 0.30, 0.10)
REASON_SHARES_OTHER = (0.55, 0.25, 0.0, 0.20)
_KEY = 1 << 16  # (order, export day) packed in one int64; export days stay below 65536

TIMELINE = ("cancel_ts", "ship_ts", "deliver_ts", "req_ts", "refund_ts")
ROW_FIELDS = (
    "order_day",
    "seq",
    "merchant",
    "buyer",
    "ts",
    "item",
    "paid",
    "session",
    "streamer",
    "channel",
    "status",
    "refund",
    "as_status",
    "as_type",
    "reason",
    "req_ts",
    "refund_ts",
    "update_ts",
)


def export_time(x: int | np.ndarray) -> int | np.ndarray:
    """Seconds (from the start date) at which day ``x``'s export is taken."""
    return x * DAY + EXPORT_OFFSET


def export_day(ts: np.ndarray) -> np.ndarray:
    """The first export that sees an event at ``ts``: the smallest x with ts <= export_time(x)."""
    return -((EXPORT_OFFSET - ts) // DAY)


def timeline(w: World, t: int, o: Arrays, sel: np.ndarray, times: Arrays) -> Arrays:
    """Every order's change times (seconds from the start; NEVER when it never happens)."""
    n = o["merchant"].size
    rc = w.rng(6, t)
    created = t * DAY + o["ts"]
    cancelled = o["status"] == 1
    # a cancelled order is cancelled before it ships: minutes to a day after it was placed
    lag = (rc.uniform(0.05, 30.0, n) * 3600).astype(np.int64)
    tl = {"cancel_ts": np.where(cancelled, created + lag, NEVER)}
    delivered = np.where(times["lost"], NEVER, times["deliver"])
    for name, src in (
        ("ship_ts", times["ship"]),
        ("deliver_ts", delivered),
        ("req_ts", times["req"]),
    ):
        tl[name] = np.full(n, NEVER, dtype=np.int64)
        tl[name][sel] = src
    tl["refund_ts"] = np.full(n, NEVER, dtype=np.int64)
    tl["refund_ts"][sel] = times["refund_ts"]
    as_type = np.zeros(n, dtype=np.int8)
    as_type[sel] = times["as_type"]
    apparel = w.cat[o["merchant"]] == 0
    u = rc.random(n)
    reason = np.where(
        apparel,
        np.searchsorted(np.cumsum(REASON_SHARES_APPAREL), u * sum(REASON_SHARES_APPAREL)),
        np.searchsorted(np.cumsum(REASON_SHARES_OTHER), u * sum(REASON_SHARES_OTHER)),
    ).astype(np.int8)
    lost = np.zeros(n, dtype=bool)
    lost[sel] = times["lost"]
    tl["reason"] = np.where(lost, 4, np.minimum(reason, 3)).astype(np.int8)
    tl["as_type"] = as_type
    tl["created"] = created
    return tl


def _state(tl: Arrays, o: Arrays, idx: np.ndarray, at: np.ndarray | int) -> Arrays:
    """The rows of orders ``idx`` as an export taken at ``at`` sees them."""
    cancel, ship, deliver, req, refund = (tl[k][idx] for k in TIMELINE)
    partial = o["status"][idx] == 3
    refunded = refund <= at
    status = np.select(
        [refunded & partial, refunded, cancel <= at, deliver <= at, ship <= at],
        [5, 4, 3, 2, 1],
        0,
    ).astype(np.int8)
    update = tl["created"][idx]
    for ts in (cancel, ship, deliver, req, refund):
        update = np.maximum(update, np.where(ts <= at, ts, update))
    as_status = np.where(refunded, 2, np.where(req <= at, 1, 0)).astype(np.int8)
    return {
        "status": status,
        "refund": np.where(refunded, o["refund"][idx], 0.0),
        "as_status": as_status,
        "req_ts": np.where(req <= at, req, NEVER),
        "refund_ts": np.where(refunded, refund, NEVER),
        "update_ts": update,
    }


def _rows(
    w: World, t: int, o: Arrays, s: Arrays, tl: Arrays, idx: np.ndarray, at: np.ndarray | int
) -> Arrays:
    """Version rows of orders ``idx`` (positions in today's orders) as seen at ``at``."""
    sess = o["session"][idx]
    si = np.maximum(sess, 0)
    streamer = (
        np.where(sess >= 0, w.streamer_id[s["merchant"][si], s["slot"][si]], -1)
        if s["merchant"].size
        else np.full(idx.size, -1)
    )
    rows = {
        "order_day": np.full(idx.size, t, dtype=np.int32),
        "seq": idx.astype(np.int32),
        "merchant": o["merchant"][idx],
        "buyer": o["buyer"][idx],
        "ts": o["ts"][idx],
        "item": o["item"][idx],
        "paid": o["paid"][idx],
        "session": sess,
        "streamer": streamer.astype(np.int64),
        "channel": o["channel"][idx],
        "as_type": tl["as_type"][idx],
        "reason": tl["reason"][idx],
    }
    rows.update(_state(tl, o, idx, at))
    return rows


def park_versions(w: World, t: int, o: Arrays, s: Arrays, tl: Arrays) -> Arrays:
    """Today's new orders as today's export sees them; park one row per later export in which
    an order's state changes (all changes up to that export in one row)."""
    n = o["merchant"].size
    first = _rows(w, t, o, s, tl, np.arange(n), export_time(t))
    idx_parts, x_parts = [], []
    for name in TIMELINE:
        x = export_day(tl[name])
        keep = (x > t) & (x < w.days)
        idx_parts.append(np.flatnonzero(keep))
        x_parts.append(x[keep])
    key = np.unique(np.concatenate(idx_parts).astype(np.int64) * _KEY + np.concatenate(x_parts))
    idx, x = key // _KEY, key % _KEY
    if idx.size:
        later = _rows(w, t, o, s, tl, idx, export_time(x))
        order = np.argsort(x, kind="stable")
        x, later = x[order], {c: v[order] for c, v in later.items()}
        cuts = np.flatnonzero(np.diff(x)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, x.size], strict=True):
            w.pending_versions.setdefault(int(x[lo]), []).append(
                {c: v[lo:hi] for c, v in later.items()}
            )
    return first


def pop_versions(w: World, t: int, first: Arrays) -> Arrays:
    """Today's export: new orders first (in time order), then the day's changes of older orders
    in (update time, order day, order) order."""
    chunks = w.pending_versions.pop(t, [])
    if not chunks:
        return first
    ch = {c: np.concatenate([x[c] for x in chunks]) for c in ROW_FIELDS}
    order = np.lexsort((ch["seq"], ch["order_day"], ch["update_ts"]))
    return {c: np.concatenate([first[c], ch[c][order]]) for c in ROW_FIELDS}
