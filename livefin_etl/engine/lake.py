"""The lake root: where the dask engine's shard tasks read their inputs and write their parts.

``LIVEFIN_LAKE`` (default ``<home>/lake``) must be reachable by every worker at the same path
(a shared volume). Per run and stage: ``runs/as_of_date=D/<run_id>/<stage>/input/`` (written
by the single writer before mapping) and ``.../parts/shard-<i>-of-<n>.parquet`` (one per
shard, written atomically by its task, so a killed task leaves nothing half-written).
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from livefin_etl.config import LivefinError, Settings
from livefin_etl.warehouse import quote_ident, quote_literal, registered

Schema = tuple[tuple[str, str], ...]


def lake_root(settings: Settings) -> Path:
    return Path(os.environ.get("LIVEFIN_LAKE") or settings.home / "lake")


def stage_dir(settings: Settings, as_of_date: date, run_id: str, stage: str) -> Path:
    """A fresh folder for one stage of one run (a rerun starts clean)."""
    path = lake_root(settings) / "runs" / f"as_of_date={as_of_date}" / run_id / stage
    shutil.rmtree(path, ignore_errors=True)
    (path / "input").mkdir(parents=True)
    (path / "parts").mkdir()
    return path


def clear(folder: Path) -> None:
    """Remove a committed stage's folder, and its run and date folders once empty."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in (folder.parent, folder.parent.parent):
        try:
            parent.rmdir()
        except OSError:  # not empty: another stage or run still has files there
            break


def part_path(folder: Path, shard: tuple[int, int]) -> Path:
    return folder / "parts" / f"shard-{shard[0]}-of-{shard[1]}.parquet"


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> Schema:
    """(column, type) of a warehouse table: parts are cast to it, so every shard's file has
    the same types whatever its rows (a shard whose column is all NULL included)."""
    schema, name = table.split(".")
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    return tuple((str(c), str(t)) for c, t in rows)


def write_part(frame: Any, path: Path, schema: Schema) -> str:
    """``frame`` as one Parquet part, its columns cast to ``schema``'s types; written to a
    temporary name and renamed, so readers see the whole part or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    types = dict(schema)
    with duckdb.connect() as con, registered(con, "_livefin_part", frame):
        cols = [d[0] for d in con.execute("select * from _livefin_part limit 0").description]
        select = ", ".join(
            f"cast({quote_ident(c)} as {types[c]}) as {quote_ident(c)}"
            if c in types
            else quote_ident(c)
            for c in cols
        )
        con.execute(
            f"copy (select {select} from _livefin_part) to {quote_literal(str(tmp))} "
            "(format parquet)"
        )
    os.replace(tmp, path)
    return str(path)


def read_parts(paths: list[str | None], expected: int) -> Any:
    """Every shard's part as one Arrow table in merchant order (None: an empty shard)."""
    if len(paths) != expected:
        raise LivefinError(f"expected {expected} shard results, got {len(paths)}")
    files = [p for p in paths if p]
    missing = [p for p in files if not Path(p).exists()]
    if missing:
        raise LivefinError(f"shard parts missing on the lake: {missing[0]}")
    if not files:
        return None
    with duckdb.connect() as con:
        listed = ", ".join(quote_literal(p) for p in files)
        # no hive_partitioning: the lake path's ``as_of_date=D`` is not a column of the parts
        return con.sql(
            f"select * from read_parquet([{listed}], hive_partitioning = false) "
            "order by merchant_id"
        ).to_arrow_table()
