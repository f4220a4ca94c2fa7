"""What every livefin DAG shares: assets, task defaults, the failure callback, the date task.

Module level imports only the stdlib and ``airflow.sdk``: the DAG processor parses these files
often, so the package (polars, duckdb, xgboost, GX) is imported inside task functions only.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param
from livefin_dates import parse_date, resolve_business_date, run_id_for

log = logging.getLogger("livefin.dags")

# Same order as livefin_etl.contracts.SOURCE_ORDER; new contracts are appended sorted.
SOURCE_ORDER = ("merchants", "orders", "traffic", "fulfillment", "loans", "repayments")
REPO_ROOT = Path(__file__).resolve().parent.parent
TAGS = ["livefin"]
# UTC here: Airflow's DAG timezone must be a pendulum zone, and the stdlib stays enough.
# The timetables carry Asia/Shanghai themselves (BUSINESS_TZ_NAME).
START_DATE = datetime(2024, 12, 31, 16, 0, tzinfo=UTC)  # 2025-01-01 00:00 Shanghai
# All livefin tasks write one DuckDB file: this 1-slot pool serialises them across DAGs
# (created by `python -m tools.airflow_local setup`); the flock in warehouse.py is the
# backstop for processes outside Airflow.
POOL = os.environ.get("LIVEFIN_AIRFLOW_POOL", "livefin_warehouse")


def list_sources() -> list[str]:
    """``livefin_etl.contracts.list_sources()`` without importing the package (parse speed)."""
    if os.environ.get("LIVEFIN_SOURCES"):
        return [s.strip() for s in os.environ["LIVEFIN_SOURCES"].split(",") if s.strip()]
    config = Path(os.environ.get("LIVEFIN_CONFIG_DIR", REPO_ROOT / "config"))
    found = {p.stem for p in (config / "sources").glob("*.yaml")}
    ordered = [s for s in SOURCE_ORDER if s in found]
    return ordered + sorted(found - set(ordered))


def raw_asset(source: str) -> Asset:
    return Asset(uri=f"livefin://raw/{source}", name=f"livefin_raw_{source}", group="livefin")


PUBLISHED_LIMITS = Asset(
    uri="livefin://published/limits", name="livefin_published_limits", group="livefin"
)
CHAMPION_MODEL = Asset(
    uri="livefin://models/champion", name="livefin_champion_model", group="livefin"
)


def on_failure(context: Any) -> None:
    """Log which stage failed for which business date (and why) in one searchable line."""
    ti = context.get("task_instance") or context.get("ti")
    stage = getattr(ti, "task_id", "?")
    business_date: Any = "?"
    try:
        run = ti.xcom_pull(task_ids="business_date") if ti is not None else None
        business_date = (run or {}).get("business_date", "?")
    except Exception:  # noqa: BLE001 - a callback must never raise
        pass
    dag_run = context.get("dag_run")
    log.error(
        "livefin stage %s failed for business date %s (dag %s, run %s): %s",
        stage,
        business_date,
        getattr(dag_run, "dag_id", "?"),
        getattr(dag_run, "run_id", "?"),
        context.get("exception"),
    )


def _timeout(env: str, default_minutes: int) -> timedelta:
    return timedelta(minutes=float(os.environ.get(env, default_minutes)))


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "livefin",
    # Retries are for transient trouble (a held writer lock, a full disk, a killed worker);
    # data problems fail fast through AirflowFailException, see call_pipeline().
    "retries": int(os.environ.get("LIVEFIN_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("LIVEFIN_RETRY_DELAY_S", "120"))),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": _timeout("LIVEFIN_TASK_TIMEOUT_MIN", 60),
    "on_failure_callback": on_failure,
    "pool": POOL,
}

# What every livefin DAG passes to @dag: one run at a time, no catch-up (backfills are explicit
# `airflow dags backfill` / `livefin run --start --end`), the task defaults above.
DAG_ARGS: dict[str, Any] = {
    "start_date": START_DATE,
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}


def business_date_param(description: str = "Override the business date (YYYY-MM-DD)") -> Param:
    return Param(None, type=["null", "string"], format="date", description=description)


def run_token(dag_id: str, airflow_run_id: str) -> str:
    """Stable per Airflow run, so a retried first task hands out the same pipeline run id."""
    return hashlib.sha256(f"{dag_id}/{airflow_run_id}".encode()).hexdigest()[:8]


def asset_event_extras(context: Any) -> dict[str, list[dict]]:
    """Triggering asset events as ``{uri: [extra, ...]}``, plain dicts for the date rule."""
    events = context.get("triggering_asset_events") or {}
    out: dict[str, list[dict]] = {}
    for asset in events:
        out[getattr(asset, "uri", str(asset))] = [dict(e.extra or {}) for e in events[asset]]
    return out


def resolve_run(context: Any, *, use_asset_events: bool = False) -> dict[str, Any]:
    """Business date + pipeline run id for this DAG run (returned via XCom to later tasks)."""
    dag_run = context["dag_run"]
    params = context.get("params") or {}
    conf = getattr(dag_run, "conf", None) or {}
    business_date, rule = resolve_business_date(
        partition_key=getattr(dag_run, "partition_key", None),
        requested=conf.get("business_date") or params.get("business_date"),
        asset_events=asset_event_extras(context) if use_asset_events else None,
        logical_date=context.get("logical_date"),
        run_after=getattr(dag_run, "run_after", None),
    )
    rid = run_id_for(business_date, run_token(dag_run.dag_id, dag_run.run_id))
    log.info("business date %s (rule: %s), pipeline run id %s", business_date, rule, rid)
    return {"business_date": business_date.isoformat(), "run_id": rid, "rule": rule}


def guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a ``livefin_etl.pipeline`` function (the same code path as the CLI).

    A closed quality gate (StageBlocked) is a data problem that a retry cannot fix: it fails the
    task at once with the gate's message, which names the failed expectations.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from livefin_etl.config import StageBlocked

    try:
        return fn(*args, **kwargs)
    except StageBlocked as exc:
        raise AirflowFailException(f"livefin blocked: {exc}") from exc


def run_stage(
    run: dict[str, Any], pick: Callable[[Any], Any], shard: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Run the nightly stage ``pick(pipeline)`` (e.g. ``lambda p: p.features``) for this DAG
    run's business date: the stage is passed as a function, the package imported only here."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings
    from livefin_etl.engine import with_engine

    settings = with_engine(get_settings(), run.get("engine"))  # the DAG's `engine` param
    return guarded(
        pipeline.run_stage,
        pick(pipeline),
        as_of_date(run),
        settings,
        run_id=run["run_id"],
        shard=shard,
    )


def this_run() -> dict[str, Any]:
    """The ``business_date`` task's XCom (business date + pipeline run id), pulled inside a
    task rather than passed as an argument, so the graph draws only the real dependencies."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    run = get_current_context()["ti"].xcom_pull(task_ids="business_date")
    if not run:
        raise AirflowFailException("no business date: the business_date task did not succeed")
    return run


def as_of_date(run: dict[str, Any]) -> date:
    """The business date of this DAG run, from the ``business_date`` task's XCom: the one place
    where Airflow's ``business_date`` becomes the package's ``as_of_date``."""
    return parse_date(run["business_date"])
