"""Financing limits: credit policy, tiers, portfolio guardrails and stress tests.

The policy itself is pure (:func:`compute_limits` on a pandas frame of inputs), so property
tests and the stress test run exactly the code path that ``build_limits`` runs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from livefin_etl.config import (
    SQL_DIR,
    LivefinError,
    Settings,
    config_fingerprint,
    fault_point,
    load_config,
)
from livefin_etl.warehouse import run_sql_file, table_exists, transaction

log = logging.getLogger(__name__)

TIERS = ("A", "B", "C", "D", "E")
HARD_DECLINES = (
    "NO_SCORE",
    "PD_ABOVE_CUTOFF",
    "DQ_CRITICAL",
    "BRUSHING_SUSPECTED",
    "TENURE_TOO_SHORT",
    "IN_DEFAULT",
)
FEATURE_COLUMNS = (
    "merchant_id",
    "category",
    "tenure_days",
    "gmv_net_adj_30d",
    "gmv_net_adj_90d",
    "gmv_net_adj_365d",
    "gmv_net_365d",
    "gmv_cv_90d",
    "seasonal_trend_ratio",
    "brushing_score",
    "top_streamer_share_90d",
    "quality_q",
)
# The frame compute_limits expects (one row per merchant): the features above, plus what the
# other upstream tables contribute.
INPUT_COLUMNS = (
    *FEATURE_COLUMNS,
    "top_streamer_id",
    "failed_partition",
    "pd",
    "score",
    "grade",
    "model_version",
    *(f"reason_code_{i}" for i in range(1, 5)),
    *(f"reason_text_{i}" for i in range(1, 5)),
    "data_asset_value",
    "outstanding_exposure",
    "in_default",
)


# --------------------------------------------------------------------------- policy config


def load_policy() -> dict[str, Any]:
    """``config/policy.yaml``, validated."""
    return validate_policy(load_config("policy"))


def _num(policy: dict[str, Any], path: str, lo: float, hi: float = math.inf) -> float:
    node: Any = policy
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise LivefinError(f"policy: missing '{path}'")
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise LivefinError(f"policy: '{path}' must be a number, got {node!r}")
    if not lo <= float(node) <= hi:
        raise LivefinError(f"policy: '{path}' = {node} outside [{lo}, {hi}]")
    return float(node)


def validate_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """Raise LivefinError naming the first bad key; returns the policy unchanged."""
    if not isinstance(policy, dict) or not policy.get("version"):
        raise LivefinError("policy: 'version' is required")
    for path, lo, hi in (
        ("product.term_days", 1, 3650),
        ("product.withhold_rate", 0, 1),
        ("product.fee_rate", 0, 10),
        ("forecast.max_growth", 0, 100),
        ("collateral.advance_rate", 0, 1),
        ("sales_cap_share", 0, 1),
        ("lgd", 0, 1),
        ("round_to", 0.01, 1e9),
        ("min_limit", 0, 1e12),
        ("tier_flags.new_merchant_days", 0, 1e6),
        ("tier_flags.volatile_cv", 0, 1e6),
        ("tier_flags.streamer_dependent_share", 0, 1),
        ("declines.pd_cutoff", 0, 1),
        ("declines.quality_floor", 0, 1),
        ("declines.failed_partition_days", 0, 3650),
        ("declines.brushing_max", 0, 1),
        ("declines.min_tenure_days", 0, 1e6),
        ("declines.default_dpd", 0, 1e6),
        ("guardrails.el_budget", 0, math.inf),
        ("guardrails.max_category_share", 0.0001, 1),
        ("guardrails.max_streamer_share", 0.0001, 1),
        ("guardrails.streamer_window_days", 1, 3650),
        ("stress.streamer_dependency_share", 0, 1),
    ):
        _num(policy, path, lo, hi)
    tiers = policy.get("tiers")
    if not isinstance(tiers, dict) or set(tiers) != set(TIERS):
        raise LivefinError(f"policy: 'tiers' must define exactly {', '.join(TIERS)}")
    for t in TIERS:
        _num(policy, f"tiers.{t}.cap", 0)
        _num(policy, f"tiers.{t}.review_days", 1, 3650)
        if not isinstance(tiers[t].get("manual_review"), bool):
            raise LivefinError(f"policy: 'tiers.{t}.manual_review' must be true/false")
    grades = policy.get("grades")
    if not isinstance(grades, dict) or not grades:
        raise LivefinError("policy: 'grades' must map each model grade to a tier")
    for g, spec in grades.items():
        if not isinstance(spec, dict) or spec.get("tier") not in TIERS:
            raise LivefinError(f"policy: grade '{g}' needs a tier in {TIERS}")
        _num(policy, f"grades.{g}.risk_multiplier", 0, 10)
    texts = policy.get("reason_texts") or {}
    if not isinstance(texts, dict):
        raise LivefinError("policy: 'reason_texts' must be a mapping")
    return policy


def policy_version(policy: dict[str, Any]) -> str:
    return str(policy["version"])


# --------------------------------------------------------------------------- pure policy


def group_share_scale(
    amount: np.ndarray, groups: np.ndarray, max_share: float
) -> tuple[np.ndarray, bool]:
    """Per-row scale so that no group exceeds ``max_share`` of the scaled total.

    Water-filling: every over-concentrated group is cut to the same level L, the largest L with
    L <= max_share * (sum of min(group, L) + unconstrained). Rows whose group is None/NaN are
    unconstrained (e.g. no streamer). Returns (scale, feasible); infeasible means only L = 0
    would satisfy it (fewer than 1/max_share groups and nothing unconstrained): then nothing is
    scaled and the caller reports it, because zeroing the whole book is never the intent.
    """
    n = len(amount)
    scale = np.ones(n)
    if n == 0 or amount.sum() <= 0:
        return scale, True
    keys = pd.Series(groups, dtype=object)
    has_group = keys.notna().to_numpy()
    unconstrained = float(amount[~has_group].sum())
    if not has_group.any():
        return scale, True
    totals = pd.Series(amount[has_group]).groupby(keys[has_group].to_numpy()).sum()
    c = np.sort(totals.to_numpy())[::-1]
    y = max_share
    if c[0] <= y * (c.sum() + unconstrained) * (1 + 1e-12):
        return scale, True
    level = None
    for k in range(1, len(c) + 1):
        lower = c[k] if k < len(c) else 0.0
        rest = c[k:].sum()
        g_lower = y * (k * lower + rest + unconstrained) - lower
        if g_lower >= 0 and y * k < 1:
            level = y * (rest + unconstrained) / (1 - y * k)
            break
    if level is None or level <= 0:
        return scale, False
    group_total = keys.map(totals).to_numpy(dtype=float, na_value=np.nan)
    over = has_group & (group_total > level)
    scale[over] = level / group_total[over]
    return scale, True


def apply_guardrails(
    amount: np.ndarray,
    pd_: np.ndarray,
    lgd: float,
    category: np.ndarray,
    streamer: np.ndarray,
    guardrails: dict[str, Any],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Scale offered amounts down until portfolio guardrails hold.

    Rule (documented in docs/policy.md): category and streamer concentration are cut by
    water-filling (only the over-concentrated groups shrink, all rows of a group by the same
    factor), repeated until both hold; then, if EL still exceeds the budget, every offer is
    scaled by the same factor budget / EL, which leaves concentration shares unchanged.
    """
    n = len(amount)
    scale = np.ones(n)
    flags = {k: np.zeros(n, dtype=bool) for k in ("el", "category", "streamer")}
    info: dict[str, Any] = {"category_feasible": True, "streamer_feasible": True}
    for _ in range(50):
        current = amount * scale
        s_cat, ok_cat = group_share_scale(current, category, guardrails["max_category_share"])
        info["category_feasible"] = ok_cat
        scale *= s_cat
        flags["category"] |= s_cat < 1 - 1e-12
        current = amount * scale
        s_str, ok_str = group_share_scale(current, streamer, guardrails["max_streamer_share"])
        info["streamer_feasible"] = ok_str
        scale *= s_str
        flags["streamer"] |= s_str < 1 - 1e-12
        if (s_cat >= 1 - 1e-9).all() and (s_str >= 1 - 1e-9).all():
            break
    el = float((pd_ * lgd * amount * scale).sum())
    budget = float(guardrails["el_budget"])
    if el > budget:
        factor = budget / el
        affected = amount * scale > 0
        scale[affected] *= factor
        flags["el"] |= affected
    info["el_before_budget"] = el
    return scale, flags, info


