"""Scale presets and the parameters of the simulated world.

Every knob lives in :class:`WorldParams`; ``docs/simulator.md`` explains each
one. The full parameter set is written to ``_truth/params.json`` so a dataset can
always be traced back to the values that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

CATEGORIES = ("apparel", "food", "household", "beauty", "electronics")
CATEGORIES_ZH = ("服装", "食品", "家居", "美妆", "数码")
STATUSES = ("completed", "cancelled", "refunded", "partially_refunded")
STATUSES_ZH = ("已完成", "已取消", "已退款", "部分退款")
EVENT_TYPES = ("shipped", "delivered", "lost", "returned", "complaint")
SOURCES = (
    "merchants",
    "orders",
    "traffic",
    "fulfillment",
    "loans",
    "repayments",
    "applications",
)
# Bumped whenever the simulated world changes: keys the bench caches and is written to params.json.
SIM_VERSION = "sim-v5"  # v5: order values x1.2 (sizes), loyal buyers shared across shops; v4: channels, shared streamers, subtle brushing; v3: priced book, applications and refusals, delinquency paths, sizes

DEFAULT_START = date(2025, 1, 1)


@dataclass(frozen=True)
class ScalePreset:
    name: str
    merchants: int
    days: int
    orders_per_merchant_day: float  # mean real orders of a mature merchant on an ordinary day
    description: str = ""
    # Odds multiplier on every PD: 1 is the calibrated world; tiny runs a stressed book (3x the
    # odds) so 200 merchants still give the credit tests enough defaults.
    default_odds: float = 1.0
    # WorldParams the preset changes (tiny: smaller, faster loans, so 300 days give >= 250
    # matured loans); applied when generate() is called without params
    overrides: tuple[tuple[str, float | tuple[float, ...]], ...] = ()


SCALES: dict[str, ScalePreset] = {
    "tiny": ScalePreset(
        "tiny",
        200,
        300,
        2.2,
        "CI: seconds to generate, >= 250 closed loans",
        default_odds=3.0,
        overrides=(
            ("gmv_floor", 1500.0),
            ("limit_multiple", 0.4),
            ("apply_mean_days", 4.0),
            ("renew_mean_days", 3.0),
            ("legacy_cutoff", 3.5),
            # sim-v4's order values: tiny's brushing-score test floors were set on them, and the
            # x1.2 of sim-v5 (a size target of small) reshuffles tiny's few brusher loans
            ("aov", (329.0, 149.0, 229.0, 379.0, 999.0)),
        ),
    ),
    # `make demo`, `livefin demo` and the README: one year, fast
    "demo": ScalePreset("demo", 2_000, 365, 4.0, "demo: ~2.9 M orders, about a minute"),
    # credit validation (issue 16 item 8): the demo's world, only more merchants and days, so a
    # training run as of the last day has a 92-day out-of-time window (180-day horizon, 90-day
    # burn-in, train + valid >= 92 days) with >= 300 defaults: 12,000 merchants gave 285 in the
    # window (sim-v5, seed 42), 14,000 give 405 (truth; docs/credit_model.md)
    "small": ScalePreset(
        "small", 14_000, 500, 4.0, "credit validation: 92-day out-of-time window, >= 300 defaults"
    ),
    "large": ScalePreset("large", 100_000, 365, 4.0, "benchmark: >= 300k orders/day, streamed"),
}


@dataclass(frozen=True)
class WorldParams:
    # --- population
    history_years: float = 3.0  # back-book merchants onboarded up to this long before start
    new_merchant_share: float = 0.10  # share of merchants onboarding inside the window
    category_shares: tuple[float, ...] = (0.35, 0.20, 0.15, 0.18, 0.12)
    quality_beta: tuple[float, float] = (2.2, 2.2)  # latent quality q ~ Beta(a, b)
    burn_in_days: int = 35  # simulated but not written, so day 0 has a 30-day history

    # --- demand
    size_sigma: float = 0.9  # lognormal dispersion of merchant audience
    live_share: float = 0.55  # share of real orders placed inside live sessions (channels below)
    # average order value per category (sim-v5: x1.2, toward MYbank's 72k average balance, docs)
    aov: tuple[float, ...] = (395.0, 179.0, 275.0, 455.0, 1199.0)
    aov_sigma: float = 0.45  # within-merchant order value dispersion
    conversion: tuple[float, ...] = (0.020, 0.030, 0.025, 0.022, 0.010)  # orders/viewer at q=0.5
    conversion_q: float = 1.5  # d log(conversion) / dq
    # live sessions per day: from small to big merchants
    sessions_per_day: tuple[float, float] = (0.3, 1.6)
    ar_phi: float = 0.85  # daily persistence of merchant demand noise
    volatility: tuple[float, float] = (0.10, 0.45)  # stationary sd of log demand noise
    trend_mean: float = 0.25  # mean yearly log growth of a merchant (the platform grows)
    trend_sigma: float = 0.35  # sd of the yearly log growth rate
    ramp_days: float = 30.0  # new merchants ramp up with this time constant
    discount_share: float = 0.55  # share of real orders with a discount
    discount_max: float = 0.30

    # --- seasonality (multipliers on demand)
    weekly: tuple[float, ...] = (0.90, 0.92, 0.95, 0.98, 1.05, 1.13, 1.08)  # Mon..Sun
    peak_618: float = 1.8  # extra demand at the 618 peak (x(1+a))
    peak_1111: float = 3.0  # extra demand at the Double 11 peak
    peak_1212: float = 0.8
    peak_sigma_days: float = 3.5
    presale_1111: float = 0.35  # plateau from 20 Oct (Double 11 pre-sale)
    cny_dip: float = 0.55  # demand and logistics dip around Chinese New Year
    category_peak_scale: tuple[float, ...] = (1.2, 0.8, 1.0, 1.25, 1.0)

    # --- operations driven by quality q
    # refund rate per category, from q=1 to q=0 (apparel returns are extreme)
    refund_range: tuple[tuple[float, float], ...] = (
        (0.40, 0.80),  # apparel
        (0.04, 0.14),  # food
        (0.05, 0.16),  # household
        (0.15, 0.35),  # beauty
        (0.10, 0.28),  # electronics
    )
    partial_refund_share: float = 0.25
    cancel: tuple[float, float] = (0.01, 0.05)  # base + slope * (1 - q)
    ship_hours: tuple[float, float] = (10.0, 55.0)  # median hours to ship: base + slope*(1-q)^1.5
    lost: tuple[float, float] = (0.001, 0.03)  # base + slope * (1 - q)^2
    complaint: tuple[float, float] = (0.003, 0.06)  # base + slope * (1 - q)^2, x3 if shipped late
    repeat: tuple[float, float] = (0.05, 0.30)  # loyal-customer share: base + slope * q
    # Loyal buyers shop at several shops: this share of a shop's loyal orders comes from an
    # account pool shared by a community of cross_shop_community shops of its category (PwC 2012:
    # 20 % of online shoppers buy at more than five web-only stores; docs/simulator.md [R11]).
    cross_shop_share: float = 0.20
    cross_shop_community: int = 6
    parcel_grams: tuple[float, ...] = (450.0, 1200.0, 1500.0, 350.0, 900.0)

    # --- streamers
    streamer_dependent_share: float = 0.20
    star_share: float = 0.85  # share of sessions the hired star hosts
    exit_mean_days: float = 400.0  # exponential waiting time until the star leaves
    exit_drop: tuple[float, float] = (0.60, 0.80)  # demand lost when the star leaves
    # 达人 sell for many shops: every roster slot is drawn from a shared pool of
    # (slots / streamer_slots_mean) streamers with gamma(streamer_pop_shape) popularity.
    streamer_slots_mean: float = 3.0
    streamer_pop_shape: float = 0.8

    # --- channels (non-live orders: product card / shelf, short video, search)
    channel_shares: tuple[float, float, float] = (0.50, 0.30, 0.20)
    shelf_sigma: float = 0.6  # lognormal spread of a shop's shelf orders around the mean share

    # --- shocks
    penalty_rate: float = 1 / 1500  # platform penalty (traffic cut) hazard per day at q=0.5
    penalty_q: float = 3.0  # hazard x exp(penalty_q * (0.5 - q))
    penalty_depth: float = 0.6
    penalty_recovery_days: float = 90.0
    churn_rate: float = 1 / 2500  # merchant quits the platform, per day at q=0.5
    churn_q: float = 2.0
    distress_mult: float = 0.2  # demand left once a defaulting borrower is in distress

    # --- brushing
    brushing_share: float = 0.08
    fake_share: tuple[float, float] = (0.20, 0.60)  # fake orders per real order (baseline)
    ring_size: tuple[int, int] = (3, 8)  # buyer accounts a ring cycles per merchant-month
    ring_pool: tuple[int, int] = (20, 200)  # accounts in the ring's pool (shared across shops)
    ring_new_account_share: float = 0.3  # fake orders from a never-seen account
    odd_hour_share: tuple[float, float] = (0.0, 0.25)  # per ring: fakes in a 0-5 am burst
    fake_live_share: float = 0.5  # fakes placed in one of the shop's live sessions that day
    platform_buyers_per_merchant: int = 400  # one-off buyers come from a platform-wide pool
    ring_crude_share: float = 0.25  # crude rings: no tracking / empty parcels / fast shipping
    fake_no_track: float = 0.55  # crude ring: fake orders shipped without a tracking number
    fake_empty_parcel: float = 0.90  # crude ring: of tracked fake parcels, weight < 50 g
    brush_ramp_days: int = 21  # fake volume ramps up this long before a loan application
    brush_ramp_mult: float = 3.0

    # --- legacy lending (docs/simulator.md "Economics" and "Applications" cite the ranges)
    lend_start_day: int = 0
    min_tenure_days: int = 90
    gmv_floor: float = 4000.0  # last-30-day gross GMV needed for an offer, CNY
    limit_multiple: float = 0.8  # limit = multiple x last-30-day gross GMV (about a month's sales)
    take_share: tuple[float, float] = (0.5, 1.0)  # share of the limit requested and drawn
    fee_rate_30d: float = 0.02  # flat fee per 30 days of term (factor 1.02-1.08)
    max_withhold: float = 0.30
    terms: tuple[int, ...] = (30, 60, 90)  # the shortest term with withhold <= max ...
    longer_term_share: float = 0.15  # ... or, for this share of borrowers, the next longer one
    apply_mean_days: float = 12.0  # waiting time to the first application
    apply_mean_days_brushing: float = 8.0  # (plus brush_ramp_days)
    renew_mean_days: float = 5.0  # after a repaid loan
    reapply_mean_days: float = 45.0  # after a refused application
    cost_of_funds: float = 0.04  # the lender's yearly funding rate on outstanding principal
    # legacy refusal rule: refund share and the 30-day swing of gross sales it can see, plus a
    # noisy judgement (the imperfect part); refused above the cut-off
    legacy_refund_max: float = 0.65  # observed refunds / gross above this: refused outright
    legacy_score: tuple[float, float, float] = (3.0, 1.2, 0.5)  # refund share, daily cv, new
    legacy_noise: float = 0.8  # sd of the judgement noise in the legacy score
    legacy_cutoff: float = 3.2  # refuse when the legacy score is above this

    # --- default model (logit of P(60+ dpd within 180 days))
    pd_intercept: float = -4.2
    pd_odds_mult: float = 1.0  # stress: multiplies every PD's odds (the preset's default_odds too)
    pd_quality: float = 6.0  # x (0.5 - q)
    pd_brushing: float = 1.5
    pd_dependent: float = 0.4  # still depends on a star at origination
    pd_exit: float = 1.3  # the star leaves within shock_window_days (realised shock)
    pd_penalty: float = 1.3  # platform penalty within shock_window_days (realised shock)
    pd_leverage: float = 0.8  # x ln(gross / real net) over the last 30 days
    pd_volatility: float = 3.0  # x (volatility - 0.275)
    pd_trend: float = 1.0  # x (trend_mean - yearly growth)
    pd_new: float = 0.3  # tenure < 1 year
    pd_size: float = 0.1  # x (- ln(real net 30d / median))
    shock_window_days: int = 120
    # non-defaulters top up at this dpd: most early, some only after a 30+ episode (the cures)
    cure_dpd: tuple[int, ...] = (1, 1, 3, 7, 15, 20, 30, 35, 40, 45, 50, 55)
    distress_pay: float = 0.15  # share of the usual withholding a distressed borrower still pays
    late_cure_share: float = 0.25  # defaulters (60+) that settle their arrears before charge-off
    late_cure_dpd: tuple[int, int] = (62, 110)  # ... at a dpd drawn in this range
    default_dpd: int = 60
    default_horizon_days: int = 180
    chargeoff_dpd: int = 120
