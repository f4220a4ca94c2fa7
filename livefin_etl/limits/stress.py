"""Stress test: one date's limits recomputed under a scenario by the same policy code."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from livefin_etl.config import LivefinError, Settings, load_config
from livefin_etl.limits.inputs import load_inputs
from livefin_etl.limits.policy import policy_version, validate_policy
from livefin_etl.limits.rules import compute_limits
from livefin_etl.limits.store import LIMITS_TABLE, ensure_tables, write_stress
from livefin_etl.warehouse import quote_ident, table_exists

GMV_COLUMNS = ("gmv_net_adj_30d", "gmv_net_adj_90d", "gmv_net_adj_365d", "gmv_net_365d")


def _check_shock(gmv_shock: float) -> None:
    if not -1.0 <= gmv_shock <= 10.0:
        raise LivefinError(f"gmv_shock must be between -1 and 10, got {gmv_shock}")


def shock_inputs(
    inputs: pd.DataFrame,
    gmv_shock: float,
    streamer_exit: bool,
    dependency_share: float,
    streamer_shares: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Scenario inputs: every net GMV input x (1 + shock). With streamer_exit, the top streamer
    of every merchant whose top streamer carries >= dependency_share leaves, and every merchant
    they sell for loses that streamer's share (``streamer_shares``: merchant_id, streamer_id,
    share of the merchant's 90-day net GMV; without it, only the top streamers are known)."""
    _check_shock(gmv_shock)
    out = inputs.copy()
    factor = np.full(len(out), 1.0 + gmv_shock)
    if streamer_exit:
        share = pd.to_numeric(out["top_streamer_share_90d"], errors="coerce").fillna(0.0)
        dependent = (share >= dependency_share).to_numpy()
        leaving = set(out.loc[dependent, "top_streamer_id"].dropna())
        if streamer_shares is None:  # only each merchant's top streamer is known
            streamer_shares = pd.DataFrame(
                {"merchant_id": out["merchant_id"], "streamer_id": out["top_streamer_id"]}
            ).assign(share=share.to_numpy())
        hit = streamer_shares[streamer_shares["streamer_id"].isin(leaving)]
        lost = hit.groupby("merchant_id")["share"].sum().clip(0, 1)
        lost_m = out["merchant_id"].map(lost).fillna(0.0).to_numpy()
        factor = factor * (1.0 - lost_m)
        gone = out["top_streamer_id"].isin(leaving).to_numpy()
        out.loc[gone, "top_streamer_share_90d"] = 0.0
        out.loc[gone, "top_streamer_id"] = None
    for c in GMV_COLUMNS:
        out[c] = pd.to_numeric(out[c], errors="coerce") * factor
    return out


def _streamer_shares(con: duckdb.DuckDBPyConnection, as_of_date: date) -> pd.DataFrame | None:
    """Each (merchant, streamer)'s share of the merchant's 90-day net GMV, as the features
    define top_streamer_share_90d; None when the marts are missing."""
    if not table_exists(con, "features.merchant_streamer_daily"):
        return None
    return con.execute(
        """with s as (
               select merchant_id, streamer_id, sum(gmv_net) as gmv
               from features.merchant_streamer_daily
               where day >= cast(? as date) - interval 90 days and day < cast(? as date)
               group by all
           )
           select s.merchant_id, s.streamer_id, s.gmv / f.gmv_net_90d as share
           from s join features.merchant_features as f
             on f.merchant_id = s.merchant_id and f.as_of_date = cast(? as date)
           where f.gmv_net_90d > 0""",
        [as_of_date, as_of_date, as_of_date],
    ).df()


