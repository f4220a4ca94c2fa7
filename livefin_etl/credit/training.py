"""Fit, calibrate and evaluate the XGBoost PD model; bring-your-own-features.

Nothing here touches the registry: ``credit.lifecycle.train`` fits with :func:`fit` and then
registers, so the dependency runs one way (lifecycle -> training, registry -> artifacts)."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from livefin_etl.config import LivefinError, Settings
from livefin_etl.credit import metrics as M
from livefin_etl.credit import scorecard as SC
from livefin_etl.credit.artifacts import model_hash
from livefin_etl.credit.dataset import (
    LABEL,
    TIME_COL,
    EnsureFeatures,
    build_training_set,
    time_split,
)
from livefin_etl.credit.spec import FeatureSpec, frame_fingerprint, model_config, spec_from_frame

log = logging.getLogger(__name__)

# never features, even when a frame carries them: keys, outcomes, the lender's own decision
NON_FEATURES = (
    "split",
    "loan_id",
    "merchant_id",
    "as_of_date",
    "origination_date",
    "max_dpd",
    "repayment_rows",
    "feature_version",
    "legacy_limit",
    "principal",
    LABEL,
)


# --- device ---------------------------------------------------------------------------------


def resolve_device(device: str | None) -> str:
    """ "cuda" only when asked and usable; otherwise CPU with a logged warning."""
    if not device or device == "cpu":
        return "cpu"
    if not device.startswith("cuda"):
        raise LivefinError(f"unknown device '{device}'; use 'cpu' or 'cuda'")
    if not xgb.build_info().get("USE_CUDA"):
        log.warning("device=%s requested but this xgboost build has no CUDA; using CPU", device)
        return "cpu"
    # a CUDA build on a machine without a GPU either raises or silently switches to CPU
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            probe = xgb.DMatrix(np.array([[0.0], [1.0]]), label=np.array([0.0, 1.0]))
            b = xgb.train({"device": device, "tree_method": "hist"}, probe, 1)
            used = json.loads(b.save_config())["learner"]["generic_param"].get("device", "")
    except xgb.core.XGBoostError as exc:
        log.warning("device=%s unusable (%s); using CPU", device, str(exc).splitlines()[0])
        return "cpu"
    gpu_msgs = [str(w.message) for w in caught if "GPU" in str(w.message)]
    if gpu_msgs or not used.startswith("cuda"):
        log.warning(
            "device=%s requested but no usable GPU (%s); using CPU",
            device,
            gpu_msgs[0].strip() if gpu_msgs else f"xgboost chose {used or 'cpu'}",
        )
        return "cpu"
    return device


# --- fitting --------------------------------------------------------------------------------


def xgb_params(cfg: dict[str, Any], spec: FeatureSpec, threads: int, device: str) -> dict:
    p = dict(cfg["xgboost"])
    p.pop("n_estimators", None)
    p.pop("early_stopping_rounds", None)
    p.update(
        {
            "objective": "binary:logistic",
            "nthread": int(threads),
            "device": device,
            "monotone_constraints": "(" + ",".join(str(c) for c in spec.constraints()) + ")",
            "verbosity": 0,
        }
    )
    return p


def fit_booster(
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    X_va: np.ndarray,
    y_va: np.ndarray,
    spec: FeatureSpec,
    cfg: dict[str, Any],
    threads: int,
    device: str = "cpu",
) -> xgb.Booster:
    """hist + monotone constraints, early stopping on the valid window, trimmed to the best round."""
    names = spec.xgb_columns
    dtr = xgb.DMatrix(X_tr, label=y_tr, feature_names=names, nthread=threads)
    dva = xgb.DMatrix(X_va, label=y_va, feature_names=names, nthread=threads)
    booster = xgb.train(
        xgb_params(cfg, spec, threads, device),
        dtr,
        num_boost_round=int(cfg["xgboost"].get("n_estimators", 200)),
        evals=[(dva, "valid")],
        early_stopping_rounds=int(cfg["xgboost"].get("early_stopping_rounds", 30)),
        verbose_eval=False,
    )
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    booster = booster[: best + 1]
    booster.set_param({"device": "cpu", "nthread": int(threads)})  # predictions below run on CPU
    return booster


def tune_booster(
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    X_va: np.ndarray,
    y_va: np.ndarray,
    spec: FeatureSpec,
    cfg: dict[str, Any],
    threads: int,
    device: str = "cpu",
) -> tuple[xgb.Booster, dict[str, Any], dict[str, Any]]:
    """:func:`fit_booster` for each ``tuning.min_child_weight`` (config order, most regularised
    first); the lowest early-stopping valid log-loss wins, a later value only when strictly
    lower. min_child_weight bounds a leaf's hessian, Σ p(1 − p), i.e. roughly the expected
    defaults in the leaf: a fixed 10 at a 5 % default rate needs ~200 loans per leaf and cannot
    isolate the riskiest merchants, which compresses the PDs at the top. Returns the booster,
    the config with the chosen value (the cross-fit and reject inference reuse it) and the record.
    """
    grid = list((cfg.get("tuning") or {}).get("min_child_weight") or [])
    if not grid:
        return fit_booster(X_tr, y_tr, X_va, y_va, spec, cfg, threads, device), cfg, {}
    best, losses = None, {}
    for mcw in grid:
        c = {**cfg, "xgboost": {**cfg["xgboost"], "min_child_weight": float(mcw)}}
        b = fit_booster(X_tr, y_tr, X_va, y_va, spec, c, threads, device)
        loss = float(np.mean(_logloss(y_va, margins(b, X_va, spec, threads))))
        losses[str(mcw)] = loss
        if best is None or loss < best[0]:
            best = (loss, b, c, mcw)
    _, booster, chosen_cfg, mcw = best
    info = {"min_child_weight": float(mcw), "valid_logloss": losses}
    return booster, chosen_cfg, {**info, "rounds": booster.num_boosted_rounds()}


def _logloss(y: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Per-row log-loss of raw margins (stable: log(1 + e^m) − y·m)."""
    return np.logaddexp(0.0, margin) - np.asarray(y, dtype=float) * margin


