"""livefin_train_weekly: Monday 03:00 Asia/Shanghai, train a challenger as of Sunday.

train -> gate. ``pipeline.train`` fits the model, evaluates it out of time and applies the
champion gate before anything is promoted (every model, the first included, must pass it); the
registry records the decision. ``gate`` updates ``livefin://models/champion`` only when the new
model was promoted (a refused model is skipped, so no asset event and the old champion stays).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import CronPartitionTimetable, Param, dag, get_current_context, task
from livefin_common import (
    CHAMPION_MODEL,
    DAG_ARGS,
    TAGS,
    as_of_date,
    business_date_param,
    guarded,
    log,
    resolve_run,
)
from livefin_dates import BUSINESS_TZ_NAME, TRAIN_CRON, WEEK_KEY_FORMAT


@dag(
    dag_id="livefin_train_weekly",
    # Partitioned by ISO week: Monday's run is "YYYY-Www" of the week that ended on Sunday.
    schedule=CronPartitionTimetable(
        TRAIN_CRON, timezone=BUSINESS_TZ_NAME, run_offset=-1, key_format=WEEK_KEY_FORMAT
    ),
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
        from livefin_etl import pipeline

        return guarded(pipeline.train, as_of_date(run), device=device)

    @task(outlets=[CHAMPION_MODEL])
    def gate(decision: dict[str, Any], **context) -> dict:
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
    gate(decision)


livefin_train_weekly()
