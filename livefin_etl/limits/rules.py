"""The pure limit rules: :func:`compute_limits` on a pandas frame of policy inputs.

No I/O and no dates, so property tests, ``build_limits`` and the stress test all run exactly
this code. Each step below is one paragraph of docs/policy.md ("The formula").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from livefin_etl.config import LivefinError
from livefin_etl.limits.guardrails import apply_guardrails
from livefin_etl.limits.policy import INPUT_COLUMNS, TIERS, validate_policy

# Guardrail flags, in the order their reason codes are reported.
GUARDRAIL_FLAGS = ("el", "category", "streamer")


class Tiering(NamedTuple):
    tier: np.ndarray
    cap: np.ndarray
    review_days: np.ndarray
    manual: np.ndarray
    new_merchant: np.ndarray
    volatile: np.ndarray
    streamer_dependent: np.ndarray


class Caps(NamedTuple):
    collateral: np.ndarray
    proposed: np.ndarray
    tier_cap: np.ndarray
    sales_cap: np.ndarray
    capped: np.ndarray
    outstanding: np.ndarray
    available: np.ndarray


class Offers(NamedTuple):
    final: np.ndarray
    scale: np.ndarray
    flags: dict[str, np.ndarray]
    info: dict[str, Any]
    active: np.ndarray
    below_min: np.ndarray  # below the minimum before guardrails, or dropped by them
    floor_min: float


def _col(df: pd.DataFrame, name: str, fill: float = np.nan) -> np.ndarray:
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=fill)


def _floor_to(x: np.ndarray, round_to: float) -> np.ndarray:
    return np.floor(x / round_to + 1e-9) * round_to


def _checked_inputs(inputs: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in INPUT_COLUMNS if c not in inputs.columns]
    if missing:
        raise LivefinError(f"limit inputs lack columns: {', '.join(missing)}")
    df = inputs.reset_index(drop=True)
    if df["merchant_id"].duplicated().any():
        dup = df.loc[df["merchant_id"].duplicated(), "merchant_id"].iloc[0]
        raise LivefinError(f"limit inputs have merchant {dup} more than once")
    return df


def _forecast_capacity(
    df: pd.DataFrame, policy: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """De-seasonalised daily net-GMV forecast (brushing-adjusted inputs), the repayment capacity
    over the term and the principal that capacity carries."""
    prod = policy["product"]
    t_eff = np.maximum(_col(df, "tenure_days", 0.0), 1.0)
    rr30 = _col(df, "gmv_net_adj_30d", 0.0) / np.minimum(30.0, t_eff)
    rr90 = _col(df, "gmv_net_adj_90d", 0.0) / np.minimum(90.0, t_eff)
    base = _col(df, "gmv_net_adj_365d", 0.0) / np.minimum(365.0, t_eff)
    trend = np.nan_to_num(_col(df, "seasonal_trend_ratio", 1.0), nan=1.0, posinf=1.0)
    rr30_ds = rr30 / np.maximum(1.0, trend)
    forecast = np.maximum(
        0.0, np.minimum.reduce([rr30_ds, rr90, base * policy["forecast"]["max_growth"]])
    )
    capacity = forecast * prod["term_days"] * prod["withhold_rate"]
    return forecast, capacity, capacity / (1.0 + prod["fee_rate"])


def _grade_terms(
    grade: pd.Series, scored: np.ndarray, grades_cfg: dict[str, Any]
) -> tuple[pd.Series, np.ndarray]:
    """Each merchant's base tier and risk multiplier from its model grade."""
    unknown = sorted({str(g) for g in grade[scored] if str(g) not in grades_cfg})
    if unknown:
        raise LivefinError(f"policy has no mapping for model grade(s): {', '.join(unknown)}")
    base_tier = grade.map({g: spec["tier"] for g, spec in grades_cfg.items()}).fillna("E")
    mult = grade.map({g: float(spec["risk_multiplier"]) for g, spec in grades_cfg.items()})
    return base_tier, pd.to_numeric(mult, errors="coerce").to_numpy(dtype=float, na_value=0.0)


