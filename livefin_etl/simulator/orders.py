"""A day's trading: live sessions (traffic), orders in sessions, on the shelf and fake ones.

Sessions draw from the day generator ``rd`` (shared with the AR demand shock), orders from
their own stream; the draw order inside each step is part of the output, so keep it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import names
from .constants import DAY, U64, Arrays
from .merchants import lifecycle

if TYPE_CHECKING:
    from .world import World

# Hour-of-day weights: live sessions are evening-heavy, shelf orders flatter.
SESSION_HOURS = np.array(
    [
        0.15,
        0.05,
        0.02,
        0.01,
        0.01,
        0.02,
        0.1,
        0.3,
        0.6,
        0.8,
        1.0,
        1.0,
        1.2,
        1.0,
        0.9,
        0.9,
        1.0,
        1.2,
        1.6,
        2.4,
        3.0,
        3.0,
        2.2,
        0.8,
    ]
)
SHELF_HOURS = np.array(
    [
        0.25,
        0.12,
        0.06,
        0.04,
        0.04,
        0.08,
        0.3,
        0.6,
        0.9,
        1.0,
        1.0,
        1.1,
        1.2,
        1.0,
        1.0,
        1.0,
        1.0,
        1.1,
        1.2,
        1.4,
        1.6,
        1.6,
        1.3,
        0.7,
    ]
)


def draw_orders(
    w: World, t: int, active: np.ndarray, mult: np.ndarray, rd: np.random.Generator
) -> tuple[Arrays, Arrays]:
    """Today's (orders, sessions), orders sorted by time; ``mult`` is the demand multiplier."""
    ro = w.rng(2, t)
    sessions, dur, so = _sessions(w, t, active, mult, rd)
    sm, start = sessions["merchant"], sessions["start"]
    sess_idx, ts_live = _live_orders(ro, start, dur, so)
    shelf_m, ts_shelf = _shelf_orders(w, ro, mult)
    fake_m, ts_fake = _fake_orders(w, t, active, ro)
    nf = fake_m.size
    om = np.concatenate([sm[sess_idx], shelf_m, fake_m]).astype(np.int64)
    osess = np.concatenate([sess_idx, np.full(shelf_m.size + nf, -1)]).astype(np.int64)
    fake = np.concatenate(
        [np.zeros(sess_idx.size + shelf_m.size, dtype=bool), np.ones(nf, dtype=bool)]
    )
    ots = np.concatenate([ts_live, ts_shelf, ts_fake]).astype(np.int64)
    item, paid = _amounts(w, ro, om, fake)
    status, refund, lost = _statuses(w, t, ro, om, fake, paid)
    buyer = _buyers(w, ro, om, fake)

    perm = np.lexsort((np.arange(om.size), ots))
    orders = {
        "merchant": om,
        "session": osess,
        "fake": fake,
        "ts": ots,
        "item": item,
        "paid": paid,
        "status": status,
        "refund": refund,
        "lost": lost,
        "buyer": buyer,
    }
    orders = {k: v[perm] for k, v in orders.items()}
    gmv_sess = np.bincount(
        orders["session"][orders["session"] >= 0],
        weights=orders["paid"][orders["session"] >= 0],
        minlength=sm.size,
    )
    sessions["gmv"] = np.round(gmv_sess, 2)
    return orders, sessions


def _sessions(
    w: World, t: int, active: np.ndarray, mult: np.ndarray, rd: np.random.Generator
) -> tuple[Arrays, np.ndarray, np.ndarray]:
    """Live sessions: count, host, audience, orders. Returns (sessions, durations, orders each)."""
    n_sess = rd.poisson(w.sess_rate * active)
    if n_sess.sum() == 0:  # traffic must never be empty for a day
        n_sess[np.argmax(w.sess_rate * (w.onboard <= t) * (1 + active))] = 1
    sm = np.repeat(np.arange(w.N), n_sess)
    ns = sm.size
    cw = np.cumsum(w.weights[sm], axis=1)
    slot = np.minimum((rd.random(ns)[:, None] > cw).sum(1), w.roster[sm] - 1)
    start = rd.choice(24, size=ns, p=SESSION_HOURS / SESSION_HOURS.sum()) * 3600 + rd.integers(
        0, 3600, size=ns
    )
    dur = rd.integers(3600, 5 * 3600, size=ns)
    viewers = np.maximum(
        1,
        np.rint(w.audience[sm] * mult[sm] / w.sess_rate[sm] * rd.lognormal(-0.08, 0.4, size=ns)),
    ).astype(np.int64)
    so = rd.poisson(viewers * w.conv[sm])
    # Sessions are numbered in start order.
    order_s = np.lexsort((np.arange(ns), start))
    sm, slot, start, dur, viewers, so = (a[order_s] for a in (sm, slot, start, dur, viewers, so))
    sessions = {
        "merchant": sm,
        "slot": slot,
        "start": start,
        "end": start + dur,
        "viewers": viewers,
        "peak": np.maximum(1, np.rint(viewers * rd.uniform(0.05, 0.25, size=ns))).astype(np.int64),
        "watch": np.round(viewers * w.watch[sm] * rd.lognormal(0, 0.2, size=ns), 1),
        "followers": rd.binomial(viewers, w.follow[sm]),
    }
    sessions["peak"] = np.minimum(sessions["peak"], viewers)
    return sessions, dur, so


