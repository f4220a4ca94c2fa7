"""livefin_ingest: every night at 02:00 Asia/Shanghai, extract + validate each source for D.

One task per source, each the producer of ``livefin://raw/<source>``, run in contract order
(merchants first: later sources' reference checks look up earlier sources' rows for D). Each
runs whatever happened to the previous one (``all_done``), so one bad source blocks only itself.
A partition that fails a critical expectation fails its task, so that source's asset is not
updated for D and ``livefin_nightly`` (scheduled on all raw assets) does not start for D;
``check`` then fails the run, naming the failed sources.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import CronPartitionTimetable, chain, dag, get_current_context, task
from livefin_common import (
    DAG_ARGS,
    TAGS,
    as_of_date,
    business_date_param,
    guarded,
    list_sources,
    raw_asset,
    resolve_run,
    this_run,
)
from livefin_dates import BUSINESS_TZ_NAME, INGEST_CRON, PARTITION_KEY_FORMAT


@dag(
    dag_id="livefin_ingest",
    # Partitioned: the run at 02:00 on D + 1 gets partition key D (the previous tick, formatted
    # in Shanghai time), shown in the UI/API and part of scheduled and backfill run ids.
    schedule=CronPartitionTimetable(
        INGEST_CRON, timezone=BUSINESS_TZ_NAME, run_offset=-1, key_format=PARTITION_KEY_FORMAT
    ),
    **DAG_ARGS,
    max_active_tasks=1,  # one DuckDB writer
    tags=[*TAGS, "ingest"],
    params={
        "business_date": business_date_param(),
    },
    doc_md=__doc__,
)
def livefin_ingest() -> None:
    @task
    def business_date() -> dict[str, Any]:
        return resolve_run(get_current_context())

    ingests = []
    for source in list_sources():
        asset = raw_asset(source)

        @task(task_id=f"ingest_{source}", outlets=[asset], trigger_rule="all_done")
        def ingest(source: str = source, asset=asset, **context) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from livefin_etl import pipeline

            day = as_of_date(this_run())
            result = guarded(pipeline.ingest_partition, source, day)
            checked = result.get("validate") or {}
            if checked.get("status") == "failed":
                # Raise so the asset is not updated: D stays blocked for the nightly chain.
                failed = checked.get("failed_critical") or checked.get("failed_expectations")
                raise AirflowFailException(f"{source} {day} failed critical expectations: {failed}")
            event = context["outlet_events"][asset]
            event.extra = {"business_date": day.isoformat(), "status": checked.get("status")}
            # The event's partition key is D even for a run without one (manual, conf): the
            # partitioned nightly ignores key-less events and starts once all sources have D.
            event.add_partitions(day.isoformat())
            return result

        ingests.append(ingest())

    @task(trigger_rule="all_done")
    def check(**context) -> dict[str, Any]:
        """Fail the run if any source failed (a failed task pushes no return value)."""
        from airflow.sdk.exceptions import AirflowFailException

        ids = [f"ingest_{s}" for s in list_sources()]
        failed = [
            t.removeprefix("ingest_") for t in ids if context["ti"].xcom_pull(task_ids=t) is None
        ]
        if failed:
            raise AirflowFailException(f"sources not ingested for this date: {failed}")
        return {"sources": len(ids)}

    # Sources in contract order; each pulls the business date from XCom (no fan-out edges).
    chain(business_date(), *ingests, check())


livefin_ingest()
