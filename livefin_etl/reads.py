"""Read paths that never need the writer: explain, explain-value, status and ``livefin sql``.

They read the published snapshot (``published/livefin.duckdb``, replaced with ``os.replace``,
so it is never locked by a night) or open the working warehouse read-only; they never take the
writer lock and never create a file or folder. An empty or missing home is one line naming
``livefin init`` / ``livefin demo``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from livefin_etl.config import LivefinError, Settings, get_settings

T = TypeVar("T")
PUBLISHED_NAME = "livefin.duckdb"
NOTHING_YET = "run `livefin demo` (or `livefin init` then `livefin run`) first"


def snapshot_path(settings: Settings) -> Path:
    """The analysts' snapshot: the path ``CURRENT.json`` / ``RECORD.json`` describe."""
    return settings.published / PUBLISHED_NAME


def require_state(settings: Settings) -> None:
    """Refuse, without creating anything, a home that has neither warehouse nor snapshot."""
    if not settings.warehouse.exists() and not snapshot_path(settings).exists():
        raise LivefinError(
            f"livefin home {settings.home} has no warehouse and no published snapshot: "
            + NOTHING_YET
        )


@contextmanager
def _open(path: Path, settings: Settings) -> Generator[duckdb.DuckDBPyConnection, None, None]:
    from livefin_etl.warehouse import connect

    con = connect(settings, read_only=True, path=path)
    try:
        yield con
    finally:
        con.close()


def _has_row(con: duckdb.DuckDBPyConnection, table: str, merchant_id: str, as_of_date: date):
    from livefin_etl.warehouse import table_exists

    return table_exists(con, table) and bool(
        con.execute(
            f"select count(*) from {table} where merchant_id = ? and as_of_date = ?",  # noqa: S608
            [merchant_id, as_of_date],
        ).fetchone()[0]
    )


def _known_merchant(con: duckdb.DuckDBPyConnection, merchant_id: str) -> bool:
    from livefin_etl.warehouse import table_exists

    return any(
        table_exists(con, t)
        and con.execute(
            f"select 1 from {t} where merchant_id = ? limit 1", [merchant_id]
        ).fetchone()
        for t in ("limits.financing_limits", "features.merchant_features", "raw.merchants")
    )


def read_merchant(
    merchant_id: str,
    as_of_date: date,
    table: str,
    fn: Callable[[duckdb.DuckDBPyConnection], T],
    settings: Settings | None = None,
) -> T:
    """``fn`` on the published snapshot when it holds the merchant's ``table`` row for the
    date (what lenders were served), else on the warehouse opened read-only."""
    s = settings or get_settings()
    require_state(s)
    known = False
    for path in (snapshot_path(s), s.warehouse):
        if not path.exists():
            continue
        try:
            with _open(path, s) as con:
                if _has_row(con, table, merchant_id, as_of_date):
                    return fn(con)
                known = known or _known_merchant(con, merchant_id)
        except LivefinError as exc:  # the warehouse is busy with a run
            raise LivefinError(
                f"merchant {merchant_id} on {as_of_date} is not in the published snapshot, "
                f"and {exc}; try again after the run"
            ) from None
    if not known:
        raise LivefinError(f"unknown merchant {merchant_id}")
    raise LivefinError(f"merchant {merchant_id} has no {table} row for {as_of_date}")


def explain(merchant_id: str, as_of_date: date, settings: Settings | None = None) -> str:
    from livefin_etl import credit

    s = settings or get_settings()
    return read_merchant(
        merchant_id,
        as_of_date,
        "features.merchant_features",
        lambda con: credit.explain(con, s, merchant_id, as_of_date),
        s,
    )


def explain_value(merchant_id: str, as_of_date: date, settings: Settings | None = None) -> str:
    from livefin_etl import valuation

    return read_merchant(
        merchant_id,
        as_of_date,
        "valuation.data_asset_values",
        lambda con: valuation.explain_value(con, merchant_id, as_of_date),
        settings,
    )


def status(as_of_date: date | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """The warehouse read-only; while a run writes it, the published snapshot (``source``)."""
    from livefin_etl import publish as pub
    from livefin_etl.credit import monitor as mon
    from livefin_etl.warehouse import WarehouseLocked

    s = settings or get_settings()
    require_state(s)
    published = pub.current(s)
    if s.warehouse.exists():
        try:
            with _open(s.warehouse, s) as con:
                return {**mon.status(con, as_of_date, published), "source": str(s.warehouse)}
        except WarehouseLocked:
            if not snapshot_path(s).exists():
                raise
    with _open(snapshot_path(s), s) as con:
        out = mon.status(con, as_of_date, published)
    return {**out, "source": f"{snapshot_path(s)} (a run is writing the warehouse)"}


def query(sql: str, settings: Settings | None = None) -> tuple[list[str], list[tuple]]:
    """One statement on the published snapshot, read-only: column names and rows."""
    s = settings or get_settings()
    path = snapshot_path(s)
    if not path.exists():
        raise LivefinError(f"no published snapshot at {path}: " + NOTHING_YET)
    with _open(path, s) as con:
        cur = con.execute(sql)
        if cur.description is None:
            return [], []
        return [d[0] for d in cur.description], cur.fetchall()


def connect_snapshot(settings: Settings | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published snapshot (the interactive shell's)."""
    s = settings or get_settings()
    path = snapshot_path(s)
    if not path.exists():
        raise LivefinError(f"no published snapshot at {path}: " + NOTHING_YET)
    return duckdb.connect(str(path), read_only=True)
