"""Policy inputs for one business date: ``sql/limits/limit_inputs.sql`` on the warehouse."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import pandas as pd

from livefin_etl.config import SQL_DIR, LivefinError
from livefin_etl.warehouse import quote_ident, render_sql, run_ddl, table_exists

INPUTS_SQL = SQL_DIR / "limits" / "limit_inputs.sql"
# Raw sources the inputs read: loans/repayments (exposure), orders (top streamer) and every
# source whose failed partition declines a merchant.
RAW_SOURCES = ("merchants", "orders", "traffic", "fulfillment", "loans", "repayments")


def ensure_upstream(con: duckdb.DuckDBPyConnection) -> None:
    """Create (empty, from their owners' DDL) the optional upstream tables, so that the one
    inputs query always binds: a stage that never ran contributes no rows, not an error."""
    from livefin_etl import extract
    from livefin_etl.contracts import load_contract
    from livefin_etl.features import ensure_table, table_spec

    run_ddl(con, "dq")  # dq.merchant_quality, dq.partition_status
    run_ddl(con, "valuation")
    ensure_table(con, table_spec("data_asset_values"))
    for source in RAW_SOURCES:
        extract.ensure_tables(con, load_contract(source))


def _count(con: duckdb.DuckDBPyConnection, table: str, as_of_date: date) -> int:
    sql = f"select count(*) from {quote_ident(table)} where as_of_date = ?"
    return int(con.execute(sql, [as_of_date]).fetchone()[0])


def require_features_and_scores(con: duckdb.DuckDBPyConnection, as_of_date: date) -> None:
    """The two inputs limits cannot do without: a clear error naming the stage to run."""
    for table, stage in (
        ("features.merchant_features", "features"),
        ("credit.merchant_scores", "score"),
    ):
        if not table_exists(con, table):
            raise LivefinError(f"{table} does not exist; run the {stage} stage")
    if _count(con, "features.merchant_features", as_of_date) == 0:
        raise LivefinError(
            f"no features for {as_of_date}; run the features stage for that date first"
        )
    if _count(con, "credit.merchant_scores", as_of_date) == 0:
        raise LivefinError(
            f"no credit scores for {as_of_date}; run the score stage for that date first"
        )


def inputs_sql(as_of_date: date, policy: dict[str, Any]) -> str:
    """The inputs query for ``as_of_date`` with the policy's windows and thresholds filled in."""
    params = {
        "as_of_date": as_of_date.isoformat(),
        "default_dpd": int(policy["declines"]["default_dpd"]),
        "failed_partition_days": int(policy["declines"]["failed_partition_days"]),
        "streamer_window_days": int(policy["guardrails"]["streamer_window_days"]),
    }
    return render_sql(INPUTS_SQL.read_text(encoding="utf-8"), params)


def load_inputs(
    con: duckdb.DuckDBPyConnection,
    as_of_date: date,
    policy: dict[str, Any],
    *,
    create_missing: bool = True,
) -> pd.DataFrame:
    """One row per merchant in features.merchant_features for ``as_of_date`` with the columns
    of INPUT_COLUMNS (score, value, quality, exposure, default and failed-partition flags, top
    streamer). Only data before ``as_of_date``. ``create_missing=False`` on a read-only
    connection whose writer already ran :func:`ensure_upstream` (a dask shard task)."""
    require_features_and_scores(con, as_of_date)
    if create_missing:
        ensure_upstream(con)
    try:
        return con.execute(inputs_sql(as_of_date, policy)).df()
    except duckdb.Error as exc:
        raise LivefinError(f"loading limit inputs for {as_of_date} failed: {exc}") from exc
