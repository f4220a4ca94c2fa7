"""The limits stage: inputs -> policy -> limits.financing_limits for one business date."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import duckdb
import pandas as pd

from livefin_etl.config import LivefinError, Settings, config_fingerprint, load_config
from livefin_etl.limits.inputs import load_inputs
from livefin_etl.limits.policy import policy_version, validate_policy
from livefin_etl.limits.rules import compute_limits
from livefin_etl.limits.store import ensure_tables, write_limits

log = logging.getLogger(__name__)


def _stamp(
    out: pd.DataFrame, as_of_date: date, run_id: str, policy: dict[str, Any]
) -> pd.DataFrame:
    """The policy's result plus the row's date, validity, currency and lineage columns."""
    out["as_of_date"] = as_of_date
    out["currency"] = str(policy.get("currency", "CNY"))
    out["policy_version"] = policy_version(policy)
    out["policy_fingerprint"] = config_fingerprint(policy)
    out["valid_from"] = as_of_date
    out["valid_until"] = [as_of_date + timedelta(days=int(x)) for x in out["review_days"]]
    out["run_id"] = run_id
    out["created_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    return out


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
    as_of_date: date,
    run_id: str,
    policy: dict[str, Any] | None = None,
    inputs: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Compute limits for ``as_of_date`` and replace that date in limits.financing_limits (one
    transaction).

    ``inputs`` (from :func:`load_inputs`, e.g. gathered shard by shard) skips loading them."""
    if not run_id:
        raise LivefinError("build_limits needs a run_id")
    policy = validate_policy(policy if policy is not None else load_config("policy"))
    ensure_tables(con)
    if inputs is None:
        inputs = load_inputs(con, as_of_date, policy)
    out = _stamp(compute_limits(inputs, policy), as_of_date, run_id, policy)
    write_limits(con, out, as_of_date)
    result = _summary(out)
    result.update(
        {
            "as_of_date": as_of_date.isoformat(),
            "run_id": run_id,
            "policy_version": policy_version(policy),
            "guardrails": dict(out.attrs.get("guardrail_info", {})),
        }
    )
    log.info("limits %s: %s", as_of_date, result["by_decision"])
    return result
