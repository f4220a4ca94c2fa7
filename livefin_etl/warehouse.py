"""DuckDB warehouse: one locked writer, the SQL runner for ``sql/``, transactions."""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from livefin_etl.config import (
    SQL_DIR,
    LivefinError,
    Settings,
    fault_point,
    get_settings,
    load_config,
)

log = logging.getLogger(__name__)

SCHEMAS = ("raw", "meta", "dq", "features", "valuation", "credit", "limits", "stress")


class WarehouseLocked(LivefinError):
    pass


@contextmanager
def writer_lock(settings: Settings) -> Generator[None, None, None]:
    """Exclusive advisory lock so that two livefin processes never write one warehouse."""
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise WarehouseLocked(
                f"warehouse {settings.warehouse} is locked by another livefin process "
                f"(pid {holder}); wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the fd releases the flock


def connect(
    settings: Settings | None = None, *, read_only: bool = False, path: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the working warehouse (or ``path``) with deliberate thread and memory settings."""
    settings = settings or get_settings()
    db = path or settings.warehouse
    if not read_only:  # a reader creates nothing, not even the folder
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(db), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            why = "read-only: a run is writing it" if read_only else str(exc)
            raise WarehouseLocked(f"cannot open {db}: {why}") from None
        raise
    con.execute(f"SET threads = {settings.threads}")
    # Bounded memory on a shared 2-core/24 GB box; DuckDB spills to disk beyond it.
    con.execute(f"SET memory_limit = {quote_literal(memory_limit('default'))}")
    con.execute("SET preserve_insertion_order = false")
    if not read_only:
        for schema in SCHEMAS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    return con


def memory_limit(stage: str) -> str:
    """DuckDB memory_limit for ``stage``: LIVEFIN_DUCKDB_MEMORY if set, else
    config/resources.yaml ``duckdb_memory_limit`` (its ``default`` for stages it does not name)."""
    override = os.environ.get("LIVEFIN_DUCKDB_MEMORY")
    if override:
        return override
    limits = load_config("resources").get("duckdb_memory_limit") or {}
    return str(limits.get(stage) or limits.get("default") or "4GB")


@contextmanager
def stage_memory(con: duckdb.DuckDBPyConnection, stage: str) -> Generator[None, None, None]:
    """Run a block under ``stage``'s memory_limit, then set the connection's default back (one
    process may run several stages: ``livefin run``). The default is set again from the config,
    not from current_setting, whose rounded text (``4.6 GiB``) would drift the limit."""
    con.execute(f"SET memory_limit = {quote_literal(memory_limit(stage))}")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = {quote_literal(memory_limit('default'))}")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Generator[duckdb.DuckDBPyConnection, None, None]:
    """BEGIN/COMMIT, ROLLBACK on any error: a partition is replaced whole or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


def sql_files(layer: str) -> list[Path]:
    """SQL models of one layer (``ddl``, ``staging``, ``marts``...), in file-name order."""
    return sorted((SQL_DIR / layer).glob("*.sql"))


_PARAM = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def render_sql(text: str, params: dict[str, object] | None = None) -> str:
    """Tiny ``{{ name }}`` templating for literal parameters (dates, versions).

    Values are rendered as SQL literals, so no user text reaches SQL unquoted.
    """
    params = params or {}

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in params:
            raise LivefinError(f"SQL parameter '{key}' not provided")
        return quote_literal(params[key])

    return _PARAM.sub(sub, text)


# --------------------------------------------------------------------------- quoting (the one home)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_literal(value: object) -> str:
    """A SQL literal: numbers as themselves, everything else as a single-quoted string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A (possibly ``schema.``-qualified) identifier, double-quoted; refuses anything that is
    not a plain name, so no file or config value can smuggle SQL into DDL."""
    parts = name.split(".")
    if not parts or len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise LivefinError(f"'{name}' is not a valid SQL name (letters, digits, underscore)")
    return ".".join(f'"{p}"' for p in parts)


def quote_column(name: str) -> str:
    """One column name from user data (any characters: ``<``, spaces, CJK), double-quoted with
    ``"`` doubled. For generated SELECTs over an analyst's table; DDL names use quote_ident."""
    if not name or "\x00" in name:
        raise LivefinError("a column name is empty or contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- DDL and writes


def run_ddl(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Create (if missing) the tables and comments of ``sql/ddl/<name>.sql``: the one DDL home."""
    path = SQL_DIR / "ddl" / f"{name}.sql"
    try:
        con.execute(path.read_text(encoding="utf-8"))
    except duckdb.Error as exc:
        raise LivefinError(f"DDL {path.relative_to(SQL_DIR)} failed: {exc}") from exc


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame: Any) -> Generator[str, None, None]:
    """``frame`` (pandas, polars or Arrow) visible to SQL as ``name`` inside the block."""
    con.register(name, frame)
    try:
        yield name
    finally:
        con.unregister(name)


def insert_frame(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: Any,
    columns: Sequence[str] | None = None,
) -> int:
    """Insert ``frame``'s ``columns`` (default: all, by name) into ``table``; no transaction of
    its own, so several inserts can share the caller's."""
    if frame is None or len(frame) == 0:
        return 0
    with registered(con, "_livefin_rows", frame) as view:
        if columns is None:
            con.execute(f"insert into {quote_ident(table)} by name select * from {view}")
        else:
            cols = ", ".join(quote_ident(c) for c in columns)
            con.execute(f"insert into {quote_ident(table)} ({cols}) select {cols} from {view}")
    return len(frame)


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: Any,
    *,
    where: str,
    params: Sequence[Any] = (),
    columns: Sequence[str] | None = None,
    fault: str | None = None,
) -> int:
    """The write every stage does: in one transaction delete ``table``'s rows matching ``where``
    (bound ``params``) and insert ``frame``. Readers see the old rows or the new, never a mix.

    ``where`` may name the incoming rows as ``_livefin_new`` (e.g. a sharded replace)."""
    with registered(con, "_livefin_new", frame), transaction(con):
        con.execute(f"delete from {quote_ident(table)} where {where}", list(params))
        n = insert_frame(con, table, frame, columns)
        if fault:
            fault_point(fault)
    return n


def run_sql_file(
    con: duckdb.DuckDBPyConnection, path: Path, params: dict[str, object] | None = None
) -> None:
    """Run one SQL model file (one statement, plus optional COMMENT ON statements)."""
    text = render_sql(path.read_text(encoding="utf-8"), params)
    log.debug("running %s", path.name)
    try:
        con.execute(text)
    except duckdb.Error as exc:
        raise LivefinError(f"SQL model {path.relative_to(SQL_DIR)} failed: {exc}") from exc


def run_layer(
    con: duckdb.DuckDBPyConnection, layer: str, params: dict[str, object] | None = None
) -> list[str]:
    ran = []
    for path in sql_files(layer):
        run_sql_file(con, path, params)
        ran.append(path.stem)
    return ran


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema=? and table_name=?",
            [schema, name],
        ).fetchall()[0][0]
    )


def shard_of(merchant_id: str, shards: int) -> int:
    """Stable merchant shard (CRC-32, the same in every process and version)."""
    import zlib

    return zlib.crc32(merchant_id.encode("utf-8")) % shards


def in_shard(merchant_ids, shard: tuple[int, int] | None):
    """Boolean mask (list) of ids belonging to ``shard=(index, count)``; all True without one."""
    if shard is None:
        return [True] * len(merchant_ids)
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise LivefinError(f"invalid shard {shard}: need 0 <= index < count")
    return [shard_of(str(m), n) == i for m in merchant_ids]
