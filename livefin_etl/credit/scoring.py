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

from livefin_etl.config import LivefinError, Settings, StageBlocked
from livefin_etl.credit import metrics as M
from livefin_etl.credit.artifacts import LoadedModel, load_model
from livefin_etl.credit.registry import current_champion, load_champion, no_champion_reason
from livefin_etl.warehouse import in_shard, replace_rows, run_ddl, table_exists

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
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


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    run_ddl(con, "credit")


def _features_for(
    con: duckdb.DuckDBPyConnection, as_of_date: date, merchant_id: str | None = None
) -> pd.DataFrame:
    if not table_exists(con, "features.merchant_features"):
        raise LivefinError("features.merchant_features does not exist; run features first")
    sql = "select * from features.merchant_features where as_of_date = ?"
    params: list[Any] = [as_of_date]
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
    dm = xgb.DMatrix(X, feature_names=model.spec.xgb_columns, nthread=threads)
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


def _scoring_features(
    feats: pd.DataFrame, as_of_date: date, shard: tuple[int, int] | None
) -> pd.DataFrame:
    """The night's features (all merchants) narrowed to ``shard``, checked."""
    if feats.empty:
        raise LivefinError(
            f"no rows in features.merchant_features for {as_of_date}; run features first"
        )
    if shard is not None:
        feats = feats[in_shard(feats["merchant_id"].tolist(), shard)].reset_index(drop=True)
        if feats.empty:
            return feats
    if feats["merchant_id"].duplicated().any():
        raise LivefinError(f"features.merchant_features has duplicate merchants for {as_of_date}")
    return feats


def score_frame(
    features: pd.DataFrame,
    settings: Settings,
    model: LoadedModel,
    as_of_date: date,
    run_id: str,
    *,
    device: str | None = None,
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame | None:
    """The rows :func:`score` writes (SCORE_COLUMNS) from the night's ``features`` (every
    merchant, as stored): also what one shard task of the dask engine computes on a worker.
    None when the shard has no merchants."""
    feats = _scoring_features(features, as_of_date, shard)
    if feats.empty:
        return None
    if device:
        from livefin_etl.credit.training import resolve_device

        device = resolve_device(device)
    res = predict_with_reasons(model, feats, settings.threads, device)
    res.insert(1, "as_of_date", pd.Timestamp(as_of_date).date())
    res["model_version"] = model.version
    res["run_id"] = run_id
    return res[SCORE_COLUMNS]


def write_scores(
    con: duckdb.DuckDBPyConnection,
    rows: Any,
    as_of_date: date,
    shard: tuple[int, int] | None = None,
) -> int:
    """Replace ``as_of_date`` in credit.merchant_scores with ``rows`` (pandas or Arrow) in one
    transaction; with ``shard``, only the merchants in ``rows``."""
    ensure_tables(con)
    where = "as_of_date = ?"
    if shard is not None:
        where += " and merchant_id in (select merchant_id from _livefin_new)"
    return replace_rows(
        con,
        "credit.merchant_scores",
        rows,
        where=where,
        params=[as_of_date],
        columns=SCORE_COLUMNS,
        fault="scoring.before_commit",
    )


def score(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of_date: date,
    *,
    run_id: str | None = None,
    device: str | None = None,
    shard: tuple[int, int] | None = None,
) -> int:
    """Score every merchant in features.merchant_features for ``as_of_date`` with the champion.

    Replaces credit.merchant_scores for the date in one transaction; returns the rows written.
    With ``shard=(i, n)`` only merchants of that hash shard are scored and replaced. Without a
    champion (none trained, or none passed the gate) raises StageBlocked saying which; it
    never trains.
    """
    if current_champion(con) is None:
        raise StageBlocked(f"score {as_of_date}: {no_champion_reason(con)}")
    model = load_champion(con)
    run_id = run_id or f"score-{as_of_date:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    feats = _features_for(con, as_of_date)
    res = score_frame(feats, settings, model, as_of_date, run_id, device=device, shard=shard)
    if res is None:
        return 0
    write_scores(con, res, as_of_date, shard)
    log.info("scored %s merchants for %s with %s", len(res), as_of_date, model.version)
    return len(res)


def explain(
    con: duckdb.DuckDBPyConnection, settings: Settings, merchant_id: str, as_of_date: date
) -> str:
    """Printable PD, score, grade and SHAP reasons for one merchant on one date."""
    row = None
    if table_exists(con, "credit.merchant_scores"):
        row = con.execute(
            "select model_version, run_id from credit.merchant_scores "
            "where merchant_id = ? and as_of_date = ?",
            [merchant_id, as_of_date],
        ).fetchone()
    if row:  # explain with the model that produced the stored score
        path = con.execute(
            "select artifact_path from credit.model_registry where model_version = ?", [row[0]]
        ).fetchone()
        model = load_model(path[0], row[0]) if path else load_champion(con)
    else:
        model = load_champion(con)
    feats = _features_for(con, as_of_date, merchant_id)
    if feats.empty:
        raise LivefinError(f"merchant {merchant_id} has no features for {as_of_date}")
    res = predict_with_reasons(model, feats.head(1), settings.threads)
    r = res.iloc[0]
    groups, _ = _groups(model)
    shap = res.attrs["contribs"][0]
    lines = [
        f"merchant {merchant_id}  as of {as_of_date}  model {model.version}"
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
