"""What one shard task does on a Dask worker: read its inputs, run the stage's own per-shard
function, write one Parquet part. It never opens the warehouse for writing.

Tasks get every path in their :class:`ShardJob` (a worker does not see the driver's
environment changes), run with the worker's thread count, and are safe to rerun: the part is
rewritten whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from livefin_etl.config import LivefinError, Settings, fault_point
from livefin_etl.engine import cluster, lake


@dataclass(frozen=True)
class ShardJob:
    settings: Settings
    as_of_date: date
    run_id: str
    shard: tuple[int, int]
    source: str  # on the lake: features Parquet (score), or the inputs folder (features, limits)
    folder: str  # the stage's lake folder (parts/ below it)
    schema: lake.Schema  # the target table's column types
    model: tuple[str, str] | None = None  # (artifact folder, model version) for score
    query: str | None = None  # limits: the inputs query as the writer rendered it (its policy)

    def worker_settings(self) -> Settings:
        return dataclasses.replace(
            self.settings, threads=cluster.worker_threads(self.settings.threads)
        )


def _finish(job: ShardJob, frame) -> str | None:
    """Write the shard's part (None for an empty shard)."""
    fault_point("engine.shard_task")  # tests kill the worker here (mid-task, before the part)
    if frame is None or len(frame) == 0:
        return None
    return lake.write_part(frame, lake.part_path(Path(job.folder), job.shard), job.schema)


def score_shard(job: ShardJob) -> str | None:
    """Scores with reason codes for one shard, from the night's features on the lake."""
    from livefin_etl.credit.artifacts import load_model
    from livefin_etl.credit.scoring import score_frame

    artifact, version = job.model or ("", "")
    model = load_model(artifact, version)
    with duckdb.connect() as con:
        # the same read as the warehouse's (scoring._features_for), from the exported file
        features = con.execute(
            "select * from read_parquet(?, hive_partitioning = false) "
            "where as_of_date = ? order by merchant_id",
            [job.source, job.as_of_date],
        ).df()
    frame = score_frame(
        features, job.worker_settings(), model, job.as_of_date, job.run_id, shard=job.shard
    )
    return _finish(job, frame)


def limits_shard(job: ShardJob) -> str | None:
    """One shard's limit policy inputs (staging columns included): the inputs query on the
    shard's exported rows (``limits_lake``), in an in-memory DuckDB."""
    from livefin_etl.limits.staging import with_staged_columns

    if not job.query:
        raise LivefinError("a limits shard job needs the writer's inputs query")
    with duckdb.connect(config={"threads": job.worker_settings().threads}) as con:
        lake.mount_shard(con, Path(job.source), job.shard[0])
        try:
            frame = con.execute(job.query).df()
        except duckdb.Error as exc:  # the local stage's one line (limits.inputs.load_inputs)
            raise LivefinError(f"loading limit inputs for {job.as_of_date} failed: {exc}") from exc
    return _finish(job, with_staged_columns(frame, job.as_of_date, job.run_id, job.shard))


def features_shard(job: ShardJob) -> str | None:
    """One shard's ``features.merchant_features`` rows: the as-of SQL on the shard's exported
    daily blocks and order versions (``features_lake``), in an in-memory DuckDB."""
    from livefin_etl.features import compute_night

    with duckdb.connect(config={"threads": job.worker_settings().threads}) as con:
        lake.mount_shard(con, Path(job.source), job.shard[0])
        frame = compute_night(con, job.as_of_date)
    return _finish(job, frame)
