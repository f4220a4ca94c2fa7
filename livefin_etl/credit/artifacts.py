"""Model artifacts on disk: write a fitted model's files, load them back, hash the model.

Training writes them (bring-your-own-features) and the registry writes and loads them; both
import this module and neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xgboost as xgb

from livefin_etl.config import LivefinError, config_fingerprint
from livefin_etl.credit.spec import FeatureSpec


@dataclass
class LoadedModel:
    version: str
    booster: xgb.Booster
    calibrator: dict[str, Any]
    spec: FeatureSpec
    cfg: dict[str, Any]
    path: Path


def model_bytes(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw(raw_format="json"))


def model_hash(booster: xgb.Booster) -> str:
    return hashlib.sha256(model_bytes(booster)).hexdigest()


def jsonable(obj: Any) -> Any:
    """Plain JSON values: non-finite floats become None, numpy scalars Python numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):  # numpy scalars
        return jsonable(obj.item())
    return obj


def write_artifacts(folder: Path, fitted: Any, extra: dict[str, Any] | None = None) -> None:
    """model.json (XGBoost JSON, not pickle), calibrator, features + constraints, config, metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_bytes(model_bytes(fitted.booster))
    files = {
        "calibrator.json": fitted.calibrator,
        "features.json": fitted.spec.to_json(),
        "constraints.json": dict(zip(fitted.spec.columns, fitted.spec.constraints(), strict=True)),
        "config.json": fitted.cfg,
        "metrics.json": {
            **fitted.metrics,
            **fitted.counts,
            "model_hash": fitted.hash,
            "data_fingerprint": fitted.fingerprint,
            "device": fitted.device,
            "config_fingerprint": config_fingerprint(fitted.cfg),
            **(extra or {}),
        },
    }
    for name, data in files.items():
        (folder / name).write_text(
            json.dumps(jsonable(data), indent=2, ensure_ascii=False), encoding="utf-8"
        )
    (folder / "data_fingerprint.txt").write_text(fitted.fingerprint + "\n")
    sc = getattr(fitted, "scorecard", None)
    if sc is not None:  # the challenger: its bins/coefficients and a SELECT any DuckDB can run
        from livefin_etl.credit.scorecard import to_sql

        (folder / "scorecard.json").write_text(
            json.dumps(jsonable(sc.to_json()), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        sql = to_sql(sc, "{table}")
        (folder / "scorecard.sql").write_text(
            "-- replace {table} with the feature table (or a parenthesised query)\n" + sql + "\n",
            encoding="utf-8",
        )


def load_model(path: Path | str, version: str | None = None) -> LoadedModel:
    """The booster, calibrator, feature spec and config snapshot of one artifact folder."""
    path = Path(path)
    if not (path / "model.json").exists():
        raise LivefinError(f"model artifacts missing in {path} (model.json not found)")
    booster = xgb.Booster()
    booster.load_model(str(path / "model.json"))
    cal = json.loads((path / "calibrator.json").read_text())
    spec = FeatureSpec.from_json(json.loads((path / "features.json").read_text()))
    cfg = json.loads((path / "config.json").read_text())
    return LoadedModel(version or path.name, booster, cal, spec, cfg, path)