def _tier_index(tier: pd.Series) -> np.ndarray:
    return tier.map({t: i for i, t in enumerate(TIERS)}).to_numpy(dtype=float, na_value=np.nan)


def compute_limits(inputs: pd.DataFrame, policy: dict[str, Any]) -> pd.DataFrame:
    """Apply the credit policy to one date's merchants. Pure: no I/O, no dates.

    ``inputs`` has INPUT_COLUMNS (missing optional values as NaN/None). Returns one row per
    merchant with limit_amount, decision, tier, caps, guardrail_scale, expected_loss and
    reason_codes / reason_texts (policy rules that fired first, then up to 4 model reasons).
    """
    validate_policy(policy)
    missing = [c for c in INPUT_COLUMNS if c not in inputs.columns]
    if missing:
        raise LivefinError(f"limit inputs lack columns: {', '.join(missing)}")
    df = inputs.reset_index(drop=True)
    n = len(df)
    if df["merchant_id"].duplicated().any():
        dup = df.loc[df["merchant_id"].duplicated(), "merchant_id"].iloc[0]
        raise LivefinError(f"limit inputs have merchant {dup} more than once")

    def col(name: str, fill: float = np.nan) -> np.ndarray:
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=fill)

    prod, dec, flags_cfg = policy["product"], policy["declines"], policy["tier_flags"]
    tenure = col("tenure_days", 0.0)
    t_eff = np.maximum(tenure, 1.0)
    pd_ = col("pd")
    # De-seasonalised daily net-GMV forecast (brushing-adjusted inputs).
    rr30 = col("gmv_net_adj_30d", 0.0) / np.minimum(30.0, t_eff)
    rr90 = col("gmv_net_adj_90d", 0.0) / np.minimum(90.0, t_eff)
    base = col("gmv_net_adj_365d", 0.0) / np.minimum(365.0, t_eff)
    trend = np.nan_to_num(col("seasonal_trend_ratio", 1.0), nan=1.0, posinf=1.0)
    rr30_ds = rr30 / np.maximum(1.0, trend)
    forecast = np.maximum(
        0.0, np.minimum.reduce([rr30_ds, rr90, base * policy["forecast"]["max_growth"]])
    )
    capacity = forecast * prod["term_days"] * prod["withhold_rate"]
    capacity_principal = capacity / (1.0 + prod["fee_rate"])

    grade = df["grade"].astype(object)
    scored = ~np.isnan(pd_) & grade.notna().to_numpy()
    grades_cfg = policy["grades"]
    unknown = sorted({str(g) for g in grade[scored] if str(g) not in grades_cfg})
    if unknown:
        raise LivefinError(f"policy has no mapping for model grade(s): {', '.join(unknown)}")
    base_tier = grade.map({g: spec["tier"] for g, spec in grades_cfg.items()}).fillna("E")
    mult = grade.map({g: float(spec["risk_multiplier"]) for g, spec in grades_cfg.items()})
    mult = pd.to_numeric(mult, errors="coerce").to_numpy(dtype=float, na_value=0.0)

    f_new = tenure < flags_cfg["new_merchant_days"]
    f_vol = col("gmv_cv_90d", 0.0) > flags_cfg["volatile_cv"]
    top_share = col("top_streamer_share_90d", 0.0)
    f_str = top_share > flags_cfg["streamer_dependent_share"]
    idx = _tier_index(base_tier) + f_new + f_vol + f_str
    t_idx = np.minimum(idx, len(TIERS) - 1).astype(int)
    tier = np.array(TIERS, dtype=object)[t_idx]
    tiers_cfg = policy["tiers"]
    tier_cap = np.array([float(tiers_cfg[t]["cap"]) for t in TIERS])[t_idx]
    review_days = np.array([int(tiers_cfg[t]["review_days"]) for t in TIERS])[t_idx]
    manual = np.array([bool(tiers_cfg[t]["manual_review"]) for t in TIERS])[t_idx]

    value = np.maximum(col("data_asset_value", 0.0), 0.0)
    collateral = policy["collateral"]["advance_rate"] * value
    proposed = capacity_principal * mult + collateral
    sales_12m = np.fmin(col("gmv_net_365d", 0.0), col("gmv_net_adj_365d"))
    sales_cap = policy["sales_cap_share"] * np.maximum(np.nan_to_num(sales_12m), 0.0)
    cap = np.minimum(tier_cap, sales_cap)
    capped = np.minimum(proposed, cap)
    outstanding = np.maximum(col("outstanding_exposure", 0.0), 0.0)
    available = np.maximum(0.0, capped - outstanding)

    quality = col("quality_q")
    in_default = df["in_default"].fillna(False).astype(bool).to_numpy()
    failed_part = df["failed_partition"].fillna(False).astype(bool).to_numpy()
    hard = {
        "NO_SCORE": ~scored,
        "PD_ABOVE_CUTOFF": scored & (pd_ > dec["pd_cutoff"]),
        "DQ_CRITICAL": (np.nan_to_num(quality, nan=0.0) < dec["quality_floor"]) | failed_part,
        "BRUSHING_SUSPECTED": col("brushing_score", 0.0) > dec["brushing_max"],
        "TENURE_TOO_SHORT": tenure < dec["min_tenure_days"],
        "IN_DEFAULT": in_default,
    }
    hard_any = np.logical_or.reduce(list(hard.values())) if n else np.zeros(0, dtype=bool)

    round_to, min_limit = float(policy["round_to"]), float(policy["min_limit"])
    lgd = float(policy["lgd"])
    base_amount = np.where(hard_any, 0.0, available)
    # Smallest offer worth originating; also keeps a zero limit from ever being "approved".
    floor_min = max(min_limit, round_to)
    active = ~hard_any & (np.floor(base_amount / round_to + 1e-9) * round_to >= floor_min)
    below_min_pre = ~hard_any & ~active
    scale = np.ones(n)
    g_flags = {k: np.zeros(n, dtype=bool) for k in ("el", "category", "streamer")}
    category = df["category"].astype(object).to_numpy()
    streamer = df["top_streamer_id"].astype(object).to_numpy()
    pd_filled = np.nan_to_num(pd_, nan=1.0)
    final = np.zeros(n)
    info: dict[str, Any] = {}
    dropped = np.zeros(n, dtype=bool)
    # Guardrails, then round down and drop offers below the minimum; dropping rows changes the
    # portfolio, so repeat until stable (amounts only ever shrink, so this terminates).
    for _ in range(20):
        amount = np.where(active, base_amount, 0.0)
        s, fl, info = apply_guardrails(
            amount, pd_filled, lgd, category, streamer, policy["guardrails"]
        )
        scale[active] = s[active]
        for k in g_flags:
            g_flags[k][active] = fl[k][active]
        final = np.where(active, np.floor(amount * s / round_to + 1e-9) * round_to, 0.0)
        newly = active & (final < floor_min)
        if not newly.any():
            break
        dropped |= newly
        active &= ~newly
    final = np.where(active, final, 0.0)

    rounded_proposed = np.floor(proposed / round_to + 1e-9) * round_to
    decline = hard_any | ~active
    review = ~decline & manual
    reduce = ~decline & ~review & ((final < rounded_proposed - 1e-6) | (scale < 1 - 1e-9))
    decision = np.where(
        decline, "decline", np.where(review, "review", np.where(reduce, "reduce", "approve"))
    )
    tier_binding = proposed > tier_cap + 1e-9
    sales_binding = proposed > sales_cap + 1e-9
    soft = {
        "EXPOSURE_FULLY_USED": (below_min_pre | dropped)
        & (outstanding > 0)
        & (capped >= floor_min),
        "BELOW_MIN_LIMIT": (below_min_pre | dropped) & ~((outstanding > 0) & (capped >= floor_min)),
        "CAP_TIER": tier_binding & (tier_cap <= sales_cap),
        "CAP_SALES_SHARE": sales_binding & (sales_cap < tier_cap),
        "OUTSTANDING_EXPOSURE": (outstanding > 0) & (capped > 0),
        "GUARDRAIL_EL_BUDGET": g_flags["el"],
        "GUARDRAIL_CATEGORY": g_flags["category"],
        "GUARDRAIL_STREAMER": g_flags["streamer"],
        "TIER_DOWN_NEW_MERCHANT": f_new,
        "TIER_DOWN_VOLATILE": f_vol,
        "TIER_DOWN_STREAMER": f_str,
        "TIER_MANUAL_REVIEW": review,
    }
    # A hard decline is explained by its own rules only (Reg B: reasons that applied).
    for k in soft:
        soft[k] = soft[k] & ~hard_any
    texts = policy.get("reason_texts") or {}
    reason_codes: list[list[str]] = [[] for _ in range(n)]
    reason_texts: list[list[str]] = [[] for _ in range(n)]
    for code, mask in [*hard.items(), *soft.items()]:
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

    out = pd.DataFrame(
        {
            "merchant_id": df["merchant_id"].astype(str).to_numpy(),
            "limit_amount": final,
            "decision": decision,
            "pd": pd_,
            "score": col("score"),
            "grade": grade.to_numpy(),
            "tier": tier,
            "lgd": lgd,
            "expected_loss": np.nan_to_num(pd_, nan=0.0) * lgd * final,
            "data_asset_value": col("data_asset_value"),
            "repayment_capacity": capacity,
            "forecast_daily_gmv": forecast,
            "collateral_component": collateral,
            "proposed_limit": proposed,
            "tier_cap": tier_cap,
            "sales_cap": sales_cap,
            "outstanding_exposure": outstanding,
            "guardrail_scale": np.where(decline & hard_any, 1.0, scale),
            "reason_codes": reason_codes,
            "reason_texts": reason_texts,
            "review_days": review_days,
            "manual_review": manual,
            "category": category,
            "top_streamer_id": streamer,
            "top_streamer_share_90d": col("top_streamer_share_90d"),
            "model_version": df["model_version"].astype(object).to_numpy(),
        }
    )
    out.attrs["guardrail_info"] = info
    return out


