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
from livefin_etl.warehouse import quote_ident, quote_literal, registered, shard_of

Schema = tuple[tuple[str, str], ...]
# The registered (merchant_id, _shard) frame an export query joins to split its rows by shard.
SHARD_MAP = "_livefin_shard_map"


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


def export_by_shard(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    merchant_ids: list[str],
    shards: int,
    sharded: dict[str, str],
    whole: dict[str, str],
) -> None:
    """A stage's inputs under ``folder``, exported once by the single writer: each query of
    ``sharded`` (it joins ``SHARD_MAP`` for its ``_shard`` column) as Parquet partitioned by
    shard in ``<name>/_shard=<i>/``, plus a typed empty ``<name>.empty.parquet`` for a shard
    without rows; each query of ``whole`` (small tables every shard reads) as one file."""
    import pyarrow as pa

    shard_map = pa.table(
        {"merchant_id": merchant_ids, "_shard": [shard_of(str(m), shards) for m in merchant_ids]},
        schema=pa.schema([("merchant_id", pa.string()), ("_shard", pa.int32())]),
    )
    with registered(con, SHARD_MAP, shard_map):
        for name, sql in sharded.items():
            # the partitioned files carry _shard in their folder name only
            empty = quote_literal(str(folder / f"{name}.empty.parquet"))
            con.execute(
                f"copy (select * exclude (_shard) from ({sql}) limit 0) to {empty} (format parquet)"
            )
            con.execute(
                f"copy ({sql}) to {quote_literal(str(folder / name))} "
                "(format parquet, partition_by (_shard), overwrite_or_ignore)"
            )
    for name, sql in whole.items():
        target = quote_literal(str(folder / f"{name}.whole.parquet"))
        con.execute(f"copy ({sql}) to {target} (format parquet)")


def mount_shard(con: duckdb.DuckDBPyConnection, folder: Path, shard: int) -> None:
    """Views under the exported names (``schema.table`` or a bare name) over one shard's files,
    in a shard task's in-memory DuckDB, so the stage's SQL binds as on the warehouse."""
    names = {
        p.name.removesuffix(suffix): suffix
        for suffix in (".empty.parquet", ".whole.parquet")
        for p in folder.glob(f"*{suffix}")
    }
    for schema in sorted({n.split(".")[0] for n in names if "." in n}):
        con.execute(f"create schema if not exists {quote_ident(schema)}")
    for name, suffix in sorted(names.items()):
        files = sorted((folder / name / f"_shard={shard}").glob("*.parquet"))
        paths = [str(f) for f in files] or [str(folder / f"{name}{suffix}")]
        listed = ", ".join(quote_literal(p) for p in paths)
        con.execute(
            f"create view {quote_ident(name)} as select * "
            f"from read_parquet([{listed}], hive_partitioning = false)"
        )
