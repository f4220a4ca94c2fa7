"""Financing limits: credit policy, tiers, portfolio guardrails and stress tests.

The policy itself is pure (:func:`compute_limits` on a pandas frame of inputs), so property
tests and the stress test run exactly the code path that :func:`build_limits` runs.

Modules: ``policy`` (config/policy.yaml and the input columns), ``rules`` (compute_limits),
``guardrails``, ``inputs`` (sql/limits/limit_inputs.sql), ``store`` (tables, views, writes),
``build`` (the stage), ``staging`` (sharded runs) and ``stress``.
"""

from livefin_etl.limits.build import build_limits
from livefin_etl.limits.guardrails import apply_guardrails, group_share_scale
from livefin_etl.limits.inputs import ensure_upstream, load_inputs
from livefin_etl.limits.policy import (
    FEATURE_COLUMNS,
    HARD_DECLINES,
    INPUT_COLUMNS,
    TIERS,
    load_policy,
    policy_version,
    validate_policy,
)
from livefin_etl.limits.rules import compute_limits
from livefin_etl.limits.staging import finalize_from_staging, stage_inputs
from livefin_etl.limits.store import create_views, ensure_tables
from livefin_etl.limits.stress import format_stress, latest_limits_date, shock_inputs, stress

__all__ = [
    "FEATURE_COLUMNS",
    "HARD_DECLINES",
    "INPUT_COLUMNS",
    "TIERS",
    "apply_guardrails",
    "build_limits",
    "compute_limits",
    "create_views",
    "ensure_tables",
    "ensure_upstream",
    "finalize_from_staging",
    "format_stress",
    "group_share_scale",
    "latest_limits_date",
    "load_inputs",
    "load_policy",
    "policy_version",
    "shock_inputs",
    "stage_inputs",
    "stress",
    "validate_policy",
]