# --------------------------------------------------------------------------- warehouse I/O

LIMITS_DDL = """
create table if not exists limits.financing_limits (
    merchant_id varchar not null,
    as_of_date date not null,
    limit_amount double not null,
    currency varchar not null,
    decision varchar not null,
    pd double,
    score double,
    grade varchar,
    tier varchar not null,
    expected_loss double not null,
    data_asset_value double,
    repayment_capacity double not null,
    collateral_component double not null,
    outstanding_exposure double not null,
    reason_codes varchar[] not null,
    reason_texts varchar[] not null,
    guardrail_scale double not null,
    model_version varchar,
    policy_version varchar not null,
    valid_from date not null,
    valid_until date not null,
    run_id varchar not null,
    category varchar,
    top_streamer_id varchar,
    top_streamer_share_90d double,
    forecast_daily_gmv double not null,
    proposed_limit double not null,
    tier_cap double not null,
    sales_cap double not null,
    lgd double not null,
    review_days integer not null,
    manual_review boolean not null,
    policy_fingerprint varchar not null,
    created_at timestamp not null,
    primary key (merchant_id, as_of_date)
)
"""

LIMITS_COMMENTS: dict[str, str] = {
    "merchant_id": "Merchant id",
    "as_of_date": "Business date D; only data strictly before D was used",
    "limit_amount": "Financing limit offered (principal), floored to the policy round amount; 0 on decline",
    "currency": "Currency of all amounts",
    "decision": "approve | reduce (a cap, exposure or guardrail lowered it) | decline | review (tier needs a human)",
    "pd": "Probability of default from credit.merchant_scores",
    "score": "Credit score from credit.merchant_scores",
    "grade": "Master-scale grade from credit.merchant_scores",
    "tier": "Supervision tier A-E: grade's tier, one step down per tier flag",
    "expected_loss": "EL = pd x lgd x limit_amount",
    "data_asset_value": "Reconciled data-asset value from valuation.data_asset_values",
    "repayment_capacity": "Forecast net GMV over the term x withhold rate",
    "collateral_component": "Advance rate x data_asset_value (data-asset pledge)",
    "outstanding_exposure": "Outstanding balance of open loans (latest repayment row before D), subtracted",
    "reason_codes": "Policy rules that fired, then up to 4 model reason codes",
    "reason_texts": "Texts for reason_codes, same order",
    "guardrail_scale": "Factor applied by portfolio guardrails (1 = untouched)",
    "model_version": "Credit model version that produced pd",
    "policy_version": "config/policy.yaml version",
    "valid_from": "First day the limit is valid (= as_of_date)",
    "valid_until": "Limit expires on this day (as_of_date + tier review_days) unless re-run",
    "run_id": "Pipeline run that wrote the row",
    "category": "Merchant category (features)",
    "top_streamer_id": "Streamer with most net GMV in the 90 days before D (raw.orders)",
    "top_streamer_share_90d": "Share of 90-day GMV from the top streamer (features)",
    "forecast_daily_gmv": "De-seasonalised brushing-adjusted daily net GMV forecast",
    "proposed_limit": "Capacity principal x risk multiplier + collateral, before caps",
    "tier_cap": "Absolute cap of the tier",
    "sales_cap": "Sales-share cap: share x trailing 12-month net sales",
    "lgd": "Loss given default assumed by the policy",
    "review_days": "Review frequency of the tier, days",
    "manual_review": "Whether the tier requires a human reviewer",
    "policy_fingerprint": "Content hash of the policy file (detects edits without a version bump)",
    "created_at": "When the row was written (UTC)",
}

