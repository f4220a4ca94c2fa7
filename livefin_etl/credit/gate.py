"""Champion gate (SR 11-7 outcomes analysis): the checks every new model, the first included,
must pass before it may score. A model that fails any of them is kept as a challenger, with
every failed check in its reason, and the previous champion (if any) stays in force."""

from __future__ import annotations

import math
from typing import Any, NamedTuple


class GateDecision(NamedTuple):
    status: str  # champion | challenger
    reason: str  # recorded on the registry row and the register event
    failed: list[str]  # one line per failed check; empty when promoted


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _metric_checks(model: dict[str, Any]) -> list[str]:
    """The out-of-time metrics must exist and lie in [0, 1] (AUC, KS and Brier all do)."""
    failed = []
    for key, name in (("auc", "oot AUC"), ("ks", "oot KS"), ("brier", "oot Brier")):
        value = model.get(key)
        if not _finite(value):
            failed.append(f"{name} could not be computed")
        elif not 0.0 <= value <= 1.0:
            failed.append(f"{name} {value:.4f} outside [0, 1]")
    return failed


def gate_checks(
    champion: dict[str, Any] | None, metrics: dict[str, Any], cfg: dict[str, Any]
) -> list[str]:
    """Every failed check, in a fixed order; [] means the model may become champion."""
    g = cfg["champion_gate"]
    auc_min, psi_max, tol = float(g["auc_min"]), float(g["psi_max"]), float(g["auc_tolerance"])
    failed = _metric_checks(metrics["model"])
    auc = metrics["model"].get("auc")
    if _finite(auc) and auc < auc_min:
        failed.append(f"oot AUC {auc:.4f} below floor {auc_min}")
    psi = metrics.get("psi_score")
    if not _finite(psi):
        failed.append("score PSI could not be computed")
    elif psi >= psi_max:
        failed.append(f"score PSI {psi:.3f} not below {psi_max} (unstable train -> oot)")
    legacy = (metrics.get("legacy_rule") or {}).get("auc")
    if _finite(auc) and _finite(legacy) and auc < legacy:
        failed.append(f"oot AUC {auc:.4f} below legacy rule {legacy:.4f} on the same rows")
    if champion is not None and _finite(auc):
        champ_auc = champion["auc_oot"] if champion["auc_oot"] is not None else float("-inf")
        if auc < champ_auc - tol:
            failed.append(
                f"oot AUC {auc:.4f} < champion {champion['model_version']} {champ_auc:.4f} - {tol}"
            )
    return failed


def _passed_reason(
    champion: dict[str, Any] | None, metrics: dict[str, Any], cfg: dict[str, Any]
) -> str:
    g = cfg["champion_gate"]
    auc, psi = metrics["model"]["auc"], metrics["psi_score"]
    legacy = (metrics.get("legacy_rule") or {}).get("auc")
    legacy_txt = f">= legacy rule {legacy:.4f}" if _finite(legacy) else "no legacy rule to compare"
    common = f"floor {g['auc_min']}, {legacy_txt} and score PSI {psi:.3f} < {g['psi_max']}"
    if champion is None:
        return f"first model passed the gate: oot AUC {auc:.4f} >= {common}"
    champ_auc = champion["auc_oot"] if champion["auc_oot"] is not None else float("-inf")
    return (
        f"oot AUC {auc:.4f} >= champion {champion['model_version']} {champ_auc:.4f} - "
        f"{g['auc_tolerance']}, >= {common}"
    )


def gate(
    champion: dict[str, Any] | None, metrics: dict[str, Any], cfg: dict[str, Any]
) -> GateDecision:
    """Champion/challenger decision for a new model from its metrics (``training.evaluate``)."""
    failed = gate_checks(champion, metrics, cfg)
    if not failed:
        return GateDecision("champion", _passed_reason(champion, metrics, cfg), [])
    kept = f"champion {champion['model_version']} kept" if champion else "no champion yet"
    return GateDecision("challenger", f"gate failed: {'; '.join(failed)} ({kept})", failed)
