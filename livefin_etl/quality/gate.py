"""The data-quality gate: validate (source, D), record results, block later stages on failure."""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from livefin_etl import calendar
from livefin_etl.config import (
    LivefinError,
    Settings,
    StageBlocked,
    fault_point,
    load_config,
)
from livefin_etl.privacy import scrub
from livefin_etl.quality import batches, gx_runner, sqlcheck
from livefin_etl.quality.gx_runner import SCHEMA_LEVEL, Outcome
from livefin_etl.quality.suites import SuiteSpec, list_suites, load_suite
from livefin_etl.warehouse import (
    insert_frame,
    replace_rows,
    run_ddl,
    stage_memory,
    table_exists,
    transaction,
)

# "duckdb": row suites counted in one grouped DuckDB pass, GX runs only where rows are unexpected
# (sqlcheck); "gx": every row through GX's pandas engine. Same outcomes (tests/quality).
ROW_ROUTE = "duckdb"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the dq.* gate tables (idempotent): sql/ddl/dq.sql."""
    run_ddl(con, "dq")


def _check_source(source: str) -> SuiteSpec:
    known = list_suites()
    if source not in known:
        raise LivefinError(f"unknown source '{source}' for validation (known: {', '.join(known)})")
    return load_suite(source)


def _fmt(v: Any) -> str | None:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, (bool,)):
        return "true" if v else "false"
    return str(v)


def _new_run_id(source: str, as_of_date: date) -> str:
    return f"dq-{source}-{as_of_date:%Y%m%d}-{uuid.uuid4().hex[:8]}"


def _derived_clean(outcomes: list[Outcome]) -> list[Outcome]:
    """Per-date outcome of a date with no unexpected rows, from the multi-date run."""
    out = []
    for o in outcomes:
        if o.unexpected_count is not None:  # row-level result
            out.append(Outcome(o.spec, True, None, 0, 0.0))
        else:  # schema-level only (others force the per-date path)
            out.append(replace(o, unexpected_index=None))
    return out


def _validate_suite(
    docs: Path,
    name: str,
    specs: list[Any],
    fingerprint: str,
    df: pd.DataFrame,
    date_col: str,
    dates: list[date],
    run_ids: dict[date, str],
) -> dict[date, list[Outcome]]:
    """Outcomes per date, exactly as a one-date validation would give them.

    One date: one GX run. Several: one GX run over all dates (COMPLETE result format), then a
    per-date GX run only for dates that own an unexpected row, or for all dates when the suite
    holds an aggregate expectation whose multi-date result cannot be split.
    """
    if not specs:
        return {d: [] for d in dates}
    if len(dates) == 1:
        d = dates[0]
        return {d: gx_runner.run(docs, name, specs, fingerprint, df, f"{run_ids[d]}:{name}")}
    span = f"range-{dates[0]:%Y%m%d}-{dates[-1]:%Y%m%d}-{uuid.uuid4().hex[:8]}:{name}"
    row_dates = pd.to_datetime(df[date_col]).dt.date.to_numpy() if len(df) else []
    # a wholly clean range keeps this one pass as its Data Docs record
    outcomes = gx_runner.run(
        docs,
        name,
        specs,
        fingerprint,
        df,
        span,
        complete=True,
        keep_if=lambda o: _split(o, row_dates) == (False, set()),
    )
    every_date, dirty = _split(outcomes, row_dates)
    result: dict[date, list[Outcome]] = {}
    clean = _derived_clean(outcomes)
    if not every_date and dirty and len(dirty) < len(dates):
        # the Data Docs record of the clean dates; dirty dates get their own per-date runs below,
        # so their rows are left out here
        clean_rows = df[~pd.Series(row_dates, dtype=object).isin(dirty).to_numpy()]
        gx_runner.run(docs, name, specs, fingerprint, clean_rows.reset_index(drop=True), span)
    for d in dates:
        if every_date or d in dirty:
            sub = df[df[date_col] == pd.Timestamp(d)].reset_index(drop=True) if len(df) else df
            result[d] = gx_runner.run(docs, name, specs, fingerprint, sub, f"{run_ids[d]}:{name}")
        else:
            result[d] = clean
    return result


def _split(outcomes: list[Outcome], row_dates: Any) -> tuple[bool, set[date]]:
    """(whether every date needs its own run, the dates owning an unexpected row)."""
    dirty: set[date] = set()
    every_date = False
    for o in outcomes:
        if o.error:
            every_date = True
        elif o.unexpected_count is not None:  # row-level: attribute unexpected rows to dates
            if o.unexpected_count:
                if not o.unexpected_index:
                    every_date = True
                else:
                    dirty.update(row_dates[i] for i in o.unexpected_index)
        elif o.spec.type not in SCHEMA_LEVEL or not o.success:
            every_date = True
    return every_date, dirty


def _profile_observed(outcomes: list[Outcome], row: dict[str, Any] | None) -> list[Outcome]:
    # Profile expectations report the metric itself, whether they passed or not.
    out = []
    for o in outcomes:
        col = o.spec.kwargs.get("column")
        value = _fmt(row.get(col)) if row is not None and col in row else o.observed_value
        out.append(replace(o, observed_value=value))
    return out


def _failure_text(label: str, o: Outcome) -> str:
    if o.error:
        detail = o.observed_value or "error"
    elif o.unexpected_count:
        detail = f"{o.unexpected_count} unexpected"
        if o.observed_value and o.spec.type != "expect_column_values_to_not_be_null":
            detail += f" e.g. {o.observed_value}"
    else:
        detail = f"observed {o.observed_value}"
        bounds = {
            k: o.spec.kwargs[k]
            for k in ("min_value", "max_value", "value_set")
            if k in o.spec.kwargs
        }
        if bounds:
            detail += " expected " + ", ".join(f"{k}={v}" for k, v in bounds.items())
    # an observed value is row content (an unexpected value): scrubbed and bounded
    return scrub(f"{label}: {detail}")


def _check_dates(dates: list[date]) -> None:
    for as_of_date in dates:
        if not isinstance(as_of_date, date) or isinstance(as_of_date, datetime):
            raise LivefinError(f"validation date must be a datetime.date, got {as_of_date!r}")


# (suite name, outcomes per date): the row suite first, then the partition-profile suite
SuiteOutcomes = list[tuple[str, dict[date, list[Outcome]]]]


def _run_suites(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    spec: SuiteSpec,
    dates: list[date],
    run_ids: dict[date, str],
) -> tuple[dict[date, int], SuiteOutcomes, dict[date, dict[str, Any]]]:
    """GX outcomes of the row suite and the profile suite; rows and profile rows by date."""
    docs = settings.docs
    found = (
        sqlcheck.validate_rows(con, docs, spec, dates, run_ids) if ROW_ROUTE == "duckdb" else None
    )
    if found is not None:
        per_rows, n_rows = found
    else:  # the GX route: every row as pandas
        rows_df = batches.row_batch(con, spec, dates)
        per_rows = _validate_suite(
            docs, spec.name, spec.rows, spec.fingerprint, rows_df, spec.partition_column, dates,
            run_ids,
        )  # fmt: skip
        sizes = rows_df.groupby(rows_df[spec.partition_column]).size() if len(rows_df) else None
        n_rows = {d: int(sizes.get(pd.Timestamp(d), 0)) if sizes is not None else 0 for d in dates}
    suites: SuiteOutcomes = [(spec.name, per_rows)]
    profile_rows: dict[date, dict[str, Any]] = {}
    if spec.has_profile and spec.profile:
        prof = batches.profile_batch(con, spec, dates)
        for rec in prof.to_dict("records"):
            profile_rows[pd.Timestamp(rec["dt"]).date()] = rec
        per = (
            sqlcheck.validate_profile(con, docs, spec, prof, dates, run_ids)
            if ROW_ROUTE == "duckdb"
            else None
        )
        if per is None:
            per = _validate_suite(
                docs, spec.profile_name, spec.profile, spec.fingerprint, prof, "dt", dates, run_ids
            )
        observed = {d: _profile_observed(o, profile_rows.get(d)) for d, o in per.items()}
        suites.append((spec.profile_name, observed))
    return n_rows, suites, profile_rows


@dataclass
class _Records:
    """The dq.* rows and the caller's summaries of one validation, built date by date."""

    runs: list[tuple] = field(default_factory=list)
    results: list[tuple] = field(default_factory=list)
    statuses: list[tuple] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)