STRESS_DDL = """
create table if not exists stress.stress_results (
    scenario_id varchar not null,
    as_of_date date not null,
    gmv_shock double not null,
    streamer_exit boolean not null,
    params varchar not null,
    merchant_id varchar not null,
    category varchar,
    top_streamer_id varchar,
    limit_before double not null,
    limit_after double not null,
    limit_change double not null,
    decision_before varchar not null,
    decision_after varchar not null,
    el_before double not null,
    el_after double not null,
    reason_codes_after varchar[] not null,
    policy_version varchar not null,
    created_at timestamp not null,
    primary key (scenario_id, merchant_id)
)
"""

STRESS_COMMENTS: dict[str, str] = {
    "scenario_id": "Scenario key: date, shock and streamer-exit flag; a rerun replaces it",
    "as_of_date": "Business date D of the inputs",
    "gmv_shock": "Relative change applied to every net GMV input (-0.3 = 30% drop)",
    "streamer_exit": "Whether dependent merchants lost their top streamer's share of GMV",
    "params": "Scenario parameters as JSON",
    "merchant_id": "Merchant id",
    "category": "Merchant category",
    "top_streamer_id": "Top streamer by 90-day GMV",
    "limit_before": "Limit under the unshocked inputs (same policy code path)",
    "limit_after": "Limit under the scenario",
    "limit_change": "limit_after - limit_before",
    "decision_before": "Decision under the unshocked inputs",
    "decision_after": "Decision under the scenario",
    "el_before": "Expected loss before",
    "el_after": "Expected loss after",
    "reason_codes_after": "Reason codes under the scenario",
    "policy_version": "config/policy.yaml version",
    "created_at": "When the row was written (UTC)",
}


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comment_table(
    con: duckdb.DuckDBPyConnection, table: str, about: str, columns: dict[str, str]
) -> None:
    con.execute(f"comment on table {table} is {_q(about)}")
    for c, text in columns.items():
        con.execute(f"comment on column {table}.{c} is {_q(text)}")


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create limits.financing_limits and stress.stress_results (idempotent), with comments."""
    con.execute("create schema if not exists limits")
    con.execute("create schema if not exists stress")
    con.execute(LIMITS_DDL)
    _comment_table(
        con,
        "limits.financing_limits",
        "Financing limit per merchant and business date (config/policy.yaml); history kept, "
        "a rerun of a date replaces that date",
        LIMITS_COMMENTS,
    )
    con.execute(STRESS_DDL)
    _comment_table(
        con,
        "stress.stress_results",
        "Per-merchant limits before/after a stress scenario (GMV shock, streamer exit)",
        STRESS_COMMENTS,
    )


VIEW_FILES = ("limits_current.sql", "limits_merchant_360.sql", "limits_portfolio_summary.sql")


def create_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """(Re)create the analyst views in ``sql/views``; a view whose sources are absent is skipped."""
    made = []
    needs = {
        "limits_merchant_360.sql": (
            "features.merchant_features",
            "credit.merchant_scores",
            "valuation.data_asset_values",
            "dq.merchant_quality",
        )
    }
    for name in VIEW_FILES:
        if not all(table_exists(con, t) for t in needs.get(name, ())):
            log.warning("view %s skipped: a source table is missing", name)
            continue
        run_sql_file(con, Path(SQL_DIR) / "views" / name)
        made.append(name.removesuffix(".sql"))
    return made


def _columns(con: duckdb.DuckDBPyConnection, qualified: str) -> set[str]:
    schema, name = qualified.split(".")
    rows = con.execute(
        "select column_name from information_schema.columns where table_schema=? and table_name=?",
        [schema, name],
    ).fetchall()
    return {r[0] for r in rows}


def _has_columns(con: duckdb.DuckDBPyConnection, qualified: str, cols: set[str]) -> bool:
    return table_exists(con, qualified) and cols <= _columns(con, qualified)


def load_inputs(
    con: duckdb.DuckDBPyConnection, date: dt.date, policy: dict[str, Any]
) -> pd.DataFrame:
    """One row per merchant in features.merchant_features for D, with score, value, quality,
    exposure, default flag, failed-partition flag and top streamer. Only data before D."""
    if not table_exists(con, "features.merchant_features"):
        raise LivefinError("features.merchant_features does not exist; run the features stage")
    if not table_exists(con, "credit.merchant_scores"):
        raise LivefinError("credit.merchant_scores does not exist; run the score stage")
    missing = set(FEATURE_COLUMNS) - _columns(con, "features.merchant_features")
    if missing:
        raise LivefinError(
            f"features.merchant_features lacks columns: {', '.join(sorted(missing))}"
        )
    d = {"d": date}
    n_feat = con.execute(
        "select count(*) from features.merchant_features where as_of_date = $d", d
    ).fetchone()[0]
    if n_feat == 0:
        raise LivefinError(f"no features for {date}; run the features stage for that date first")
    n_scores = con.execute(
        "select count(*) from credit.merchant_scores where as_of_date = $d", d
    ).fetchone()[0]
    if n_scores == 0:
        raise LivefinError(f"no credit scores for {date}; run the score stage for that date first")

    dec, gr = policy["declines"], policy["guardrails"]
    ctes = [
        f"""features as (
            select {", ".join(FEATURE_COLUMNS)} from features.merchant_features
            where as_of_date = $d)""",
        """scores as (
            select merchant_id, pd, score, grade, model_version,
                reason_code_1, reason_code_2, reason_code_3, reason_code_4,
                reason_text_1, reason_text_2, reason_text_3, reason_text_4
            from credit.merchant_scores where as_of_date = $d
            qualify row_number() over (partition by merchant_id order by model_version desc) = 1)""",
    ]
    if table_exists(con, "dq.merchant_quality"):
        ctes.append(
            """quality as (select merchant_id, any_value(quality_q) as quality_q
            from dq.merchant_quality where as_of_date = $d group by merchant_id)"""
        )
    else:
        ctes.append(
            "quality as (select null::varchar as merchant_id, null::double as quality_q limit 0)"
        )
    if table_exists(con, "valuation.data_asset_values"):
        ctes.append(
            """asset_value as (select merchant_id, any_value(reconciled_value) as data_asset_value
            from valuation.data_asset_values where as_of_date = $d group by merchant_id)"""
        )
    else:
        ctes.append(
            "asset_value as (select null::varchar as merchant_id, null::double as data_asset_value limit 0)"
        )
    if table_exists(con, "raw.loans") and table_exists(con, "raw.repayments"):
        # A funded loan without any repayment row yet still owes principal + fee.
        ctes.append(
            """latest_repayment as (
                select loan_id, arg_max(outstanding, repay_date) as outstanding,
                    arg_max(dpd, repay_date) as dpd
                from raw.repayments where repay_date < $d group by loan_id)"""
        )
        ctes.append(
            """loan_status as (
                select l.merchant_id,
                    coalesce(r.outstanding, l.principal + l.fee_amount) as outstanding,
                    coalesce(r.dpd, 0) as dpd
                from raw.loans as l left join latest_repayment as r using (loan_id)
                where l.origination_date < $d)"""
        )
        ctes.append(
            f"""exposure as (
                select merchant_id,
                    coalesce(sum(outstanding) filter (where outstanding > 0), 0) as outstanding_exposure,
                    bool_or(dpd >= {int(dec["default_dpd"])} and outstanding > 0) as in_default
                from loan_status group by merchant_id)"""
        )
    else:
        ctes.append(
            "exposure as (select null::varchar as merchant_id, 0.0 as outstanding_exposure, "
            "false as in_default limit 0)"
        )
    order_cols = {"merchant_id", "streamer_id", "order_ts", "paid_amount", "status"}
    if _has_columns(con, "raw.orders", order_cols):
        refund = (
            "coalesce(refund_amount, 0)" if "refund_amount" in _columns(con, "raw.orders") else "0"
        )
        days = int(gr["streamer_window_days"])
        ctes.append(
            f"""streamer_gmv as (
                select merchant_id, streamer_id, sum(paid_amount - {refund}) as gmv
                from raw.orders
                where order_ts >= ($d::date - interval {days} day) and order_ts < $d::date
                    and status <> 'cancelled' and streamer_id is not null
                group by merchant_id, streamer_id)"""
        )
        ctes.append(
            """top_streamer as (
                select merchant_id, streamer_id as top_streamer_id from streamer_gmv
                where gmv > 0
                qualify row_number() over (partition by merchant_id order by gmv desc, streamer_id) = 1)"""
        )
    else:
        ctes.append(
            "top_streamer as (select null::varchar as merchant_id, null::varchar as top_streamer_id limit 0)"
        )
    failed_sources = []
    if _has_columns(con, "dq.partition_status", {"source", "dt", "status"}):
        days = int(dec["failed_partition_days"])
        has_failed = con.execute(
            f"""select count(*) from dq.partition_status where status = 'failed'
                and dt >= $d::date - interval {days} day and dt <= $d""",
            d,
        ).fetchone()[0]
        if has_failed:
            for src in ("orders", "traffic", "fulfillment", "merchants"):
                if _has_columns(con, f"raw.{src}", {"merchant_id", "_dt"}):
                    failed_sources.append(src)
    if failed_sources:
        days = int(dec["failed_partition_days"])
        order_by = (
            "updated_at desc" if "updated_at" in _columns(con, "dq.partition_status") else "dt"
        )
        ctes.append(
            f"""failed_parts as (
                select source, dt from dq.partition_status
                where dt >= $d::date - interval {days} day and dt <= $d
                qualify row_number() over (partition by source, dt order by {order_by}) = 1
                    and status = 'failed')"""
        )
        unions = " union ".join(
            f"""select distinct r.merchant_id from raw.{s} as r
                join failed_parts as p on p.source = '{s}' and r._dt = p.dt"""
            for s in failed_sources
        )
        ctes.append(f"failed as ({unions})")
    else:
        ctes.append("failed as (select null::varchar as merchant_id limit 0)")
    sql = (
        "with "
        + ",\n".join(ctes)
        + """
        select f.merchant_id, f.category, f.tenure_days, f.gmv_net_adj_30d, f.gmv_net_adj_90d,
            f.gmv_net_adj_365d, f.gmv_net_365d, f.gmv_cv_90d, f.seasonal_trend_ratio,
            f.brushing_score, f.top_streamer_share_90d, t.top_streamer_id,
            coalesce(q.quality_q, f.quality_q) as quality_q,
            (x.merchant_id is not null) as failed_partition,
            s.pd, s.score, s.grade, s.model_version,
            s.reason_code_1, s.reason_code_2, s.reason_code_3, s.reason_code_4,
            s.reason_text_1, s.reason_text_2, s.reason_text_3, s.reason_text_4,
            v.data_asset_value,
            coalesce(e.outstanding_exposure, 0) as outstanding_exposure,
            coalesce(e.in_default, false) as in_default
        from features as f
        left join scores as s using (merchant_id)
        left join quality as q using (merchant_id)
        left join asset_value as v using (merchant_id)
        left join exposure as e using (merchant_id)
        left join top_streamer as t using (merchant_id)
        left join failed as x using (merchant_id)
        order by f.merchant_id
        """
    )
    try:
        return con.execute(sql, d).df()
    except duckdb.Error as exc:
        raise LivefinError(f"loading limit inputs for {date} failed: {exc}") from exc


def _summary(out: pd.DataFrame) -> dict[str, Any]:
    return {
        "merchants": len(out),
        "by_decision": {k: int(v) for k, v in out["decision"].value_counts().sort_index().items()},
        "by_tier": {k: int(v) for k, v in out["tier"].value_counts().sort_index().items()},
        "total_limit": float(out["limit_amount"].sum()),
        "total_expected_loss": float(out["expected_loss"].sum()),
        "guardrail_affected": int((out["guardrail_scale"] < 1).sum()),
    }


def build_limits(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    date: dt.date,
    run_id: str,
    policy: dict[str, Any] | None = None,
    inputs: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Compute limits for D and replace that date in limits.financing_limits (one transaction).

    ``inputs`` (from :func:`load_inputs`, e.g. gathered shard by shard) skips loading them."""
    if not run_id:
        raise LivefinError("build_limits needs a run_id")
    policy = validate_policy(policy if policy is not None else load_config("policy"))
    ensure_tables(con)
    if inputs is None:
        inputs = load_inputs(con, date, policy)
    out = compute_limits(inputs, policy)
    out["as_of_date"] = date
    out["currency"] = str(policy.get("currency", "CNY"))
    out["policy_version"] = policy_version(policy)
    out["policy_fingerprint"] = config_fingerprint(policy)
    out["valid_from"] = date
    out["valid_until"] = [date + dt.timedelta(days=int(x)) for x in out["review_days"]]
    out["run_id"] = run_id
    out["created_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    cols = ", ".join(LIMITS_COMMENTS)
    con.register("_limits_new", out)
    try:
        with transaction(con):
            con.execute("delete from limits.financing_limits where as_of_date = ?", [date])
            con.execute(
                f"insert into limits.financing_limits ({cols}) select {cols} from _limits_new"
            )
            create_views(con)
            fault_point("limits.before_commit")
    finally:
        con.unregister("_limits_new")
    result = _summary(out)
    result.update(
        {
            "as_of_date": date.isoformat(),
            "run_id": run_id,
            "policy_version": policy_version(policy),
            "guardrails": {k: v for k, v in out.attrs.get("guardrail_info", {}).items()},
        }
    )
    log.info("limits %s: %s", date, result["by_decision"])
    return result


STAGING = "limits.limit_inputs_staging"


def stage_inputs(
    con: duckdb.DuckDBPyConnection, date: dt.date, run_id: str, shard: tuple[int, int]
) -> int:
    """Sharded half of the limits stage: gather one merchant-hash shard's policy inputs into
    ``limits.limit_inputs_staging``. Guardrails need the whole book, so they run once in
    :func:`finalize_from_staging`."""
    from livefin_etl.warehouse import in_shard

    policy = validate_policy(load_config("policy"))
    inputs = load_inputs(con, date, policy)
    part = inputs[in_shard(inputs["merchant_id"].tolist(), shard)].copy()
    part.insert(0, "staged_as_of", date)
    part.insert(1, "staged_run_id", run_id)
    part.insert(2, "staged_shard", shard[0])
    part.insert(3, "staged_shards", shard[1])
    con.register("_limits_stage", part)
    try:
        with transaction(con):
            if not table_exists(con, STAGING):
                con.execute(f"create table {STAGING} as select * from _limits_stage limit 0")
                con.execute(
                    f"comment on table {STAGING} is 'Per-shard limit-policy inputs awaiting "
                    "portfolio guardrails (limits_finalize); transient'"
                )
            con.execute(
                f"delete from {STAGING} where staged_as_of = ? and staged_shard = ?",
                [date, shard[0]],
            )
            con.execute(
                f"delete from {STAGING} where staged_as_of = ? and staged_run_id <> ?",
                [date, run_id],
            )
            con.execute(f"insert into {STAGING} by name select * from _limits_stage")
    finally:
        con.unregister("_limits_stage")
    return len(part)


def finalize_from_staging(
    con: duckdb.DuckDBPyConnection, settings: Settings, date: dt.date, run_id: str
) -> dict[str, Any]:
    """Apply the policy and guardrails to every staged shard at once, then clear the staging."""
    if not table_exists(con, STAGING):
        raise LivefinError(f"no staged limit inputs for {date}: run the sharded limits stage first")
    rows = con.execute(
        f"select distinct staged_shard, staged_shards from {STAGING} where staged_as_of = ? "
        "and staged_run_id = ?",
        [date, run_id],
    ).fetchall()
    if not rows:
        raise LivefinError(f"no staged limit inputs for {date} in run {run_id}")
    got = {r[0] for r in rows}
    shards = max(r[1] for r in rows)
    missing = sorted(set(range(shards)) - got)
    if missing:
        raise LivefinError(f"limits for {date}: shards {missing} of {shards} were not staged")
    inputs = con.execute(
        f"select * exclude (staged_as_of, staged_run_id, staged_shard, staged_shards) from {STAGING} "
        "where staged_as_of = ? and staged_run_id = ? order by merchant_id",
        [date, run_id],
    ).df()
    result = build_limits(con, settings, date, run_id, inputs=inputs)
    con.execute(f"delete from {STAGING} where staged_as_of = ?", [date])
    return result


# --------------------------------------------------------------------------- stress test


def shock_inputs(
    inputs: pd.DataFrame,
    gmv_shock: float,
    streamer_exit: bool,
    dependency_share: float,
) -> pd.DataFrame:
    """Scenario inputs: every net GMV input x (1 + shock); with streamer_exit, merchants whose
    top streamer carries >= dependency_share also lose that share (and the streamer)."""
    if not -1.0 <= gmv_shock <= 10.0:
        raise LivefinError(f"gmv_shock must be between -1 and 10, got {gmv_shock}")
    out = inputs.copy()
    factor = np.full(len(out), 1.0 + gmv_shock)
    if streamer_exit:
        share = pd.to_numeric(out["top_streamer_share_90d"], errors="coerce").fillna(0.0)
        dependent = (share >= dependency_share).to_numpy()
        factor = np.where(dependent, factor * (1.0 - share.clip(0, 1).to_numpy()), factor)
        out.loc[dependent, "top_streamer_share_90d"] = 0.0
        out.loc[dependent, "top_streamer_id"] = None
    for c in ("gmv_net_adj_30d", "gmv_net_adj_90d", "gmv_net_adj_365d", "gmv_net_365d"):
        out[c] = pd.to_numeric(out[c], errors="coerce") * factor
    return out


def stress(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    date: dt.date,
    gmv_shock: float = -0.3,
    streamer_exit: bool = False,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Recompute D's limits under a scenario with the same policy code; write stress.stress_results."""
    policy = validate_policy(policy if policy is not None else load_config("policy"))
    if not -1.0 <= gmv_shock <= 10.0:
        raise LivefinError(f"gmv_shock must be between -1 and 10, got {gmv_shock}")
    ensure_tables(con)
    inputs = load_inputs(con, date, policy)
    before = compute_limits(inputs, policy)
    shocked = shock_inputs(
        inputs, gmv_shock, streamer_exit, policy["stress"]["streamer_dependency_share"]
    )
    after = compute_limits(shocked, policy)
    scenario_id = f"{date.isoformat()}:gmv{gmv_shock:+.4f}:exit{int(streamer_exit)}"
    params = {
        "gmv_shock": gmv_shock,
        "streamer_exit": streamer_exit,
        "policy_version": policy_version(policy),
    }
    res = pd.DataFrame(
        {
            "scenario_id": scenario_id,
            "as_of_date": date,
            "gmv_shock": float(gmv_shock),
            "streamer_exit": bool(streamer_exit),
            "params": json.dumps(params, sort_keys=True),
            "merchant_id": before["merchant_id"],
            "category": before["category"],
            "top_streamer_id": before["top_streamer_id"],
            "limit_before": before["limit_amount"],
            "limit_after": after["limit_amount"].to_numpy(),
            "decision_before": before["decision"],
            "decision_after": after["decision"].to_numpy(),
            "el_before": before["expected_loss"],
            "el_after": after["expected_loss"].to_numpy(),
            "reason_codes_after": after["reason_codes"].to_numpy(),
            "policy_version": policy_version(policy),
            "created_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        }
    )
    res["limit_change"] = res["limit_after"] - res["limit_before"]
    cols = ", ".join(STRESS_COMMENTS)
    con.register("_stress_new", res)
    try:
        with transaction(con):
            con.execute("delete from stress.stress_results where scenario_id = ?", [scenario_id])
            con.execute(
                f"insert into stress.stress_results ({cols}) select {cols} from _stress_new"
            )
    finally:
        con.unregister("_stress_new")
    changed = res[
        (res["limit_change"].abs() > 1e-6) | (res["decision_before"] != res["decision_after"])
    ]
    top = res.assign(abs_change=res["limit_change"].abs()).sort_values(
        ["abs_change", "merchant_id"], ascending=[False, True]
    )
    top = top[top["abs_change"] > 0].head(10)
    return {
        "scenario_id": scenario_id,
        "as_of_date": date.isoformat(),
        "params": params,
        "merchants": len(res),
        "limits_changed": len(changed),
        "new_declines": int(
            ((res["decision_after"] == "decline") & (res["decision_before"] != "decline")).sum()
        ),
        "total_limit_before": float(res["limit_before"].sum()),
        "total_limit_after": float(res["limit_after"].sum()),
        "total_el_before": float(res["el_before"].sum()),
        "total_el_after": float(res["el_after"].sum()),
        "top_affected": [
            {
                "merchant_id": r.merchant_id,
                "limit_before": float(r.limit_before),
                "limit_after": float(r.limit_after),
                "decision_before": r.decision_before,
                "decision_after": r.decision_after,
            }
            for r in top.itertuples()
        ],
    }


def format_stress(result: dict[str, Any]) -> str:
    """Plain-text report of a :func:`stress` result, for the CLI."""

    def money(x: float) -> str:
        return f"{x:,.0f}"

    def pct(a: float, b: float) -> str:
        return f"{(b - a) / a:+.1%}" if a else "n/a"

    p = result["params"]
    lines = [
        f"Stress scenario {result['scenario_id']} (as of {result['as_of_date']})",
        f"  GMV shock {p['gmv_shock']:+.0%}, streamer exit: {'yes' if p['streamer_exit'] else 'no'}, "
        f"policy {p['policy_version']}",
        f"  merchants: {result['merchants']:,}   limits changed: {result['limits_changed']:,}   "
        f"new declines: {result['new_declines']:,}",
        f"  total exposure: {money(result['total_limit_before'])} -> "
        f"{money(result['total_limit_after'])} ({pct(result['total_limit_before'], result['total_limit_after'])})",
        f"  expected loss:  {money(result['total_el_before'])} -> "
        f"{money(result['total_el_after'])} ({pct(result['total_el_before'], result['total_el_after'])})",
        "  most affected merchants:",
        f"    {'merchant':<20} {'before':>14} {'after':>14}  decision",
    ]
    for r in result["top_affected"]:
        lines.append(
            f"    {r['merchant_id']:<20} {money(r['limit_before']):>14} {money(r['limit_after']):>14}"
            f"  {r['decision_before']} -> {r['decision_after']}"
        )
    if not result["top_affected"]:
        lines.append("    (none)")
    return "\n".join(lines)
