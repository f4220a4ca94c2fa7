"""The two batches GX validates for (source, dates), computed in DuckDB and pulled as pandas.

GX's SQL engine does not work with DuckDB (engineering notes), so DuckDB does the joins and
aggregates, and GX checks the resulting frames. Every helper column is computed relative to the
row's own partition date, so a multi-date batch row equals the same row in a one-date batch.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd
import pyarrow as pa

from livefin_etl.config import LivefinError, load_config
from livefin_etl.contracts import duplicate_window_days
from livefin_etl.quality.suites import SuiteSpec
from livefin_etl.warehouse import quote_ident, quote_literal, registered, table_exists

REASON_CODES = (
    "missing_required",
    "type_error",
    "below_min",
    "above_max",
    "not_allowed",
    "duplicate_key",
    "unknown_reference",
    "outside_partition",
    "row_check",
    "unknown_column",
    "file_error",
)
INVALID_REASONS = ("type_error", "below_min", "above_max", "not_allowed", "row_check")
# Identifiers come from contracts/suites (repo files); quote_ident refuses any that could break
# out of SQL.


def _dtype_for(duck_type: str) -> str | None:
    t = duck_type.upper()
    if t.startswith(("VARCHAR", "JSON", "UUID")):
        # pandas' NA-backed "string": GX's type check recognises it (not pandas 3's "str"), and
        # unlike object it is checked on the dtype, not value by value
        return "string"  # = pd.StringDtype()
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "Int64"  # nullable, so a null never turns the column into float64
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "float64"
    if t == "BOOLEAN":
        return "boolean"
    return None


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> pd.DataFrame:
    """Run ``sql`` and return pandas whose dtypes depend on the column types only.

    DuckDB gives int64 or Int64 depending on nulls and str or object depending on emptiness;
    fixing dtypes from the schema makes a one-date frame and a multi-date frame agree.
    """
    rel = con.sql(sql, params=params)
    types = [str(t) for t in rel.types]
    table = rel.to_arrow_table()  # Arrow -> pandas maps types in one pass (faster than .df())
    df = table.to_pandas(types_mapper=_ARROW_TYPES.get, date_as_object=False)
    for col, t in zip(df.columns, types, strict=True):
        want = _dtype_for(t) or ("datetime64[us]" if t in ("DATE", "TIMESTAMP") else None)
        if want and str(df[col].dtype) != want:
            df[col] = df[col].astype(want)
    return df.reset_index(drop=True)


_ARROW_TYPES = {
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
    pa.string_view(): pd.StringDtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _empty_ref() -> str:
    return "select null::VARCHAR as k, null::DATE as first_dt where false"


def row_batch(con: duckdb.DuckDBPyConnection, spec: SuiteSpec, dates: list[date]) -> pd.DataFrame:
    """Rows of ``spec.table`` for ``dates`` plus the helper columns the suite expects."""
    return fetch(con, row_batch_sql(con, spec, dates), [list(dates)])


def row_batch_sql(
    con: duckdb.DuckDBPyConnection, spec: SuiteSpec, dates: list[date], ordered: bool = True
) -> str:
    """The query behind :func:`row_batch` (one parameter: the dates); unordered for aggregates."""
    table = quote_ident(spec.table)
    if not table_exists(con, spec.table):
        raise LivefinError(f"{spec.table} does not exist: nothing was loaded for '{spec.name}' yet")
    pcol = quote_ident(spec.partition_column)
    inner = ["r.*"]
    for name, sql in spec.row_checks:
        inner.append(f"({sql}) as {quote_ident(f'_check_{name}')}")
    w = spec.window
    if w:
        col = f"cast(r.{quote_ident(w['column'])} as TIMESTAMP)"
        if w["mode"] == "not_after":
            inner.append(f"{col} < r.{pcol} + INTERVAL 1 DAY as _in_window")
        else:
            inner.append(
                f"({col} >= r.{pcol} - INTERVAL {int(w['late_hours'])} HOUR "
                f"and {col} < r.{pcol} + INTERVAL 1 DAY) as _in_window"
            )
    ctes = [
        f"b as (select {', '.join(inner)} from {table} r "
        f"where r.{pcol} in (select unnest(?::DATE[])))"
    ]
    outer = ["b.*"]
    joins = []
    for i, ref in enumerate(spec.references):
        rt = quote_ident(ref.table)
        col = quote_ident(ref.column)
        # only the keys this batch references: grouping all of history (~100 M orders after a
        # year at 100 k merchants) for every chunk grew with each night
        tgt = quote_ident(ref.target)
        src = (
            f"select t.{tgt} as k, min(t._dt) as first_dt from {rt} t "
            f"semi join (select distinct {col} as k from b) s on t.{tgt} = s.k group by 1"
            if table_exists(con, ref.table)
            else _empty_ref()
        )
        ctes.append(f"ref{i} as ({src})")
        joins.append(f"left join ref{i} on b.{col} = ref{i}.k")
        outer.append(
            f"case when b.{col} is null then null "
            f"else coalesce(ref{i}.first_dt <= b.{pcol}, false) end as {quote_ident(ref.helper)}"
        )
    if spec.global_key:
        keys = ", ".join(quote_ident(k) for k in spec.global_key)
        # first partition a key was loaded in; a rerun of that partition still sees itself first.
        # Looked up within the contract's duplicate_window_days, like extract's duplicate check:
        # a scan of all history grew with every night (hours on a year at 100k merchants).
        days = duplicate_window_days(spec.contract or {})
        lo, hi = min(dates) - timedelta(days=days), max(dates) + timedelta(days=days)
        ctes.append(
            f"pk as (select {keys}, min(t.{pcol}) as first_dt from {table} t "
            f"semi join (select distinct {keys} from b) s using ({keys}) "
            f"where t.{pcol} between DATE {quote_literal(lo.isoformat())} "
            f"and DATE {quote_literal(hi.isoformat())} "
            "group by all)"
        )
        on = " and ".join(f"b.{quote_ident(k)} = pk.{quote_ident(k)}" for k in spec.global_key)
        joins.append(f"left join pk on {on}")
        outer.append(f"coalesce(pk.first_dt >= b.{pcol}, true) as _pk_first_seen")
    order = ", ".join(f"b.{quote_ident(c)}" for c in spec.order_by)
    sql = f"with {', '.join(ctes)} select {', '.join(outer)} from b {' '.join(joins)}"
    return f"{sql} order by {order}" if ordered else sql


def _profile_exprs(spec: SuiteSpec) -> dict[str, str]:
    """The source-specific SQL pieces of the profile query (late rows, value column, reasons)."""
    w = spec.window
    if w and w["mode"] != "not_after":
        late = f"count(*) filter (where cast({quote_ident(w['column'])} as DATE) < _dt)"
    else:
        late = "null::BIGINT"
    if spec.value_column:
        vc = quote_ident(spec.value_column)
        val_sum, val_n = f"sum({vc})", f"count({vc})"
    else:
        val_sum, val_n = "null::DOUBLE", "null::BIGINT"
    reason_cols = ", ".join(
        f"count(distinct (file, line)) filter (where reason_code = {quote_literal(r)}) as q_{r}"
        for r in REASON_CODES
    )
    rates = ",\n      ".join(
        f"coalesce(q.q_{r}, 0) / nullif(h.rows_read, 0)::DOUBLE as {r}_rate"
        for r in REASON_CODES
        if r != "file_error"
    )
    invalid = " + ".join(f"coalesce(q.q_{r}, 0)" for r in INVALID_REASONS)
    return {
        "late": late,
        "val_sum": val_sum,
        "val_n": val_n,
        "reason_cols": reason_cols,
        "rates": rates,
        "invalid": invalid,
    }


def _profile_sql(table: str, e: dict[str, str], hist_n: int, min_hist: int) -> str:
    """One row per requested date (params: dates, source, source); ``e`` from _profile_exprs."""
    return f"""
