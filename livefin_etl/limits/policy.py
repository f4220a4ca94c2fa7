"""The credit policy's configuration (``config/policy.yaml``) and the input frame it reads."""

from __future__ import annotations

import math
from typing import Any

from livefin_etl.config import LivefinError, load_config

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
# other upstream tables contribute (sql/limits/limit_inputs.sql selects exactly these).
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

# (dotted key, lowest, highest) of every numeric setting.
NUMERIC_SETTINGS: tuple[tuple[str, float, float], ...] = (
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
)


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


def _validate_tiers(policy: dict[str, Any]) -> None:
    tiers = policy.get("tiers")
    if not isinstance(tiers, dict) or set(tiers) != set(TIERS):
        raise LivefinError(f"policy: 'tiers' must define exactly {', '.join(TIERS)}")
    for t in TIERS:
        _num(policy, f"tiers.{t}.cap", 0)
        _num(policy, f"tiers.{t}.review_days", 1, 3650)
        if not isinstance(tiers[t].get("manual_review"), bool):
            raise LivefinError(f"policy: 'tiers.{t}.manual_review' must be true/false")


def _validate_grades(policy: dict[str, Any]) -> None:
    grades = policy.get("grades")
    if not isinstance(grades, dict) or not grades:
        raise LivefinError("policy: 'grades' must map each model grade to a tier")
    for g, spec in grades.items():
        if not isinstance(spec, dict) or spec.get("tier") not in TIERS:
            raise LivefinError(f"policy: grade '{g}' needs a tier in {TIERS}")
        _num(policy, f"grades.{g}.risk_multiplier", 0, 10)


def validate_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """Raise LivefinError naming the first bad key; returns the policy unchanged."""
    if not isinstance(policy, dict) or not policy.get("version"):
        raise LivefinError("policy: 'version' is required")
    for path, lo, hi in NUMERIC_SETTINGS:
        _num(policy, path, lo, hi)
    _validate_tiers(policy)
    _validate_grades(policy)
    texts = policy.get("reason_texts") or {}
    if not isinstance(texts, dict):
        raise LivefinError("policy: 'reason_texts' must be a mapping")
    return policy


def policy_version(policy: dict[str, Any]) -> str:
    return str(policy["version"])
