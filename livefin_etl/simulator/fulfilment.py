"""Logistics events of a day's orders: shipped, delivered, lost, returned, complaint.

Every future event of an order is drawn on its order day and parked by event day, so a
written day only pops what is due. Most brushing rings buy genuine tracking numbers and ship
real-weight parcels; only crude rings' fakes ship fast, untracked or empty.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np

from . import names
from .constants import DAY, NEVER, Arrays

if TYPE_CHECKING:
    from .world import World


def park_events(w: World, t: int, o: Arrays) -> tuple[np.ndarray, Arrays]:
    """Draw every future logistics event of today's orders and park them by event day; return
    the shipped orders' positions and their event times (the order lifecycle reuses them)."""
    rf = w.rng(3, t)
    sel = np.flatnonzero(o["status"] != 1)  # cancelled orders never ship
    m = o["merchant"][sel]
    times = _event_times(w, t, rf, o, sel, m)
    if sel.size == 0:
        return sel, times
    carrier, weight = _parcels(w, rf, m, o["fake"][sel] & w.ring_crude[m])
    ev = _stack_events(sel, m, times, carrier, weight)
    _park_by_day(w, t, ev)
    return sel, times


def _event_times(
    w: World, t: int, rf: np.random.Generator, o: Arrays, sel: np.ndarray, m: np.ndarray
) -> dict[str, np.ndarray]:
    """Timestamps (epoch offsets from the start) and masks of each order's events."""
    p = w.p
    k = sel.size
    # Only crude rings ship fast; the rest ship and travel like the shop's real parcels.
    fake = o["fake"][sel] & w.ring_crude[m]
    base = t * DAY + o["ts"][sel]
    delay_h = np.where(fake, rf.uniform(0.5, 6, k), rf.lognormal(np.log(w.ship_hours[m]), 0.6, k))
    ship = base + (delay_h * 3600).astype(np.int64)
    late = delay_h > 48
    # Logistics dip around CNY: deliveries take longer.
    cny_slow = 1.0 / np.maximum(
        w.season[w.cat[m], t + w.burn]
        / np.array(p.weekly)[(w.start + timedelta(days=t)).weekday()],
        0.5,
    )
    transit = np.where(
        fake,
        rf.uniform(0.3, 1.5, k),
        rf.lognormal(np.log(2.5), 0.35, k) * np.maximum(cny_slow, 1.0),
    )
    lost = o["lost"][sel]
    deliver = ship + (transit * DAY).astype(np.int64)
    lost_ts = ship + (rf.uniform(3, 8, k) * DAY).astype(np.int64)
    status = o["status"][sel]
    ret = (
        ~fake
        & ~lost
        & (((status == 2) & (rf.random(k) < 0.9)) | ((status == 3) & (rf.random(k) < 0.4)))
    )
    # After-sales (docs/simulator.md): a return is requested inside the 7-day no-reason window
    # after delivery and refunded once the parcel is back; a refund without return (or for a
    # lost parcel) is paid a few days after the request. Order to refund: about 7-15 days.
    req = np.where(
        lost,
        lost_ts + (rf.uniform(0, 1, k) * DAY).astype(np.int64),
        deliver
        + (np.where(ret, rf.uniform(0.2, 7, k), rf.uniform(0, 5, k)) * DAY).astype(np.int64),
    )
    ret_ts = req + (rf.uniform(1, 4, k) * DAY).astype(np.int64)  # return parcel back
    refund_ts = np.where(ret, ret_ts, req) + (rf.uniform(0.5, 3, k) * DAY).astype(np.int64)
    refunded = ~fake & ((status == 2) | (status == 3))
    comp_p = w.complaint[m] * np.where(late, 3.0, 1.0) + np.where(lost, 0.3, 0.0)
    comp = ~o["fake"][sel] & (rf.random(k) < comp_p)  # no ring complains about itself
    comp_ts = np.where(lost, lost_ts, deliver) + (rf.uniform(0, 4, k) * DAY).astype(np.int64)
    return {
        "ship": ship,
        "deliver": deliver,
        "lost": lost,
        "lost_ts": lost_ts,
        "ret": ret,
        "ret_ts": ret_ts,
        "req": np.where(refunded, req, NEVER),
        "refund_ts": np.where(refunded, refund_ts, NEVER),
        "as_type": ret.astype(np.int8),
        "comp": comp,
        "comp_ts": comp_ts,
    }


