"""Warehouse side of limits: tables (``sql/ddl/limits.sql``, ``sql/ddl/stress.sql``), analyst
views (``sql/views/limits_*.sql``) and the writes."""

from __future__ import annotations

import logging
from datetime import date

import duckdb
import pandas as pd

from livefin_etl.config import SQL_DIR, fault_point
from livefin_etl.warehouse import (
    insert_frame,
    quote_ident,
    replace_rows,
    run_ddl,
    run_sql_file,
    table_exists,
    transaction,
)

log = logging.getLogger(__name__)

LIMITS_TABLE = "limits.financing_limits"
STRESS_TABLE = "stress.stress_results"
STAGING_TABLE = "limits.limit_inputs_staging"
VIEW_FILES = ("limits_current.sql", "limits_merchant_360.sql", "limits_portfolio_summary.sql")
# Views that join other stages' tables are skipped until those exist.
VIEW_SOURCES = {
    "limits_merchant_360.sql": (
        "features.merchant_features",
        "credit.merchant_scores",
        "valuation.data_asset_values",
        "dq.merchant_quality",
    )
}


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create limits.financing_limits, its shard staging table and stress.stress_results
    (idempotent), with comments."""
    run_ddl(con, "limits")
    run_ddl(con, "stress")


def create_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """(Re)create the analyst views in ``sql/views``; a view whose sources are absent is skipped."""
    made = []
    for name in VIEW_FILES:
        if not all(table_exists(con, t) for t in VIEW_SOURCES.get(name, ())):
            log.warning("view %s skipped: a source table is missing", name)
            continue
        run_sql_file(con, SQL_DIR / "views" / name)
        made.append(name.removesuffix(".sql"))
    return made


def write_limits(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, as_of_date: date) -> None:
    """Replace ``as_of_date`` in limits.financing_limits and refresh the views, in one
    transaction (``rows`` has exactly the table's columns)."""
    with transaction(con):
        con.execute(f"delete from {quote_ident(LIMITS_TABLE)} where as_of_date = ?", [as_of_date])
        insert_frame(con, LIMITS_TABLE, rows)
        create_views(con)
        fault_point("limits.before_commit")


def write_stress(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, scenario_id: str) -> None:
    """Replace one scenario in stress.stress_results."""
    replace_rows(con, STRESS_TABLE, rows, where="scenario_id = ?", params=[scenario_id])