def margins(booster: xgb.Booster, X: np.ndarray, spec: FeatureSpec, threads: int) -> np.ndarray:
    d = xgb.DMatrix(X, feature_names=spec.xgb_columns, nthread=threads)
    return booster.predict(d, output_margin=True).astype(float)


def _lr_transform(X: np.ndarray, big: np.ndarray) -> np.ndarray:
    X = X.astype(float).copy()
    X[:, big] = np.sign(X[:, big]) * np.log1p(np.abs(X[:, big]))  # tame amounts for the LR
    return X


def fit_lr_baseline(X_tr: np.ndarray, y_tr: np.ndarray, seed: int):
    """Standardised, median-imputed logistic regression on the same features: the bar to beat."""
    with warnings.catch_warnings():  # an all-NaN column is legal (imputed to 0 below)
        warnings.simplefilter("ignore", RuntimeWarning)
        big = np.nan_to_num(np.nanmax(np.abs(X_tr), axis=0), nan=0.0) > 100
    all_nan = np.all(np.isnan(X_tr), axis=0)
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=2000, random_state=seed),
    )
    Xt = _lr_transform(X_tr, big)
    Xt[:, all_nan] = 0.0
    model.fit(Xt, y_tr)

    def predict(X: np.ndarray) -> np.ndarray:
        Xe = _lr_transform(X, big)
        Xe[:, all_nan] = 0.0
        return model.predict_proba(Xe)[:, 1]

    return predict


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class EvalData:
    """Arrays the metrics and the report are computed from (eval = oot, or CV out-of-fold)."""

    y_ref: np.ndarray
    pd_ref: np.ndarray
    y_eval: np.ndarray
    pd_eval: np.ndarray
    X_ref: np.ndarray
    X_eval: np.ndarray
    lr_eval: np.ndarray | None = None
    legacy_eval: np.ndarray | None = None
    oracle_eval: np.ndarray | None = None
    shap_mean_abs: dict[str, float] = field(default_factory=dict)
    gain: dict[str, float] = field(default_factory=dict)
    eval_name: str = "oot"


