"""Reject inference by fuzzy augmentation, measured against the simulator's truth.

The legacy lender refused part of its applicants, so a model fitted on funded loans only (the
"known good/bad", KGB, model) learns from a selected sample. Fuzzy augmentation (Siddiqi,
*Credit Risk Scorecards*, 2006, ch. 6; Anderson, *The Credit Scoring Toolkit*, 2007) scores each
refused applicant with the KGB model and adds it to the training windows twice: as a default
with weight PD and as a non-default with weight 1 − PD; the model is then refitted with the
same parameters and monotone signs. Chosen over parcelling because it needs no score bands
or judgemental uplift factor, and over hard cut-offs because it keeps the KGB model's
uncertainty. It uses only what the lender has: refused applications (``raw.applications``)
and their origination-date features.

Whether it helps is judged where a lender never can: on the through-the-door (TTD)
out-of-time population, approved loans with their observed outcome plus refused applicants
with the outcome the simulator drew for them (``_truth/applications.parquet``, report-only,
like the oracle). The augmented model is a report-only challenger: the champion stays the
KGB model unless a person promotes otherwise (``reject_inference.use_for_champion`` is not
implemented on purpose)."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import xgboost as xgb

from livefin_etl.config import Settings
from livefin_etl.credit import metrics as M
from livefin_etl.credit.dataset import (
    LABEL,
    TIME_COL,
    _ensure_origination_features,
    _join_origination_features,
)
from livefin_etl.warehouse import table_exists

log = logging.getLogger(__name__)


def _refused(con: duckdb.DuckDBPyConnection, first: date, last: date) -> pd.DataFrame:
    """Refused applications filed in [first, last] (the matured loans' span), one per merchant
    and day (the features are a merchant-day row), as a loans-like frame keyed ``loan_id``."""
    return con.execute(
        """
        select application_id as loan_id, merchant_id,
               cast(applied_at as date) as origination_date, decision_reason
        from raw.applications
        where decision = 'refused'
          and cast(applied_at as date) between ?::DATE and ?::DATE
        qualify row_number() over (
            partition by merchant_id, cast(applied_at as date) order by application_id) = 1
        order by origination_date, loan_id
        """,
        [first, last],
    ).df()


def _truth_labels(settings: Settings, ids: pd.Series) -> np.ndarray:
    """The would-be outcome of refused applicants from the simulator's truth (NaN without)."""
    path = Path(settings.landing) / "_truth" / "applications.parquet"
    if not path.exists():
        return np.full(len(ids), np.nan)
    truth = pd.read_parquet(path, columns=["application_id", "defaulted_180d"])
    m = pd.DataFrame({"application_id": ids.to_numpy()}).merge(
        truth.drop_duplicates("application_id"), on="application_id", how="left"
    )
    return m["defaulted_180d"].astype(float).to_numpy()


def _windows(frame: pd.DataFrame, times: pd.Series) -> np.ndarray:
    """train/valid/oot for refused applications by the funded loans' window boundaries."""
    t = pd.to_datetime(times).to_numpy()
    ft = pd.to_datetime(frame[TIME_COL])
    valid_from = ft[frame["split"] == "valid"].min()
    oot_from = ft[frame["split"] == "oot"].min()
    return np.where(t >= oot_from, "oot", np.where(t >= valid_from, "valid", "train"))


def _kgb_pd(fitted, X: np.ndarray, threads: int) -> np.ndarray:
    from livefin_etl.credit.training import margins

    c = fitted.cfg["calibration"]
    m = margins(fitted.booster, X, fitted.spec, threads)
    return M.apply_calibrator(
        fitted.calibrator, m, c.get("pd_floor", 3e-4), c.get("pd_cap", 0.9997)
    )


def _augment(X, y, Xr, pr):
    """Known rows with weight 1; each refused row as bad (weight PD) and good (weight 1 − PD)."""
    Xa = np.vstack([X, Xr, Xr])
    ya = np.concatenate([y, np.ones(len(Xr)), np.zeros(len(Xr))])
    wa = np.concatenate([np.ones(len(y)), pr, 1.0 - pr])
    return Xa, ya, wa


def _fit_fuzzy(fitted, parts: dict[str, tuple], threads: int):
    """The KGB model's parameters and monotone signs on the augmented windows; Platt on the
    augmented valid window (weighted)."""
    from livefin_etl.credit.training import margins, xgb_params

    spec, cfg = fitted.spec, fitted.cfg
    names = spec.xgb_columns
    dtr = xgb.DMatrix(*parts["train"][:2], weight=parts["train"][2], feature_names=names)
    dva = xgb.DMatrix(*parts["valid"][:2], weight=parts["valid"][2], feature_names=names)
    booster = xgb.train(
        xgb_params(cfg, spec, threads, "cpu"),
        dtr,
        num_boost_round=int(cfg["xgboost"].get("n_estimators", 200)),
        evals=[(dva, "valid")],
        early_stopping_rounds=int(cfg["xgboost"].get("early_stopping_rounds", 30)),
        verbose_eval=False,
    )
    booster = booster[: int(booster.best_iteration) + 1]
    from sklearn.linear_model import LogisticRegression

    mv = margins(booster, parts["valid"][0], spec, threads)
    lr = LogisticRegression(C=1e6, max_iter=2000)
    lr.fit(mv.reshape(-1, 1), parts["valid"][1], sample_weight=parts["valid"][2])
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])

    def predict(X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(a * margins(booster, X, spec, threads) + b)))

    return predict, booster.num_boosted_rounds()


