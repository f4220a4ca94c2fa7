"""Bring your own table: read an analyst's file, clean it, tune XGBoost by inner CV, evaluate it
beside a fair logistic baseline and the WoE scorecard. Nothing is registered.

Every input problem is a one-line :class:`LivefinError` (the CLI prints it, no traceback).
Column names and category values are kept as given (``<``, ``[``, spaces, CJK); only the
booster sees sanitised names (``FeatureSpec.xgb_columns``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from livefin_etl.config import LivefinError, Settings
from livefin_etl.credit import metrics as M
from livefin_etl.credit import scorecard as SC
from livefin_etl.credit.artifacts import jsonable, write_artifacts
from livefin_etl.credit.dataset import time_split
from livefin_etl.credit.spec import FeatureSpec, frame_fingerprint, model_config
from livefin_etl.credit.training import (
    EvalData,
    Fitted,
    _auto_spec,
    _check_frame,
    _fit_on_split,
    _importances,
    evaluate,
    resolve_device,
    xgb_params,
)

log = logging.getLogger(__name__)

MIN_ROWS = 50
MIN_MINORITY = 10
BAD_WORDS = {"bad", "default", "defaulted", "yes", "y", "true", "1", "1.0", "positive"}
# a small, bounded search (6 candidates x 3 inner folds); rounds by early stopping inside it.
# min_child_weight matters on small tables: the warehouse config's 10 starves 1,000-row data.
GRID = [
    {"max_depth": d, "eta": 0.05, "colsample_bytree": 0.5, "min_child_weight": m}
    for d in (2, 3, 4)
    for m in (1, 4)
]
MAX_ROUNDS = 400


# --- reading and cleaning -------------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """Parquet or CSV/TSV (by suffix; anything else is tried as parquet, then CSV)."""
    path = Path(path)
    if not path.exists():
        raise LivefinError(f"features file not found: {path}")
    if path.is_dir() and not any(path.glob("*.parquet")):
        raise LivefinError(f"features path is a folder without parquet files: {path}")
    suffix = path.suffix.lower()
    readers = {
        ".parquet": [pd.read_parquet],
        ".pq": [pd.read_parquet],
        ".csv": [pd.read_csv],
        ".tsv": [lambda p: pd.read_csv(p, sep="\t")],
    }.get(suffix, [pd.read_parquet, pd.read_csv])
    last: Exception | None = None
    for reader in readers:
        try:
            return reader(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure is a user input problem
            last = exc
    first = str(last).strip().splitlines()[0][:200] if str(last).strip() else type(last).__name__
    raise LivefinError(f"cannot read {path.name} as a table (parquet or CSV): {first}")


def binary_label(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """0/1, bool, or two text values one of which reads as 'bad' (bad/default/yes/true)."""
    if label not in df.columns:
        return df  # _check_frame names the missing column
    y = df[label]
    if pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y) or y.isna().any():
        return df
    vals = sorted(str(v) for v in pd.unique(y.astype("string")))
    bad = [v for v in vals if v.strip().lower() in BAD_WORDS]
    if len(vals) != 2 or len(bad) != 1:
        raise LivefinError(
            f"label '{label}' must be binary 0/1 (or two values such as good/bad), "
            f"found {len(vals)} values {vals[:5]}"
        )
    out = df.copy()
    out[label] = (y.astype("string") == bad[0]).astype(int)
    log.info("label '%s': '%s' taken as 1 (bad)", label, bad[0])
    return out


def _special_codes(cfg: dict[str, Any]) -> list[float]:
    opts = {**SC.DEFAULTS, **(cfg.get("scorecard_challenger") or {})}
    return [float(c) for c in opts["special_codes"]]


def prepare(
    raw: pd.DataFrame, label: str, time_col: str | None, cfg: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Checked frame + notes: label made 0/1, constant columns dropped, table size checked."""
    df = _check_frame(binary_label(raw, label), label, time_col)
    n = len(df)
    minority = int(min(df[label].sum(), n - df[label].sum()))
    if n < MIN_ROWS or minority < MIN_MINORITY:
        raise LivefinError(
            f"table too small to model: {n} rows, {minority} in the smaller class "
            f"(need >= {MIN_ROWS} rows and >= {MIN_MINORITY} of each class)"
        )
    keep = {label, *((time_col,) if time_col else ())}
    constant = [c for c in df.columns if c not in keep and df[c].nunique(dropna=False) <= 1]
    if constant:
        log.warning("dropping constant columns: %s", ", ".join(map(str, constant)))
        df = df.drop(columns=constant)
    if len(df.columns) <= len(keep):
        raise LivefinError(
            "no usable feature columns: every column besides the label is constant "
            f"({', '.join(map(str, constant[:10]))})"
        )
    if time_col:
        try:
            t = df[time_col]
            df[time_col] = t if pd.api.types.is_numeric_dtype(t) else pd.to_datetime(t)
        except (ValueError, TypeError) as exc:
            raise LivefinError(
                f"time column '{time_col}' is not a date, month or number: {exc}"
            ) from exc
    df.columns = [str(c) for c in df.columns]
    return df, {"dropped_constant_columns": constant, "rows": n}


