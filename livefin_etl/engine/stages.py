"""The single writer's side of the dask engine: export the inputs, map the shard tasks, commit
their parts in one transaction, then what needs the whole book (portfolio guardrails) once.

Each function has the checks of the stage it stands for (quality gate, champion) and returns
the same summary, plus ``engine`` and ``shards``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import duckdb

from livefin_etl.config import LivefinError, Settings, StageBlocked
from livefin_etl.engine import cluster, lake
from livefin_etl.engine.tasks import ShardJob, features_shard, limits_shard, score_shard
from livefin_etl.warehouse import quote_literal, table_exists

log = logging.getLogger(__name__)


def _jobs(
    settings, as_of_date, run_id, folder, source, schema, model=None, query=None
) -> list[ShardJob]:
    n = cluster.shard_count(cluster.client())
    return [
        ShardJob(
            settings, as_of_date, run_id, (i, n), str(source), str(folder), schema, model, query
        )
        for i in range(n)
    ]


def _require_features(con: duckdb.DuckDBPyConnection, as_of_date: date) -> None:
    """The local stage's errors, raised here once rather than by every shard task."""
    if not table_exists(con, "features.merchant_features"):
        raise LivefinError("features.merchant_features does not exist; run features first")
    sql = "select count(*) from features.merchant_features where as_of_date = ?"
    if not con.execute(sql, [as_of_date]).fetchone()[0]:
        raise LivefinError(
            f"no rows in features.merchant_features for {as_of_date}; run features first"
        )


def features(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of_date: date, run_id: str
) -> dict[str, Any]:
    """``pipeline.features``: the daily blocks here (incremental, and the buyer graph crosses
    merchants), the as-of features mapped over shards, committed in one transaction."""
    from livefin_etl import features as feats
    from livefin_etl import quality
    from livefin_etl.engine.features_lake import export_inputs
    from livefin_etl.warehouse import replace_rows, stage_memory

    quality.require_passed(con, as_of_date)
    t0 = time.perf_counter()
    feats.ensure_tables(con)
    folder = lake.stage_dir(settings, as_of_date, run_id, "features")
    schema = lake.table_schema(con, feats.FEATURES_TABLE)
    jobs = _jobs(settings, as_of_date, run_id, folder, folder / "input", schema)
    with stage_memory(con, "features"):
        feats.prepare_night(con, as_of_date)
        exported = time.perf_counter()
        export_inputs(con, folder / "input", as_of_date, len(jobs))
    exported = time.perf_counter() - exported
    mapped = time.perf_counter()
    parts = cluster.map_shards(features_shard, jobs, f"features-{run_id}")
    rows = lake.read_parts(parts, len(jobs))
    mapped = time.perf_counter() - mapped
    if rows is None:  # no active merchant: the night's rows go, as on local
        con.execute(f"delete from {feats.FEATURES_TABLE} where as_of_date = ?", [as_of_date])
        n = 0
    else:
        n = replace_rows(
            con,
            feats.FEATURES_TABLE,
            rows,
            where="as_of_date = ?",
            params=[as_of_date],
            fault="features.before_commit",
        )
    lake.clear(folder)
    return _done(
        {"feature_rows": int(n), "export_seconds": round(exported, 3)}, len(jobs), mapped, t0
    )


def score(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of_date: date, run_id: str
) -> dict[str, Any]:
    """``pipeline.score`` with the scoring mapped over shards."""
    from livefin_etl import credit, quality
    from livefin_etl.credit.scoring import ensure_tables, write_scores

    quality.require_passed(con, as_of_date)
    champ = credit.champion(con)
    if champ is None:
        raise StageBlocked(credit.no_champion_reason(con))
    _require_features(con, as_of_date)
    t0 = time.perf_counter()
    folder = lake.stage_dir(settings, as_of_date, run_id, "score")
    source = folder / "input" / "features.parquet"
    # The night's features, exactly as stored (COPY keeps every column's type).
    con.execute(
        "copy (select * from features.merchant_features "
        f"where as_of_date = {quote_literal(as_of_date.isoformat())}::date) "
        f"to {quote_literal(str(source))} (format parquet)"
    )
    ensure_tables(con)
    schema = lake.table_schema(con, "credit.merchant_scores")
    model = (str(champ["artifact_path"]), str(champ["model_version"]))
    jobs = _jobs(settings, as_of_date, run_id, folder, source, schema, model)
    mapped = time.perf_counter()
    rows = lake.read_parts(cluster.map_shards(score_shard, jobs, f"score-{run_id}"), len(jobs))
    mapped = time.perf_counter() - mapped
    n = write_scores(con, rows, as_of_date) if rows is not None else 0
    lake.clear(folder)
    return _done({"score_rows": n}, len(jobs), mapped, t0)


def limits(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of_date: date, run_id: str
) -> dict[str, Any]:
    """``pipeline.limits``: policy inputs mapped over shards, staged in one transaction, then
    the policy and the portfolio guardrails once over the whole book."""
    from livefin_etl import limits as lim
    from livefin_etl import quality
    from livefin_etl.engine.limits_lake import export_inputs
    from livefin_etl.limits.inputs import ensure_upstream, inputs_sql, require_features_and_scores
    from livefin_etl.limits.policy import load_policy
    from livefin_etl.limits.staging import stage_all

    quality.require_passed(con, as_of_date)
    require_features_and_scores(con, as_of_date)  # fail here, clearly, not on every worker
    t0 = time.perf_counter()
    ensure_upstream(con)  # every table the export reads exists (empty if its stage never ran)
    lim.ensure_tables(con)
    folder = lake.stage_dir(settings, as_of_date, run_id, "limits")
    schema = lake.table_schema(con, "limits.limit_inputs_staging")
    policy = load_policy()
    # rendered here, so every shard runs the writer's policy windows and thresholds
    query = inputs_sql(as_of_date, policy)
    jobs = _jobs(settings, as_of_date, run_id, folder, folder / "input", schema, query=query)
    # what the inputs query reads for the night, once, split by shard (not a warehouse copy)
    exported = time.perf_counter()
    export_inputs(con, folder / "input", as_of_date, policy, len(jobs))
    exported = time.perf_counter() - exported
    mapped = time.perf_counter()
    parts = lake.read_parts(cluster.map_shards(limits_shard, jobs, f"limits-{run_id}"), len(jobs))
    mapped = time.perf_counter() - mapped
    if parts is not None:
        stage_all(con, as_of_date, parts)
    result = lim.finalize_from_staging(con, settings, as_of_date, run_id)
    result["export_seconds"] = round(exported, 3)
    lake.clear(folder)
    return _done(result, len(jobs), mapped, t0)


def _done(result: dict[str, Any], shards: int, mapped: float, t0: float) -> dict[str, Any]:
    seconds = time.perf_counter() - t0
    result.update(engine="dask", shards=shards, mapped_seconds=round(mapped, 3))
    log.info("dask: %s shards mapped in %.2f s (stage %.2f s)", shards, mapped, seconds)
    return result


DISTRIBUTED: dict[str, Callable[..., dict[str, Any]]] = {
    "features": features,
    "score": score,
    "limits": limits,
}