def evaluate(ev: EvalData, spec: FeatureSpec, cfg: dict[str, Any]) -> dict[str, Any]:
    bins = int(cfg["psi"].get("bins", 10))
    out: dict[str, Any] = {
        "eval_window": ev.eval_name,
        "n_eval": int(len(ev.y_eval)),
        "default_rate_eval": float(ev.y_eval.mean()),
    }
    out["model"] = {
        **M.discrimination(ev.y_eval, ev.pd_eval),
        "brier": M.brier(ev.y_eval, ev.pd_eval),
    }
    n_boot = int(cfg.get("evaluation", {}).get("bootstrap_resamples", 1000))
    seed = int(cfg["xgboost"].get("seed", 0))
    out["model"].update(M.bootstrap_auc_ks(ev.y_eval, ev.pd_eval, n_boot, seed))
    out["model_ref"] = M.discrimination(ev.y_ref, ev.pd_ref)
    if ev.lr_eval is not None:
        out["lr_baseline"] = {
            **M.discrimination(ev.y_eval, ev.lr_eval),
            "brier": M.brier(ev.y_eval, ev.lr_eval),
        }
    if ev.legacy_eval is not None:
        out["legacy_rule"] = M.discrimination(ev.y_eval, ev.legacy_eval)
    if ev.oracle_eval is not None:
        ok = ~np.isnan(ev.oracle_eval)
        out["oracle"] = {
            **M.discrimination(ev.y_eval[ok], ev.oracle_eval[ok]),
            **M.bootstrap_auc_ks(ev.y_eval[ok], ev.oracle_eval[ok], n_boot, seed),
            "n": int(ok.sum()),
        }
        # issue 16: the model's AUC as a share of the oracle's on the same loans (paired)
        mo = M.auc_ks(ev.y_eval[ok], ev.pd_eval[ok])[0]
        pair = M.paired_auc(ev.y_eval[ok], ev.oracle_eval[ok], ev.pd_eval[ok], n_boot, seed)
        out["oracle"].update(model_auc=mo, model_share=mo / out["oracle"]["auc"])
        out["oracle"].update(model_share_ci95=pair["ratio_ci95"], model_diff_ci95=pair["diff_ci95"])
    out["deciles"] = M.calibration_gaps(M.decile_table(ev.y_eval, ev.pd_eval))
    out["calibration_max_gap"] = max((abs(d["gap"]) for d in out["deciles"]), default=None)
    out["calibration_slope"] = M.calibration_slope(ev.y_eval, ev.pd_eval)
    out["psi_score"] = M.psi(ev.pd_ref, ev.pd_eval, bins)
    out["psi_band"] = M.psi_band(out["psi_score"])
    out["psi_features"] = {
        c: M.psi(ev.X_ref[:, i], ev.X_eval[:, i], bins)
        for i, c in enumerate(spec.columns)
        if i < len(spec.numeric)
    }
    grades = M.pd_to_grade(ev.pd_eval, cfg)
    out["grades"] = [
        {
            "grade": g["grade"],
            "n": int((grades == g["grade"]).sum()),
            "default_rate": float(ev.y_eval[grades == g["grade"]].mean())
            if (grades == g["grade"]).any()
            else None,
        }
        for g in cfg["master_scale"]
    ]
    out["gain"] = ev.gain
    out["shap_mean_abs"] = ev.shap_mean_abs
    return out