def _parcels(
    w: World, rf: np.random.Generator, m: np.ndarray, fake: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Real parcels: a carrier, a tracking number and a real weight. ``fake`` marks a crude
    ring's parcels: often untracked or empty. Skilled rings buy genuine tracking numbers and
    ship real-weight parcels that couriers mark delivered."""
    p, k = w.p, m.size
    carrier = np.where(
        rf.random(k) < 0.8,
        w.carrier[m],
        rf.choice(len(names.CARRIERS), size=k, p=names.CARRIER_WEIGHTS),
    )
    tracked = np.where(fake, rf.random(k) >= p.fake_no_track, rf.random(k) < 0.997)
    carrier = np.where(tracked, carrier, -1)
    grams = np.array(p.parcel_grams)[w.cat[m]]
    weight = np.maximum(80.0, rf.lognormal(np.log(grams), 0.5, k))
    empty = fake & (rf.random(k) < p.fake_empty_parcel)
    weight = np.where(empty, rf.uniform(5, 45, k), weight)
    weight = np.where(tracked, np.round(weight, 1), np.nan)
    return carrier, weight


def _stack_events(
    sel: np.ndarray,
    m: np.ndarray,
    times: dict[str, np.ndarray],
    carrier: np.ndarray,
    weight: np.ndarray,
) -> Arrays:
    """One row per event in compact dtypes; only the shipped row carries the parcel weight."""
    k = sel.size
    seq = sel.astype(np.int32)
    m = m.astype(np.int32)
    carrier = carrier.astype(np.int8)
    weight = weight.astype(np.float32)
    lost = times["lost"]
    parts = [
        (np.ones(k, dtype=bool), 0, times["ship"]),
        (~lost, 1, times["deliver"]),
        (lost, 2, times["lost_ts"]),
        (times["ret"], 3, times["ret_ts"]),
        (times["comp"], 4, times["comp_ts"]),
    ]
    cols = {"seq": [], "merchant": [], "type": [], "ts": [], "carrier": [], "weight": []}
    for mask, typ, ts in parts:
        cols["seq"].append(seq[mask])
        cols["merchant"].append(m[mask])
        cols["type"].append(np.full(mask.sum(), typ, dtype=np.int8))
        cols["ts"].append(ts[mask])
        cols["carrier"].append(carrier[mask])
        cols["weight"].append(weight[mask] if typ == 0 else np.full(mask.sum(), np.nan, np.float32))
    return {c: np.concatenate(v) for c, v in cols.items()}


def _park_by_day(w: World, t: int, ev: Arrays) -> None:
    """Drop events past the last written day; park the rest in ``w.pending`` by event day."""
    sim_index = ev["ts"] // DAY
    keep = sim_index < w.days
    ev = {c: v[keep] for c, v in ev.items()}
    sim_index = sim_index[keep]
    ev["order_day"] = np.full(sim_index.size, t, dtype=np.int32)  # compact: events wait for days
    order = np.argsort(sim_index, kind="stable")
    sim_index = sim_index[order]
    ev = {c: v[order] for c, v in ev.items()}
    cuts = np.flatnonzero(np.diff(sim_index)) + 1
    for lo, hi in zip(
        np.concatenate([[0], cuts]), np.concatenate([cuts, [sim_index.size]]), strict=True
    ):
        if hi > lo:
            w.pending.setdefault(int(sim_index[lo]), []).append(
                {c: v[lo:hi] for c, v in ev.items()}
            )


def pop_events(w: World, t: int) -> Arrays:
    """The events due on day ``t``, in (time, order day, order, type) order."""
    chunks = w.pending.pop(t, [])
    if not chunks:
        return empty_events()
    ev = {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}
    order = np.lexsort((ev["type"], ev["seq"], ev["order_day"], ev["ts"]))
    return {c: v[order] for c, v in ev.items()}


def empty_events() -> Arrays:
    return {
        "seq": np.zeros(0, np.int64),
        "merchant": np.zeros(0, np.int64),
        "type": np.zeros(0, np.int8),
        "ts": np.zeros(0, np.int64),
        "carrier": np.zeros(0, np.int64),
        "weight": np.zeros(0),
        "order_day": np.zeros(0, np.int64),
    }