def model_frame(df: pd.DataFrame, spec: FeatureSpec, cfg: dict[str, Any]) -> pd.DataFrame:
    """Special codes (e.g. -999) become missing for XGBoost and the LR; the scorecard gives
    them their own bins instead."""
    codes = _special_codes(cfg)
    out = df.copy()
    for c in spec.numeric:
        col = pd.to_numeric(out[c], errors="coerce").astype(float)
        out[c] = col.where(~col.isin(codes))
    return out


# --- models ---------------------------------------------------------------------------------


def tune_xgb(
    X: np.ndarray, y: np.ndarray, spec: FeatureSpec, cfg: dict[str, Any], threads: int, seed: int
) -> dict[str, Any]:
    """Best GRID point and round count by 3-fold CV AUC on these (training) rows only."""
    base = xgb_params(cfg, spec, threads, "cpu")
    d = xgb.DMatrix(X, label=y, feature_names=spec.xgb_columns, nthread=threads)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(X, y))
    best: dict[str, Any] = {}
    for cand in GRID:
        res = xgb.cv(
            # stop on log-loss (smoother than AUC on small folds), choose by AUC there
            {**base, **cand, "eval_metric": ["auc", "logloss"]},
            d,
            num_boost_round=MAX_ROUNDS,
            folds=folds,
            early_stopping_rounds=50,
            seed=seed,
        )
        auc = float(res["test-auc-mean"].iloc[-1])
        if auc > best.get("cv_auc", -1.0) + 1e-9:
            # the final fit sees 3/2 of the rows a fold saw: a few more rounds
            best = {**cand, "n_rounds": int(len(res) * 1.2), "cv_auc": auc}
    return best


def fit_tuned(
    X: np.ndarray,
    y: np.ndarray,
    spec: FeatureSpec,
    cfg: dict[str, Any],
    threads: int,
    device: str,
    seed: int,
) -> tuple[xgb.Booster, dict[str, Any], dict[str, Any]]:
    """Tune on these rows, fit on all of them; Platt calibration on inner out-of-fold margins."""
    best = tune_xgb(X, y, spec, cfg, threads, seed)
    params = {**xgb_params(cfg, spec, threads, device), **{k: best[k] for k in GRID[0]}}
    names = spec.xgb_columns
    oof = np.zeros(len(y))
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=seed).split(X, y):
        b = xgb.train(
            params,
            xgb.DMatrix(X[tr], label=y[tr], feature_names=names, nthread=threads),
            best["n_rounds"],
        )
        b.set_param({"device": "cpu"})
        oof[te] = b.predict(xgb.DMatrix(X[te], feature_names=names), output_margin=True)
    cal = M.fit_calibrator("platt", oof, y)
    booster = xgb.train(
        params,
        xgb.DMatrix(X, label=y, feature_names=names, nthread=threads),
        best["n_rounds"],
    )
    booster.set_param({"device": "cpu", "nthread": int(threads)})
    return booster, cal, best


