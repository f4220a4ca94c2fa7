"""Row-level expectation counts of a suite, per date, in one grouped DuckDB pass.

GX's pandas engine needs every row as pandas and walks a metric graph per expectation and run:
most of a backfill's validation time. The suite's row-level expectations are simple conditions
on a row (and, for uniqueness, on its date's other rows), so DuckDB counts their unexpected rows
for all dates at once where the data lives. The gate then hands GX only what it must see: the
rows of dates that hold an unexpected row (GX writes their outcome and partial lists, as before)
and an empty frame of the batch's dtypes, whose result is the template of a clean record.

Each condition mirrors the GX pandas metric it stands for (a null is NA, NaN or NaT; bounds,
value sets, duplicates as pandas compares them). Any expectation or kwarg not mirrored here sends
the whole suite back to the GX route, so nothing is approximated.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from livefin_etl.quality import batches, gx_runner
from livefin_etl.quality.gx_runner import SCHEMA_LEVEL, Outcome, Template
from livefin_etl.quality.suites import Spec, SuiteSpec
from livefin_etl.warehouse import quote_ident, quote_literal, registered

_FLOAT = ("DOUBLE", "FLOAT", "REAL")
_NUMERIC = (*_FLOAT, "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER")
# kwargs that change nothing a condition below computes (result_format is the gate's own)
_NEUTRAL = {"column", "column_A", "column_B", "column_list", "result_format", "catch_exceptions"}


@dataclass(frozen=True)
class Check:
    """SQL of one row-level expectation: which rows are unexpected, which GX counts as nonnull."""

    unexpected: str
    domain: str | None  # None: GX reports no nonnull count (expect_column_values_to_not_be_null)
    window: str | None = None  # count(*) over this key within the date (uniqueness)


def _null(col: str, types: dict[str, str]) -> str:
    c = quote_ident(col)
    # a DuckDB NaN arrives in pandas as NaN, which GX counts as missing
    return f"({c} is null or isnan({c}))" if types[col] in _FLOAT else f"({c} is null)"


def _literal(value: Any, col_type: str) -> str | None:
    if isinstance(value, bool):
        return ("true" if value else "false") if col_type == "BOOLEAN" else None
    if isinstance(value, (int, float)):
        return repr(value) if col_type in _NUMERIC else None
    if isinstance(value, str):
        return quote_literal(value) if col_type == "VARCHAR" else None
    return None


def _in_set(spec: Spec, types: dict[str, str], negate: bool) -> Check | None:
    col = spec.kwargs["column"]
    lits = [_literal(v, types[col]) for v in spec.kwargs.get("value_set") or []]
    if not lits or None in lits or set(spec.kwargs) - _NEUTRAL - {"value_set"}:
        return None
    present = f"not {_null(col, types)}"
    test = f"{quote_ident(col)} {'in' if negate else 'not in'} ({', '.join(lits)})"  # type: ignore[arg-type]
    return Check(f"({present} and {test})", present)


def _between(spec: Spec, types: dict[str, str]) -> Check | None:
    k = spec.kwargs
    col = k["column"]
    lo, hi = k.get("min_value"), k.get("max_value")
    extra = set(k) - _NEUTRAL - {"min_value", "max_value", "strict_min", "strict_max"}
    bounds = [b for b in (lo, hi) if b is not None]
    if extra or not bounds or types[col] not in _NUMERIC:
        return None
    if any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds):
        return None
    if lo is not None and hi is not None and lo > hi:
        return None  # GX raises: leave the error to GX
    c = quote_ident(col)
    out = []
    if lo is not None:
        out.append(f"{c} {'<=' if k.get('strict_min') else '<'} {lo!r}")
    if hi is not None:
        out.append(f"{c} {'>=' if k.get('strict_max') else '>'} {hi!r}")
    present = f"not {_null(col, types)}"
    return Check(f"({present} and ({' or '.join(out)}))", present)


def _unique(spec: Spec, types: dict[str, str], cols: list[str]) -> Check | None:
    # NULL and NaN group apart in DuckDB but alike in pandas: float keys stay with GX
    if any(types[c] in _FLOAT for c in cols):
        return None
    if len(cols) == 1:
        present = f"not {_null(cols[0], types)}"
    else:  # ignore_row_if="all_values_are_missing", GX's default for compound columns
        present = "not (" + " and ".join(_null(c, types) for c in cols) + ")"
    key = ", ".join(quote_ident(c) for c in cols)
    return Check(f"({present} and {{w}} > 1)", present, key)


def _pair(spec: Spec, types: dict[str, str]) -> Check | None:
    k = spec.kwargs
    a, b = k["column_A"], k["column_B"]
    if set(k) - _NEUTRAL - {"or_equal"} or types[a] not in _FLOAT or types[b] not in _FLOAT:
        return None
    na, nb = _null(a, types), _null(b, types)
    op = ">=" if k.get("or_equal") else ">"
    present = f"not ({na} and {nb})"  # ignore_row_if="both_values_are_missing"
    # pandas: NaN compares False, so a row with one side missing is unexpected
    bad = f"({na} or {nb} or not ({quote_ident(a)} {op} {quote_ident(b)}))"
    return Check(f"({present} and {bad})", present)


def compile_checks(specs: list[Spec], types: dict[str, str]) -> list[Check | None] | None:
    """One :class:`Check` per spec (None for schema-level ones), or None when any spec is not
    mirrored here (the suite then goes to GX whole)."""
    out: list[Check | None] = []
    for spec in specs:
        k = spec.kwargs
        named = [k[x] for x in ("column", "column_A", "column_B") if x in k]
        named += list(k.get("column_list") or [])
        if spec.type in SCHEMA_LEVEL:
            out.append(None)
            continue
        if any(c not in types for c in named):
            return None  # GX reports the missing column
        check: Check | None = None
        if spec.type == "expect_column_values_to_not_be_null" and set(k) <= _NEUTRAL:
            check = Check(_null(k["column"], types), None)
        elif spec.type in (
            "expect_column_values_to_be_in_set",
            "expect_column_values_to_not_be_in_set",
        ):
            check = _in_set(spec, types, negate=spec.type.endswith("not_be_in_set"))
        elif spec.type == "expect_column_values_to_be_between":
            check = _between(spec, types)
        elif spec.type == "expect_column_values_to_be_unique" and set(k) <= _NEUTRAL:
            check = _unique(spec, types, [k["column"]])
        elif spec.type == "expect_compound_columns_to_be_unique" and set(k) <= _NEUTRAL:
            check = _unique(spec, types, list(k["column_list"]))
        elif spec.type == "expect_column_pair_values_a_to_be_greater_than_b":
            check = _pair(spec, types)
        if check is None:
            return None
        out.append(check)
    return out


@dataclass
class DateCounts:
    """One date's row count and, per spec, unexpected and GX-nonnull counts (None: schema)."""

    rows: int
    unexpected: list[int | None]
    nonnull: list[int | None]


