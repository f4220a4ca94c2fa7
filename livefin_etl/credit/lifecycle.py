"""Train then register: the one place that calls both the fitting code and the registry."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import duckdb
import xgboost as xgb

from livefin_etl.config import LivefinError, Settings
from livefin_etl.credit import registry, reject, training
from livefin_etl.warehouse import stage_memory

log = logging.getLogger(__name__)


def train(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of_date: date, **options: Any
) -> dict[str, Any]:
    """Fit on matured loans as of ``as_of_date`` and register: write artifacts and report,
    apply the champion gate, insert the registry row.

    ``options`` are ``training.fit``'s keywords: ``features_df``, ``label``, ``time_col``,
    ``device``, ``config``, ``ensure_features``. Returns the registry row (``model_version``,
    ``status`` champion|challenger, ``reason``, ``auc_oot``, ``ks_oot``, ``brier_oot``,
    ``psi_score``, counts, paths) plus ``model_hash``, ``metrics``, ``device``,
    ``gate_failed`` and ``already_registered``.
    """
    with stage_memory(con, "train"):  # DuckDB shares the host with the training frames
        fitted = training.fit(con, settings, as_of_date, **options)
    try:
        ri = reject.reject_inference(con, settings, as_of_date, fitted)
    except (LivefinError, ValueError, xgb.core.XGBoostError) as exc:
        # report-only: a failed challenger never blocks the model it would be compared with
        log.warning("reject inference skipped: %s", exc)
        ri = {"skipped": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    if ri is not None:  # the gate never reads it
        fitted.metrics["reject_inference"] = ri
    return registry.register(con, settings, as_of_date, fitted)
