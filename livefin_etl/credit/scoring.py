"""Nightly scoring with the champion: calibrated PD, score, grade and Reg B reason codes."""

from __future__ import annotations

import logging
import math
import uuid
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import xgboost as xgb

from livefin_etl.config import LivefinError, Settings, fault_point
from livefin_etl.credit import metrics as M
from livefin_etl.credit.registry import LoadedModel, load_champion, load_model
from livefin_etl.warehouse import table_exists, transaction

log = logging.getLogger(__name__)

SCORES_DDL = """
create table if not exists credit.merchant_scores (
    merchant_id VARCHAR, as_of_date DATE, pd DOUBLE, score INTEGER, grade VARCHAR,
    reason_code_1 VARCHAR, reason_code_2 VARCHAR, reason_code_3 VARCHAR, reason_code_4 VARCHAR,
    reason_text_1 VARCHAR, reason_text_2 VARCHAR, reason_text_3 VARCHAR, reason_text_4 VARCHAR,
    reason_shap_1 DOUBLE, reason_shap_2 DOUBLE, reason_shap_3 DOUBLE, reason_shap_4 DOUBLE,
    model_version VARCHAR, run_id VARCHAR
);
COMMENT ON TABLE credit.merchant_scores IS 'Champion PD, score, grade and up to 4 adverse-action reasons per merchant and date';
COMMENT ON COLUMN credit.merchant_scores.pd IS 'Calibrated probability of default (60+ dpd within 180 days of a loan taken at as_of_date)';
COMMENT ON COLUMN credit.merchant_scores.score IS 'Scorecard points: 600 at 50:1 good:bad odds, 20 points to double the odds';
COMMENT ON COLUMN credit.merchant_scores.grade IS 'Master-scale grade from PD bands (config/model.yaml master_scale)';
COMMENT ON COLUMN credit.merchant_scores.reason_code_1 IS 'Most important factor that raised PD (TreeSHAP > 0); NULL when none';
COMMENT ON COLUMN credit.merchant_scores.reason_text_1 IS 'Reason text with the merchant''s actual value';
COMMENT ON COLUMN credit.merchant_scores.reason_shap_1 IS 'TreeSHAP contribution of reason 1 in log-odds (always > 0)';
COMMENT ON COLUMN credit.merchant_scores.model_version IS 'Champion model version from credit.model_registry';
COMMENT ON COLUMN credit.merchant_scores.run_id IS 'Scoring run id (lineage)';
"""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists credit")
    con.execute(SCORES_DDL)


def _features_for(
    con: duckdb.DuckDBPyConnection, d: date, merchant_id: str | None = None
) -> pd.DataFrame:
    if not table_exists(con, "features.merchant_features"):
        raise LivefinError("features.merchant_features does not exist; run features first")
    sql = "select * from features.merchant_features where as_of_date = ?"
    params: list[Any] = [d]
    if merchant_id is not None:
        sql += " and merchant_id = ?"
        params.append(merchant_id)
    return con.execute(sql + " order by merchant_id", params).df()


def _groups(model: LoadedModel) -> tuple[list[str], np.ndarray]:
    """Source features and the (columns × groups) 0/1 matrix that folds one-hot SHAP together."""
    spec = model.spec
    groups = spec.source_columns
    G = np.zeros((len(spec.columns), len(groups)), dtype=np.float32)
    for i, col in enumerate(spec.columns):
        G[i, groups.index(col.split("=", 1)[0] if col not in spec.numeric else col)] = 1.0
    return groups, G


def _reason_meta(cfg: dict[str, Any], feature: str) -> dict[str, str]:
    texts = (cfg.get("reasons") or {}).get("texts") or {}
    meta = dict(texts.get(feature) or {})
    meta.setdefault("code", feature.upper())
    meta.setdefault("label", feature.replace("_", " "))
    meta.setdefault("text", "{label}: {value}")
    return meta


