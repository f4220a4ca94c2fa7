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
    fake_sess, ts_fake = _fake_in_sessions(w, ro, sm, start, dur, fake_m, ts_fake)
    om = np.concatenate([sm[sess_idx], shelf_m, fake_m]).astype(np.int64)
    osess = np.concatenate([sess_idx, np.full(shelf_m.size, -1), fake_sess]).astype(np.int64)
    fake = np.concatenate(
        [np.zeros(sess_idx.size + shelf_m.size, dtype=bool), np.ones(nf, dtype=bool)]
    )
    ots = np.concatenate([ts_live, ts_shelf, ts_fake]).astype(np.int64)
    # Fakes come in through the product card or search like shelf buyers.
    channel = np.concatenate(
        [np.zeros(sess_idx.size, np.int8), shelf_channels(w, t, shelf_m.size + nf)]
    )
    channel[osess >= 0] = 0
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
        "channel": channel,
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
    """(session index, second of day) of each in-session order. A late session runs past
    midnight: its after-midnight orders fall in the small hours (the day's calendar is
    stationary, so yesterday's late session stands in for today's)."""
    sess_idx = np.repeat(np.arange(start.size), so)
    ts_live = start[sess_idx] + np.floor(ro.random(sess_idx.size) * dur[sess_idx]).astype(np.int64)
    return sess_idx, ts_live % DAY


def _shelf_orders(
    w: World, ro: np.random.Generator, mult: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(merchant, second of day) of each shelf order (bought outside a live session)."""
    p = w.p
    shelf_n = ro.poisson(
        w.audience * w.conv * mult * w.shelf_mult * (1 - p.live_share) / p.live_share
    )
    shelf_m = np.repeat(np.arange(w.N), shelf_n)
    hrs = ro.choice(24, size=shelf_m.size, p=SHELF_HOURS / SHELF_HOURS.sum())
    ts_shelf = hrs * 3600 + ro.integers(0, 3600, size=shelf_m.size)
    return shelf_m, ts_shelf


def shelf_channels(w: World, t: int, n: int) -> np.ndarray:
    """Channel (1 shelf, 2 short video, 3 search) of ``n`` non-live orders; own stream so the
    order draws above keep their sequence."""
    cs = np.array(w.p.channel_shares, dtype=float)
    return (w.rng(9, t).choice(3, size=n, p=cs / cs.sum()) + 1).astype(np.int8)


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
    odd = ro.random(nf) < w.ring_odd[fake_m]
    # Most fakes follow the shop's own shelf hours, so the hour profile looks like real demand.
    hrs = ro.choice(24, size=nf, p=SHELF_HOURS / SHELF_HOURS.sum())
    ts_fake = np.where(
        odd,
        burst[fake_m] + ro.integers(0, 1800, size=nf),
        hrs * 3600 + ro.integers(0, 3600, size=nf),
    )
    return fake_m, ts_fake


def _fake_in_sessions(
    w: World,
    ro: np.random.Generator,
    sm: np.ndarray,
    start: np.ndarray,
    dur: np.ndarray,
    fake_m: np.ndarray,
    ts_fake: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rings also buy inside the shop's live rooms (to lift its ranking): a share of fakes moves
    into one of that day's sessions, which adds orders but no viewers."""
    by_m = np.argsort(sm, kind="stable")
    lo = np.searchsorted(sm[by_m], fake_m, "left")
    cnt = np.searchsorted(sm[by_m], fake_m, "right") - lo
    u, v = ro.random(fake_m.size), ro.random(fake_m.size)
    into = (cnt > 0) & (u < w.p.fake_live_share)
    pick = by_m[np.minimum(lo + np.floor(v * cnt).astype(np.int64), sm.size - 1)] if sm.size else lo
    sess = np.where(into, pick, -1).astype(np.int64)
    si = np.maximum(sess, 0)
    ts_in = (start[si] + np.floor(ro.random(fake_m.size) * dur[si]).astype(np.int64)) % DAY
    return sess, np.where(into, ts_in, ts_fake)


def _amounts(
    w: World, ro: np.random.Generator, om: np.ndarray, fake: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(item amount, paid amount): paid <= item after rounding because rounding is monotone."""
    p, no = w.p, om.size
    aov = w.aov[om]
    # Only crude rings buy the same basket at list price; the rest copy real baskets.
    crude = fake & w.ring_crude[om]
    item = np.maximum(
        1.0,
        np.round(
            aov * np.where(crude, ro.lognormal(0, 0.2, no), ro.lognormal(-0.1, p.aov_sigma, no)),
            2,
        ),
    )
    disc = np.where(
        ~crude & (ro.random(no) < p.discount_share), ro.uniform(0.02, p.discount_max, no), 0.0
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
    # A ring draws its accounts from its own pool, shared by the shops that hire it; some
    # fakes come from fresh accounts so repeat-buyer shares alone do not give the ring away.
    ring_pool = w.ring_pool[w.ring_id[om]]
    k_pool = np.floor(ro.random(no) * np.where(fake, ring_pool, w.pool[om])).astype(np.int64)
    owner = np.where(fake, w.ring_id[om], om).astype(U64)
    keyed = (np.where(fake, 2, 1).astype(U64) << U64(60)) | (owner << U64(30)) | k_pool.astype(U64)
    fresh = fake & (ro.random(no) < w.p.ring_new_account_share)
    loyal &= ~fake
    keyed = keyed ^ (U64(w.seed) << U64(20))
    # One-off buyers come from a platform-wide pool, so real buyers also shop at several shops.
    pool = max(1, w.p.platform_buyers_per_merchant * w.N)
    random_id = (U64(3) << U64(60)) | ro.integers(0, pool, size=no, dtype=np.int64).astype(U64)
    random_id = random_id ^ (U64(w.seed) << U64(20))
    # A share of loyal orders comes from the category community's shared accounts.
    cross = loyal & (ro.random(no) < w.p.cross_shop_share)
    k_comm = np.floor(ro.random(no) * w.community_pool[om]).astype(np.int64)
    comm_id = (U64(4) << U64(60)) | (w.community[om].astype(U64) << U64(30)) | k_comm.astype(U64)
    comm_id = comm_id ^ (U64(w.seed) << U64(20))
    key = np.where((fake & ~fresh) | loyal, keyed, random_id)
    return names.mix64(np.where(cross, comm_id, key))