def fit_lr_fair(X: np.ndarray, y: np.ndarray, seed: int):
    """One-hot (from the spec), median-imputed with missing flags, standardised, L2 logistic
    with C chosen by 3-fold CV AUC on the training rows: the fair bar for XGBoost."""

    def pipe(c: float):
        return make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=c, max_iter=5000, random_state=seed),
        )

    folds = StratifiedKFold(3, shuffle=True, random_state=seed)
    scores = {
        c: cross_val_score(pipe(c), X, y, cv=folds, scoring="roc_auc").mean()
        for c in (0.01, 0.03, 0.1, 0.3, 1.0)
    }
    model = pipe(max(scores, key=lambda c: (scores[c], -c))).fit(X, y)
    return lambda Z: model.predict_proba(Z)[:, 1]


# --- cross-validation -----------------------------------------------------------------------


def _fit_cv(
    df: pd.DataFrame,
    raw: pd.DataFrame,
    label: str,
    spec: FeatureSpec,
    cfg: dict[str, Any],
    threads: int,
    device: str,
) -> tuple[Fitted, SC.Scorecard | None]:
    """Stratified k-fold; everything (tuning, calibration, LR's C, scorecard bins) is fitted
    inside each training fold, and the out-of-fold predictions are evaluated."""
    X = spec.matrix(df)
    y = df[label].to_numpy(dtype=int)
    k = int(cfg["split"].get("cv_folds", 5))
    seed = int(cfg["xgboost"].get("seed", 0))
    if np.bincount(y).min() < k * 2:
        raise LivefinError(f"too few rows of the minority class ({np.bincount(y).min()}) for CV")
    cal_cfg = cfg["calibration"]
    floor, cap = cal_cfg.get("pd_floor", 3e-4), cal_cfg.get("pd_cap", 0.9997)
    oof, oof_lr, oof_sc = np.zeros(len(y)), np.zeros(len(y)), np.full(len(y), np.nan)
    ref_pd, ref_y, ref_sc, tuned = [], [], [], []
    cats = list(spec.categorical)
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y):
        b, cal, best = fit_tuned(X[tr], y[tr], spec, cfg, threads, device, seed)
        tuned.append(best)
        mtr = b.predict(xgb.DMatrix(X[tr], feature_names=spec.xgb_columns), output_margin=True)
        mte = b.predict(xgb.DMatrix(X[te], feature_names=spec.xgb_columns), output_margin=True)
        oof[te] = M.apply_calibrator(cal, mte, floor, cap)
        ref_pd.append(M.apply_calibrator(cal, mtr, floor, cap))
        ref_y.append(y[tr])
        oof_lr[te] = fit_lr_fair(X[tr], y[tr], seed)(X[te])
        try:
            sc = SC.fit_scorecard(raw.iloc[tr], y[tr], spec.numeric, cats, cfg, spec.monotone)
            oof_sc[te] = sc.predict_pd(raw.iloc[te])
            ref_sc.append(sc.predict_pd(raw.iloc[tr]))
        except LivefinError as exc:
            log.warning("scorecard challenger skipped: %s", exc)
    booster, cal, best = fit_tuned(X, y, spec, cfg, threads, device, seed)
    gain, shap = _importances(booster, X, spec, threads, seed)
    ev = EvalData(
        y_ref=np.concatenate(ref_y),
        pd_ref=np.concatenate(ref_pd),
        y_eval=y,
        pd_eval=oof,
        X_ref=X,
        X_eval=X,
        lr_eval=oof_lr,
        gain=gain,
        shap_mean_abs=shap,
        eval_name=f"{k}-fold out-of-fold",
    )
    met = evaluate(ev, spec, cfg)
    met["best_iteration"] = booster.num_boosted_rounds()
    met["tuning"] = {"grid": GRID, "final": best, "per_fold": tuned}
    final_sc = None
    if not np.isnan(oof_sc).any():
        psi = M.psi(np.concatenate(ref_sc), oof_sc)
        met["scorecard"] = {
            **M.discrimination(y, oof_sc),
            "brier": M.brier(y, oof_sc),
            "psi_score": psi,
            "psi_band": M.psi_band(psi),
        }
        final_sc = SC.fit_scorecard(raw, y, spec.numeric, cats, cfg, spec.monotone)
        met["scorecard"]["variables"] = [v.name for v in final_sc.variables]
    counts = {"n_train": len(y), "n_valid": 0, "n_oot": len(y)}
    fp = frame_fingerprint(df[[*spec.source_columns, label]])
    return Fitted(booster, cal, spec, cfg, met, ev, counts, device, fp), final_sc