def _judge(y, kgb, fuzzy, n_boot: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(len(y)), "defaults": int(y.sum())}
    for name, s in (("kgb", kgb), ("fuzzy", fuzzy)):
        out[name] = {
            **M.discrimination(y, s),
            **M.bootstrap_auc_ks(y, s, n_boot, seed),
            "brier": M.brier(y, s),
            "mean_pd": float(s.mean()),
        }
    out["default_rate"] = float(y.mean())
    out["auc_diff"] = out["fuzzy"]["auc"] - out["kgb"]["auc"]
    out["auc_diff_ci95"] = M.paired_auc(y, kgb, fuzzy, n_boot, seed)["diff_ci95"]
    return out


def reject_inference(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of_date: date, fitted
) -> dict[str, Any] | None:
    """Fit the fuzzy-augmented challenger and judge it against the KGB model on the TTD
    out-of-time population; the result goes to metrics.json → reject_inference."""
    ri = fitted.cfg.get("reject_inference") or {}
    frame = getattr(fitted, "frame", None)
    if not ri.get("enabled") or frame is None or "split" not in frame.columns:
        return None
    if not table_exists(con, "raw.applications"):
        return {"skipped": "no raw.applications: the refused applicants are unknown"}
    ft = pd.to_datetime(frame[TIME_COL])
    refused = _refused(con, ft.min().date(), ft.max().date())
    if refused.empty:
        return {"skipped": "no refused application in the matured loans' span"}
    _ensure_origination_features(con, refused, "auto")
    rf = _join_origination_features(con, refused)
    for col in frame.attrs.get("censored_features") or {}:
        rf[col] = np.nan  # blanked exactly as in the KGB training set
    win = _windows(frame, rf[TIME_COL])
    threads, spec = settings.threads, fitted.spec
    X, y = spec.matrix(frame), frame[LABEL].to_numpy(dtype=int)
    Xr = spec.matrix(rf)
    pr = _kgb_pd(fitted, Xr, threads)
    split = frame["split"].to_numpy()
    parts = {
        w: _augment(X[split == w], y[split == w], Xr[win == w], pr[win == w])
        for w in ("train", "valid")
    }
    fuzzy, rounds = _fit_fuzzy(fitted, parts, threads)
    n_boot = int(fitted.cfg.get("evaluation", {}).get("bootstrap_resamples", 1000))
    seed = int(fitted.cfg["xgboost"].get("seed", 0))
    oo, ro = split == "oot", win == "oot"
    truth = _truth_labels(settings, rf.loc[ro, "loan_id"])
    out: dict[str, Any] = {
        "method": "fuzzy augmentation",
        "refused": {w: int((win == w).sum()) for w in ("train", "valid", "oot")},
        "refused_mean_kgb_pd": float(pr.mean()),
        "rounds": int(rounds),
        "approved_oot": _judge(y[oo], _kgb_pd(fitted, X[oo], threads), fuzzy(X[oo]), n_boot, seed),
    }
    known = ~np.isnan(truth)
    if known.any():
        yt = np.concatenate([y[oo], truth[known].astype(int)])
        Xt = np.vstack([X[oo], Xr[ro][known]])
        out["ttd_oot"] = _judge(yt, _kgb_pd(fitted, Xt, threads), fuzzy(Xt), n_boot, seed)
        xr = Xr[ro][known]
        out["refused_oot"] = {
            "n": int(known.sum()),
            "default_rate_truth": float(truth[known].mean()),
            "kgb_mean_pd": float(_kgb_pd(fitted, xr, threads).mean()),
            "fuzzy_mean_pd": float(fuzzy(xr).mean()),
        }
        d = out["ttd_oot"]
        lo, hi = d["auc_diff_ci95"]
        out["verdict"] = (
            f"through-the-door oot AUC {d['kgb']['auc']:.3f} (KGB) vs {d['fuzzy']['auc']:.3f} "
            f"(fuzzy), difference {d['auc_diff']:+.3f} (95% {lo:+.3f} to {hi:+.3f}): "
            + ("helps" if lo > 0 else "hurts" if hi < 0 else "no significant difference")
        )
    else:
        out["verdict"] = "no truth for refused applicants: cannot be judged (real data)"
    log.info("reject inference: %s", out["verdict"])
    return out
