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


class Book:
    """Struct-of-arrays table with amortised growth; subclasses name their FIELDS."""

    FIELDS: dict[str, type] = {}

    def __init__(self) -> None:
        self.n = 0
        self.cap = 1024
        for k, typ in self.FIELDS.items():
            setattr(self, k, np.zeros(self.cap, dtype=typ))

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
        self.n += k
        return idx

    def view(self, f: str) -> np.ndarray:
        return getattr(self, f)[: self.n]


class LoanBook(Book):
    """The loan book: terms, hidden default draw, repayment state and the lender's cash flows."""

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
        "funding": np.float64,  # cost of funds accrued on the outstanding principal
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
        super().__init__()
        self.open_idx = np.zeros(0, dtype=np.int64)

    def add(self, **cols: np.ndarray) -> np.ndarray:
        idx = super().add(**cols)
        self.default_day[idx] = NEVER
        self.closed_day[idx] = NEVER
        self.open_idx = np.concatenate([self.open_idx, idx])
        return idx


# Decision reasons of the legacy rule; 0 is an approval.
REASONS = ("approved", "tenure_below_min", "gmv_below_floor", "refund_rate_high", "legacy_score")


class AppBook(Book):
    """Every application: the decision, and for refused ones the outcome they would have had."""

    FIELDS = {
        "merchant": np.int64,
        "day": np.int64,
        "sec": np.int64,  # seconds after midnight of the application day
        "requested": np.float64,
        "reason": np.int8,
        "loan": np.int64,  # -1 when refused
        "true_pd": np.float64,
        "pd_realised": np.float64,
        "default": bool,  # the realised 60+ dpd draw (for refused: would have defaulted)
        "legacy_score": np.float64,
        "gross30": np.float64,
        "net30": np.float64,
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _schedule(
    world: World, m: np.ndarray, t: int, mean: float, r: np.random.Generator
) -> np.ndarray:
    """Next application day; a brusher first spends brush_ramp_days inflating its GMV."""
    return t + r.geometric(1.0 / mean, size=m.size) + world.brushing[m] * world.p.brush_ramp_days


# ------------------------------------------------------------------ originations
def originate(world: World, t: int, active: np.ndarray) -> tuple[Arrays | None, Arrays | None]:
    """Today's applications: the legacy rule approves or refuses; approved ones are funded.

    Returns (loans, applications). Every applicant gets a default draw from the same model, so
    a refused applicant's would-be outcome exists (in the truth only)."""
    p = world.p
    cand = np.flatnonzero(
        active
        & (world.next_apply <= t)
        & ~world.has_loan
        & ~world.banned
        & (world.distress_day > t)
    )
    if cand.size == 0:
        return None, None
    rl = world.rng(4, t)
    gross30 = world.gross_win[:, cand].sum(0)
    net30 = world.net_win[:, cand].sum(0)
    terms = _price(p, gross30, rl)
    risk = _default_draws(world, t, cand, gross30, net30, rl)
    reason, score = _decide(world, t, cand, gross30, rl)
    cure = _cure_dpd(p, risk["default"], rl)
    sec = rl.integers(8 * 3600, 23 * 3600, size=cand.size)
    ok = reason == 0
    rej = cand[~ok]
    world.next_apply[rej] = _schedule(world, rej, t, p.reapply_mean_days, rl)
    loan = np.full(cand.size, -1, dtype=np.int64)
    loans = None
    if ok.any():
        m = cand[ok]
        world.distress_day[m] = np.minimum(world.distress_day[m], risk["tau"][ok])
        world.has_loan[m] = True
        loan[ok] = world.loans.add(
            merchant=m,
            orig=np.full(m.size, t),
            **{k: v[ok] for k, v in terms.items()},
            **{k: v[ok] for k, v in risk.items()},
            cure=cure[ok],
            gross30=gross30[ok],
            net30=net30[ok],
        )
        loans = {"loan": loan[ok], "merchant": m}
        loans.update({k: terms[k][ok] for k in ("principal", "fee", "w", "limit")})
        loans["term"] = terms["term"][ok].astype(np.int64)
    app = world.apps.add(
        merchant=cand,
        day=np.full(cand.size, t),
        sec=sec,
        requested=terms["principal"],
        reason=reason,
        loan=loan,
        true_pd=risk["true_pd"],
        pd_realised=risk["pd_realised"],
        default=risk["default"],
        legacy_score=score,
        gross30=gross30,
        net30=net30,
    )
    apps = {"app": app, "merchant": cand, "sec": sec, "requested": terms["principal"]}
    apps.update({"reason": reason.astype(np.int64), "loan": loan})
    return loans, apps


def _decide(
    world: World, t: int, cand: np.ndarray, gross30: np.ndarray, rl: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The legacy rule: tenure, a gross-GMV floor, the refund share and the swing of daily
    sales it sees, plus noisy judgement; informative (it sees refunds) but blind to brushing."""
    p = world.p
    refund_share = world.refund_win[:, cand].sum(0) / np.maximum(gross30, 1.0)
    g = world.gross_win[:, cand]
    cv = g.std(0) / np.maximum(g.mean(0), 1e-9)
    new = (t - world.onboard[cand]) < 365
    a, b, c = p.legacy_score
    score = a * refund_share + b * cv + c * new + rl.normal(0.0, p.legacy_noise, cand.size)
    reason = np.select(
        [
            t - world.onboard[cand] < p.min_tenure_days,
            gross30 < p.gmv_floor,
            refund_share > p.legacy_refund_max,
            score > p.legacy_cutoff,
        ],
        [1, 2, 3, 4],
        0,
    )
    return reason.astype(np.int8), np.round(score, 4)


def _cure_dpd(p: WorldParams, default: np.ndarray, rl: np.random.Generator) -> np.ndarray:
    """The dpd at which a borrower catches up: a non-defaulter at one of ``cure_dpd``; a
    defaulter only if it is a late curer (``late_cure_share``), after 60 dpd; else never."""
    k = default.size
    good = rl.choice(np.array(p.cure_dpd), size=k)
    late = rl.random(k) < p.late_cure_share
    lo, hi = p.late_cure_dpd
    bad = np.where(late, rl.integers(lo, hi + 1, size=k), NEVER)
    return np.where(default, bad, good).astype(np.int64)


def _price(p: WorldParams, gross30: np.ndarray, rl: np.random.Generator) -> Arrays:
    """Limit, drawn principal, the shortest term whose withholding fits, fee and withhold rate."""
    k = gross30.size
    limit = np.round(p.limit_multiple * gross30, -2)
    principal = np.maximum(100.0, np.round(limit * rl.uniform(*p.take_share, size=k), -2))
    terms = np.array(p.terms)
    due_all = principal[:, None] * (1 + p.fee_rate_30d * terms[None, :] / 30)
    w_all = due_all / (terms[None, :] * np.maximum(gross30, 1.0)[:, None] / 30)
    feasible = w_all <= p.max_withhold
    ti = np.where(feasible.any(1), np.argmax(feasible, 1), len(terms) - 1)
    ti = np.minimum(ti + (rl.random(k) < p.longer_term_share), len(terms) - 1)
    term = terms[ti]
    fee = np.round(principal * p.fee_rate_30d * term / 30, 2)
    due = principal + fee
    w = np.round(np.minimum(due / (term * np.maximum(gross30, 1.0) / 30), p.max_withhold), 4)
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
        + np.log(p.pd_odds_mult)
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
    # The lender funds the outstanding principal at its cost of funds.
    b.funding[li] += b.principal[li] * (due - b.repaid[li]) / due * p.cost_of_funds / 365
    defaulter = b.default[li]
    # A borrower in distress still pays a little (partial payments), not the instalments.
    rate = np.where(defaulter & (t >= b.tau[li]), p.distress_pay, 1.0) * b.w[li]
    amt = np.where(age > 0, rate * net[m], 0.0)
    amt = np.minimum(amt, due - b.repaid[li])
    repaid = b.repaid[li] + amt
    # A defaulter gets into trouble before it has repaid half (so it really defaults).
    trig = defaulter & (t < b.tau[li]) & (repaid >= 0.5 * due)
    if trig.any():
        b.tau[li[trig]] = t + 1
        world.distress_day[m[trig]] = np.minimum(world.distress_day[m[trig]], t + 1)
    n_inst = b.term[li] // 30
    dpd = _dpd(b, li, t, repaid, due)
    # At its cure dpd a borrower tops up to the amounts due: non-defaulters early (some only
    # after 30 dpd), late-curing defaulters after 60 dpd, when their distress ends.
    cure = dpd >= np.maximum(b.cure[li], 1)
    owed_now = due * np.minimum(n_inst, age // 30) / n_inst
    top = np.where(cure, np.maximum(owed_now - repaid, 0.0), 0.0)
    settled = cure & defaulter
    if settled.any():
        b.default[li[settled]] = False
        b.cure[li[settled]] = 1
        world.distress_day[m[settled]] = NEVER
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


def empty_applications() -> Arrays:
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    return {"app": zi, "merchant": zi, "sec": zi, "requested": z, "reason": zi, "loan": zi}
