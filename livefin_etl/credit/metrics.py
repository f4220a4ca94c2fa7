"""Discrimination, calibration, stability and the PD → score → grade scale."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from livefin_etl.config import LivefinError


def auc_ks(y: np.ndarray, risk: np.ndarray) -> tuple[float, float]:
    """AUC and KS of a risk score (higher = riskier); NaN when only one class is present."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    fpr, tpr, _ = roc_curve(y, risk)
    return float(roc_auc_score(y, risk)), float(np.max(np.abs(tpr - fpr)))


def discrimination(y: np.ndarray, risk: np.ndarray) -> dict[str, float]:
    auc, ks = auc_ks(y, risk)
    return {"auc": auc, "gini": 2 * auc - 1, "ks": ks}


def brier(y: np.ndarray, pd_: np.ndarray) -> float:
    return float(brier_score_loss(y, pd_))


def decile_table(y: np.ndarray, pd_: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Predicted PD vs observed default rate per PD decile (rank-based, so ties split evenly)."""
    order = np.argsort(pd_, kind="stable")
    out = []
    for i, idx in enumerate(np.array_split(order, bins)):
        if len(idx) == 0:
            continue
        out.append(
            {
                "decile": i + 1,
                "n": int(len(idx)),
                "pd_mean": float(pd_[idx].mean()),
                "default_rate": float(y[idx].mean()),
                "defaults": int(y[idx].sum()),
            }
        )
    return out


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI = Σ (A − E)·ln(A/E) over quantile bins of ``expected``; NaN is its own bin."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e_ok, a_ok = e[~np.isnan(e)], a[~np.isnan(a)]
    if len(e) == 0 or len(a) == 0:
        return float("nan")
    edges = np.unique(np.quantile(e_ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(e_ok) else []
    e_counts = np.append(
        np.bincount(np.searchsorted(edges, e_ok, side="right"), minlength=len(edges) + 1),
        np.isnan(e).sum(),
    )
    a_counts = np.append(
        np.bincount(np.searchsorted(edges, a_ok, side="right"), minlength=len(edges) + 1),
        np.isnan(a).sum(),
    )
    eps = 1e-4  # empty bins would make ln(A/E) infinite
    ep = np.maximum(e_counts / len(e), eps)
    ap = np.maximum(a_counts / len(a), eps)
    keep = (e_counts + a_counts) > 0
    return float(np.sum((ap[keep] - ep[keep]) * np.log(ap[keep] / ep[keep])))


def psi_band(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return "stable" if value < 0.1 else ("watch" if value < 0.25 else "major shift")


# --- calibration --------------------------------------------------------------------------


def fit_calibrator(method: str, margin: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Map raw model margin (log-odds) to PD, fitted on the valid window. JSON-serialisable."""
    if len(np.unique(y)) < 2:
        raise LivefinError("calibration window has a single class; cannot calibrate PD")
    if method == "platt":
        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(margin.reshape(-1, 1), y)
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
    iso.fit(margin, y)
    return {
        "method": "isotonic",
        "x": [float(v) for v in iso.X_thresholds_],
        "y": [float(v) for v in iso.y_thresholds_],
    }


def apply_calibrator(
    cal: dict[str, Any], margin: np.ndarray, floor: float = 3e-4, cap: float = 0.9997
) -> np.ndarray:
    """Calibrated PD, clipped so that odds and scores stay finite."""
    margin = np.asarray(margin, dtype=float)
    if cal["method"] == "platt":
        p = 1.0 / (1.0 + np.exp(-(cal["a"] * margin + cal["b"])))
    else:
        # same piecewise-linear interpolation as IsotonicRegression.predict (clip at ends)
        p = np.interp(margin, np.asarray(cal["x"]), np.asarray(cal["y"]))
    return np.clip(p, floor, cap)


# --- scorecard ------------------------------------------------------------------------------


def scorecard_params(cfg: dict[str, Any]) -> tuple[float, float]:
    """(offset, factor) with score = offset + factor·ln(odds good), factor = PDO / ln 2."""
    sc = cfg["scorecard"]
    factor = float(sc["pdo"]) / math.log(2)
    offset = float(sc["base_score"]) - factor * math.log(float(sc["base_odds"]))
    return offset, factor


def pd_to_score(pd_: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    offset, factor = scorecard_params(cfg)
    pd_ = np.asarray(pd_, dtype=float)
    return np.rint(offset + factor * np.log((1 - pd_) / pd_)).astype(np.int32)


def pd_to_grade(pd_: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    grades = cfg["master_scale"]
    edges = np.array([g["max_pd"] for g in grades[:-1]], dtype=float)
    names = np.array([g["grade"] for g in grades], dtype=object)
    return names[np.searchsorted(edges, np.asarray(pd_, dtype=float), side="right")]
