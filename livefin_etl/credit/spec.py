"""Model configuration and the feature design (numeric + one-hot) shared by train and score."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from livefin_etl.config import LivefinError, load_config

OTHER_LEVEL = "other"


def model_config(override: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config/model.yaml`` (or a full override dict, for tests and experiments), validated."""
    cfg = copy.deepcopy(override if override is not None else load_config("model"))
    for key in (
        "version",
        "target",
        "split",
        "features",
        "xgboost",
        "calibration",
        "scorecard",
        "master_scale",
        "champion_gate",
    ):
        if key not in cfg:
            raise LivefinError(f"model config is missing '{key}'")
    fr = [float(cfg["split"][k]) for k in ("train", "valid", "oot")]
    if any(f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise LivefinError(f"model config split fractions must be > 0 and sum to 1, got {fr}")
    if cfg["calibration"].get("method", "platt") not in ("isotonic", "platt", "beta", "auto"):
        raise LivefinError(
            "model config calibration.method must be 'platt', 'beta', 'isotonic' or 'auto'"
        )
    bad = {k: v for k, v in (cfg["features"] or {}).items() if v not in (-1, 0, 1)}
    if bad:
        raise LivefinError(f"monotone directions must be -1, 0 or +1: {bad}")
    gate_keys = ("auc_min", "auc_tolerance", "psi_max")
    gate_cfg = cfg["champion_gate"] or {}
    if any(not isinstance(gate_cfg.get(k), (int, float)) for k in gate_keys):
        raise LivefinError(f"model config champion_gate needs numbers {', '.join(gate_keys)}")
    grades = cfg["master_scale"]
    if not grades or [g["max_pd"] for g in grades] != sorted(g["max_pd"] for g in grades):
        raise LivefinError("master_scale must list grades with increasing max_pd")
    if grades[-1]["max_pd"] < 1.0:
        raise LivefinError("the last master_scale grade must have max_pd 1.0")
    cfg.setdefault("categorical", {"columns": [], "max_levels": 12})
    cfg.setdefault("psi", {"bins": 10})
    cfg.setdefault("reasons", {"max_reasons": 4, "texts": {}})
    return cfg


@dataclass
class FeatureSpec:
    """How a raw frame becomes the model matrix. Saved as features.json next to the model."""

    numeric: list[str]
    monotone: dict[str, int]
    categorical: dict[str, list[str]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        cols = list(self.numeric)
        for col, levels in self.categorical.items():
            cols += [f"{col}={lv}" for lv in levels]
        return cols

    @property
    def source_columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    @property
    def xgb_columns(self) -> list[str]:
        """``columns`` as XGBoost accepts them (it refuses ``[``, ``]`` and ``<`` in names)."""
        return xgb_names(self.columns)

    def constraints(self) -> tuple[int, ...]:
        return tuple(int(self.monotone.get(c, 0)) for c in self.columns)

    def to_json(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "monotone": {c: int(self.monotone.get(c, 0)) for c in self.numeric},
            "categorical": self.categorical,
            "columns": self.columns,
            "monotone_constraints": list(self.constraints()),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(list(data["numeric"]), dict(data["monotone"]), dict(data["categorical"]))

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """float32 matrix in ``columns`` order; NaN stays NaN (XGBoost's missing branch)."""
        missing = [c for c in self.source_columns if c not in df.columns]
        if missing:
            raise LivefinError(f"feature columns missing from the data: {', '.join(missing)}")
        parts = []
        if self.numeric:
            num = df[self.numeric]
            try:
                parts.append(num.to_numpy(dtype=np.float32, na_value=np.nan))
            except (TypeError, ValueError) as exc:
                raise LivefinError(f"non-numeric values in numeric features: {exc}") from exc
        for col, levels in self.categorical.items():
            vals = df[col].astype("string").fillna(OTHER_LEVEL).to_numpy(dtype=object)
            known = set(levels)
            vals = np.where(np.isin(vals, list(known)), vals, OTHER_LEVEL)
            parts.append(np.stack([(vals == lv) for lv in levels], axis=1).astype(np.float32))
        if not parts:
            raise LivefinError("no features to model")
        return np.hstack(parts) if len(parts) > 1 else parts[0]


def xgb_names(columns: list[str]) -> list[str]:
    """Names safe for an XGBoost DMatrix, one per column, unique; clean names are unchanged.

    The originals stay in ``FeatureSpec.columns`` (reports, reasons); only the booster sees these.
    """
    out: list[str] = []
    seen: set[str] = set()
    for c in columns:
        safe = str(c).replace("[", "(").replace("]", ")").replace("<", "lt ")
        base, i = safe, 1
        while safe in seen:  # "a<b" and "a lt b" must not collide
            i += 1
            safe = f"{base}~{i}"
        seen.add(safe)
        out.append(safe)
    return out


def spec_from_frame(
    df: pd.DataFrame,
    cfg: dict[str, Any],
    *,
    label: str | None = None,
    exclude: tuple[str, ...] = (),
    strict: bool = True,
) -> FeatureSpec:
    """Feature spec for a frame: the configured features (strict) or every usable column."""
    monotone = {k: int(v) for k, v in (cfg["features"] or {}).items()}
    cat_cfg = cfg.get("categorical") or {}
    max_levels = int(cat_cfg.get("max_levels", 12))
    if strict:
        numeric = list(monotone)
        cats = [c for c in cat_cfg.get("columns", []) if c in df.columns]
        missing = [c for c in numeric if c not in df.columns]
        if missing:
            raise LivefinError(f"feature columns missing from the data: {', '.join(missing)}")
    else:
        skip = set(exclude) | ({label} if label else set())
        numeric, cats = [], []
        for c in df.columns:
            if c in skip:
                continue
            if pd.api.types.is_bool_dtype(df[c]) or pd.api.types.is_numeric_dtype(df[c]):
                numeric.append(c)
            elif df[c].nunique(dropna=True) <= max(50, len(df) // 10):
                # many levels keep the most frequent (+ "other"); ids and free text are skipped
                cats.append(c)
    categorical: dict[str, list[str]] = {}
    for c in cats:
        counts = df[c].astype("string").value_counts(dropna=True)
        levels = sorted(str(v) for v in counts.index[:max_levels])
        if len(counts) > max_levels or df[c].isna().any():
            levels.append(OTHER_LEVEL)
        categorical[c] = levels
    return FeatureSpec(
        numeric=numeric, monotone={c: monotone.get(c, 0) for c in numeric}, categorical=categorical
    )


def frame_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the modelling frame (columns, order, values): the data-lineage fingerprint."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()
