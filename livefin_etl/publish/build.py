"""Building one publication's parts: the analyst snapshot and the lender export set.

Everything here writes only to paths the caller names (temporary or version folders); nothing a
reader or lender sees changes here. ``record`` commits and installs what is built.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from livefin_etl.config import LivefinError, fault_point
from livefin_etl.publish.columns import inherit_view_comments, select_list
from livefin_etl.warehouse import quote_ident, quote_literal, run_ddl, table_exists

SNAP_ALIAS = "livefin_snap"

# Analyst-facing tables. "dates": rows of the dates that limits.current shows (the snapshot
# stays small); "all": full history.
SNAPSHOT_TABLES: tuple[tuple[str, str], ...] = (
    ("limits.financing_limits", "all"),
    ("features.merchant_features", "dates"),
    ("valuation.data_asset_values", "dates"),
    ("credit.merchant_scores", "dates"),
    ("dq.merchant_quality", "dates"),
    ("credit.model_registry", "all"),
    ("dq.partition_status", "all"),
    ("stress.stress_results", "dates"),
    # model monitoring: small (one set of rows per night), kept whole for trend queries
    *((f"monitor.{t}", "all") for t in ("verdicts", "stability", "performance", "loss")),
    *((f"monitor.{t}", "all") for t in ("vintage", "business", "reason_mix")),
)

# Views whose uncommented columns take the comment of the same column of their sources, in order.
VIEW_COMMENT_SOURCES: dict[str, tuple[str, ...]] = {
    "limits.current": ("limits.financing_limits",),
    "limits.merchant_360": (
        "limits.current",
        "credit.merchant_scores",
        "valuation.data_asset_values",
        "dq.merchant_quality",
        "features.merchant_features",
    ),
}

EXPORT_COLUMNS = (
    "merchant_id",
    "as_of_date",
    "limit_amount",
    "currency",
    "decision",
    "tier",
    "pd",
    "score",
    "grade",
    "expected_loss",
    "repayment_capacity",
    "collateral_component",
    "data_asset_value",
    "outstanding_exposure",
    "guardrail_scale",
    "reason_codes",
    "reason_texts",
    "model_version",
    "policy_version",
    "valid_from",
    "valid_until",
    "run_id",
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- snapshot


def _comments(con: duckdb.DuckDBPyConnection, qualified: str) -> tuple[str | None, dict[str, str]]:
    schema, name = qualified.split(".")
    row = con.execute(
        """select comment from duckdb_tables()
           where database_name = current_database() and schema_name = ? and table_name = ?""",
        [schema, name],
    ).fetchone()
    cols = con.execute(
        """select column_name, comment from duckdb_columns()
           where database_name = current_database() and schema_name = ? and table_name = ?
             and comment is not null""",
        [schema, name],
    ).fetchall()
    return (row[0] if row else None), dict(cols)


def _copy_tables(
    con: duckdb.DuckDBPyConnection, path: Path, as_of_date: date
) -> tuple[dict[str, int], dict[str, tuple[str | None, dict[str, str]]]]:
    """Copy SNAPSHOT_TABLES into the database at ``path``; row counts and comments per table."""
    dates = [
        r[0] for r in con.execute("select distinct as_of_date from limits.current").fetchall()
    ] or [as_of_date]
    date_list = ", ".join(f"DATE {quote_literal(d.isoformat())}" for d in dates)
    rows: dict[str, int] = {}
    comments: dict[str, tuple[str | None, dict[str, str]]] = {}
    con.execute(f"DETACH DATABASE IF EXISTS {SNAP_ALIAS}")
    con.execute(f"ATTACH {quote_literal(str(path))} AS {SNAP_ALIAS}")
    try:
        for table, scope in SNAPSHOT_TABLES:
            if not table_exists(con, table):
                continue
            schema = table.split(".")[0]
            where = ""
            if scope == "dates":
                where = f" where as_of_date in ({date_list})"
            con.execute(f"create schema if not exists {SNAP_ALIAS}.{schema}")
            # published types (money DECIMAL(18,2), integer score, pd to 6 places): columns.py
            cols = select_list(con, table)
            con.execute(f"create table {SNAP_ALIAS}.{table} as select {cols} from {table}{where}")
            rows[table] = con.execute(f"select count(*) from {SNAP_ALIAS}.{table}").fetchone()[0]
            comments[table] = _comments(con, table)
            fault_point("publish.snapshot_building")
    finally:
        con.execute(f"DETACH DATABASE IF EXISTS {SNAP_ALIAS}")
    return rows, comments


def _describe_snapshot(
    snap: duckdb.DuckDBPyConnection,
    comments: dict[str, tuple[str | None, dict[str, str]]],
    row: list[Any],
) -> None:
    """Comments, views and the meta.publication row (sql/ddl/publish.sql) of a snapshot."""
    from livefin_etl.limits import create_views

    for table, (about, cols) in comments.items():
        if about:
            snap.execute(f"comment on table {quote_ident(table)} is {quote_literal(about)}")
        for c, text in cols.items():
            snap.execute(
                f"comment on column {quote_ident(table)}.{quote_ident(c)} is {quote_literal(text)}"
            )
    create_views(snap)
    inherit_view_comments(snap, VIEW_COMMENT_SOURCES)
    run_ddl(snap, "publish")
    snap.execute("insert into meta.publication values (?, ?, ?, ?, ?, ?)", row)


def build_snapshot(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    as_of_date: date,
    run_id: str,
    meta: dict[str, Any],
) -> dict[str, int]:
    rows, comments = _copy_tables(con, path, as_of_date)
    # Views and comments are created with a direct connection so that they bind to the
    # snapshot's own tables, not to the working warehouse.
    snap = duckdb.connect(str(path))
    try:
        publication = [
            as_of_date,
            run_id,
            datetime.now(UTC).replace(tzinfo=None),
            meta["policy_versions"],
            meta["model_versions"],
            json.dumps(rows),
        ]
        _describe_snapshot(snap, comments, publication)
        snap.execute("CHECKPOINT")
    finally:
        snap.close()
    return rows


# --------------------------------------------------------------------------- exports


def _export_query(con: duckdb.DuckDBPyConnection) -> str:
    """The export's rows of $as_of_date with their published types."""
    cols = select_list(con, "limits.financing_limits", EXPORT_COLUMNS)
    return (
        f"select {cols} from limits.financing_limits where as_of_date = $as_of_date "
        "order by merchant_id"
    )