def _result_row(rid: str, source: str, as_of_date: date, suite_name: str, o: Outcome) -> tuple:
    return (
        rid,
        source,
        as_of_date,
        o.spec.type,
        o.spec.column,
        o.spec.severity,
        o.spec.dimension,
        o.success,
        o.observed_value,
        o.unexpected_count,
        o.unexpected_percent,
        json.dumps(o.spec.kwargs, default=str),
        suite_name,
    )


def _record_suite(
    rec: _Records,
    key: tuple[str, str, date],
    suite_name: str,
    outs: list[Outcome],
    timing: tuple[datetime, float],
    failures: tuple[list[str], list[str]],
) -> None:
    """Append one suite's run row and result rows for a date; collect its failure texts."""
    rid, source, as_of_date = key
    crit, warn = failures
    c_fail = sum(1 for o in outs if not o.success and o.spec.severity == "critical")
    w_fail = sum(1 for o in outs if not o.success and o.spec.severity == "warning")
    ok = sum(1 for o in outs if o.success)
    if outs:
        rec.runs.append(
            (rid, source, as_of_date, suite_name, ok == len(outs), c_fail, w_fail, len(outs), ok,
             *timing)
        )  # fmt: skip
    for o in outs:
        rec.results.append(_result_row(rid, source, as_of_date, suite_name, o))
        if not o.success:
            text = _failure_text(o.spec.label(suite_name), o)
            (crit if o.spec.severity == "critical" else warn).append(text)