def _scenario_rows(
    scenario_id: str,
    as_of_date: date,
    params: dict[str, Any],
    before: pd.DataFrame,
    after: pd.DataFrame,
) -> pd.DataFrame:
    """The rows of stress.stress_results for one scenario."""
    res = pd.DataFrame(
        {
            "scenario_id": scenario_id,
            "as_of_date": as_of_date,
            "gmv_shock": float(params["gmv_shock"]),
            "streamer_exit": bool(params["streamer_exit"]),
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
            "policy_version": params["policy_version"],
            "created_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        }
    )
    res["limit_change"] = res["limit_after"] - res["limit_before"]
    return res


def _top_affected(res: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    top = res.assign(abs_change=res["limit_change"].abs()).sort_values(
        ["abs_change", "merchant_id"], ascending=[False, True]
    )
    return [
        {
            "merchant_id": r.merchant_id,
            "limit_before": float(r.limit_before),
            "limit_after": float(r.limit_after),
            "decision_before": r.decision_before,
            "decision_after": r.decision_after,
        }
        for r in top[top["abs_change"] > 0].head(n).itertuples()
    ]


def _summary(res: pd.DataFrame) -> dict[str, Any]:
    changed = (res["limit_change"].abs() > 1e-6) | (res["decision_before"] != res["decision_after"])
    new_decline = (res["decision_after"] == "decline") & (res["decision_before"] != "decline")
    return {
        "merchants": len(res),
        "limits_changed": int(changed.sum()),
        "new_declines": int(new_decline.sum()),
        "total_limit_before": float(res["limit_before"].sum()),
        "total_limit_after": float(res["limit_after"].sum()),
        "total_el_before": float(res["el_before"].sum()),
        "total_el_after": float(res["el_after"].sum()),
        "top_affected": _top_affected(res),
    }


def stress(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of_date: date,
    gmv_shock: float = -0.3,
    streamer_exit: bool = False,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Recompute ``as_of_date``'s limits under a scenario with the same policy code; write
    stress.stress_results and return a summary for :func:`format_stress`."""
    policy = validate_policy(policy if policy is not None else load_config("policy"))
    _check_shock(gmv_shock)
    ensure_tables(con)
    inputs = load_inputs(con, as_of_date, policy)
    before = compute_limits(inputs, policy)
    shocked = shock_inputs(
        inputs,
        gmv_shock,
        streamer_exit,
        policy["stress"]["streamer_dependency_share"],
        _streamer_shares(con, as_of_date) if streamer_exit else None,
    )
    after = compute_limits(shocked, policy)
    scenario_id = f"{as_of_date.isoformat()}:gmv{gmv_shock:+.4f}:exit{int(streamer_exit)}"
    params = {
        "gmv_shock": gmv_shock,
        "streamer_exit": streamer_exit,
        "policy_version": policy_version(policy),
    }
    res = _scenario_rows(scenario_id, as_of_date, params, before, after)
    write_stress(con, res, scenario_id)
    return {
        "scenario_id": scenario_id,
        "as_of_date": as_of_date.isoformat(),
        "params": params,
        **_summary(res),
    }


def latest_limits_date(con: duckdb.DuckDBPyConnection) -> date | None:
    """The newest business date with limits (what a stress run defaults to), or None before the
    first limits run."""
    if not table_exists(con, LIMITS_TABLE):
        return None
    return con.execute(f"select max(as_of_date) from {quote_ident(LIMITS_TABLE)}").fetchone()[0]


def format_stress(result: dict[str, Any]) -> str:
    """Plain-text report of a :func:`stress` result, for the CLI."""

    def money(x: float) -> str:
        return f"{x:,.0f}"

    def pct(a: float, b: float) -> str:
        return f"{(b - a) / a:+.1%}" if a else "n/a"

    p = result["params"]
    before, after = result["total_limit_before"], result["total_limit_after"]
    el_before, el_after = result["total_el_before"], result["total_el_after"]
    lines = [
        f"Stress scenario {result['scenario_id']} (as of {result['as_of_date']})",
        f"  GMV shock {p['gmv_shock']:+.0%}, streamer exit: {'yes' if p['streamer_exit'] else 'no'}, "
        f"policy {p['policy_version']}",
        f"  merchants: {result['merchants']:,}   limits changed: {result['limits_changed']:,}   "
        f"new declines: {result['new_declines']:,}",
        f"  total exposure: {money(before)} -> {money(after)} ({pct(before, after)})",
        f"  expected loss:  {money(el_before)} -> {money(el_after)} ({pct(el_before, el_after)})",
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
