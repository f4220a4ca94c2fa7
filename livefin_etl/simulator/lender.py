"""The legacy lender: a struct-of-arrays loan book, originations and daily repayments.

The legacy rule lends on tenure and last-30-day gross GMV (which brushing inflates); the
hidden default model behind it is what the credit model has to recover.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import NEVER, Arrays

if TYPE_CHECKING:
    from .params import WorldParams
    from .world import World


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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _schedule(
    world: World, m: np.ndarray, t: int, mean: float, r: np.random.Generator
) -> np.ndarray:
    """Next application day; a brusher first spends brush_ramp_days inflating its GMV."""
    return t + r.geometric(1.0 / mean, size=m.size) + world.brushing[m] * world.p.brush_ramp_days


# ------------------------------------------------------------------ originations
def originate(world: World, t: int, active: np.ndarray) -> Arrays | None:
    """The legacy rule: tenure and last-30-day gross GMV; limit = multiple x gross GMV."""
    p = world.p
    cand = np.flatnonzero(
        active
        & (world.next_apply <= t)
        & ~world.has_loan
        & ~world.banned
        & (world.distress_day > t)
    )
    if cand.size == 0:
        return None
    rl = world.rng(4, t)
    m, gross30, net30 = _screen(world, t, cand, rl)
    k = m.size
    if k == 0:
        return None
    terms = _price(p, gross30, rl)
    risk = _default_draws(world, t, m, gross30, net30, rl)
    world.distress_day[m] = np.minimum(world.distress_day[m], risk["tau"])
    world.has_loan[m] = True

    idx = world.loans.add(
        merchant=m,
        orig=np.full(k, t),
        **terms,
        **risk,
        cure=rl.choice(np.array(p.cure_dpd), size=k),
        gross30=gross30,
        net30=net30,
    )
    return {
        "loan": idx,
        "merchant": m,
        "principal": terms["principal"],
        "fee": terms["fee"],
        "w": terms["w"],
        "term": terms["term"].astype(np.int64),
        "limit": terms["limit"],
    }


def _screen(
    world: World, t: int, cand: np.ndarray, rl: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(approved merchants, their gross and net 30-day GMV); rejected ones reapply later."""
    p = world.p
    gross30 = world.gross_win[:, cand].sum(0)
    net30 = world.net_win[:, cand].sum(0)
    ok = (t - world.onboard[cand] >= p.min_tenure_days) & (gross30 >= p.gmv_floor)
    rej = cand[~ok]
    world.next_apply[rej] = _schedule(world, rej, t, p.reapply_mean_days, rl)
    return cand[ok], gross30[ok], net30[ok]


def _price(p: WorldParams, gross30: np.ndarray, rl: np.random.Generator) -> Arrays:
    """Limit, drawn principal, the shortest term whose withholding fits, fee and withhold rate."""
    k = gross30.size
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
    return {
        "principal": principal,
        "fee": fee,
        "due": due,
        "w": w,
        "term": term,
        "limit": limit,
    }


def _default_logit(
    world: World,
    t: int,
    m: np.ndarray,
    gross30: np.ndarray,
    net30: np.ndarray,
    dep_active: np.ndarray,
) -> np.ndarray:
    """Default logit without shocks: quality, brushing, dependence, leverage, size, age."""
    p = world.p
    q = world.q[m]
    r_exp = np.clip(net30 / np.maximum(gross30, 1.0), 0.03, 1.0)
    return (
        p.pd_intercept
        + p.pd_quality * (0.5 - q)
        + p.pd_brushing * world.brushing[m]
        + p.pd_dependent * dep_active
        + p.pd_leverage * np.log(1.0 / r_exp)
        + p.pd_volatility * (world.volatility[m] - 0.275)
        + p.pd_trend * (p.trend_mean - world.trend[m])
        + p.pd_new * (t - world.onboard[m] < 365)
        - p.pd_size * np.log(np.maximum(net30, 1.0) / world.net_ref)
    )


