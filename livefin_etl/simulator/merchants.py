"""Merchant draws: identity, onboarding, brushing, streamer roster, shocks, demand, operations.

All of a world's merchant state is drawn once, from one generator, in a fixed order: the
steps below run in sequence on the same generator, so their order is part of the output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import names
from .constants import NEVER, U64
from .params import CATEGORIES

if TYPE_CHECKING:
    from .world import World


def init_merchants(w: World, mu: float) -> None:
    """Draw every per-merchant array; ``mu`` is the mature average merchant's real orders/day."""
    r = w.rng(0, -w.burn)
    _identity(w, r)
    first_seen = _onboarding(w, r)
    _brushing(w, r)
    _streamers(w, r)
    _shocks(w, r, first_seen)
    _demand_profile(w, r, mu)
    _operations(w, r)
    _lender_state(w, r)
    _buyer_communities(w, r)


def _identity(w: World, r: np.random.Generator) -> None:
    p, n = w.p, w.N
    w.cat = r.choice(
        len(CATEGORIES), size=n, p=np.array(p.category_shares) / sum(p.category_shares)
    )
    h = names.mix64(np.arange(n, dtype=U64) + U64(w.seed) * U64(0x100000001))
    w.prov = names.province_of(h)
    w.name_hash = h
    w.q = r.beta(*p.quality_beta, size=n)


def _onboarding(w: World, r: np.random.Generator) -> np.ndarray:
    """Onboard day per merchant (back-book or new during the run); returns the first simulated day."""
    p, n = w.p, w.N
    is_new = r.random(n) < p.new_merchant_share
    hist = int(p.history_years * 365)
    back = -r.integers(0, hist + 1, size=n)
    fresh = r.integers(1, max(w.days, 2), size=n)
    w.onboard = np.where(is_new & (w.days > 1), fresh, back).astype(np.int64)
    w.onboard[0] = min(w.onboard[0], 0)  # day 0 always has a merchant
    return np.maximum(w.onboard, -w.burn)


def _brushing(w: World, r: np.random.Generator) -> None:
    # Brushing is commoner among weak merchants: p = 2 * share * (1 - q), mean = share.
    p, n = w.p, w.N
    w.brushing = r.random(n) < np.clip(2 * p.brushing_share * (1 - w.q), 0, 1)
    w.fake_share = r.uniform(*p.fake_share, size=n)
    w.ring_size = r.integers(p.ring_size[0], p.ring_size[1] + 1, size=n)
    # Rings differ in sophistication: most buy genuine tracking numbers and ship real-weight
    # parcels; a crude minority still sends empty or untracked ones. A ring's accounts come
    # from its own pool, shared by every shop that hires it.
    w.ring_crude = r.random(n) < p.ring_crude_share
    w.ring_odd = r.uniform(*p.odd_hour_share, size=n)
    n_rings = max(1, int(round(w.brushing.sum() / 2)))
    w.ring_id = r.integers(0, n_rings, size=n)
    w.ring_pool = r.integers(p.ring_pool[0], p.ring_pool[1] + 1, size=n_rings)


def _streamers(w: World, r: np.random.Generator) -> None:
    """Streamer roster: 1-5 streamers; a dependent merchant has a hired star plus backups."""
    p, n = w.p, w.N
    w.dependent = r.random(n) < p.streamer_dependent_share
    roster = np.where(
        w.dependent,
        r.integers(2, 6, size=n),
        r.choice([1, 2, 3, 4, 5], size=n, p=[0.15, 0.3, 0.25, 0.2, 0.1]),
    )
    w.roster = roster
    weights = r.gamma(2.0, size=(n, 5))
    weights[np.arange(5)[None, :] >= roster[:, None]] = 0.0
    weights /= weights.sum(1, keepdims=True)
    dep = w.dependent
    backups = weights[dep, 1:] / np.maximum(weights[dep, 1:].sum(1, keepdims=True), 1e-12)
    weights[dep, 0] = p.star_share
    weights[dep, 1:] = backups * (1 - p.star_share)
    w.weights = weights
    w.weights0 = weights.copy()  # the roster before any exit
    w.exit_day = np.where(
        dep,
        np.maximum(w.onboard, 0)
        + np.floor(r.exponential(p.exit_mean_days, size=n)).astype(np.int64),
        NEVER,
    )
    w.exit_drop = r.uniform(*p.exit_drop, size=n)
    _shared_streamers(w, r)


def _shared_streamers(w: World, r: np.random.Generator) -> None:
    """Roster slots point into one pool of 达人 who sell for many shops; a streamer leaves on one
    day for every shop (a dependent merchant's star leaves on its own ``exit_day``)."""
    p, n = w.p, w.N
    slots = int(w.roster.sum())
    pool = max(1, int(round(slots / p.streamer_slots_mean)))
    pop = r.gamma(p.streamer_pop_shape, size=pool)
    sid = r.choice(pool, size=(n, 5), p=pop / pop.sum())
    w.streamer_id = (sid + 1).astype(np.int64)  # 0 is "no streamer" in the export
    # Shops differ in how much sells off-live (mean 1 keeps the configured live share).
    w.shelf_mult = r.lognormal(-0.5 * p.shelf_sigma**2, p.shelf_sigma, size=n)
    w.streamer_exit = np.full(pool + 1, NEVER, dtype=np.int64)
    star = w.dependent & (w.exit_day < NEVER)
    # The star's exit day is the streamer's exit day for every shop they sell for.
    np.minimum.at(w.streamer_exit, w.streamer_id[star, 0], w.exit_day[star])
    w.exit_day = np.where(w.dependent, w.streamer_exit[w.streamer_id[:, 0]], NEVER)


