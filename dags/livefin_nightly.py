"""livefin_nightly: merchant quality -> features -> value -> score -> limits -> monitor -> publish
for one business date.

Scheduled on every ``livefin://raw/<source>`` asset (``&``) as partitioned assets: one run per
business date D, started once every source has delivered a validated partition for D, with
partition key D (see livefin_dates.py). A manual trigger may pass ``business_date``. Score and
limits can be sharded by merchant hash (param ``shards`` or env LIVEFIN_SHARDS); shards run one
at a time. With param ``engine`` = dask (or env LIVEFIN_ENGINE) an unsharded score/limits task
maps its shards over the Dask cluster at LIVEFIN_DASK_SCHEDULER instead (docs/scale_out.md).
"""

from __future__ import annotations

import os
from functools import reduce
from operator import and_
from typing import Any

from airflow.sdk import Param, PartitionedAssetTimetable, chain, dag, get_current_context, task
from livefin_common import (
    DAG_ARGS,
    PUBLISHED_LIMITS,
    TAGS,
    business_date_param,
    list_sources,
    raw_asset,
    resolve_run,
    run_stage,
    this_run,
)

ALL_RAW = reduce(and_, [raw_asset(s) for s in list_sources()])


def _shard(shard: list[int]) -> tuple[int, int] | None:
    """No shard for a single shard, so the unsharded pipeline path stays the default."""
    return (shard[0], shard[1]) if shard[1] > 1 else None


@dag(
    dag_id="livefin_nightly",
    # Identity mapping: the ingest events' partition key D becomes this run's partition key.
    schedule=PartitionedAssetTimetable(assets=ALL_RAW),
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
        "engine": Param(
            None,
            type=["null", "string"],
            enum=[None, "local", "dask"],
            description="local, or dask: features, score and limits mapped over shards on the Dask "
            "cluster at env LIVEFIN_DASK_SCHEDULER (default: env LIVEFIN_ENGINE, else local)",
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
        params = ctx.get("params") or {}
        run["engine"] = params.get("engine") or os.environ.get("LIVEFIN_ENGINE") or "local"
        return run

    @task
    def plan_shards() -> list[list[int]]:
        """The mapped tasks' inputs: ``[[0, n], [1, n], ...]``."""
        run = this_run()
        return [[i, run["shards"]] for i in range(run["shards"])]

    @task
    def merchant_quality() -> dict:
        return run_stage(this_run(), lambda p: p.merchant_quality)

    @task
    def features() -> dict:
        return run_stage(this_run(), lambda p: p.features)

    @task
    def value() -> dict:
        return run_stage(this_run(), lambda p: p.value)

    # Mapped shards share one DuckDB writer: one at a time (max_active_tis_per_dagrun=1).
    @task(max_active_tis_per_dagrun=1)
    def score(shard: list[int]) -> dict:
        return run_stage(this_run(), lambda p: p.score, _shard(shard))

    @task(max_active_tis_per_dagrun=1)
    def limits(shard: list[int]) -> dict:
        return run_stage(this_run(), lambda p: p.limits, _shard(shard))

    @task
    def limits_finalize() -> dict:
        """Portfolio guardrails over all shards; the unsharded limits stage already did them."""
        run = this_run()
        if run["shards"] == 1:
            return {"stage": "limits_finalize", "skipped": "single shard"}
        return run_stage(run, lambda p: p.limits_finalize)

    @task
    def monitor() -> dict:
        """Model monitoring (config/monitoring.yaml): `act` verdicts are logged as warnings, or
        fail this task (and hold back publish) with ``on_act: fail``."""
        run = this_run()
        return run_stage(run, lambda p: p.monitor)

    @task(outlets=[PUBLISHED_LIMITS])
    def publish(**context) -> dict:
        run = this_run()
        out = run_stage(run, lambda p: p.publish)
        context["outlet_events"][PUBLISHED_LIMITS].extra = {
            "business_date": run["business_date"],
            "run_id": run["run_id"],
        }
        return out

    # Each stage pulls the run from business_date's XCom itself: edges are the real order only.
    run = business_date()
    shards = plan_shards()
    run >> shards
    chain(
        run,
        merchant_quality(),
        features(),
        value(),
        score.expand(shard=shards),
        limits.expand(shard=shards),
        limits_finalize(),
        monitor(),
        publish(),
    )


livefin_nightly()