with req as (select unnest(?::DATE[]) as dt),
man as (
  select dt, count(*) as files_loaded, sum(rows_read) as rows_read,
         sum(rows_loaded) as rows_loaded, sum(rows_quarantined) as rows_quarantined
  from meta.load_manifest
  where source = ? and dt <= (select max(dt) from req) and status is distinct from 'rejected'
  group by dt),
-- the oldest date any requested date's history frame (below) reaches: raw rows are counted from
-- there on, not over all history (145 M orders after a year at 100k merchants, every night)
lo as (
  select coalesce(min(dt), (select min(dt) from req)) as lo from (
    select dt from man
    where dt < (select min(dt) from req) and rows_read is not null
    order by dt desc limit {hist_n})),
rawc as (
  select _dt as dt, count(*) as raw_rows, {e["late"]} as late_rows,
         {e["val_sum"]} as value_sum, {e["val_n"]} as value_n
  from {table}
  where _dt <= (select max(dt) from req) and _dt >= (select lo from lo)
  group by _dt),
q as (
  select dt, count(distinct (file, line)) as q_rows, {e["reason_cols"]}
  from meta.quarantine where source = ? and dt in (select dt from req) group by dt),
base as (select dt from man union select dt from req),
-- k = number of loaded dates strictly before dt, so the frame below is "the last N loaded
-- dates" whatever other (unloaded) dates are requested alongside
keyed as (
  select b.dt, m.files_loaded, m.rows_read, m.rows_loaded, m.rows_quarantined,
         r.raw_rows, r.late_rows, r.value_sum, r.value_n,
         coalesce(count(m.rows_read) over (order by b.dt rows between unbounded preceding
                                           and 1 preceding), 0) as k
  from base b left join man m using (dt) left join rawc r using (dt)),