def _default_draws(
    world: World,
    t: int,
    m: np.ndarray,
    gross30: np.ndarray,
    net30: np.ndarray,
    rl: np.random.Generator,
) -> Arrays:
    """Default model: expected hazard given what is known today; shocks integrated out."""
    p = world.p
    k = m.size
    dep_active = world.dependent[m] & (world.exit_day[m] > t)
    W = p.shock_window_days
    logit0 = _default_logit(world, t, m, gross30, net30, dep_active)
    p1 = dep_active * (1 - np.exp(-W / p.exit_mean_days))
    not_pen = world.pen_day[m] >= t
    p2 = not_pen * (1 - np.exp(-world.pen_hazard[m] * W))
    true_pd = (
        (1 - p1) * (1 - p2) * _sigmoid(logit0)
        + p1 * (1 - p2) * _sigmoid(logit0 + p.pd_exit)
        + (1 - p1) * p2 * _sigmoid(logit0 + p.pd_penalty)
        + p1 * p2 * _sigmoid(logit0 + p.pd_exit + p.pd_penalty)
    )
    s1 = dep_active & (world.exit_day[m] < t + W)
    s2 = not_pen & (world.pen_day[m] < t + W)
    pd_real = _sigmoid(logit0 + p.pd_exit * s1 + p.pd_penalty * s2)
    default = rl.random(k) < pd_real
    # A defaulter's distress follows its shock if one happens, else arrives at random.
    shock = np.minimum(
        np.where(s1, world.exit_day[m], NEVER), np.where(s2, world.pen_day[m], NEVER)
    )
    tau = np.where(
        shock < NEVER, shock + rl.integers(3, 22, size=k), t + rl.integers(10, 91, size=k)
    )
    tau = np.clip(tau, t + 1, t + 100)
    tau = np.where(default, tau, NEVER)
    return {
        "true_pd": true_pd,
        "pd_realised": pd_real,
        "default": default,
        "tau": tau,
        "s1": s1,
        "s2": s2,
    }


# -------------------------------------------------------------------- repayments
def _dpd(b: LoanBook, li: np.ndarray, t: int, repaid: np.ndarray, due: np.ndarray) -> np.ndarray:
    """Days past due against 30-day minimum instalments (0 once everything is covered)."""
    n_inst = b.term[li] // 30
    covered = np.floor(repaid / due * n_inst + 1e-9).astype(np.int64)
    next_due = b.orig[li] + 30 * (covered + 1)
    return np.where(covered >= n_inst, 0, np.maximum(0, t - next_due))


def repay(world: World, t: int, net: np.ndarray) -> Arrays | None:
    """Withhold a share of real net sales; track dpd against 30-day minimum instalments."""
    p, b = world.p, world.loans
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
        world.distress_day[m[trig]] = np.minimum(world.distress_day[m[trig]], t + 1)
    n_inst = b.term[li] // 30
    dpd = _dpd(b, li, t, repaid, due)
    # Non-defaulters stay current: they top up at their cure threshold, or pay off on exit.
    cure = ~defaulter & (dpd >= np.maximum(b.cure[li], 1))
    owed_now = due * np.minimum(n_inst, age // 30) / n_inst
    top = np.where(cure, np.maximum(owed_now - repaid, 0.0), 0.0)
    payoff = ~defaulter & (t >= world.churn_day[m])
    top = np.where(payoff, due - repaid, top)
    amt = amt + top
    repaid = repaid + top
    dpd = _dpd(b, li, t, repaid, due)
    b.repaid[li] = repaid
    b.max_dpd[li] = np.maximum(b.max_dpd[li], dpd)
    newly = (dpd >= p.default_dpd) & (b.default_day[li] == NEVER)
    b.default_day[li[newly]] = t
    outstanding = np.maximum(due - repaid, 0.0)
    done = outstanding < 0.005
    charged = ~done & (dpd >= p.chargeoff_dpd)
    outstanding = np.where(done, 0.0, outstanding)
    if (done | charged).any():
        _close(world, t, m, done, charged)
    return {
        "loan": li,
        "merchant": m,
        "amount": np.round(amt, 2),
        "outstanding": np.round(outstanding, 2),
        "dpd": dpd.astype(np.int64),
    }


def _close(world: World, t: int, m: np.ndarray, done: np.ndarray, charged: np.ndarray) -> None:
    """Close repaid and charged-off loans: ban charged-off merchants, schedule renewals."""
    b = world.loans
    li = b.open_idx
    closing = done | charged
    c = li[closing]
    b.status[c] = np.where(done[closing], 1, 2)
    b.closed_day[c] = t
    world.has_loan[m[closing]] = False
    world.banned[m[charged]] = True
    rl = world.rng(5, t)
    md = m[done]
    world.next_apply[md] = _schedule(world, md, t, world.p.renew_mean_days, rl)
    b.open_idx = li[~closing]


def empty_loans() -> Arrays:
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    return {"loan": zi, "merchant": zi, "principal": z, "fee": z, "w": z, "term": zi, "limit": z}


def empty_repayments() -> Arrays:
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    return {"loan": zi, "merchant": zi, "amount": z, "outstanding": z, "dpd": zi}