# --- entry point ----------------------------------------------------------------------------


def _time_split_fit(df, raw, label, time_col, spec, cfg, threads, device, settings):
    """Out-of-time: tune on the train window by inner CV, then the usual train/valid/oot fit."""
    split = time_split(df[time_col], cfg["split"])
    tr = split == "train"
    X, y = spec.matrix(df), df[label].to_numpy(dtype=int)
    seed = int(cfg["xgboost"].get("seed", 0))
    if len(np.unique(y[tr])) == 2 and np.bincount(y[tr]).min() >= 3:
        best = tune_xgb(X[tr], y[tr], spec, cfg, threads, seed)
        cfg = {**cfg, "xgboost": {**cfg["xgboost"], **{k: best[k] for k in GRID[0]}}}
        cfg["xgboost"]["n_estimators"] = int(best["n_rounds"] * 1.5)
        cfg["tuning"] = {}  # min_child_weight is BYO's inner-CV choice, not the warehouse grid's
    fitted = _fit_on_split(df, label, split, spec, cfg, threads, device, settings, sc_frame=raw)
    return fitted, fitted.scorecard


def train_from_file(
    settings: Settings,
    features_path: str | Path,
    label: str,
    time_col: str | None = None,
    out_dir: str | Path | None = None,
    *,
    device: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Bring your own table (parquet or CSV) with a binary label: tuned XGBoost, fair logistic
    baseline, WoE scorecard; stratified k-fold CV, or train/valid/oot with ``time_col``.
    Artifacts, ``scorecard.sql`` and the report go to ``out_dir`` (default
    ``settings.models/byof/<file stem>``); nothing is registered."""
    from livefin_etl.credit import report  # matplotlib: only when a report is written

    path = Path(features_path)
    cfg = model_config(config)
    raw_df, notes = prepare(read_table(path), label, time_col, cfg)
    spec = _auto_spec(raw_df, cfg, label, time_col)
    df = model_frame(raw_df, spec, cfg)
    dev = resolve_device(device)
    threads = settings.threads
    if time_col:
        fitted, sc = _time_split_fit(df, raw_df, label, time_col, spec, cfg, threads, dev, settings)
    else:
        fitted, sc = _fit_cv(df, raw_df, label, spec, cfg, threads, dev)
    fitted.scorecard = sc
    fitted.metrics["training_set"] = {**notes, "default_rate": float(df[label].mean())}
    out = Path(out_dir) if out_dir else Path(settings.models) / "byof" / path.stem
    out.mkdir(parents=True, exist_ok=True)
    write_artifacts(
        out, fitted, extra={"source_file": str(path), "label": label, "time_col": time_col}
    )
    report_path = out / "report.html"
    report.write_report(
        report_path,
        title=f"BYOF model: {path.name}",
        fitted=fitted,
        version=f"byof-{fitted.hash[:8]}",
    )
    m = fitted.metrics
    return jsonable(
        {
            "mode": "time_split" if time_col else f"cv{cfg['split'].get('cv_folds', 5)}",
            "model_hash": fitted.hash,
            "data_fingerprint": fitted.fingerprint,
            **fitted.counts,
            "auc": m["model"]["auc"],
            "auc_ci95": m["model"].get("auc_ci95"),
            "gini": m["model"]["gini"],
            "ks": m["model"]["ks"],
            "ks_ci95": m["model"].get("ks_ci95"),
            "calibration_max_gap": m.get("calibration_max_gap"),
            "brier": m["model"]["brier"],
            "psi_score": m["psi_score"],
            "lr_auc": m.get("lr_baseline", {}).get("auc"),
            "scorecard_auc": m.get("scorecard", {}).get("auc"),
            "features": spec.columns,
            "artifact_path": str(out),
            "report_path": str(report_path),
            "metrics": m,
        }
    )