-- Expected volume multiplier of the platform calendar (shopping festivals, Spring Festival):
-- volumes are compared after dividing by it, so Double 11 is not mistaken for a double delivery.
cal as (
  select k.*, coalesce(c.factor, 1.0) as season_factor,
         k.rows_read / coalesce(c.factor, 1.0) as adj_rows
  from keyed k left join __livefin_calendar c using (dt)),
hist as (
  select *,
    count(rows_read) over w as history_dates,
    median(adj_rows::DOUBLE) over w as median_rows,
    sum(case when rows_read is not null then value_sum end) over w as hist_value_sum,
    sum(case when rows_read is not null then value_n end) over w as hist_value_n
  from cal
  window w as (order by k range between {hist_n} preceding and 1 preceding))
select
  h.dt,
  coalesce(h.files_loaded, 0)::BIGINT as files_loaded,
  h.rows_read::BIGINT as rows_read,
  h.rows_loaded::BIGINT as rows_loaded,
  h.rows_quarantined::BIGINT as rows_quarantined,
  coalesce(h.raw_rows, 0)::BIGINT as raw_rows,
  coalesce(q.q_rows, 0) / nullif(h.rows_read, 0)::DOUBLE as quarantine_rate,
  {e["rates"]},
  ({e["invalid"]}) / nullif(h.rows_read, 0)::DOUBLE as invalid_value_rate,
  coalesce(q.q_file_error, 0)::BIGINT as file_error_count,
  h.late_rows / nullif(h.raw_rows, 0)::DOUBLE as late_row_rate,
  h.history_dates::BIGINT as history_dates,
  h.median_rows,
  h.season_factor,
  case when h.history_dates >= {min_hist} then h.adj_rows / nullif(h.median_rows, 0) end
    as row_count_ratio,
  -- same ratio under another name: GX keeps one expectation per (type, column) in a suite
  case when h.history_dates >= {min_hist} then h.adj_rows / nullif(h.median_rows, 0) end
    as volume_ratio,
  h.value_sum / nullif(h.value_n, 0) as mean_value,
  case when h.history_dates >= {min_hist}
       then (h.value_sum / nullif(h.value_n, 0))
            / nullif(h.hist_value_sum / nullif(h.hist_value_n, 0), 0) end as mean_value_ratio,
  case when h.rows_read is null then null
       else h.rows_read = h.rows_loaded + h.rows_quarantined
            and coalesce(h.raw_rows, 0) = h.rows_loaded end as manifest_consistent