def _record_date(
    rec: _Records,
    source: str,
    as_of_date: date,
    rid: str,
    suites: SuiteOutcomes,
    timing: tuple[datetime, float],
    now: datetime,
) -> tuple[list[str], list[str], int, int]:
    """Rows of every suite for one date and its partition_status row; returns the failure
    texts (critical, warning) and the expectations evaluated / successful."""
    crit: list[str] = []
    warn: list[str] = []
    evaluated = successful = 0
    for suite_name, per_date in suites:
        outs = per_date[as_of_date]
        evaluated += len(outs)
        successful += sum(1 for o in outs if o.success)
        _record_suite(rec, (rid, source, as_of_date), suite_name, outs, timing, (crit, warn))
    status = "failed" if crit else "warning" if warn else "passed"
    failed = [f"{t} [critical]" for t in crit] + [f"{t} [warning]" for t in warn]
    rec.statuses.append(
        (source, as_of_date, status, rid, json.dumps(failed, ensure_ascii=False), now)
    )
    return crit, warn, evaluated, successful


def _summary(
    source: str,
    as_of_date: date,
    rid: str,
    checked: tuple[list[str], list[str], int, int],
    n_rows: int,
    seconds: float,
    profile_row: dict[str, Any] | None,
) -> dict[str, Any]:
    crit, warn, evaluated, successful = checked
    status = "failed" if crit else "warning" if warn else "passed"
    return {
        "source": source,
        "dt": as_of_date,
        "run_id": rid,
        "status": status,
        "success": status != "failed",
        "failed_critical": crit,
        "failed_warnings": warn,
        "critical_failed": len(crit),
        "warnings_failed": len(warn),
        "evaluated": evaluated,
        "successful": successful,
        "rows": n_rows,
        "seconds": round(seconds, 4),
        "profile": {k: _fmt(v) for k, v in (profile_row or {}).items() if k != "dt"},
    }


