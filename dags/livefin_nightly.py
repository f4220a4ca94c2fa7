"""livefin_nightly: features -> value -> score -> limits -> publish for one business date.

Scheduled on every ``livefin://raw/<source>`` asset (``&``): it starts once each source has
delivered a validated partition. The business date comes from the triggering events' extras
(see livefin_dates.py); a manual trigger may pass ``business_date``. Score and limits can be
sharded by merchant hash (param ``shards`` or env LIVEFIN_SHARDS); shards run one at a time.
"""

from __future__ import annotations

import os
from functools import reduce
from operator import and_
from typing import Any

from airflow.sdk import Param, chain, dag, get_current_context, task
from livefin_common import (
    DAG_ARGS,
    PUBLISHED_LIMITS,
    TAGS,
    business_date_param,
    call_pipeline,
    day_of,
    list_sources,
    raw_asset,
    resolve_run,
)

ALL_RAW = reduce(and_, [raw_asset(s) for s in list_sources()])


def _shard_kwargs(shard: list[int]) -> dict[str, Any]:
    """No shard argument for a single shard, so the unsharded pipeline path stays the default."""
    i, n = shard
    if n == 1:
        return {}
    import inspect

    from airflow.sdk.exceptions import AirflowFailException

    from livefin_etl import pipeline

    if "shard" not in inspect.signature(pipeline.run_stage).parameters:
        raise AirflowFailException("shards > 1 needs pipeline.run_stage(..., shard=(i, n))")
    return {"shard": (i, n)}


@dag(
    dag_id="livefin_nightly",
    schedule=ALL_RAW,
    **DAG_ARGS,
    max_active_tasks=1,  # one DuckDB writer
    tags=[*TAGS, "nightly"],
    params={
        "business_date": business_date_param(),
        "shards": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Merchant-hash shards for score/limits "
            "(default: env LIVEFIN_SHARDS, else 1)",
        ),
    },
    doc_md=__doc__,
)
def livefin_nightly() -> None:
    @task
    def business_date() -> dict[str, Any]:
        ctx = get_current_context()
        run = resolve_run(ctx, use_asset_events=True)
        n = int((ctx.get("params") or {}).get("shards") or os.environ.get("LIVEFIN_SHARDS") or 1)
        if n < 1:
            raise ValueError(f"shards must be >= 1, got {n}")
        run["shards"] = n
        return run

    @task
    def plan_shards(run: dict[str, Any]) -> list[list[int]]:
        """The mapped tasks' inputs: ``[[0, n], [1, n], ...]``."""
        return [[i, run["shards"]] for i in range(run["shards"])]

    @task
    def stage(run: dict[str, Any], name: str) -> dict:
        return call_pipeline("run_stage", name, day_of(run), run_id=run["run_id"])

    # Mapped shards share one DuckDB writer: one at a time (max_active_tis_per_dagrun=1).
    @task(max_active_tis_per_dagrun=1)
    def score(run: dict[str, Any], shard: list[int]) -> dict:
        return call_pipeline(
            "run_stage", "score", day_of(run), run_id=run["run_id"], **_shard_kwargs(shard)
        )

    @task(max_active_tis_per_dagrun=1)
    def limits(run: dict[str, Any], shard: list[int]) -> dict:
        return call_pipeline(
            "run_stage", "limits", day_of(run), run_id=run["run_id"], **_shard_kwargs(shard)
        )

    @task
    def limits_finalize(run: dict[str, Any]) -> dict:
        """Portfolio guardrails over all shards; the unsharded limits stage already did them."""
        if run["shards"] == 1:
            return {"stage": "limits_finalize", "skipped": "single shard"}
        return call_pipeline("run_stage", "limits_finalize", day_of(run), run_id=run["run_id"])

    @task(outlets=[PUBLISHED_LIMITS])
    def publish(run: dict[str, Any], **context) -> dict:
        out = call_pipeline("run_stage", "publish", day_of(run), run_id=run["run_id"])
        context["outlet_events"][PUBLISHED_LIMITS].extra = {
            "business_date": run["business_date"],
            "run_id": run["run_id"],
        }
        return out

    run = business_date()
    features = stage.override(task_id="features")(run, "features")
    value = stage.override(task_id="value")(run, "value")
    shards = plan_shards(run)
    scored = score.partial(run=run).expand(shard=shards)
    limited = limits.partial(run=run).expand(shard=shards)
    chain(features, value, scored, limited, limits_finalize(run), publish(run))


livefin_nightly()
