"""The simulated world: merchants, their daily trading, fulfilment and the legacy lender.

One :class:`World` holds per-merchant state (a few arrays of length N) and is
stepped one business day at a time, so memory does not grow with the number of
days. Each day draws from its own generators, seeded from (seed, stream, day):
the output for a day never depends on how the work is chunked.

Day indices ``t`` are relative to the start date; negative days are burn-in
(simulated, never written) so that the lender has a 30-day history on day 0.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from . import names
from .params import CATEGORIES, WorldParams

NEVER = np.int64(1 << 40)  # "no such day" for event-day arrays
U64 = np.uint64
DAY = 86_400

# Chinese New Year (logistics shut down for about a week around it).
CNY = {
    2020: (1, 25),
    2021: (2, 12),
    2022: (2, 1),
    2023: (1, 22),
    2024: (2, 10),
    2025: (1, 29),
    2026: (2, 17),
    2027: (2, 6),
    2028: (1, 26),
    2029: (2, 13),
    2030: (2, 3),
    2031: (1, 23),
    2032: (2, 11),
    2033: (1, 31),
    2034: (2, 19),
    2035: (2, 8),
}

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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def season_table(p: WorldParams, start: dt.date, first: int, days: int) -> np.ndarray:
    """Demand multiplier per (category, day) for days first .. days-1 (weekly x peaks x CNY)."""
    out = np.empty((len(CATEGORIES), days - first))
    scale = np.array(p.category_peak_scale)
    for j, t in enumerate(range(first, days)):
        d = start + dt.timedelta(days=t)
        o = d.toordinal()
        peaks = 0.0
        cny = 1.0
        for y in (d.year - 1, d.year, d.year + 1):
            for (m, dd), amp in (
                ((6, 18), p.peak_618),
                ((11, 11), p.peak_1111),
                ((12, 12), p.peak_1212),
            ):
                x = (o - dt.date(y, m, dd).toordinal()) / p.peak_sigma_days
                if abs(x) < 6:
                    peaks += amp * np.exp(-0.5 * x * x)
            if y in CNY:
                x = (o - dt.date(y, *CNY[y]).toordinal()) / 5.0
                if abs(x) < 6:
                    cny -= p.cny_dip * np.exp(-0.5 * x * x)
        if dt.date(d.year, 10, 20) <= d <= dt.date(d.year, 11, 11):
            peaks += p.presale_1111
        out[:, j] = p.weekly[d.weekday()] * (1.0 + scale * peaks) * cny
    return out


@dataclass
class DayTables:
    """Everything a written day needs, as numpy arrays (strings are built by the writer)."""

    t: int
    merchants: np.ndarray  # merchant indices onboarded (first day: the back-book)
    orders: dict[str, np.ndarray]
    sessions: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    loans: dict[str, np.ndarray]
    repayments: dict[str, np.ndarray]


class LoanBook:
    """Struct-of-arrays loan book with amortised growth."""

    FIELDS = {
        "merchant": np.int64,
        "orig": np.int64,
        "principal": np.float64,
        "fee": np.float64,
        "due": np.float64,
        "w": np.float64,
        "term": np.int64,
        "limit": np.float64,
        "true_pd": np.float64,
        "pd_realised": np.float64,
        "default": bool,
        "tau": np.int64,
        "cure": np.int64,
        "repaid": np.float64,
        "status": np.int8,
        "default_day": np.int64,
        "closed_day": np.int64,
        "s1": bool,
        "s2": bool,
        "max_dpd": np.int64,
        "gross30": np.float64,
        "net30": np.float64,
    }

    def __init__(self) -> None:
        self.n = 0
        self.cap = 1024
        for k, typ in self.FIELDS.items():
            setattr(self, k, np.zeros(self.cap, dtype=typ))
        self.open_idx = np.zeros(0, dtype=np.int64)

    def add(self, **cols: np.ndarray) -> np.ndarray:
        k = len(next(iter(cols.values())))
        while self.n + k > self.cap:
            self.cap *= 2
            for f in self.FIELDS:
                old = getattr(self, f)
                new = np.zeros(self.cap, dtype=old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, f, new)
        idx = np.arange(self.n, self.n + k)
        for f, v in cols.items():
            getattr(self, f)[idx] = v
        self.status[idx] = 0
        self.repaid[idx] = 0.0
        self.default_day[idx] = NEVER
        self.closed_day[idx] = NEVER
        self.max_dpd[idx] = 0
        self.n += k
        self.open_idx = np.concatenate([self.open_idx, idx])
        return idx

    def view(self, f: str) -> np.ndarray:
        return getattr(self, f)[: self.n]


class World:
    def __init__(
        self, p: WorldParams, seed: int, start: dt.date, days: int, n: int, orders_per_day: float
    ) -> None:
        self.p = p
        self.seed = int(seed)
        self.start = start
        self.days = days
        self.N = n
        self.burn = p.burn_in_days
        self.season = season_table(p, start, -self.burn, days)
        self.loans = LoanBook()
        self.pending: dict[int, list[dict[str, np.ndarray]]] = {}
        self._init_merchants(orders_per_day)

    # ------------------------------------------------------------------ rngs
    def rng(self, stream: int, t: int) -> np.random.Generator:
        """A generator for (stream, day); day keys are made non-negative by the burn-in offset."""
        seq = np.random.SeedSequence(self.seed, spawn_key=(stream, t + self.burn))
        return np.random.Generator(np.random.PCG64(seq))

    # ------------------------------------------------------------- merchants
    def _init_merchants(self, mu: float) -> None:
        p, n = self.p, self.N
        r = self.rng(0, -self.burn)
        self.cat = r.choice(
            len(CATEGORIES), size=n, p=np.array(p.category_shares) / sum(p.category_shares)
        )
        h = names.mix64(np.arange(n, dtype=U64) + U64(self.seed) * U64(0x100000001))
        self.prov = names.province_of(h)
        self.name_hash = h
        q = r.beta(*p.quality_beta, size=n)
        self.q = q
        is_new = r.random(n) < p.new_merchant_share
        hist = int(p.history_years * 365)
        back = -r.integers(0, hist + 1, size=n)
        fresh = r.integers(1, max(self.days, 2), size=n)
        self.onboard = np.where(is_new & (self.days > 1), fresh, back).astype(np.int64)
        self.onboard[0] = min(self.onboard[0], 0)  # day 0 always has a merchant
        first_seen = np.maximum(self.onboard, -self.burn)

        # Brushing is commoner among weak merchants: p = 2 * share * (1 - q), mean = share.
        self.brushing = r.random(n) < np.clip(2 * p.brushing_share * (1 - q), 0, 1)
        self.fake_share = r.uniform(*p.fake_share, size=n)
        self.ring_size = r.integers(p.ring_size[0], p.ring_size[1] + 1, size=n)

        # Streamer roster: 1-5 streamers; a dependent merchant has a hired star plus backups.
        self.dependent = r.random(n) < p.streamer_dependent_share
        roster = np.where(
            self.dependent,
            r.integers(2, 6, size=n),
            r.choice([1, 2, 3, 4, 5], size=n, p=[0.15, 0.3, 0.25, 0.2, 0.1]),
        )
        self.roster = roster
        w = r.gamma(2.0, size=(n, 5))
        w[np.arange(5)[None, :] >= roster[:, None]] = 0.0
        w /= w.sum(1, keepdims=True)
        dep = self.dependent
        backups = w[dep, 1:] / np.maximum(w[dep, 1:].sum(1, keepdims=True), 1e-12)
        w[dep, 0] = p.star_share
        w[dep, 1:] = backups * (1 - p.star_share)
        self.weights = w
        self.exit_day = np.where(
            dep,
            np.maximum(self.onboard, 0)
            + np.floor(r.exponential(p.exit_mean_days, size=n)).astype(np.int64),
            NEVER,
        )
        self.exit_drop = r.uniform(*p.exit_drop, size=n)

        # Pre-drawn shock dates; the hazards are memoryless, so P(shock in the next W days | none
        # yet) is known at any origination date: that is what true_pd integrates over.
        self.pen_hazard = p.penalty_rate * np.exp(p.penalty_q * (0.5 - q))
        self.pen_day = first_seen + np.floor(r.exponential(1.0 / self.pen_hazard)).astype(np.int64)
        churn_h = p.churn_rate * np.exp(p.churn_q * (0.5 - q))
        self.churn_day = first_seen + np.floor(r.exponential(1.0 / churn_h)).astype(np.int64)
        self.distress_day = np.full(n, NEVER, dtype=np.int64)

        # Demand: audience x conversion; conversion rises with quality.
        conv_cat = np.array(p.conversion)[self.cat]
        self.conv = conv_cat * np.exp(p.conversion_q * (q - 0.5)) * r.lognormal(0, 0.2, size=n)
        size = r.lognormal(-0.5 * p.size_sigma**2, p.size_sigma, size=n)
        # audience such that a mature average merchant has `mu` real orders on an ordinary day
        self.audience = mu * p.live_share * size / conv_cat
        self.mu = self.audience * self.conv / p.live_share  # expected real orders / ordinary day
        lo, hi = p.sessions_per_day
        self.sess_rate = np.clip(lo + 0.35 * np.log1p(self.mu), lo, hi)
        self.aov = np.array(p.aov)[self.cat] * r.lognormal(-0.06, 0.35, size=n)
        self.base_daily_gmv = self.mu * self.aov
        self.volatility = r.uniform(*p.volatility, size=n)
        self.ar = r.standard_normal(n) * self.volatility
        self.trend = r.normal(p.trend_mean, p.trend_sigma, size=n)

        # Operations, all driven by quality.
        rr = np.array(p.refund_range)
        bad = np.clip((1 - q) + r.normal(0, 0.08, size=n), 0, 1)
        self.refund = rr[self.cat, 0] + (rr[self.cat, 1] - rr[self.cat, 0]) * bad
        self.cancel = p.cancel[0] + p.cancel[1] * (1 - q)
        self.ship_hours = p.ship_hours[0] + p.ship_hours[1] * (1 - q) ** 1.5
        self.lost = p.lost[0] + p.lost[1] * (1 - q) ** 2
        self.complaint = p.complaint[0] + p.complaint[1] * (1 - q) ** 2
        self.repeat = p.repeat[0] + p.repeat[1] * q
        self.pool = np.maximum(20, (60 * self.mu)).astype(np.int64)
        self.carrier = r.choice(len(names.CARRIERS), size=n, p=names.CARRIER_WEIGHTS)
        self.watch = (0.6 + 3.0 * q) * r.lognormal(0, 0.2, size=n)
        self.follow = 0.002 + 0.01 * q

        # Legacy lender state.
        mean_apply = np.where(self.brushing, p.apply_mean_days_brushing, p.apply_mean_days)
        self.next_apply = (
            np.maximum(p.lend_start_day, self.onboard + p.min_tenure_days)
            + r.geometric(1.0 / mean_apply, size=n)
            + self.brushing * p.brush_ramp_days
        ).astype(np.int64)
        self.has_loan = np.zeros(n, dtype=bool)
        self.banned = np.zeros(n, dtype=bool)
        self.gross_win = np.zeros((30, n))
        self.net_win = np.zeros((30, n))
        self.net_ref = float(np.median(self.base_daily_gmv) * 30 * 0.7)

    # ------------------------------------------------------------------ day
    def step(self, t: int) -> DayTables | None:
        """Advance one day; return the day's tables (None during burn-in)."""
        p, n = self.p, self.N
        rd = self.rng(1, t)

        # Stars who leave today stop hosting; backups take over their share of sessions.
        leaving = self.exit_day == t
        if leaving.any():
            self.weights[leaving, 0] = 0.0
            self.weights[leaving] /= np.maximum(self.weights[leaving].sum(1, keepdims=True), 1e-12)
        phi = p.ar_phi
        self.ar = phi * self.ar + self.volatility * np.sqrt(1 - phi * phi) * rd.standard_normal(n)
        active = (self.onboard <= t) & (t < self.churn_day)

        new_loans = self._originate(t, active) if t >= max(0, p.lend_start_day) else None

        mult = self._demand(t, active)
        orders, sessions = self._orders(t, active, mult, rd)
        om, paid, refund, fake = (
            orders["merchant"],
            orders["paid"],
            orders["refund"],
            orders["fake"],
        )
        gross = np.bincount(om, weights=paid, minlength=n)
        real = ~fake
        net = np.bincount(om[real], weights=paid[real] - refund[real], minlength=n)
        reps = self._repay(t, net) if self.loans.open_idx.size else None
        slot = (t + self.burn) % 30
        self.gross_win[slot] = gross
        self.net_win[slot] = net

        if t < 0:
            return None
        self._events(t, orders)
        events = self._pop_events(t)
        mer = np.flatnonzero(self.onboard <= 0) if t == 0 else np.flatnonzero(self.onboard == t)
        return DayTables(
            t, mer, orders, sessions, events, new_loans or _empty_loans(), reps or _empty_reps()
        )

    def _demand(self, t: int, active: np.ndarray) -> np.ndarray:
        p = self.p
        age = np.maximum(t - self.onboard, 0)
        life = 0.15 + 0.85 * (1 - np.exp(-age / p.ramp_days))
        m = self.season[self.cat, t + self.burn] * life
        m *= np.exp(self.trend * t / 365.0 + self.ar - 0.5 * self.volatility**2)
        m *= np.where(t >= self.exit_day, 1 - self.exit_drop, 1.0)
        since = t - self.pen_day
        m *= np.where(
            since >= 0,
            1 - p.penalty_depth * np.exp(-np.maximum(since, 0) / p.penalty_recovery_days),
            1.0,
        )
        m *= np.where(t >= self.distress_day, p.distress_mult, 1.0)
        return m * active

    # ---------------------------------------------------------------- orders
    def _orders(self, t: int, active: np.ndarray, mult: np.ndarray, rd: np.random.Generator):
        p, n = self.p, self.N
        ro = self.rng(2, t)

        # Live sessions: count, host, audience, orders.
        n_sess = rd.poisson(self.sess_rate * active)
        if n_sess.sum() == 0:  # traffic must never be empty for a day
            n_sess[np.argmax(self.sess_rate * (self.onboard <= t) * (1 + active))] = 1
        sm = np.repeat(np.arange(n), n_sess)
        ns = sm.size
        cw = np.cumsum(self.weights[sm], axis=1)
        slot = np.minimum((rd.random(ns)[:, None] > cw).sum(1), self.roster[sm] - 1)
        start = rd.choice(24, size=ns, p=SESSION_HOURS / SESSION_HOURS.sum()) * 3600 + rd.integers(
            0, 3600, size=ns
        )
        dur = rd.integers(3600, 5 * 3600, size=ns)
        viewers = np.maximum(
            1,
            np.rint(
                self.audience[sm]
                * mult[sm]
                / self.sess_rate[sm]
                * rd.lognormal(-0.08, 0.4, size=ns)
            ),
        ).astype(np.int64)
        so = rd.poisson(viewers * self.conv[sm])
        # Sessions are numbered in start order.
        order_s = np.lexsort((np.arange(ns), start))
        sm, slot, start, dur, viewers, so = (
            a[order_s] for a in (sm, slot, start, dur, viewers, so)
        )
        sessions = {
            "merchant": sm,
            "slot": slot,
            "start": start,
            "end": start + dur,
            "viewers": viewers,
            "peak": np.maximum(1, np.rint(viewers * rd.uniform(0.05, 0.25, size=ns))).astype(
                np.int64
            ),
            "watch": np.round(viewers * self.watch[sm] * rd.lognormal(0, 0.2, size=ns), 1),
            "followers": rd.binomial(viewers, self.follow[sm]),
        }
        sessions["peak"] = np.minimum(sessions["peak"], viewers)

        # Orders: in sessions, on the shelf (no session), and fake (brushing).
        sess_idx = np.repeat(np.arange(ns), so)
        ts_live = start[sess_idx] + np.floor(
            ro.random(sess_idx.size) * np.minimum(dur[sess_idx], DAY - 1 - start[sess_idx])
        ).astype(np.int64)
        shelf_n = ro.poisson(self.audience * self.conv * mult * (1 - p.live_share) / p.live_share)
        shelf_m = np.repeat(np.arange(n), shelf_n)
        hrs = ro.choice(24, size=shelf_m.size, p=SHELF_HOURS / SHELF_HOURS.sum())
        ts_shelf = hrs * 3600 + ro.integers(0, 3600, size=shelf_m.size)

        age = np.maximum(t - self.onboard, 0)
        life = 0.15 + 0.85 * (1 - np.exp(-age / p.ramp_days))
        ramp = np.where(
            (self.next_apply >= t) & (self.next_apply - t <= p.brush_ramp_days) & ~self.has_loan,
            p.brush_ramp_mult,
            1.0,
        )
        fake_rate = (
            self.brushing
            * active
            * (t < self.distress_day)
            * self.fake_share
            * self.mu
            * life
            * ramp
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

        om = np.concatenate([sm[sess_idx], shelf_m, fake_m]).astype(np.int64)
        osess = np.concatenate([sess_idx, np.full(shelf_m.size + nf, -1)]).astype(np.int64)
        fake = np.concatenate(
            [np.zeros(sess_idx.size + shelf_m.size, dtype=bool), np.ones(nf, dtype=bool)]
        )
        ots = np.concatenate([ts_live, ts_shelf, ts_fake]).astype(np.int64)
        no = om.size

        # Amounts: paid <= item after rounding because rounding is monotone.
        aov = self.aov[om]
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
        paid = np.round(item * (1 - disc), 2)

        # Status, decided at creation (the export carries the final status).
        season = self.season[self.cat[om], t + self.burn]
        refund_p = np.clip(self.refund[om] * (1 + 0.08 * np.log(np.maximum(season, 0.2))), 0, 0.95)
        u = ro.random(no)
        cancel = u < self.cancel[om]
        lost = ~cancel & (ro.random(no) < self.lost[om])
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

        # Buyers: loyal pool (repeat customers), new buyers, or the brushing ring.
        loyal = ro.random(no) < self.repeat[om]
        k_pool = np.floor(ro.random(no) * np.where(fake, self.ring_size[om], self.pool[om])).astype(
            np.int64
        )
        keyed = (
            (np.where(fake, 2, 1).astype(U64) << U64(60))
            | (om.astype(U64) << U64(30))
            | k_pool.astype(U64)
        )
        keyed = keyed ^ (U64(self.seed) << U64(20))
        random_id = ro.integers(0, 1 << 62, size=no, dtype=np.int64).astype(U64)
        buyer = names.mix64(np.where(fake | loyal, keyed, random_id))

        perm = np.lexsort((np.arange(no), ots))
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
            minlength=ns,
        )
        sessions["gmv"] = np.round(gmv_sess, 2)
        return orders, sessions

    # ----------------------------------------------------------- fulfilment
    def _events(self, t: int, o: dict[str, np.ndarray]) -> None:
        """Draw every future logistics event of today's orders and park them by event day."""
        p = self.p
        rf = self.rng(3, t)
        sel = np.flatnonzero(o["status"] != 1)  # cancelled orders never ship
        k = sel.size
        if k == 0:
            return
        m = o["merchant"][sel]
        fake = o["fake"][sel]
        base = t * DAY + o["ts"][sel]
        delay_h = np.where(
            fake, rf.uniform(0.5, 6, k), rf.lognormal(np.log(self.ship_hours[m]), 0.6, k)
        )
        ship = base + (delay_h * 3600).astype(np.int64)
        late = delay_h > 48
        # Logistics dip around CNY: deliveries take longer.
        cny_slow = 1.0 / np.maximum(
            self.season[self.cat[m], t + self.burn]
            / np.array(p.weekly)[(self.start + dt.timedelta(days=t)).weekday()],
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
        ret_ts = deliver + (rf.uniform(1, 10, k) * DAY).astype(np.int64)
        comp_p = self.complaint[m] * np.where(late, 3.0, 1.0) + np.where(lost, 0.3, 0.0)
        comp = ~fake & (rf.random(k) < comp_p)
        comp_ts = np.where(lost, lost_ts, deliver) + (rf.uniform(0, 4, k) * DAY).astype(np.int64)

        # Real parcels: a carrier, a tracking number and a real weight. Fake ones: mostly none.
        carrier = np.where(
            rf.random(k) < 0.8,
            self.carrier[m],
            rf.choice(len(names.CARRIERS), size=k, p=names.CARRIER_WEIGHTS),
        )
        tracked = np.where(fake, rf.random(k) >= p.fake_no_track, rf.random(k) < 0.997)
        carrier = np.where(tracked, carrier, -1)
        grams = np.array(p.parcel_grams)[self.cat[m]]
        weight = np.maximum(80.0, rf.lognormal(np.log(grams), 0.5, k))
        empty = fake & (rf.random(k) < p.fake_empty_parcel)
        weight = np.where(empty, rf.uniform(5, 45, k), weight)
        weight = np.where(tracked, np.round(weight, 1), np.nan)

        seq = sel.astype(np.int32)
        m = m.astype(np.int32)
        carrier = carrier.astype(np.int8)
        weight = weight.astype(np.float32)
        parts = [
            (np.ones(k, dtype=bool), 0, ship),
            (~lost, 1, deliver),
            (lost, 2, lost_ts),
            (ret, 3, ret_ts),
            (comp, 4, comp_ts),
        ]
        cols = {"seq": [], "merchant": [], "type": [], "ts": [], "carrier": [], "weight": []}
        for mask, typ, ts in parts:
            cols["seq"].append(seq[mask])
            cols["merchant"].append(m[mask])
            cols["type"].append(np.full(mask.sum(), typ, dtype=np.int8))
            cols["ts"].append(ts[mask])
            cols["carrier"].append(carrier[mask])
            cols["weight"].append(
                weight[mask] if typ == 0 else np.full(mask.sum(), np.nan, np.float32)
            )
        ev = {c: np.concatenate(v) for c, v in cols.items()}
        day = ev["ts"] // DAY
        keep = day < self.days
        ev = {c: v[keep] for c, v in ev.items()}
        day = day[keep]
        ev["order_day"] = np.full(day.size, t, dtype=np.int32)  # compact: events wait for days
        order = np.argsort(day, kind="stable")
        day = day[order]
        ev = {c: v[order] for c, v in ev.items()}
        cuts = np.flatnonzero(np.diff(day)) + 1
        for lo, hi in zip(
            np.concatenate([[0], cuts]), np.concatenate([cuts, [day.size]]), strict=True
        ):
            if hi > lo:
                self.pending.setdefault(int(day[lo]), []).append(
                    {c: v[lo:hi] for c, v in ev.items()}
                )

    def _pop_events(self, t: int) -> dict[str, np.ndarray]:
        chunks = self.pending.pop(t, [])
        if not chunks:
            return _empty_events()
        ev = {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}
        order = np.lexsort((ev["type"], ev["seq"], ev["order_day"], ev["ts"]))
        return {c: v[order] for c, v in ev.items()}

    # --------------------------------------------------------------- lending
    def _schedule(self, m: np.ndarray, t: int, mean: float, r: np.random.Generator) -> np.ndarray:
        """Next application day; a brusher first spends brush_ramp_days inflating its GMV."""
        return t + r.geometric(1.0 / mean, size=m.size) + self.brushing[m] * self.p.brush_ramp_days

    def _originate(self, t: int, active: np.ndarray) -> dict[str, np.ndarray] | None:
        """The legacy rule: tenure and last-30-day gross GMV; limit = multiple x gross GMV."""
        p = self.p
        cand = np.flatnonzero(
            active
            & (self.next_apply <= t)
            & ~self.has_loan
            & ~self.banned
            & (self.distress_day > t)
        )
        if cand.size == 0:
            return None
        rl = self.rng(4, t)
        gross30 = self.gross_win[:, cand].sum(0)
        net30 = self.net_win[:, cand].sum(0)
        ok = (t - self.onboard[cand] >= p.min_tenure_days) & (gross30 >= p.gmv_floor)
        rej = cand[~ok]
        self.next_apply[rej] = self._schedule(rej, t, p.reapply_mean_days, rl)
        m = cand[ok]
        k = m.size
        if k == 0:
            return None
        gross30, net30 = gross30[ok], net30[ok]
        limit = np.round(p.limit_multiple * gross30, -2)
        principal = np.maximum(100.0, np.round(limit * rl.uniform(*p.take_share, size=k), -2))
        terms = np.array(p.terms)
        due_all = principal[:, None] * (1 + p.fee_rate_30d * terms[None, :] / 30)
        w_all = due_all / (terms[None, :] * gross30[:, None] / 30)
        feasible = w_all <= p.max_withhold
        ti = np.where(feasible.any(1), np.argmax(feasible, 1), len(terms) - 1)
        ti = np.minimum(ti + (rl.random(k) < p.longer_term_share), len(terms) - 1)
        term = terms[ti]
        fee = np.round(principal * p.fee_rate_30d * term / 30, 2)
        due = principal + fee
        w = np.round(np.minimum(due / (term * gross30 / 30), p.max_withhold), 4)

        # Default model: expected hazard given what is known today; shocks integrated out.
        q = self.q[m]
        r_exp = np.clip(net30 / np.maximum(gross30, 1.0), 0.03, 1.0)
        dep_active = self.dependent[m] & (self.exit_day[m] > t)
        W = p.shock_window_days
        logit0 = (
            p.pd_intercept
            + p.pd_quality * (0.5 - q)
            + p.pd_brushing * self.brushing[m]
            + p.pd_dependent * dep_active
            + p.pd_leverage * np.log(1.0 / r_exp)
            + p.pd_volatility * (self.volatility[m] - 0.275)
            + p.pd_trend * (p.trend_mean - self.trend[m])
            + p.pd_new * (t - self.onboard[m] < 365)
            - p.pd_size * np.log(np.maximum(net30, 1.0) / self.net_ref)
        )
        p1 = dep_active * (1 - np.exp(-W / p.exit_mean_days))
        not_pen = self.pen_day[m] >= t
        p2 = not_pen * (1 - np.exp(-self.pen_hazard[m] * W))
        true_pd = (
            (1 - p1) * (1 - p2) * _sigmoid(logit0)
            + p1 * (1 - p2) * _sigmoid(logit0 + p.pd_exit)
            + (1 - p1) * p2 * _sigmoid(logit0 + p.pd_penalty)
            + p1 * p2 * _sigmoid(logit0 + p.pd_exit + p.pd_penalty)
        )
        s1 = dep_active & (self.exit_day[m] < t + W)
        s2 = not_pen & (self.pen_day[m] < t + W)
        pd_real = _sigmoid(logit0 + p.pd_exit * s1 + p.pd_penalty * s2)
        default = rl.random(k) < pd_real
        # A defaulter's distress follows its shock if one happens, else arrives at random.
        shock = np.minimum(
            np.where(s1, self.exit_day[m], NEVER), np.where(s2, self.pen_day[m], NEVER)
        )
        tau = np.where(
            shock < NEVER, shock + rl.integers(3, 22, size=k), t + rl.integers(10, 91, size=k)
        )
        tau = np.clip(tau, t + 1, t + 100)
        tau = np.where(default, tau, NEVER)
        self.distress_day[m] = np.minimum(self.distress_day[m], tau)
        self.has_loan[m] = True

        idx = self.loans.add(
            merchant=m,
            orig=np.full(k, t),
            principal=principal,
            fee=fee,
            due=due,
            w=w,
            term=term,
            limit=limit,
            true_pd=true_pd,
            pd_realised=pd_real,
            default=default,
            tau=tau,
            cure=rl.choice(np.array(p.cure_dpd), size=k),
            s1=s1,
            s2=s2,
            gross30=gross30,
            net30=net30,
        )
        return {
            "loan": idx,
            "merchant": m,
            "principal": principal,
            "fee": fee,
            "w": w,
            "term": term.astype(np.int64),
            "limit": limit,
        }

    def _repay(self, t: int, net: np.ndarray) -> dict[str, np.ndarray] | None:
        """Withhold a share of real net sales; track dpd against 30-day minimum instalments."""
        p, b = self.p, self.loans
        li = b.open_idx
        m = b.merchant[li]
        age = t - b.orig[li]
        due = b.due[li]
        defaulter = b.default[li]
        dist = defaulter & (t >= b.tau[li])
        amt = np.where((age > 0) & ~dist, b.w[li] * net[m], 0.0)
        amt = np.minimum(amt, due - b.repaid[li])
        repaid = b.repaid[li] + amt
        # A defaulter gets into trouble before it has repaid half (so it really defaults).
        trig = defaulter & (t < b.tau[li]) & (repaid >= 0.5 * due)
        if trig.any():
            b.tau[li[trig]] = t + 1
            self.distress_day[m[trig]] = np.minimum(self.distress_day[m[trig]], t + 1)
        n_inst = b.term[li] // 30
        covered = np.floor(repaid / due * n_inst + 1e-9).astype(np.int64)
        next_due = b.orig[li] + 30 * (covered + 1)
        dpd = np.where(covered >= n_inst, 0, np.maximum(0, t - next_due))
        # Non-defaulters stay current: they top up at their cure threshold, or pay off on exit.
        cure = ~defaulter & (dpd >= np.maximum(b.cure[li], 1))
        owed_now = due * np.minimum(n_inst, age // 30) / n_inst
        top = np.where(cure, np.maximum(owed_now - repaid, 0.0), 0.0)
        payoff = ~defaulter & (t >= self.churn_day[m])
        top = np.where(payoff, due - repaid, top)
        amt = amt + top
        repaid = repaid + top
        covered = np.floor(repaid / due * n_inst + 1e-9).astype(np.int64)
        next_due = b.orig[li] + 30 * (covered + 1)
        dpd = np.where(covered >= n_inst, 0, np.maximum(0, t - next_due))
        b.repaid[li] = repaid
        b.max_dpd[li] = np.maximum(b.max_dpd[li], dpd)
        newly = (dpd >= p.default_dpd) & (b.default_day[li] == NEVER)
        b.default_day[li[newly]] = t
        outstanding = np.maximum(due - repaid, 0.0)
        done = outstanding < 0.005
        charged = ~done & (dpd >= p.chargeoff_dpd)
        outstanding = np.where(done, 0.0, outstanding)
        closing = done | charged
        if closing.any():
            c = li[closing]
            b.status[c] = np.where(done[closing], 1, 2)
            b.closed_day[c] = t
            mc = m[closing]
            self.has_loan[mc] = False
            self.banned[m[charged]] = True
            rl = self.rng(5, t)
            md = m[done]
            self.next_apply[md] = self._schedule(md, t, p.renew_mean_days, rl)
            b.open_idx = li[~closing]
        return {
            "loan": li,
            "merchant": m,
            "amount": np.round(amt, 2),
            "outstanding": np.round(outstanding, 2),
            "dpd": dpd.astype(np.int64),
        }


def _empty_events() -> dict[str, np.ndarray]:
    return {
        "seq": np.zeros(0, np.int64),
        "merchant": np.zeros(0, np.int64),
        "type": np.zeros(0, np.int8),
        "ts": np.zeros(0, np.int64),
        "carrier": np.zeros(0, np.int64),
        "weight": np.zeros(0),
        "order_day": np.zeros(0, np.int64),
    }


def _empty_loans() -> dict[str, np.ndarray]:
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    return {"loan": zi, "merchant": zi, "principal": z, "fee": z, "w": z, "term": zi, "limit": z}


def _empty_reps() -> dict[str, np.ndarray]:
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    return {"loan": zi, "merchant": zi, "amount": z, "outstanding": z, "dpd": zi}