def _validate(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    source: str,
    dates: list[date],
    run_ids: dict[date, str] | None = None,
) -> list[dict[str, Any]]:
    if not dates:
        return []
    _check_dates(dates)
    spec = _check_source(source)
    dates = sorted(set(dates))
    run_ids = run_ids or {d: _new_run_id(source, d) for d in dates}
    started = datetime.now(UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    ensure_tables(con)
    with stage_memory(con, "validate"):
        n_rows, suites, profile_rows = _run_suites(con, settings, spec, dates, run_ids)
    seconds = (time.perf_counter() - t0) / len(dates)
    rec = _Records()
    now = datetime.now(UTC).replace(tzinfo=None)
    for d in dates:
        rid = run_ids[d]
        checked = _record_date(rec, source, d, rid, suites, (started, seconds), now)
        rec.summaries.append(
            _summary(source, d, rid, checked, n_rows[d], seconds, profile_rows.get(d))
        )
    _write(con, source, dates, list(run_ids.values()), rec)
    return rec.summaries


_RUN_COLS = [
    "run_id",
    "source",
    "dt",
    "suite",
    "success",
    "critical_failed",
    "warnings_failed",
    "evaluated",
    "successful",
    "started_at",
    "seconds",
]
_RES_COLS = [
    "run_id",
    "source",
    "dt",
    "expectation_type",
    "column_name",
    "severity",
    "dimension",
    "success",
    "observed_value",
    "unexpected_count",
    "unexpected_percent",
    "kwargs",
    "suite",
]
_STATUS_COLS = ["source", "dt", "status", "run_id", "failed_expectations", "updated_at"]


def _frame(cols: list[str], rows: list) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=cols)
    if "unexpected_count" in frame:
        frame["unexpected_count"] = frame["unexpected_count"].astype("Int64")
    return frame


def _write(
    con: duckdb.DuckDBPyConnection,
    source: str,
    dates: list[date],
    run_ids: list[str],
    rec: _Records,
) -> None:
    # Replace the gate state for these (source, dates) whole; history of runs is kept by run_id.
    with transaction(con):
        con.execute(
            "DELETE FROM dq.partition_status WHERE source = ? AND dt IN (SELECT unnest(?::DATE[]))",
            [source, dates],
        )
        for table in ("dq.validation_runs", "dq.expectation_results"):
            con.execute(
                f"DELETE FROM {table} WHERE source = ? AND dt IN "
                "(SELECT unnest(?::DATE[])) AND run_id IN (SELECT unnest(?::VARCHAR[]))",
                [source, dates, run_ids],
            )
        for table, cols, rows in (
            ("dq.validation_runs", _RUN_COLS, rec.runs),
            ("dq.expectation_results", _RES_COLS, rec.results),
            ("dq.partition_status", _STATUS_COLS, rec.statuses),
        ):
            if rows:
                insert_frame(con, table, _frame(cols, rows), cols)
        fault_point("gate.before_commit")


def record_refused(
    con: duckdb.DuckDBPyConnection, source: str, as_of_date: date, message: str
) -> None:
    """Close the gate for (source, as_of_date) when extract refused its delivery.

    The previously loaded rows stay in raw (nothing half-written), but a refused re-delivery
    means the platform's data for that day is in doubt, so the date must not publish."""
    ensure_tables(con)
    # stored, printed and published: one scrubbed, bounded line, whatever extract passed in
    failed = json.dumps([f"{source}.extract: {scrub(message)} [critical]"], ensure_ascii=False)
    row = (
        source,
        as_of_date,
        "failed",
        f"refused-{uuid.uuid4().hex[:12]}",
        failed,
        datetime.now(UTC).replace(tzinfo=None),
    )
    replace_rows(
        con,
        "dq.partition_status",
        _frame(_STATUS_COLS, [row]),
        where="source = ? AND dt = ?",
        params=[source, as_of_date],
        columns=_STATUS_COLS,
    )