def _live_orders(
    ro: np.random.Generator, start: np.ndarray, dur: np.ndarray, so: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(session index, second of day) of each in-session order, inside its session."""
    sess_idx = np.repeat(np.arange(start.size), so)
    ts_live = start[sess_idx] + np.floor(
        ro.random(sess_idx.size) * np.minimum(dur[sess_idx], DAY - 1 - start[sess_idx])
    ).astype(np.int64)
    return sess_idx, ts_live


def _shelf_orders(
    w: World, ro: np.random.Generator, mult: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(merchant, second of day) of each shelf order (bought outside a live session)."""
    p = w.p
    shelf_n = ro.poisson(w.audience * w.conv * mult * (1 - p.live_share) / p.live_share)
    shelf_m = np.repeat(np.arange(w.N), shelf_n)
    hrs = ro.choice(24, size=shelf_m.size, p=SHELF_HOURS / SHELF_HOURS.sum())
    ts_shelf = hrs * 3600 + ro.integers(0, 3600, size=shelf_m.size)
    return shelf_m, ts_shelf


def _fake_orders(
    w: World, t: int, active: np.ndarray, ro: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(merchant, second of day) of each brushing order; more of them just before applying."""
    p, n = w.p, w.N
    ramp = np.where(
        (w.next_apply >= t) & (w.next_apply - t <= p.brush_ramp_days) & ~w.has_loan,
        p.brush_ramp_mult,
        1.0,
    )
    fake_rate = (
        w.brushing * active * (t < w.distress_day) * w.fake_share * w.mu * lifecycle(w, t) * ramp
    )
    fake_n = ro.poisson(fake_rate)
    fake_m = np.repeat(np.arange(n), fake_n)
    nf = fake_m.size
    burst = ro.integers(0, 5 * 3600 - 1800, size=n)  # one small-hours burst per merchant-day
    odd = ro.random(nf) < p.odd_hour_share
    ts_fake = np.where(
        odd,
        burst[fake_m] + ro.integers(0, 1800, size=nf),
        ro.integers(8 * 3600, 23 * 3600, size=nf),
    )
    return fake_m, ts_fake


def _amounts(
    w: World, ro: np.random.Generator, om: np.ndarray, fake: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(item amount, paid amount): paid <= item after rounding because rounding is monotone."""
    p, no = w.p, om.size
    aov = w.aov[om]
    item = np.maximum(
        1.0,
        np.round(
            aov * np.where(fake, ro.lognormal(0, 0.2, no), ro.lognormal(-0.1, p.aov_sigma, no)),
            2,
        ),
    )
    disc = np.where(
        ~fake & (ro.random(no) < p.discount_share), ro.uniform(0.02, p.discount_max, no), 0.0
    )
    return item, np.round(item * (1 - disc), 2)


def _statuses(
    w: World,
    t: int,
    ro: np.random.Generator,
    om: np.ndarray,
    fake: np.ndarray,
    paid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(status, refund amount, lost) decided at creation: the export carries the final status."""
    p, no = w.p, om.size
    season = w.season[w.cat[om], t + w.burn]
    refund_p = np.clip(w.refund[om] * (1 + 0.08 * np.log(np.maximum(season, 0.2))), 0, 0.95)
    u = ro.random(no)
    cancel = u < w.cancel[om]
    lost = ~cancel & (ro.random(no) < w.lost[om])
    refunded = ~cancel & ~lost & (ro.random(no) < refund_p)
    partial = refunded & (ro.random(no) < p.partial_refund_share)
    status = np.zeros(no, dtype=np.int8)
    status[cancel] = 1
    status[lost | (refunded & ~partial)] = 2
    status[partial] = 3
    status[fake] = 0
    lost &= ~fake
    refund = np.where(
        status == 3,
        np.round(paid * ro.uniform(0.1, 0.7, no), 2),
        np.where((status == 1) | (status == 2), paid, 0.0),
    )
    return status, refund, lost


def _buyers(w: World, ro: np.random.Generator, om: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Buyer keys: loyal pool (repeat customers), new buyers, or the brushing ring."""
    no = om.size
    loyal = ro.random(no) < w.repeat[om]
    k_pool = np.floor(ro.random(no) * np.where(fake, w.ring_size[om], w.pool[om])).astype(np.int64)
    keyed = (
        (np.where(fake, 2, 1).astype(U64) << U64(60))
        | (om.astype(U64) << U64(30))
        | k_pool.astype(U64)
    )
    keyed = keyed ^ (U64(w.seed) << U64(20))
    random_id = ro.integers(0, 1 << 62, size=no, dtype=np.int64).astype(U64)
    return names.mix64(np.where(fake | loyal, keyed, random_id))