def _importances(
    booster: xgb.Booster, X: np.ndarray, spec: FeatureSpec, threads: int, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    back = dict(zip(spec.xgb_columns, spec.columns, strict=True))  # report the original names
    gain = {back.get(k, k): float(v) for k, v in booster.get_score(importance_type="gain").items()}
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(X), size=min(len(X), 2000), replace=False)
    d = xgb.DMatrix(X[np.sort(idx)], feature_names=spec.xgb_columns, nthread=threads)
    contribs = booster.predict(d, pred_contribs=True)[:, :-1]
    shap = dict(zip(spec.columns, np.abs(contribs).mean(axis=0).astype(float), strict=True))
    return gain, shap


# --- shared core ----------------------------------------------------------------------------


@dataclass
class Fitted:
    booster: xgb.Booster
    calibrator: dict[str, Any]
    spec: FeatureSpec
    cfg: dict[str, Any]
    metrics: dict[str, Any]
    ev: EvalData
    counts: dict[str, int]
    device: str
    fingerprint: str
    scorecard: Any = None  # the WoE scorecard challenger (credit.scorecard.Scorecard) or None
    frame: Any = None  # the warehouse training set with its split (reject inference reads it)

    @property
    def hash(self) -> str:
        return model_hash(self.booster)


def _check_frame(df: pd.DataFrame, label: str, time_col: str | None) -> pd.DataFrame:
    if df is None or len(df) == 0:
        raise LivefinError("empty training set: the frame has no rows")
    missing = [c for c in (label, time_col) if c and c not in df.columns]
    if missing:
        raise LivefinError(
            f"missing columns in the training data: {', '.join(missing)} "
            f"(available: {', '.join(map(str, df.columns[:30]))})"
        )
    y = df[label]
    if y.isna().any():
        raise LivefinError(f"label '{label}' has {int(y.isna().sum())} missing values")
    values = set(pd.unique(y.astype(object)))
    if not values <= {0, 1} or len(values) == 0:
        shown = sorted(map(str, values))[:5]
        raise LivefinError(f"label '{label}' must be binary 0/1, found values {shown}")
    if len({int(v) for v in values}) < 2:
        raise LivefinError(
            f"label '{label}' has a single class; need both defaults and non-defaults"
        )
    out = df.reset_index(drop=True).copy()
    out[label] = out[label].astype(int)
    return out


def _need_both(y: np.ndarray, window: str) -> None:
    if len(y) == 0:
        raise LivefinError(f"the {window} window is empty; add data or change split fractions")
    if len(np.unique(y)) < 2:
        raise LivefinError(
            f"the {window} window has a single class ({len(y)} rows, "
            f"rate {y.mean():.3f}); widen the window or add data"
        )


def _legacy_risk(df: pd.DataFrame) -> np.ndarray | None:
    # legacy rule: a bigger legacy limit means the rule thought the merchant safer
    for col in ("legacy_limit", "gmv_gross_30d"):
        if col in df.columns and df[col].notna().any():
            return -df[col].to_numpy(dtype=float, na_value=np.nan)
    return None


def _oracle(settings: Settings | None, df: pd.DataFrame) -> np.ndarray | None:
    """True PD from the simulator's truth file, if any: report-only, never used to fit."""
    if settings is None or "loan_id" not in df.columns:
        return None
    path = Path(settings.landing) / "_truth" / "loans.parquet"
    if not path.exists():
        return None
    try:
        truth = pd.read_parquet(path, columns=["loan_id", "true_pd"])
    except Exception as exc:  # noqa: BLE001 - optional report input, never fatal
        log.warning("truth file %s unreadable: %s", path, exc)
        return None
    m = df[["loan_id"]].merge(truth.drop_duplicates("loan_id"), on="loan_id", how="left")
    return m["true_pd"].to_numpy(dtype=float, na_value=np.nan)


