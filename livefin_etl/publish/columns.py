"""What analysts and lenders read: published column types and inherited view comments.

The warehouse computes in DOUBLE (and exact DECIMAL(38, 9) sums); the snapshot and the exports
carry fixed types (docs/publishing.md "Types"):

* money (CNY) is DECIMAL(18, 2), rounded half away from zero; a column is money by the naming
  rule below (``is_money``), so a new amount column is converted without a list to update;
* the credit score is an INTEGER;
* probabilities of default (``pd``, ``*_pd``) are DOUBLE rounded to ``PROBABILITY_DP`` places.
"""

from __future__ import annotations

import re

import duckdb

from livefin_etl.warehouse import quote_ident, quote_literal

MONEY_TYPE = "DECIMAL(18,2)"
PROBABILITY_DP = 6
# A snake_case word naming an amount of CNY: limit_amount, expected_loss, tier_cap, gmv_net_30d,
# aov_30d, reconciled_value, replacement_cost, principal, el_before, income_cf_year1, ...
_MONEY_WORD = re.compile(
    r"(^|_)(amount|limit|loss|exposure|capacity|component|cap|principal|value|cost|gmv|aov|el"
    r"|income)(_|$)"
)
# ... unless another word makes it a rate, a ratio, a unit price or a relative change:
# refund_rate_30d, el_rate, gmv_growth_30d, suspect_gmv_share_30d, unit_cost_storage,
# comparable_price_per_1k, gmv_shock, income_annuity_factor; and a monitor metric's bare `value`.
_NOT_MONEY_WORD = re.compile(
    r"(^|_)(rate|ratio|share|growth|cv|spike|shock|unit|per|factor|exponent|weight|q|score)(_|$)"
)
_NUMERIC = re.compile(r"^(DOUBLE|FLOAT|REAL|DECIMAL.*|HUGEINT|BIGINT|INTEGER)$")
_FLOAT = ("DOUBLE", "FLOAT", "REAL")


def is_money(column: str) -> bool:
    """Whether a numeric column named ``column`` holds an amount of CNY (the naming rule)."""
    return (
        column != "value"
        and bool(_MONEY_WORD.search(column))
        and not _NOT_MONEY_WORD.search(column)
    )


def is_probability(column: str) -> bool:
    return column == "pd" or column.endswith("_pd")


def published_expr(column: str, data_type: str) -> str:
    """Select expression giving ``column`` its published type (the name unchanged)."""
    q = quote_ident(column)
    if is_money(column) and _NUMERIC.match(data_type) and data_type != MONEY_TYPE:
        return f"{q}::{MONEY_TYPE} as {q}"
    if column == "score" and data_type in _FLOAT:
        return f"round({q})::integer as {q}"
    if is_probability(column) and data_type in _FLOAT:
        return f"round({q}, {PROBABILITY_DP}) as {q}"
    return q


def select_list(
    con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...] | None = None
) -> str:
    """Published select list of ``table`` (all its columns, or ``columns`` in that order)."""
    schema, name = table.split(".")
    types = dict(
        con.execute(
            """select column_name, data_type from duckdb_columns()
               where database_name = current_database() and schema_name = ? and table_name = ?
               order by column_index""",
            [schema, name],
        ).fetchall()
    )
    wanted = columns if columns is not None else tuple(types)
    return ", ".join(published_expr(c, types[c]) for c in wanted if c in types)


def inherit_view_comments(snap: duckdb.DuckDBPyConnection, sources: dict[str, tuple]) -> None:
    """Comment every uncommented view column with the comment of the same-named column of its
    first source (view -> source tables, in order) that has one: a view column is that column."""
    rows = snap.execute(
        """select schema_name || '.' || table_name, column_name, comment from duckdb_columns()
           where database_name = current_database()"""
    ).fetchall()
    known = {(t, c): text for t, c, text in rows if text}
    for view, tables in sources.items():
        for t, c, text in rows:
            if t != view or text:
                continue
            found = next((known[(s, c)] for s in tables if (s, c) in known), None)
            if found:
                snap.execute(
                    f"comment on column {quote_ident(view)}.{quote_ident(c)} "
                    f"is {quote_literal(found)}"
                )
                known[(view, c)] = found
