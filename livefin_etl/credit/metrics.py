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


def _beta_features(margin: np.ndarray) -> np.ndarray:
    """[ln s, −ln(1 − s)] of s = sigmoid(margin), computed stably (beta calibration's inputs)."""
    m = np.asarray(margin, dtype=float)
    return np.column_stack([-np.logaddexp(0.0, -m), np.logaddexp(0.0, m)])


def fit_calibrator(method: str, margin: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Map raw model margin (log-odds) to PD. JSON-serialisable. ``beta`` is Kull et al.'s (2017)
    beta calibration, logit PD = a·ln s − b·ln(1 − s) + c with s = sigmoid(margin): Platt's
    two-sided generalisation; it falls back to Platt when a fitted a or b is negative (the map
    would not be increasing)."""
    if len(np.unique(y)) < 2:
        raise LivefinError("calibration window has a single class; cannot calibrate PD")
    if method == "beta":
        lr = LogisticRegression(C=1e6, max_iter=2000).fit(_beta_features(margin), y)
        a, b = (float(v) for v in lr.coef_[0])
        if a >= 0 and b >= 0:
            return {"method": "beta", "a": a, "b": b, "c": float(lr.intercept_[0])}
        method = "platt"
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
    elif cal["method"] == "beta":
        f = _beta_features(margin)
        p = 1.0 / (1.0 + np.exp(-(cal["a"] * f[:, 0] + cal["b"] * f[:, 1] + cal["c"])))
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


# --- intervals ------------------------------------------------------------------------------


def _fast_auc_ks(y: np.ndarray, risk: np.ndarray) -> tuple[float, float]:
    """AUC (Mann-Whitney, ties half) and KS of one sample; no sklearn overhead per resample."""
    order = np.argsort(-risk, kind="stable")
    r, t = risk[order], y[order]
    n_pos, n_neg = t.sum(), len(t) - t.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan"), float("nan")
    last = np.r_[np.flatnonzero(r[1:] != r[:-1]), len(r) - 1]  # end of each tied group
    tp, fp = np.cumsum(t)[last], np.cumsum(1 - t)[last]
    tpr, fpr = np.r_[0.0, tp / n_pos], np.r_[0.0, fp / n_neg]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return auc, float(np.max(np.abs(tpr - fpr)))


def bootstrap_auc_ks(
    y: np.ndarray, risk: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, list[float] | int | str]:
    """95% percentile intervals of AUC and KS: stratified bootstrap (defaults and non-defaults
    resampled separately, so every resample has both classes and the default count is fixed)."""
    y = np.asarray(y, dtype=int)
    risk = np.asarray(risk, dtype=float)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) < 2 or len(neg) < 2:
        return {"auc_ci95": [math.nan, math.nan], "ks_ci95": [math.nan, math.nan], "n_boot": 0}
    rng = np.random.default_rng(seed)
    stats = np.empty((n_boot, 2))
    for b in range(n_boot):
        idx = np.concatenate(
            [rng.choice(pos, len(pos), replace=True), rng.choice(neg, len(neg), replace=True)]
        )
        stats[b] = _fast_auc_ks(y[idx], risk[idx])
    lo, hi = np.nanquantile(stats, [0.025, 0.975], axis=0)
    return {
        "auc_ci95": [float(lo[0]), float(hi[0])],
        "ks_ci95": [float(lo[1]), float(hi[1])],
        "n_boot": int(n_boot),
        "method": "stratified percentile bootstrap",
    }


def paired_auc(
    y: np.ndarray, base: np.ndarray, other: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """95% intervals of AUC(other) − AUC(base) and AUC(other) / AUC(base) on the same rows:
    stratified paired bootstrap (both scores see the same resample, so their shared noise
    cancels and the interval is that of the comparison, not of either AUC)."""
    y = np.asarray(y, dtype=int)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) < 2 or len(neg) < 2 or n_boot <= 0:
        return {"diff_ci95": [math.nan, math.nan], "ratio_ci95": [math.nan, math.nan]}
    b, o = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    rng = np.random.default_rng(seed)
    stats = np.empty((n_boot, 2))
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        ab, ao = _fast_auc_ks(y[idx], b[idx])[0], _fast_auc_ks(y[idx], o[idx])[0]
        stats[i] = (ao - ab, ao / ab)
    lo, hi = np.quantile(stats, [0.025, 0.975], axis=0)
    return {"diff_ci95": [float(lo[0]), float(hi[0])], "ratio_ci95": [float(lo[1]), float(hi[1])]}


def wilson(k: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial rate k / n."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def calibration_gaps(deciles: list[dict[str, float]]) -> list[dict[str, float]]:
    """Per decile: gap = observed default rate − mean PD, with the observed rate's Wilson 95%
    interval carried over (the mean PD is the model's fixed statement, the rate is sampled)."""
    out = []
    for d in deciles:
        lo, hi = wilson(d["defaults"], d["n"])
        out.append(
            {
                **d,
                "gap": d["default_rate"] - d["pd_mean"],
                "gap_ci95": [lo - d["pd_mean"], hi - d["pd_mean"]],
            }
        )
    return out


def calibration_slope(y: np.ndarray, pd_: np.ndarray) -> dict[str, float]:
    """Logistic recalibration y ~ a + b·logit(PD): slope b < 1 means the PDs are too spread out,
    b > 1 too compressed (CBPE then understates AUC); intercept-in-the-large a separately."""
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        return {"slope": math.nan, "intercept": math.nan}
    p = np.clip(np.asarray(pd_, dtype=float), 1e-6, 1 - 1e-6)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.log(p / (1 - p)).reshape(-1, 1), y)
    return {"slope": float(lr.coef_[0, 0]), "intercept": float(lr.intercept_[0])}


def choose_calibrator(
    margin: np.ndarray,
    y: np.ndarray,
    candidates: list[str],
    folds: int = 5,
    tolerance: float = 0.002,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The documented rule of ``calibration.method: auto``: each candidate's log-loss in
    ``folds``-fold cross-validation on the calibration sample; the first candidate (the
    simplest, Platt) wins unless another is lower by more than ``tolerance``. Returns the
    chosen calibrator fitted on the whole sample and every candidate's CV log-loss."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    margin, y = np.asarray(margin, dtype=float), np.asarray(y, dtype=int)
    k = max(2, min(folds, int(min(np.bincount(y, minlength=2)))))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores: dict[str, float] = {}
    for name in candidates:
        pred = np.empty(len(y))
        for tr, te in cv.split(margin.reshape(-1, 1), y):
            pred[te] = apply_calibrator(fit_calibrator(name, margin[tr], y[tr]), margin[te])
        scores[name] = float(log_loss(y, pred, labels=[0, 1]))
    best = candidates[0]
    for name in candidates[1:]:
        if scores[name] < scores[best] - tolerance:
            best = name
    return fit_calibrator(best, margin, y), scores