def _assign_tiers(df: pd.DataFrame, base_tier: pd.Series, policy: dict[str, Any]) -> Tiering:
    """The grade's tier, one step down per tier flag, and that tier's cap and review terms."""
    flags_cfg, tiers_cfg = policy["tier_flags"], policy["tiers"]
    f_new = _col(df, "tenure_days", 0.0) < flags_cfg["new_merchant_days"]
    f_vol = _col(df, "gmv_cv_90d", 0.0) > flags_cfg["volatile_cv"]
    f_str = _col(df, "top_streamer_share_90d", 0.0) > flags_cfg["streamer_dependent_share"]
    base_idx = base_tier.map({t: i for i, t in enumerate(TIERS)})
    idx = base_idx.to_numpy(dtype=float, na_value=np.nan) + f_new + f_vol + f_str
    t_idx = np.minimum(idx, len(TIERS) - 1).astype(int)
    return Tiering(
        tier=np.array(TIERS, dtype=object)[t_idx],
        cap=np.array([float(tiers_cfg[t]["cap"]) for t in TIERS])[t_idx],
        review_days=np.array([int(tiers_cfg[t]["review_days"]) for t in TIERS])[t_idx],
        manual=np.array([bool(tiers_cfg[t]["manual_review"]) for t in TIERS])[t_idx],
        new_merchant=f_new,
        volatile=f_vol,
        streamer_dependent=f_str,
    )


def _apply_caps(
    df: pd.DataFrame,
    risk_principal: np.ndarray,
    tier_cap: np.ndarray,
    policy: dict[str, Any],
    forecast: np.ndarray,
) -> Caps:
    """Proposed limit (risk-weighted capacity + collateral), capped by tier and sales share,
    less the exposure already outstanding."""
    value = np.maximum(_col(df, "data_asset_value", 0.0), 0.0)
    # Churn rule: data collateral only secures a merchant that still sells. With no net sales
    # over the last 30 days the forecast is 0, so is the collateral: a churned merchant's
    # proposed limit is 0 and it is declined (BELOW_MIN_LIMIT), whatever its data was worth.
    selling = np.nan_to_num(forecast, nan=0.0) > 0
    collateral = np.where(selling, policy["collateral"]["advance_rate"] * value, 0.0)
    proposed = risk_principal + collateral
    sales_12m = np.fmin(_col(df, "gmv_net_365d", 0.0), _col(df, "gmv_net_adj_365d"))
    sales_cap = policy["sales_cap_share"] * np.maximum(np.nan_to_num(sales_12m), 0.0)
    capped = np.minimum(proposed, np.minimum(tier_cap, sales_cap))
    outstanding = np.maximum(_col(df, "outstanding_exposure", 0.0), 0.0)
    return Caps(
        collateral=collateral,
        proposed=proposed,
        tier_cap=tier_cap,
        sales_cap=sales_cap,
        capped=capped,
        outstanding=outstanding,
        available=np.maximum(0.0, capped - outstanding),
    )