def _fit_on_split(
    df: pd.DataFrame,
    label: str,
    split: np.ndarray,
    spec: FeatureSpec,
    cfg: dict[str, Any],
    threads: int,
    device: str,
    settings: Settings | None,
    sc_frame: pd.DataFrame | None = None,
) -> Fitted:
    X = spec.matrix(df)
    y = df[label].to_numpy(dtype=int)
    masks = {w: split == w for w in ("train", "valid", "oot")}
    for w, m in masks.items():
        _need_both(y[m], w)
    tr, va, oo = masks["train"], masks["valid"], masks["oot"]
    booster, cfg, tuning = tune_booster(X[tr], y[tr], X[va], y[va], spec, cfg, threads, device)
    cal_cfg = cfg["calibration"]
    m_all = margins(booster, X, spec, threads)
    cal, cal_info = _calibrate(X, y, tr | va, va, m_all, booster, spec, cfg, threads, device)
    pd_all = M.apply_calibrator(
        cal, m_all, cal_cfg.get("pd_floor", 3e-4), cal_cfg.get("pd_cap", 0.9997)
    )
    seed = int(cfg["xgboost"].get("seed", 0))
    lr = fit_lr_baseline(X[tr], y[tr], seed)
    legacy = _legacy_risk(df)
    oracle = _oracle(settings, df)
    gain, shap = _importances(booster, X[oo], spec, threads, seed)
    ev = EvalData(
        y_ref=y[tr],
        pd_ref=pd_all[tr],
        y_eval=y[oo],
        pd_eval=pd_all[oo],
        X_ref=X[tr],
        X_eval=X[oo],
        lr_eval=lr(X[oo]),
        legacy_eval=None if legacy is None else legacy[oo],
        oracle_eval=None if oracle is None else oracle[oo],
        gain=gain,
        shap_mean_abs=shap,
    )
    met = evaluate(ev, spec, cfg)
    met["model_margin_auc_eval"] = M.auc_ks(y[oo], m_all[oo])[0]
    met["valid"] = {**M.discrimination(y[va], pd_all[va]), "brier": M.brier(y[va], pd_all[va])}
    met["best_iteration"] = booster.num_boosted_rounds()
    met["calibration"] = cal_info
    met["tuning"] = tuning
    counts = {"n_train": int(tr.sum()), "n_valid": int(va.sum()), "n_oot": int(oo.sum())}
    fp = frame_fingerprint(df[[*spec.source_columns, label]].assign(_split=split))
    sc = _scorecard(df if sc_frame is None else sc_frame, y, tr, oo, spec, cfg, met)
    return Fitted(booster, cal, spec, cfg, met, ev, counts, device, fp, sc)


def crossfit_margins(
    X: np.ndarray,
    y: np.ndarray,
    spec: FeatureSpec,
    cfg: dict[str, Any],
    threads: int,
    device: str,
    rounds: int,
    folds: int,
) -> np.ndarray:
    """Out-of-fold margins over time-ordered contiguous blocks: each block is predicted by a
    booster with the final model's parameters and round count fitted on the other blocks."""
    params = xgb_params(cfg, spec, threads, device)
    out = np.empty(len(y))
    for idx in np.array_split(np.arange(len(y)), folds):
        rest = np.setdiff1d(np.arange(len(y)), idx)
        d = xgb.DMatrix(X[rest], label=y[rest], feature_names=spec.xgb_columns, nthread=threads)
        b = xgb.train(params, d, num_boost_round=rounds, verbose_eval=False)
        b.set_param({"device": "cpu"})
        out[idx] = margins(b, X[idx], spec, threads)
    return out