def _shocks(w: World, r: np.random.Generator, first_seen: np.ndarray) -> None:
    # Pre-drawn shock dates; the hazards are memoryless, so P(shock in the next W days | none
    # yet) is known at any origination date: that is what true_pd integrates over.
    p, q = w.p, w.q
    w.pen_hazard = p.penalty_rate * np.exp(p.penalty_q * (0.5 - q))
    w.pen_day = first_seen + np.floor(r.exponential(1.0 / w.pen_hazard)).astype(np.int64)
    churn_h = p.churn_rate * np.exp(p.churn_q * (0.5 - q))
    w.churn_day = first_seen + np.floor(r.exponential(1.0 / churn_h)).astype(np.int64)
    w.distress_day = np.full(w.N, NEVER, dtype=np.int64)


def _demand_profile(w: World, r: np.random.Generator, mu: float) -> None:
    """Demand: audience x conversion; conversion rises with quality."""
    p, n, q = w.p, w.N, w.q
    conv_cat = np.array(p.conversion)[w.cat]
    w.conv = conv_cat * np.exp(p.conversion_q * (q - 0.5)) * r.lognormal(0, 0.2, size=n)
    size = r.lognormal(-0.5 * p.size_sigma**2, p.size_sigma, size=n)
    # audience such that a mature average merchant has `mu` real orders on an ordinary day
    w.audience = mu * p.live_share * size / conv_cat
    w.mu = w.audience * w.conv / p.live_share  # expected real orders / ordinary day
    lo, hi = p.sessions_per_day
    w.sess_rate = np.clip(lo + 0.35 * np.log1p(w.mu), lo, hi)
    w.aov = np.array(p.aov)[w.cat] * r.lognormal(-0.06, 0.35, size=n)
    w.base_daily_gmv = w.mu * w.aov
    w.volatility = r.uniform(*p.volatility, size=n)
    w.ar = r.standard_normal(n) * w.volatility
    w.trend = r.normal(p.trend_mean, p.trend_sigma, size=n)


def _operations(w: World, r: np.random.Generator) -> None:
    """Operations, all driven by quality."""
    p, n, q = w.p, w.N, w.q
    rr = np.array(p.refund_range)
    bad = np.clip((1 - q) + r.normal(0, 0.08, size=n), 0, 1)
    w.refund = rr[w.cat, 0] + (rr[w.cat, 1] - rr[w.cat, 0]) * bad
    w.cancel = p.cancel[0] + p.cancel[1] * (1 - q)
    w.ship_hours = p.ship_hours[0] + p.ship_hours[1] * (1 - q) ** 1.5
    w.lost = p.lost[0] + p.lost[1] * (1 - q) ** 2
    w.complaint = p.complaint[0] + p.complaint[1] * (1 - q) ** 2
    w.repeat = p.repeat[0] + p.repeat[1] * q
    w.pool = np.maximum(20, (60 * w.mu)).astype(np.int64)
    w.carrier = r.choice(len(names.CARRIERS), size=n, p=names.CARRIER_WEIGHTS)
    w.watch = (0.6 + 3.0 * q) * r.lognormal(0, 0.2, size=n)
    w.follow = 0.002 + 0.01 * q


def _lender_state(w: World, r: np.random.Generator) -> None:
    """Legacy lender state: first application day, loan/ban flags, 30-day GMV ring buffers."""
    p, n = w.p, w.N
    mean_apply = np.where(w.brushing, p.apply_mean_days_brushing, p.apply_mean_days)
    w.next_apply = (
        np.maximum(p.lend_start_day, w.onboard + p.min_tenure_days)
        + r.geometric(1.0 / mean_apply, size=n)
        + w.brushing * p.brush_ramp_days
    ).astype(np.int64)
    w.has_loan = np.zeros(n, dtype=bool)
    w.banned = np.zeros(n, dtype=bool)
    w.gross_win = np.zeros((30, n))
    w.net_win = np.zeros((30, n))
    w.refund_win = np.zeros((30, n))
    w.net_ref = float(np.median(w.base_daily_gmv) * 30 * 0.7)


def _buyer_communities(w: World, r: np.random.Generator) -> None:
    """Shops of one category in random groups of ``cross_shop_community``; each group shares a
    pool of loyal accounts (its members' shared parts of their loyal pools), so a genuine buyer
    can repeat at several shops of the category, as a ring account does."""
    p, n = w.p, w.N
    order = np.lexsort((r.random(n), w.cat))  # by category, random within it
    cat_sorted = w.cat[order]
    within = np.arange(n) - np.searchsorted(cat_sorted, cat_sorted, side="left")
    comm = np.empty(n, dtype=np.int64)
    comm[order] = cat_sorted.astype(np.int64) * n + within // max(1, p.cross_shop_community)
    _, w.community = np.unique(comm, return_inverse=True)
    shared = np.maximum(1.0, np.round(w.pool * p.cross_shop_share))
    w.community_pool = np.bincount(w.community, weights=shared)[w.community].astype(np.int64)


def lifecycle(w: World, t: int) -> np.ndarray:
    """Maturity ramp on day ``t``: a new merchant starts at 15% of its demand and grows into it."""
    age = np.maximum(t - w.onboard, 0)
    return 0.15 + 0.85 * (1 - np.exp(-age / w.p.ramp_days))