def validate_partition(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    source: str,
    as_of_date: date,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Validate the loaded partition of ``source`` for ``as_of_date``; record the gate state.

    Returns ``status`` (passed | warning | failed), ``failed_critical`` / ``failed_warnings``
    as readable strings, counts, ``seconds`` and the partition ``profile``.
    """
    ids = {as_of_date: run_id} if run_id else None
    return _validate(con, settings, source, [as_of_date], ids)[0]


def validate_range(
    con: duckdb.DuckDBPyConnection, settings: Settings, source: str, dates: list[date]
) -> list[dict[str, Any]]:
    """:func:`validate_partition` for many dates at once (history backfills), same results.

    Dates go through GX in chunks of ``profile.validate_chunk_days`` (quality.yaml) so memory
    stays bounded on a year of platform-scale history."""
    prof = load_config("quality").get("profile") or {}
    max_days = int(prof.get("validate_chunk_days", 31))
    max_rows = int(prof.get("validate_chunk_rows", 2_000_000))
    dates = sorted(dates)
    rows = _rows_per_date(con, source, dates)
    out: list[dict[str, Any]] = []
    chunk: list[date] = []
    n = 0
    for d in dates:
        if chunk and (len(chunk) >= max_days or n + rows.get(d, 0) > max_rows):
            out.extend(_validate(con, settings, source, chunk))
            chunk, n = [], 0
        chunk.append(d)
        n += rows.get(d, 0)
    if chunk:
        out.extend(_validate(con, settings, source, chunk))
    return out


def _rows_per_date(con: duckdb.DuckDBPyConnection, source: str, dates: list[date]) -> dict:
    """Loaded rows per partition (from the manifest), to size validation batches."""
    if not dates or not table_exists(con, "meta.load_manifest"):
        return {}
    return dict(
        con.execute(
            "SELECT dt, sum(rows_read) FROM meta.load_manifest WHERE source = ? "
            "AND dt BETWEEN ? AND ? GROUP BY dt",
            [source, dates[0], dates[-1]],
        ).fetchall()
    )


def require_passed(
    con: duckdb.DuckDBPyConnection, as_of_date: date, sources: list[str] | None = None
) -> None:
    """Raise StageBlocked unless every required source partition of ``as_of_date`` passed,
    the date is not later than the clock allows, and every earlier date since the start passed
    or was skipped on purpose (:mod:`livefin_etl.calendar`).

    ``warning`` counts as passed; ``failed`` or no validation at all blocks.
    """
    required = (
        list(sources)
        if sources is not None
        else list(load_config("quality").get("required_sources") or [])
    )
    found: dict[str, tuple[str, str | None]] = {}
    if table_exists(con, "dq.partition_status") and required:
        for src, status, failed in con.execute(
            "SELECT source, status, failed_expectations FROM dq.partition_status "
            "WHERE dt = ? AND source IN (SELECT unnest(?::VARCHAR[]))",
            [as_of_date, required],
        ).fetchall():
            found[src] = (status, failed)
    problems = []
    for src in required:
        if src not in found:
            problems.append(f"{src}: partition {as_of_date} was never validated")
            continue
        status, failed = found[src]
        if status == "failed":
            items = [f for f in json.loads(failed or "[]") if f.endswith("[critical]")]
            problems.append(f"{src}: failed - " + "; ".join(items))
    problems += [
        p
        for p in (
            calendar.clock_problem([as_of_date]),
            calendar.gap_problem(con, as_of_date, required),
        )
        if p
    ]
    if problems:
        raise StageBlocked(f"quality gate for {as_of_date} is closed:\n  " + "\n  ".join(problems))


def build_data_docs(settings: Settings, con: duckdb.DuckDBPyConnection | None = None) -> Path:
    """Build the GX Data Docs site under ``settings.docs / "data_docs"``; return index.html.

    The pages are rewritten to load their assets locally (readable offline); with ``con`` the
    livefin status page (``status.html``, the gate as a date x source grid) is written beside.
    """
    from livefin_etl.quality import docs_offline, status_page

    index = gx_runner.build_docs(settings.docs)
    if not index.exists():
        raise LivefinError(f"GX did not write {index}")
    docs_offline.localize(index.parent)
    if con is not None:
        status_page.write_status_page(con, index.parent)
        docs_offline.link_status_page(index)
    return index
