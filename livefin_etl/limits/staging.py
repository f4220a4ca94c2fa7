"""Sharded limits: each merchant-hash shard stages its policy inputs; guardrails need the whole
book, so the policy runs once over all shards in :func:`finalize_from_staging`."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import pandas as pd

from livefin_etl.config import LivefinError, Settings
from livefin_etl.limits.build import build_limits
from livefin_etl.limits.inputs import load_inputs
from livefin_etl.limits.policy import load_policy
from livefin_etl.limits.store import STAGING_TABLE, ensure_tables
from livefin_etl.warehouse import in_shard, insert_frame, quote_ident, shard_of, transaction

STAGING = quote_ident(STAGING_TABLE)
STAGED_COLUMNS = ("staged_as_of", "staged_run_id", "staged_shard", "staged_shards")


def shard_inputs(
    con: duckdb.DuckDBPyConnection,
    as_of_date: date,
    run_id: str,
    shard: tuple[int, int],
    *,
    create_missing: bool = True,
) -> pd.DataFrame:
    """One merchant-hash shard's policy inputs with the staging columns, read-only when
    ``create_missing=False`` (what a dask shard task computes on a worker)."""
    inputs = load_inputs(con, as_of_date, load_policy(), create_missing=create_missing)
    part = inputs[in_shard(inputs["merchant_id"].tolist(), shard)].copy()
    return with_staged_columns(part, as_of_date, run_id, shard)


def with_staged_columns(
    part: pd.DataFrame, as_of_date: date, run_id: str, shard: tuple[int, int]
) -> pd.DataFrame:
    """``part`` (one shard's inputs) with the staging columns in front."""
    for i, (name, value) in enumerate(
        zip(STAGED_COLUMNS, (as_of_date, run_id, *shard), strict=True)
    ):
        part.insert(i, name, value)
    return part


def stage_inputs(
    con: duckdb.DuckDBPyConnection, as_of_date: date, run_id: str, shard: tuple[int, int]
) -> int:
    """Gather one merchant-hash shard's policy inputs into ``limits.limit_inputs_staging``;
    returns the rows staged. A shard rerun replaces that shard; another run's rows go."""
    part = shard_inputs(con, as_of_date, run_id, shard)
    ensure_tables(con)
    with transaction(con):
        con.execute(
            f"delete from {STAGING} where staged_as_of = ? and staged_shard = ?",
            [as_of_date, shard[0]],
        )
        con.execute(
            f"delete from {STAGING} where staged_as_of = ? and staged_run_id <> ?",
            [as_of_date, run_id],
        )
        insert_frame(con, STAGING_TABLE, part)
    return len(part)


def stage_all(con: duckdb.DuckDBPyConnection, as_of_date: date, parts: Any) -> int:
    """Replace every staged row of ``as_of_date`` with ``parts`` (all shards' rows, pandas or
    Arrow, staging columns included) in one transaction: the dask engine's single writer."""
    ensure_tables(con)
    with transaction(con):
        con.execute(f"delete from {STAGING} where staged_as_of = ?", [as_of_date])
        return insert_frame(con, STAGING_TABLE, parts)


def _check_all_shards_staged(con: duckdb.DuckDBPyConnection, as_of_date: date, run_id: str) -> None:
    rows = con.execute(
        f"select distinct staged_shard, staged_shards from {STAGING} "
        "where staged_as_of = ? and staged_run_id = ?",
        [as_of_date, run_id],
    ).fetchall()
    if not rows:
        raise LivefinError(
            f"no staged limit inputs for {as_of_date} in run {run_id}: "
            "run the sharded limits stage first"
        )
    shards = max(r[1] for r in rows)
    # a shard none of the night's merchants hash to stages no rows and is not missing
    ids = con.execute(
        "select merchant_id from features.merchant_features where as_of_date = ?", [as_of_date]
    ).fetchall()
    expected = {shard_of(str(m), shards) for (m,) in ids}
    missing = sorted(expected - {r[0] for r in rows})
    if missing:
        raise LivefinError(f"limits for {as_of_date}: shards {missing} of {shards} were not staged")


def finalize_from_staging(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of_date: date, run_id: str
) -> dict[str, Any]:
    """Apply the policy and guardrails to every staged shard at once, then clear the staging."""
    ensure_tables(con)
    _check_all_shards_staged(con, as_of_date, run_id)
    inputs = con.execute(
        f"select * exclude ({', '.join(STAGED_COLUMNS)}) from {STAGING} "
        "where staged_as_of = ? and staged_run_id = ? order by merchant_id",
        [as_of_date, run_id],
    ).df()
    result = build_limits(con, settings, as_of_date, run_id, inputs=inputs)
    con.execute(f"delete from {STAGING} where staged_as_of = ?", [as_of_date])
    return result