def _fmt(template: str, missing: str, label: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return missing.format(label=label)
    try:
        return template.format(value=value, label=label)
    except (ValueError, TypeError):  # a numeric template meeting an odd value: still truthful
        return f"{label}: {value}"


def predict_with_reasons(
    model: LoadedModel, df: pd.DataFrame, threads: int, device: str | None = None
) -> pd.DataFrame:
    """PD, score, grade and top-k risk-raising reasons for every row of a feature frame."""
    cfg = model.cfg
    X = model.spec.matrix(df)
    params = {"nthread": int(threads)}
    if device:
        params["device"] = device
    model.booster.set_param(params)
    dm = xgb.DMatrix(X, feature_names=model.spec.columns, nthread=threads)
    contribs = model.booster.predict(dm, pred_contribs=True)  # exact TreeSHAP, log-odds
    # PD from the margin itself (SHAP sums to it only up to float32 rounding)
    margin = model.booster.predict(dm, output_margin=True).astype(np.float64)
    cal_cfg = cfg["calibration"]
    pd_ = M.apply_calibrator(
        model.calibrator, margin, cal_cfg.get("pd_floor", 3e-4), cal_cfg.get("pd_cap", 0.9997)
    )
    groups, G = _groups(model)
    shap = contribs[:, :-1] @ G  # per source feature (one-hot levels summed)
    k = min(int((cfg.get("reasons") or {}).get("max_reasons", 4)), 4, len(groups))
    top = np.argsort(-shap, axis=1, kind="stable")[:, :k]
    top_val = np.take_along_axis(shap, top, axis=1)
    applies = top_val > 0  # Reg B: only factors that actually pushed PD up
    missing_tpl = (cfg.get("reasons") or {}).get("missing", "{label}: no data available")
    out = pd.DataFrame(
        {
            "merchant_id": df["merchant_id"].to_numpy()
            if "merchant_id" in df
            else np.arange(len(df)),
            "pd": pd_,
            "score": M.pd_to_score(pd_, cfg),
            "grade": M.pd_to_grade(pd_, cfg),
        }
    )
    metas = [_reason_meta(cfg, g) for g in groups]
    codes = np.array([m["code"] for m in metas], dtype=object)
    for slot in range(4):
        code = np.full(len(df), None, dtype=object)
        text = np.full(len(df), None, dtype=object)
        val = np.full(len(df), np.nan)
        if slot < k:
            ok = applies[:, slot]
            code[ok] = codes[top[ok, slot]]
            val[ok] = top_val[ok, slot]
            for j in np.unique(top[ok, slot]):
                rows = np.flatnonzero(ok & (top[:, slot] == j))
                meta = metas[j]
                values = df[groups[j]].to_numpy(dtype=object)[rows]
                text[rows] = [_fmt(meta["text"], missing_tpl, meta["label"], v) for v in values]
        out[f"reason_code_{slot + 1}"] = code
        out[f"reason_text_{slot + 1}"] = text
        out[f"reason_shap_{slot + 1}"] = val
    out.attrs["margin"] = margin
    out.attrs["contribs"] = shap
    out.attrs["bias"] = contribs[:, -1]
    return out


def score(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    d: date,
    *,
    run_id: str | None = None,
    device: str | None = None,
    shard: tuple[int, int] | None = None,
) -> int:
    """Score every merchant in features.merchant_features for ``d`` with the champion.

    Replaces credit.merchant_scores for ``d`` in one transaction; returns the rows written.
    With ``shard=(i, n)`` only merchants of that hash shard are scored and replaced.
    """
    from livefin_etl.warehouse import in_shard

    model = load_champion(con)
    feats = _features_for(con, d)
    if feats.empty:
        raise LivefinError(f"no rows in features.merchant_features for {d}; run features first")
    if shard is not None:
        feats = feats[in_shard(feats["merchant_id"].tolist(), shard)].reset_index(drop=True)
        if feats.empty:
            return 0
    if feats["merchant_id"].duplicated().any():
        raise LivefinError(f"features.merchant_features has duplicate merchants for {d}")
    if device:
        from livefin_etl.credit.training import resolve_device

        device = resolve_device(device)
    res = predict_with_reasons(model, feats, settings.threads, device)
    res.insert(1, "as_of_date", pd.Timestamp(d).date())
    res["model_version"] = model.version
    res["run_id"] = run_id or f"score-{d:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    ensure_tables(con)
    cols = [
        "merchant_id",
        "as_of_date",
        "pd",
        "score",
        "grade",
        *[f"reason_code_{i}" for i in range(1, 5)],
        *[f"reason_text_{i}" for i in range(1, 5)],
        *[f"reason_shap_{i}" for i in range(1, 5)],
        "model_version",
        "run_id",
    ]
    con.register("_credit_scores", res[cols])
    try:
        with transaction(con):
            if shard is None:
                con.execute("delete from credit.merchant_scores where as_of_date = ?", [d])
            else:
                con.execute(
                    "delete from credit.merchant_scores where as_of_date = ? "
                    "and merchant_id in (select merchant_id from _credit_scores)",
                    [d],
                )
            con.execute(
                f"insert into credit.merchant_scores ({', '.join(cols)}) "
                f"select {', '.join(cols)} from _credit_scores"
            )
            fault_point("scoring.before_commit")
    finally:
        con.unregister("_credit_scores")
    log.info("scored %s merchants for %s with %s", len(res), d, model.version)
    return len(res)


def explain(con: duckdb.DuckDBPyConnection, settings: Settings, merchant_id: str, d: date) -> str:
    """Printable PD, score, grade and SHAP reasons for one merchant on one date."""
    row = None
    if table_exists(con, "credit.merchant_scores"):
        row = con.execute(
            "select model_version, run_id from credit.merchant_scores "
            "where merchant_id = ? and as_of_date = ?",
            [merchant_id, d],
        ).fetchone()
    if row:  # explain with the model that produced the stored score
        path = con.execute(
            "select artifact_path from credit.model_registry where model_version = ?", [row[0]]
        ).fetchone()
        model = load_model(path[0], row[0]) if path else load_champion(con)
    else:
        model = load_champion(con)
    feats = _features_for(con, d, merchant_id)
    if feats.empty:
        raise LivefinError(f"merchant {merchant_id} has no features for {d}")
    res = predict_with_reasons(model, feats.head(1), settings.threads)
    r = res.iloc[0]
    groups, _ = _groups(model)
    shap = res.attrs["contribs"][0]
    lines = [
        f"merchant {merchant_id}  as of {d}  model {model.version}"
        + (f"  (stored run {row[1]})" if row else "  (not yet scored; live champion)"),
        f"PD {r['pd']:.2%}   score {int(r['score'])}   grade {r['grade']}",
        f"log-odds {res.attrs['margin'][0]:+.3f} = bias {res.attrs['bias'][0]:+.3f} "
        f"+ sum of feature contributions {shap.sum():+.3f}",
        "Principal reasons (raised PD):",
    ]
    n = 0
    for i in range(1, 5):
        if r[f"reason_code_{i}"] is not None and isinstance(r[f"reason_code_{i}"], str):
            n += 1
            lines.append(
                f"  {i}. [{r[f'reason_code_{i}']}] {r[f'reason_text_{i}']}  "
                f"(SHAP {r[f'reason_shap_{i}']:+.3f})"
            )
    if n == 0:
        lines.append("  none: no factor raised this merchant's PD above the average")
    lowering = np.argsort(shap)[:3]
    lines.append("Strongest factors lowering PD:")
    for j in lowering:
        if shap[j] < 0:
            v = feats.iloc[0][groups[j]]
            lines.append(f"  {groups[j]} = {v}  (SHAP {shap[j]:+.3f})")
    return "\n".join(lines)
