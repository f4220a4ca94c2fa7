"""Which engine runs the nightly stages: ``local`` (one process, the default) or ``dask``.

One code path: :func:`run` calls the stage function itself, except that on ``dask`` an
unsharded ``score`` or ``limits`` maps its per-merchant work over merchant-hash shards on a
Dask cluster (``stages``). Shard tasks only read Parquet inputs the writer exported, split by
shard, and write Parquet parts under the lake root (``lake``); this process, which holds the
writer lock, commits the parts in one transaction and applies the portfolio guardrails once.

Choose with ``--engine`` (CLI), the ``engine`` param (Airflow) or ``LIVEFIN_ENGINE``; the
cluster is ``LIVEFIN_DASK_SCHEDULER=<address>``, else a LocalCluster of
``LIVEFIN_DASK_WORKERS`` (default 2) worker processes (``cluster``).
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import duckdb

from livefin_etl.config import LivefinError, Settings

ENGINES = ("local", "dask")


def engine_name(settings: Settings) -> str:
    """The engine for this run: ``settings.extra['engine']``, else env LIVEFIN_ENGINE, else
    ``local``."""
    name = str(settings.extra.get("engine") or os.environ.get("LIVEFIN_ENGINE") or "local")
    name = name.strip().lower()
    if name not in ENGINES:
        raise LivefinError(f"unknown engine '{name}' (engines: {', '.join(ENGINES)})")
    return name


def with_engine(settings: Settings, engine: str | None) -> Settings:
    """``settings`` set to run on ``engine`` (None keeps the environment's choice)."""
    if engine:
        settings.extra["engine"] = engine
        engine_name(settings)  # refuse an unknown name before anything runs
    return settings


def run(
    stage: Any,
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of_date: date,
    run_id: str,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Run one nightly stage on this run's engine. An explicitly sharded call (an Airflow
    mapped task) and every stage without per-shard work run here, as on ``local``."""
    if shard is None and engine_name(settings) == "dask":
        from livefin_etl.engine import stages

        distributed = stages.DISTRIBUTED.get(stage.__name__)
        if distributed is not None:
            return distributed(con, settings, as_of_date, run_id)
    return stage(con, settings, as_of_date, run_id, shard)
