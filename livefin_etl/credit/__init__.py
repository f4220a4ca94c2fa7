"""Credit model: training set, XGBoost PD, calibration, registry, scoring, reasons, report.

Heavy imports (xgboost, sklearn, matplotlib) happen on first attribute access, so that
``import livefin_etl.credit`` stays cheap for DAG parsing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "build_training_set": "dataset",
    "time_split": "dataset",
    "train": "lifecycle",
    "fit": "training",
    "train_from_file": "byo",
    "resolve_device": "training",
    "promote": "registry",
    "rollback": "registry",
    "current_champion": "registry",
    "champion": "registry",
    "no_champion_reason": "registry",
    "load_champion": "registry",
    "registry_rows": "registry",
    "score": "scoring",
    "explain": "scoring",
    "predict_with_reasons": "scoring",
    "model_config": "spec",
    "load_model": "artifacts",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"livefin_etl.credit.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'livefin_etl.credit' has no attribute {name!r}")
