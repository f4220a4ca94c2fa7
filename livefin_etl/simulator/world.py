"""The simulated world: per-merchant state stepped one business day at a time.

One :class:`World` holds per-merchant state (a few arrays of length N) and is
stepped one business day at a time, so memory does not grow with the number of
days. Each day draws from its own generators, seeded from (seed, stream, day):
the output for a day never depends on how the work is chunked.

Day indices ``t`` are relative to the start date; negative days are burn-in
(simulated, never written) so that the lender has a 30-day history on day 0.

The steps live by concern: :mod:`.merchants` (initial draws), :mod:`.seasons`
(demand calendar), :mod:`.orders` (sessions and orders), :mod:`.fulfilment`
(logistics events) and :mod:`.lender` (loans and repayments).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from .constants import DAY, NEVER, U64
from .fulfilment import park_events, pop_events
from .lender import (
    AppBook,
    LoanBook,
    empty_applications,
    empty_loans,
    empty_repayments,
    originate,
    repay,
)
from .lifecycle import TIMELINE, park_versions, pop_versions, timeline
from .merchants import init_merchants, lifecycle
from .orders import draw_orders
from .params import WorldParams
from .seasons import season_table

__all__ = ["DAY", "NEVER", "U64", "DayTables", "LoanBook", "World", "season_table"]


@dataclass
class DayTables:
    """Everything a written day needs, as numpy arrays (strings are built by the writer)."""

    t: int
    merchants: np.ndarray  # merchant indices onboarded (first day: the back-book)
    orders: dict[str, np.ndarray]  # today's orders with their true timeline (never written)
    versions: dict[str, np.ndarray]  # the orders export: new orders, then changes of older ones
    sessions: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    loans: dict[str, np.ndarray]
    repayments: dict[str, np.ndarray]
    applications: dict[str, np.ndarray]


class World:
    def __init__(
        self, p: WorldParams, seed: int, start: date, days: int, n: int, orders_per_day: float
    ) -> None:
        self.p = p
        self.seed = int(seed)
        self.start = start
        self.days = days
        self.N = n
        self.burn = p.burn_in_days
        self.season = season_table(p, start, -self.burn, days)
        self.loans = LoanBook()
        self.apps = AppBook()
        self.pending: dict[int, list[dict[str, np.ndarray]]] = {}
        self.pending_versions: dict[int, list[dict[str, np.ndarray]]] = {}
        init_merchants(self, orders_per_day)

    def rng(self, stream: int, t: int) -> np.random.Generator:
        """A generator for (stream, day); day keys are made non-negative by the burn-in offset."""
        seq = np.random.SeedSequence(self.seed, spawn_key=(stream, t + self.burn))
        return np.random.Generator(np.random.PCG64(seq))

    def step(self, t: int) -> DayTables | None:
        """Advance one day; return the day's tables (None during burn-in)."""
        p, n = self.p, self.N
        rd = self.rng(1, t)
        self._stars_leave(t)
        phi = p.ar_phi
        self.ar = phi * self.ar + self.volatility * np.sqrt(1 - phi * phi) * rd.standard_normal(n)
        active = (self.onboard <= t) & (t < self.churn_day)

        new_loans, apps = (None, None)
        if t >= max(0, p.lend_start_day):
            new_loans, apps = originate(self, t, active)

        orders, sessions = draw_orders(self, t, active, self._demand(t, active), rd)
        reps = self._book_sales(t, orders)
        if t < 0:
            return None
        sel, times = park_events(self, t, orders)
        events = pop_events(self, t)
        tl = timeline(self, t, orders, sel, times)
        versions = pop_versions(self, t, park_versions(self, t, orders, sessions, tl))
        orders.update({k: tl[k] for k in TIMELINE})
        mer = np.flatnonzero(self.onboard <= 0) if t == 0 else np.flatnonzero(self.onboard == t)
        return DayTables(
            t,
            mer,
            orders,
            versions,
            sessions,
            events,
            new_loans or empty_loans(),
            reps or empty_repayments(),
            apps or empty_applications(),
        )

    def _stars_leave(self, t: int) -> None:
        """Stars who leave today stop hosting; backups take over their share of sessions."""
        # A streamer who leaves stops hosting for every shop they sell for.
        gone = (self.streamer_exit[self.streamer_id] == t) & (self.weights > 0)
        leaving = gone.any(1)
        if leaving.any():
            self.weights[gone] = 0.0
            # a shop whose whole roster left keeps its first slot (a replacement host)
            self.weights[leaving & (self.weights.sum(1) == 0), 0] = 1.0
            self.weights[leaving] /= np.maximum(self.weights[leaving].sum(1, keepdims=True), 1e-12)

    def _book_sales(self, t: int, orders: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Gross and real net sales per merchant: repay loans from them, keep 30 days of each."""
        om, paid, refund, fake = (
            orders["merchant"],
            orders["paid"],
            orders["refund"],
            orders["fake"],
        )
        gross = np.bincount(om, weights=paid, minlength=self.N)
        real = ~fake
        net = np.bincount(om[real], weights=paid[real] - refund[real], minlength=self.N)
        refunds = np.bincount(om, weights=refund, minlength=self.N)
        reps = repay(self, t, net) if self.loans.open_idx.size else None
        slot = (t + self.burn) % 30
        self.gross_win[slot] = gross
        self.net_win[slot] = net
        self.refund_win[slot] = refunds  # what the lender sees refunded (fakes never are)
        return reps

    def _demand(self, t: int, active: np.ndarray) -> np.ndarray:
        p = self.p
        m = self.season[self.cat, t + self.burn] * lifecycle(self, t)
        m *= np.exp(self.trend * t / 365.0 + self.ar - 0.5 * self.volatility**2)
        m *= np.where(t >= self.exit_day, 1 - self.exit_drop, 1.0)
        # A shop that loses a shared streamer (not its own star) loses that streamer's share.
        lost = (self.streamer_exit[self.streamer_id] <= t) * self.weights0
        m *= np.where(self.dependent, 1.0, 1 - self.exit_drop * lost.sum(1))
        since = t - self.pen_day
        m *= np.where(
            since >= 0,
            1 - p.penalty_depth * np.exp(-np.maximum(since, 0) / p.penalty_recovery_days),
            1.0,
        )
        m *= np.where(t >= self.distress_day, p.distress_mult, 1.0)
        return m * active