def _hard_declines(
    df: pd.DataFrame, pd_: np.ndarray, scored: np.ndarray, dec: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Per rule of HARD_DECLINES, the merchants it declines."""
    quality = _col(df, "quality_q")
    failed_part = df["failed_partition"].fillna(False).astype(bool).to_numpy()
    return {
        "NO_SCORE": ~scored,
        "PD_ABOVE_CUTOFF": scored & (pd_ > dec["pd_cutoff"]),
        "DQ_CRITICAL": (np.nan_to_num(quality, nan=0.0) < dec["quality_floor"]) | failed_part,
        "BRUSHING_SUSPECTED": _col(df, "brushing_score", 0.0) > dec["brushing_max"],
        "TENURE_TOO_SHORT": _col(df, "tenure_days", 0.0) < dec["min_tenure_days"],
        "IN_DEFAULT": df["in_default"].fillna(False).astype(bool).to_numpy(),
    }


def _guarded_offers(
    df: pd.DataFrame,
    available: np.ndarray,
    hard_any: np.ndarray,
    pd_: np.ndarray,
    policy: dict[str, Any],
) -> Offers:
    """Guardrails, then round down and drop offers below the minimum; dropping rows changes the
    portfolio, so repeat until stable (amounts only ever shrink, so this terminates)."""
    n = len(df)
    round_to, lgd = float(policy["round_to"]), float(policy["lgd"])
    base_amount = np.where(hard_any, 0.0, available)
    # Smallest offer worth originating; also keeps a zero limit from ever being "approved".
    floor_min = max(float(policy["min_limit"]), round_to)
    active = ~hard_any & (_floor_to(base_amount, round_to) >= floor_min)
    below_min_pre = ~hard_any & ~active
    scale = np.ones(n)
    g_flags = {k: np.zeros(n, dtype=bool) for k in GUARDRAIL_FLAGS}
    category = df["category"].astype(object).to_numpy()
    streamer = df["top_streamer_id"].astype(object).to_numpy()
    pd_filled = np.nan_to_num(pd_, nan=1.0)
    final = np.zeros(n)
    info: dict[str, Any] = {}
    dropped = np.zeros(n, dtype=bool)
    for _ in range(20):
        amount = np.where(active, base_amount, 0.0)
        s, fl, info = apply_guardrails(
            amount, pd_filled, lgd, category, streamer, policy["guardrails"]
        )
        scale[active] = s[active]
        for k in g_flags:
            g_flags[k][active] = fl[k][active]
        final = np.where(active, _floor_to(amount * s, round_to), 0.0)
        newly = active & (final < floor_min)
        if not newly.any():
            break
        dropped |= newly
        active &= ~newly
    return Offers(
        final=np.where(active, final, 0.0),
        scale=scale,
        flags=g_flags,
        info=info,
        active=active,
        below_min=below_min_pre | dropped,
        floor_min=floor_min,
    )


def _decide(
    caps: Caps, offers: Offers, manual: np.ndarray, hard_any: np.ndarray, round_to: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decision, decline mask, review mask): decline beats review beats reduce beats approve."""
    rounded_proposed = _floor_to(caps.proposed, round_to)
    decline = hard_any | ~offers.active
    review = ~decline & manual
    lowered = (offers.final < rounded_proposed - 1e-6) | (offers.scale < 1 - 1e-9)
    reduce = ~decline & ~review & lowered
    decision = np.where(
        decline, "decline", np.where(review, "review", np.where(reduce, "reduce", "approve"))
    )
    return decision, decline, review


def _soft_reasons(
    caps: Caps, tiers: Tiering, offers: Offers, review: np.ndarray, hard_any: np.ndarray
) -> dict[str, np.ndarray]:
    """Per soft rule, the merchants whose limit it shaped (none of them hard-declined)."""
    exposure_used = (caps.outstanding > 0) & (caps.capped >= offers.floor_min)
    soft = {
        "EXPOSURE_FULLY_USED": offers.below_min & exposure_used,
        "BELOW_MIN_LIMIT": offers.below_min & ~exposure_used,
        "CAP_TIER": (caps.proposed > caps.tier_cap + 1e-9) & (caps.tier_cap <= caps.sales_cap),
        "CAP_SALES_SHARE": (caps.proposed > caps.sales_cap + 1e-9)
        & (caps.sales_cap < caps.tier_cap),
        "OUTSTANDING_EXPOSURE": (caps.outstanding > 0) & (caps.capped > 0),
        "GUARDRAIL_EL_BUDGET": offers.flags["el"],
        "GUARDRAIL_CATEGORY": offers.flags["category"],
        "GUARDRAIL_STREAMER": offers.flags["streamer"],
        "TIER_DOWN_NEW_MERCHANT": tiers.new_merchant,
        "TIER_DOWN_VOLATILE": tiers.volatile,
        "TIER_DOWN_STREAMER": tiers.streamer_dependent,
        "TIER_MANUAL_REVIEW": review,
    }
    # A hard decline is explained by its own rules only (Reg B: reasons that applied).
    return {k: mask & ~hard_any for k, mask in soft.items()}


def _reason_lists(
    df: pd.DataFrame, rules: dict[str, np.ndarray], texts: dict[str, Any]
) -> tuple[list[list[str]], list[list[str]]]:
    """Codes and texts per merchant: the policy rules that fired, then up to 4 model reasons."""
    n = len(df)
    reason_codes: list[list[str]] = [[] for _ in range(n)]
    reason_texts: list[list[str]] = [[] for _ in range(n)]
    for code, mask in rules.items():
        text = str(texts.get(code, code))
        for i in np.flatnonzero(mask):
            reason_codes[i].append(code)
            reason_texts[i].append(text)
    for k in range(1, 5):
        m_codes = df[f"reason_code_{k}"].astype(object)
        m_texts = df[f"reason_text_{k}"].astype(object).where(lambda x: x.notna(), "")
        codes_arr, texts_arr = m_codes.to_numpy(), m_texts.to_numpy()
        for i in np.flatnonzero(m_codes.notna().to_numpy()):
            reason_codes[i].append(str(codes_arr[i]))
            reason_texts[i].append(str(texts_arr[i]))
    return reason_codes, reason_texts


def compute_limits(inputs: pd.DataFrame, policy: dict[str, Any]) -> pd.DataFrame:
    """Apply the credit policy to one date's merchants. Pure: no I/O, no dates.

    ``inputs`` has INPUT_COLUMNS (missing optional values as NaN/None). Returns one row per
    merchant with limit_amount, decision, tier, caps, guardrail_scale, expected_loss and
    reason_codes / reason_texts (policy rules that fired first, then up to 4 model reasons).
    """
    validate_policy(policy)
    df = _checked_inputs(inputs)
    pd_ = _col(df, "pd")
    grade = df["grade"].astype(object)
    scored = ~np.isnan(pd_) & grade.notna().to_numpy()
    forecast, capacity, principal = _forecast_capacity(df, policy)
    base_tier, mult = _grade_terms(grade, scored, policy["grades"])
    tiers = _assign_tiers(df, base_tier, policy)
    caps = _apply_caps(df, principal * mult, tiers.cap, policy, forecast)
    hard = _hard_declines(df, pd_, scored, policy["declines"])
    hard_any = np.logical_or.reduce(list(hard.values())) if len(df) else np.zeros(0, dtype=bool)
    offers = _guarded_offers(df, caps.available, hard_any, pd_, policy)
    decision, decline, review = _decide(
        caps, offers, tiers.manual, hard_any, float(policy["round_to"])
    )
    soft = _soft_reasons(caps, tiers, offers, review, hard_any)
    codes, texts = _reason_lists(df, {**hard, **soft}, policy.get("reason_texts") or {})
    lgd = float(policy["lgd"])
    out = pd.DataFrame(
        {
            "merchant_id": df["merchant_id"].astype(str).to_numpy(),
            "limit_amount": offers.final,
            "decision": decision,
            "pd": pd_,
            "score": _col(df, "score"),
            "grade": grade.to_numpy(),
            "tier": tiers.tier,
            "lgd": lgd,
            "expected_loss": np.nan_to_num(pd_, nan=0.0) * lgd * offers.final,
            "data_asset_value": _col(df, "data_asset_value"),
            "repayment_capacity": capacity,
            "forecast_daily_gmv": forecast,
            "collateral_component": caps.collateral,
            "proposed_limit": caps.proposed,
            "tier_cap": caps.tier_cap,
            "sales_cap": caps.sales_cap,
            "outstanding_exposure": caps.outstanding,
            "guardrail_scale": np.where(decline & hard_any, 1.0, offers.scale),
            "reason_codes": codes,
            "reason_texts": texts,
            "review_days": tiers.review_days,
            "manual_review": tiers.manual,
            "category": df["category"].astype(object).to_numpy(),
            "top_streamer_id": df["top_streamer_id"].astype(object).to_numpy(),
            "top_streamer_share_90d": _col(df, "top_streamer_share_90d"),
            "model_version": df["model_version"].astype(object).to_numpy(),
        }
    )
    out.attrs["guardrail_info"] = offers.info
    return out
