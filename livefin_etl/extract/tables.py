"""Tables extract writes: ``meta.*`` from ``sql/ddl/meta.sql``, ``raw.<source>`` from its contract."""

from __future__ import annotations

import duckdb

from livefin_etl.contracts import Contract
from livefin_etl.extract.rules import version_column
from livefin_etl.warehouse import quote_ident, quote_literal, run_ddl, table_exists

# Columns every raw table carries after the contract's own: where each row came from.
LINEAGE = [
    ("_dt", "DATE", "Business date of the landing partition the row came from"),
    ("_file", "VARCHAR", "Landing file name the row came from"),
    ("_line", "BIGINT", "Line (CSV/JSONL, 1 = header for CSV) or row number (Parquet) in the file"),
    ("_contract_version", "VARCHAR", "Source contract version the row was checked against"),
    ("_mapping", "VARCHAR", "Header mapping used to read the file"),
    ("_loaded_at", "TIMESTAMP", "When the partition was loaded"),
]


def ensure_meta_tables(con: duckdb.DuckDBPyConnection) -> None:
    """``meta.load_manifest`` and ``meta.quarantine`` with their comments."""
    run_ddl(con, "meta")


def ensure_raw_table(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """``raw.<source>``: the contract's stored columns plus lineage, commented from the contract.

    The contract is data, so every name and text goes through the quoting helpers."""
    table = quote_ident(contract.table)
    cols = [(c.stored_name, c.type) for c in contract.stored_columns]
    cols += [(n, t) for n, t, _ in LINEAGE]
    body = ", ".join(f"{quote_ident(n)} {t}" for n, t in cols)
    con.execute(f"create table if not exists {table} ({body})")
    title = f"{contract.description} (contract {contract.version})"
    con.execute(f"comment on table {table} is {quote_literal(title)}")
    comments = [
        (c.stored_name, c.description + (" (keyed hash of PII)" if c.pii == "hash" else ""))
        for c in contract.stored_columns
    ]
    comments += [(n, text) for n, _, text in LINEAGE]
    for name, text in comments:
        con.execute(f"comment on column {table}.{quote_ident(name)} is {quote_literal(text)}")
    if version_column(contract):
        _current_view(con, contract)


def _current_view(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """``raw.<source>_current``: the latest delivered version of each key (``raw.<source>``
    keeps every version, the state history)."""
    view = quote_ident(f"{contract.table}_current")
    keys = ", ".join(quote_ident(k) for k in contract.primary_key)
    con.execute(
        f"create or replace view {view} as select * from {quote_ident(contract.table)} "
        f"qualify row_number() over (partition by {keys} "
        f"order by _dt desc, {quote_ident(version_column(contract))} desc nulls last) = 1"
    )
    text = f"Current state: the latest delivered version of each {contract.name} key"
    con.execute(f"comment on view {view} is {quote_literal(text)}")


_ENSURED: set[tuple[int, str]] = set()


def ensure_tables(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """DDL and comments once per connection and source, not once per partition."""
    token = (id(con), contract.name)
    if token in _ENSURED and table_exists(con, contract.table):
        return
    ensure_meta_tables(con)
    ensure_raw_table(con, contract)
    _ENSURED.add(token)