def _calibrate(X, y, fit_rows, va, m_all, booster, spec, cfg, threads, device):
    """The PD map and how it was chosen (config ``calibration``): on the valid window's margins,
    or (``sample: crossfit``) on out-of-fold margins of every pre-out-of-time loan, several
    times the defaults of the valid window alone; ``method: auto`` picks by CV log-loss."""
    c = cfg["calibration"]
    sample = c.get("sample", "valid")
    if sample == "crossfit":
        rows = booster.num_boosted_rounds()
        folds = int(c.get("folds", 5))
        m_cal = crossfit_margins(X[fit_rows], y[fit_rows], spec, cfg, threads, device, rows, folds)
        y_cal = y[fit_rows]
    else:
        m_cal, y_cal = m_all[va], y[va]
    method, scores = c.get("method", "platt"), {}
    if method == "auto":
        cands = list(c.get("candidates", ["platt", "beta"]))
        tol = float(c.get("tolerance", 0.002))
        seed = int(cfg["xgboost"].get("seed", 0))
        cal, scores = M.choose_calibrator(m_cal, y_cal, cands, tolerance=tol, seed=seed)
    else:
        cal = M.fit_calibrator(method, m_cal, y_cal)
    info = {"sample": sample, "n": len(y_cal), "defaults": int(y_cal.sum())}
    return cal, {**info, "method": cal["method"], "cv_logloss": scores}


def _scorecard(df, y, tr, oo, spec: FeatureSpec, cfg: dict[str, Any], met: dict[str, Any]):
    """The WoE scorecard challenger on the same training window, judged on the same oot rows.
    Its failure (e.g. no variable with information value) never blocks the XGBoost model."""
    try:
        sc = SC.fit_scorecard(
            df[tr], y[tr], spec.numeric, list(spec.categorical), cfg, spec.monotone
        )
    except LivefinError as exc:
        log.warning("scorecard challenger skipped: %s", exc)
        met["scorecard"] = {"skipped": str(exc)}
        return None
    met["scorecard"] = SC.evaluate_scorecard(sc, df[tr], y[tr], df[oo], y[oo])
    return sc


def _auto_spec(
    df: pd.DataFrame, cfg: dict[str, Any], label: str, time_col: str | None
) -> FeatureSpec:
    configured = list(cfg["features"] or {})
    if configured and all(c in df.columns for c in configured):
        return spec_from_frame(df, cfg, strict=True)
    exclude = (*NON_FEATURES, *((time_col,) if time_col else ()))
    spec = spec_from_frame(df, cfg, label=label, exclude=exclude, strict=False)
    if not spec.columns:
        raise LivefinError("no usable feature columns (numeric, or categorical with ≤ 50 levels)")
    return spec


# --- public entry points --------------------------------------------------------------------


def fit(
    con,
    settings: Settings,
    as_of_date: date,
    *,
    features_df: pd.DataFrame | None = None,
    label: str | None = None,
    time_col: str | None = None,
    device: str | None = None,
    config: dict[str, Any] | None = None,
    ensure_features: EnsureFeatures | None | Literal["auto"] = "auto",
) -> Fitted:
    """Fit on matured loans as of ``as_of_date`` (or on ``features_df``); nothing is written."""
    cfg = model_config(config)
    if features_df is None:
        df = build_training_set(con, as_of_date, cfg, ensure_features)
        label, time_col = LABEL, TIME_COL
        split = df["split"].to_numpy()
        spec = spec_from_frame(df, cfg, strict=True)
    else:
        if not label or not time_col:
            raise LivefinError(
                "train(features_df=...) needs label= and time_col= for the "
                "out-of-time split; use train_from_file for cross-validation"
            )
        df = _check_frame(features_df, label, time_col)
        split = time_split(df[time_col], cfg["split"])
        spec = _auto_spec(df, cfg, label, time_col)
    attrs = dict(df.attrs)
    df = _check_frame(df, label, time_col)
    dev = resolve_device(device)
    fitted = _fit_on_split(df, label, split, spec, cfg, settings.threads, dev, settings)
    fitted.metrics["training_set"] = {
        **attrs,
        "rows": len(df),
        "default_rate": float(df[label].mean()),
    }
    if features_df is None:
        fitted.frame = df.assign(split=split)
        fitted.frame.attrs = attrs
    return fitted


def load_metrics(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