def _data_dictionary_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(column, published type, comment) of every exported column."""
    comments = dict(
        con.execute(
            """select column_name, coalesce(comment, '') from duckdb_columns()
               where database_name = current_database() and schema_name = 'limits'
                 and table_name = 'financing_limits'"""
        ).fetchall()
    )
    types = con.execute(f"describe {_export_query(con).replace('$as_of_date', 'null')}").fetchall()
    return [(c, t, comments.get(c, "")) for c, t, *_ in types]


def _write_export_files(con: duckdb.DuckDBPyConnection, tmp_dir: Path, as_of_date: date) -> None:
    """limits.parquet, limits.csv (lists joined with |) and data_dictionary.csv of one date."""
    base = _export_query(con)
    params = {"as_of_date": as_of_date}
    parquet = quote_literal(str(tmp_dir / "limits.parquet"))
    con.execute(f"copy ({base}) to {parquet} (format parquet)", params)
    present = [r[0] for r in _data_dictionary_rows(con)]
    csv_cols = ", ".join(
        f"array_to_string({c}, '|') as {c}" if c in ("reason_codes", "reason_texts") else c
        for c in present
    )
    con.execute(
        f"""copy (select {csv_cols} from ({base}))
            to {quote_literal(str(tmp_dir / "limits.csv"))} (header, delimiter ',')""",
        params,
    )
    with open(tmp_dir / "data_dictionary.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["column", "type", "description"])
        for row in _data_dictionary_rows(con):
            w.writerow(row)


def build_exports(
    con: duckdb.DuckDBPyConnection, tmp_dir: Path, as_of_date: date, run_id: str, meta: dict
) -> dict[str, Any]:
    tmp_dir.mkdir(parents=True)
    _write_export_files(con, tmp_dir, as_of_date)
    n_rows = meta["rows"]
    files = {}
    for name in ("limits.parquet", "limits.csv", "data_dictionary.csv"):
        p = tmp_dir / name
        files[name] = {
            "sha256": sha256(p),
            "bytes": p.stat().st_size,
            "rows": n_rows if name != "data_dictionary.csv" else len(_data_dictionary_rows(con)),
        }
    manifest = {
        "as_of_date": as_of_date.isoformat(),
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": n_rows,
        "decisions": meta["decisions"],
        "total_limit": meta["total_limit"],
        "currency": meta["currency"],
        "policy_versions": meta["policy_versions"],
        "model_versions": meta["model_versions"],
        "files": files,
    }
    with open(tmp_dir / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    for name in files:
        fsync_file(tmp_dir / name)
    return manifest


def publication_meta(con: duckdb.DuckDBPyConnection, as_of_date: date) -> dict[str, Any]:
    """Row count, total, versions, currency and decisions of the limits of ``as_of_date``."""
    if not table_exists(con, "limits.financing_limits"):
        raise LivefinError("limits.financing_limits does not exist; run the limits stage first")
    stats = con.execute(
        """select count(*), sum(limit_amount::decimal(18, 2)), list(distinct policy_version order by policy_version),
                  list(distinct model_version order by model_version)
                    filter (where model_version is not null),
                  any_value(currency)
           from limits.financing_limits where as_of_date = ?""",
        [as_of_date],
    ).fetchone()
    if not stats[0]:
        raise LivefinError(f"no limits for {as_of_date}; run the limits stage for that date first")
    decisions = dict(
        con.execute(
            """select decision, count(*) from limits.financing_limits where as_of_date = ?
               group by decision order by decision""",
            [as_of_date],
        ).fetchall()
    )
    return {
        "rows": int(stats[0]),
        "total_limit": float(stats[1] or 0.0),
        "policy_versions": list(stats[2] or []),
        "model_versions": list(stats[3] or []),
        "currency": stats[4],
        "decisions": decisions,
    }