def column_types(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> dict[str, str]:
    """DuckDB type of every column ``sql`` returns (nothing is computed)."""
    rel = con.sql(f"select * from ({sql}) limit 0", params=params)
    return {c: str(t).upper() for c, t in zip(rel.columns, rel.types, strict=True)}


def count_by_date(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list,
    partition_column: str,
    checks: list[Check | None],
) -> dict[date, DateCounts]:
    """Counts of every check for every date of the batch ``sql``, in one grouped pass."""
    pcol = quote_ident(partition_column)
    windows, aggs = [], []
    for i, ch in enumerate(checks):
        if ch is None:
            continue
        cond = ch.unexpected
        if ch.window is not None:
            windows.append(f"count(*) over (partition by {pcol}, {ch.window}) as _w{i}")
            cond = cond.replace("{w}", f"_w{i}")
        aggs.append(f"count(*) filter (where {cond}) as u{i}")
        aggs.append(f"count(*) filter (where {ch.domain})" if ch.domain else "null::BIGINT")
    inner = f"select *{''.join(', ' + w for w in windows)} from ({sql}) batch"
    query = f"select {pcol}, count(*), {', '.join(aggs) or 'null'} from ({inner}) w group by 1"
    out: dict[date, DateCounts] = {}
    for row in con.execute(query, params).fetchall():
        it = iter(row[2:])
        unexpected: list[int | None] = []
        nonnull: list[int | None] = []
        for ch in checks:
            if ch is None:
                unexpected.append(None)
                nonnull.append(None)
            else:
                unexpected.append(int(next(it)))
                n = next(it)
                nonnull.append(None if n is None else int(n))
        key = row[0].date() if isinstance(row[0], datetime) else row[0]
        out[key] = DateCounts(int(row[1]), unexpected, nonnull)
    return out


def _clean_outcomes(specs: list[Spec], checks: list[Check | None], tpl: Template) -> list[Outcome]:
    """A date with no unexpected row: GX's outcome, row-level by its rule, schema from GX."""
    return [
        Outcome(spec, True, None, 0, 0.0) if ch is not None else replace(t, unexpected_index=None)
        for spec, ch, t in zip(specs, checks, tpl.outcomes, strict=True)
    ]


def _summed(
    counts: dict[date, DateCounts], dates: list[date], checks: list[Check | None]
) -> tuple[int, list[int | None]]:
    """(rows, GX's nonnull count per spec) over ``dates``; a date without rows adds nothing."""
    have = [counts[d] for d in dates if d in counts]
    nonnull = [
        None if ch is None or ch.domain is None else sum(c.nonnull[i] or 0 for c in have)
        for i, ch in enumerate(checks)
    ]
    return sum(c.rows for c in have), nonnull


@dataclass(frozen=True)
class Batch:
    """A suite's rows for some dates: one SQL query (grouped here) and the frames GX sees."""

    sql: str
    params: list
    partition_column: str
    empty: Callable[[], pd.DataFrame]  # 0 rows, the dtypes of any frame below
    frame_of: Callable[[date], pd.DataFrame]  # one date's rows, as the GX route gave them


def validate_dates(
    con: duckdb.DuckDBPyConnection,
    docs: Path,
    suite: tuple[str, list[Spec], str],
    batch: Batch,
    dates: list[date],
    run_ids: dict[date, str],
) -> tuple[dict[date, list[Outcome]], dict[date, int]] | None:
    """Outcomes of ``suite`` (name, specs, fingerprint) per date and rows per date, or None
    when the suite is not mirrored here.

    Clean dates get GX's clean outcome and one stored record (the date's run, or for several
    dates one range record, as the GX route kept for a clean range); a date with an unexpected
    row, or every date after a schema-level failure, gets its own GX run on its own rows."""
    name, specs, fingerprint = suite
    checks = compile_checks(specs, column_types(con, batch.sql, batch.params))
    if checks is None:
        return None
    counts = count_by_date(con, batch.sql, batch.params, batch.partition_column, checks)
    rows = {d: counts[d].rows if d in counts else 0 for d in dates}
    if not specs:
        return {d: [] for d in dates}, rows
    tpl = gx_runner.template(docs, name, specs, fingerprint, batch.empty())
    # every outcome of the empty frame holds for any clean rows: a date without rows is clean
    ok = all(o.success and not o.error and not o.unexpected_count for o in tpl.outcomes)
    dirty = [d for d in dates if not ok or (d in counts and any(counts[d].unexpected))]
    clean_dates = [d for d in dates if d not in dirty]
    out: dict[date, list[Outcome]] = {}
    if clean_dates:
        clean = _clean_outcomes(specs, checks, tpl)
        out.update((d, clean) for d in clean_dates)
        if len(dates) == 1:
            record = f"{run_ids[dates[0]]}:{name}"
        else:
            record = f"range-{dates[0]:%Y%m%d}-{dates[-1]:%Y%m%d}-{uuid.uuid4().hex[:8]}:{name}"
        summed = _summed(counts, clean_dates, checks)
        gx_runner.store_clean(docs, name, specs, fingerprint, tpl, summed, record)
    for d in dirty:
        out[d] = gx_runner.run(
            docs, name, specs, fingerprint, batch.frame_of(d), f"{run_ids[d]}:{name}"
        )
    return out, rows


def validate_rows(
    con: duckdb.DuckDBPyConnection,
    docs: Path,
    spec: SuiteSpec,
    dates: list[date],
    run_ids: dict[date, str],
) -> tuple[dict[date, list[Outcome]], dict[date, int]] | None:
    """:func:`validate_dates` of the row suite over ``spec.table``; None: not mirrored."""
    params = [list(dates)]
    sql = batches.row_batch_sql(con, spec, dates, ordered=False)
    batch = Batch(
        sql,
        params,
        spec.partition_column,
        lambda: batches.fetch(con, f"select * from ({sql}) limit 0", params),
        lambda as_of_date: batches.row_batch(con, spec, [as_of_date]),
    )
    return validate_dates(
        con, docs, (spec.name, spec.rows, spec.fingerprint), batch, dates, run_ids
    )


def validate_profile(
    con: duckdb.DuckDBPyConnection,
    docs: Path,
    spec: SuiteSpec,
    prof: pd.DataFrame,
    dates: list[date],
    run_ids: dict[date, str],
) -> dict[date, list[Outcome]] | None:
    """:func:`validate_dates` of the profile suite over the profile rows (one per date)."""

    def one(as_of_date: date) -> pd.DataFrame:
        return prof[prof["dt"] == pd.Timestamp(as_of_date)].reset_index(drop=True)

    with registered(con, "__livefin_profile", prof):
        batch = Batch("select * from __livefin_profile", [], "dt", lambda: prof.iloc[:0], one)
        found = validate_dates(
            con, docs, (spec.profile_name, spec.profile, spec.fingerprint), batch, dates, run_ids
        )
    return None if found is None else found[0]
