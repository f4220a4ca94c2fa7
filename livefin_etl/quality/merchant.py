"""Merchant quality coefficient Q: six DAMA dimensions per merchant from its own data."""

from __future__ import annotations

from datetime import date, datetime

import duckdb

from livefin_etl.config import SQL_DIR, LivefinError, load_config
from livefin_etl.quality.suites import DIMENSIONS
from livefin_etl.warehouse import run_sql_file, stage_memory, table_exists, transaction

SQL = SQL_DIR / "quality" / "merchant_quality.sql"
NEEDED = ("raw.merchants", "raw.orders", "raw.traffic", "raw.fulfillment", "meta.quarantine")


def _params(as_of_date: date) -> dict[str, object]:
    cfg = load_config("quality")
    mq = cfg.get("merchant_quality") or {}
    weights = mq.get("weights") or {}
    missing = [d for d in DIMENSIONS if d not in weights]
    if missing:
        raise LivefinError(f"config/quality.yaml merchant_quality.weights lacks {missing}")
    if (
        any(float(weights[d]) < 0 for d in DIMENSIONS)
        or sum(float(weights[d]) for d in DIMENSIONS) <= 0
    ):
        raise LivefinError("config/quality.yaml merchant_quality.weights must be >= 0, sum > 0")
    params: dict[str, object] = {f"w_{d}": float(weights[d]) for d in DIMENSIONS}
    params.update(
        as_of_date=as_of_date.isoformat(),
        window_days=int(mq.get("window_days", 30)),
        grace_days=int(mq.get("fulfilment_grace_days", 3)),
        min_rows=int(mq.get("min_rows", 1)),
        quality_version=str(cfg["version"]),
    )
    return params


def build_merchant_quality(con: duckdb.DuckDBPyConnection, as_of_date: date) -> int:
    """Replace dq.merchant_quality for ``as_of_date``; return the number of merchants written."""
    if not isinstance(as_of_date, date) or isinstance(as_of_date, datetime):
        raise LivefinError(f"as_of date must be a datetime.date, got {as_of_date!r}")
    absent = [t for t in NEEDED if not table_exists(con, t)]
    if absent:
        raise LivefinError(f"merchant quality needs {', '.join(absent)}: run extract first")
    from livefin_etl.quality.gate import ensure_tables

    ensure_tables(con)
    params = _params(as_of_date)
    with stage_memory(con, "features"), transaction(con):
        con.execute("DELETE FROM dq.merchant_quality WHERE as_of_date = ?", [as_of_date])
        run_sql_file(con, SQL, params)
    return int(
        con.execute(
            "SELECT count(*) FROM dq.merchant_quality WHERE as_of_date = ?", [as_of_date]
        ).fetchone()[0]
    )