from req join hist h using (dt) left join q using (dt)
order by h.dt
"""


def profile_batch(
    con: duckdb.DuckDBPyConnection, spec: SuiteSpec, dates: list[date]
) -> pd.DataFrame:
    """One row per requested date: delivery counts, quarantine rates, ratios vs history."""
    for t in ("meta.load_manifest", "meta.quarantine"):
        if not table_exists(con, t):
            raise LivefinError(f"{t} does not exist: run extract before validating")
    table = quote_ident(spec.table)
    if not table_exists(con, spec.table):
        raise LivefinError(f"{spec.table} does not exist: nothing was loaded for '{spec.name}' yet")
    cfg = load_config("quality").get("profile") or {}
    hist_n = int(cfg.get("history_dates", 28))
    min_hist = int(cfg.get("min_history_dates", 7))
    sql = _profile_sql(table, _profile_exprs(spec), hist_n, min_hist)
    with registered(con, "__livefin_calendar", _calendar_frame(spec.name, dates, hist_n)):
        return fetch(con, sql, [list(dates), spec.name, spec.name])


def season_factors(source: str, first: date, last: date) -> dict[date, float]:
    """Expected platform volume multiplier per day from ``profile.calendar`` in quality.yaml."""
    import math

    cal = (load_config("quality").get("profile") or {}).get("calendar") or {}
    if source not in (cal.get("apply_to") or []):
        return {}
    lag = int((cal.get("lag_days") or {}).get(source, 0))
    out: dict[date, float] = {}
    d = first
    while d <= last:
        bump = 0.0
        dip = 1.0
        for y in (d.year - 1, d.year, d.year + 1):
            for peak in cal.get("peaks") or []:
                m, dd = (int(x) for x in str(peak["month_day"]).split("-"))
                x = (d - date(y, m, dd)).days / float(peak.get("sigma_days", 3.5))
                bump += float(peak["height"]) * math.exp(-0.5 * x * x)
            for dipspec in cal.get("dips") or []:
                for ds in dipspec.get("dates") or []:
                    c = date.fromisoformat(str(ds))
                    if c.year == y:
                        x = (d - c).days / float(dipspec.get("sigma_days", 5))
                        dip -= float(dipspec["depth"]) * math.exp(-0.5 * x * x)
        for plateau in cal.get("plateaus") or []:
            a = date(d.year, *(int(x) for x in str(plateau["from"]).split("-")))
            b = date(d.year, *(int(x) for x in str(plateau["to"]).split("-")))
            if a <= d <= b:
                bump += float(plateau["height"])
        out[d + timedelta(days=lag)] = (1.0 + bump) * max(dip, 0.05)
        d += timedelta(days=1)
    return out


def _calendar_frame(source: str, dates: list[date], hist_n: int) -> pd.DataFrame:
    """Season factors (dt, factor) covering the profile's history window."""
    lo = min(dates) - timedelta(days=hist_n * 3 + 30)
    factors = season_factors(source, lo - timedelta(days=7), max(dates))
    frame = pd.DataFrame({"dt": list(factors), "factor": list(factors.values())})
    if frame.empty:
        frame = pd.DataFrame(
            {"dt": pd.Series([], dtype="object"), "factor": pd.Series([], dtype="float64")}
        )
    frame["dt"] = pd.to_datetime(frame["dt"]).dt.date
    return frame
