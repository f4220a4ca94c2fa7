"""livefin_train_weekly: Monday 03:00 Asia/Shanghai, train a challenger as of Sunday.

train -> evaluate -> gate. ``pipeline.train`` registers the model and returns the registry's
champion/challenger decision; ``gate`` updates ``livefin://models/champion`` only when the
new model was promoted (a kept champion skips it, so no asset event).
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task
from livefin_common import (
    CHAMPION_MODEL,
    DAG_ARGS,
    TAGS,
    business_date_param,
    call_pipeline,
    day_of,
    log,
    resolve_run,
)
from livefin_dates import BUSINESS_TZ_NAME, TRAIN_CRON


@dag(
    dag_id="livefin_train_weekly",
    schedule=CronTriggerTimetable(TRAIN_CRON, timezone=BUSINESS_TZ_NAME),
    **DAG_ARGS,
    tags=[*TAGS, "model"],
    params={
        "business_date": business_date_param("Train as of this date (YYYY-MM-DD)"),
        "device": Param(
            None,
            type=["null", "string"],
            enum=[None, "cpu", "cuda"],
            description="XGBoost device (default LIVEFIN_TRAIN_DEVICE or auto)",
        ),
    },
    doc_md=__doc__,
)
def livefin_train_weekly() -> None:
    @task
    def business_date() -> dict[str, Any]:
        return resolve_run(get_current_context())

    @task(execution_timeout=timedelta(hours=3))
    def train(run: dict[str, Any]) -> dict:
        params = get_current_context().get("params") or {}
        device = params.get("device") or os.environ.get("LIVEFIN_TRAIN_DEVICE") or None
        return call_pipeline("train", day_of(run), device=device)

    @task
    def evaluate(decision: dict[str, Any]) -> dict:
        """Refuse a model whose out-of-time metrics are missing or out of range."""
        from airflow.sdk.exceptions import AirflowFailException

        metrics = {k: decision.get(k) for k in ("auc_oot", "ks_oot", "brier_oot", "psi_score")}
        bad = [
            k
            for k in ("auc_oot", "ks_oot", "brier_oot")
            if not isinstance(metrics[k], (int, float))
            or math.isnan(metrics[k])
            or not 0.0 <= metrics[k] <= 1.0
        ]
        if bad:
            raise AirflowFailException(f"model {decision.get('model_version')}: bad metrics {bad}")
        log.info("model %s out-of-time metrics %s", decision.get("model_version"), metrics)
        return {"model_version": decision.get("model_version"), **metrics}

    @task(outlets=[CHAMPION_MODEL])
    def gate(decision: dict[str, Any], evaluated: dict[str, Any], **context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        verdict = {k: decision.get(k) for k in ("model_version", "status", "reason", "as_of_date")}
        log.info("champion/challenger decision: %s", verdict)
        if decision.get("status") != "champion":
            raise AirflowSkipException(f"champion kept: {decision.get('reason')}")
        context["outlet_events"][CHAMPION_MODEL].extra = {
            "model_version": str(decision.get("model_version")),
            "as_of_date": str(decision.get("as_of_date")),
        }
        return verdict

    run = business_date()
    decision = train(run)
    gate(decision, evaluate(decision))


livefin_train_weekly()
