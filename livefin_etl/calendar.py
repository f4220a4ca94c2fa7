"""The business calendar the pipeline trusts: which dates may be extracted and processed.

Two rules, both from ``config/calendar.yaml``:

* **The clock.** Day D is complete only after the morning-after export, so nothing later than
  ``today - complete_after_days`` (today in the configured timezone) is extracted or processed.
* **No silent gaps.** A date's nightly stages run only when every earlier business date since the
  start (configured, or the first date the warehouse ever validated) passed the gate for every
  required source, or was skipped on purpose (``livefin run --allow-gap ... --reason ...``,
  recorded in ``meta.calendar_skips``).

The quality gate (:func:`livefin_etl.quality.require_passed`) and the pipeline's extract paths
call this module, so the CLI and the Airflow tasks get the same answers.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb

from livefin_etl.config import LivefinError, load_config
from livefin_etl.warehouse import run_ddl, table_exists, transaction

MAX_REASON = 500
MAX_RANGES_SHOWN = 12


def _cfg() -> dict:
    return load_config("calendar")


def today() -> date:
    """Today in the business timezone; ``LIVEFIN_TODAY`` overrides it (tests, simulated years)."""
    override = os.environ.get("LIVEFIN_TODAY")
    if override:
        try:
            return date.fromisoformat(override)
        except ValueError:
            raise LivefinError(f"LIVEFIN_TODAY={override!r} is not a date (YYYY-MM-DD)") from None
    return datetime.now(ZoneInfo(str(_cfg().get("timezone", "Asia/Shanghai")))).date()


def latest_allowed() -> date:
    """The latest business date whose export is complete."""
    return today() - timedelta(days=int(_cfg().get("complete_after_days", 1)))


def configured_start() -> date | None:
    start = _cfg().get("start")
    return date.fromisoformat(str(start)) if start else None


def ranges(dates: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive runs of ``dates`` as (first, last) pairs."""
    out: list[tuple[date, date]] = []
    for x in sorted(set(dates)):
        if out and x == out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], x)
        else:
            out.append((x, x))
    return out


def format_ranges(dates: Iterable[date], limit: int | None = None) -> str:
    """``2025-03-02..2025-03-05,2025-03-09``: the form ``--allow-gap`` takes."""
    spans = ranges(dates)
    shown = spans if limit is None else spans[:limit]
    text = ",".join(str(a) if a == b else f"{a}..{b}" for a, b in shown)
    return text + (f" (+{len(spans) - len(shown)} more ranges)" if len(shown) < len(spans) else "")


def parse_ranges(text: str) -> list[date]:
    """The dates of ``A..B,C``; the inverse of :func:`format_ranges`."""
    out: list[date] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, _, last = part.partition("..")
        try:
            a = date.fromisoformat(first)
            b = date.fromisoformat(last) if last else a
        except ValueError:
            raise LivefinError(
                f"'{part}' is not a date or range (YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD)"
            ) from None
        if b < a:
            raise LivefinError(f"range '{part}' ends before it starts")
        out.extend(a + timedelta(days=i) for i in range((b - a).days + 1))
    if not out:
        raise LivefinError("no dates given (YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD, comma-separated)")
    return sorted(set(out))


def clock_problem(dates: Iterable[date]) -> str | None:
    """Why some of ``dates`` may not be processed yet (None when all may)."""
    limit = latest_allowed()
    late = [x for x in dates if x > limit]
    if not late:
        return None
    tz = _cfg().get("timezone", "Asia/Shanghai")
    return (
        f"business date {format_ranges(late, MAX_RANGES_SHOWN)} is later than the clock allows: "
        f"the latest complete date is {limit} (today is {today()} in {tz}; a day is complete "
        f"{_cfg().get('complete_after_days', 1)} day(s) later, config/calendar.yaml). "
        "Backfills of a simulated year may set LIVEFIN_TODAY=YYYY-MM-DD"
    )


def check_clock(dates: Iterable[date]) -> None:
    """Refuse to extract or process a date whose export cannot be complete yet."""
    problem = clock_problem(list(dates))
    if problem:
        raise LivefinError(problem)


def _start(con: duckdb.DuckDBPyConnection, sources: list[str]) -> date | None:
    start = configured_start()
    if start is not None or not table_exists(con, "dq.partition_status"):
        return start
    return con.execute(
        "SELECT min(dt) FROM dq.partition_status WHERE source IN (SELECT unnest(?::VARCHAR[]))",
        [sources],
    ).fetchone()[0]


def missing_before(
    con: duckdb.DuckDBPyConnection, as_of_date: date, sources: list[str]
) -> tuple[date | None, dict[date, dict[str, str]]]:
    """The start and, per earlier date, the sources that neither passed nor were skipped
    (source -> ``failed`` | ``never validated``)."""
    start = _start(con, sources)
    if start is None or start >= as_of_date or not sources:
        return start, {}
    skips = "SELECT NULL::DATE AS dt, NULL::VARCHAR AS source WHERE false"
    if table_exists(con, "meta.calendar_skips"):
        skips = "SELECT dt, source FROM meta.calendar_skips"
    rows = con.execute(
        f"""
        WITH days AS (
            SELECT unnest(generate_series(?::DATE, ?::DATE, INTERVAL 1 DAY))::DATE AS dt),
        req AS (SELECT unnest(?::VARCHAR[]) AS source),
        st AS (SELECT source, dt, status FROM dq.partition_status WHERE dt BETWEEN ? AND ?),
        sk AS ({skips})
        SELECT d.dt, r.source, coalesce(st.status, 'never validated') AS status
        FROM days d CROSS JOIN req r
        LEFT JOIN st ON st.dt = d.dt AND st.source = r.source
        WHERE coalesce(st.status, '') NOT IN ('passed', 'warning')
          AND NOT EXISTS (
              SELECT 1 FROM sk WHERE sk.dt = d.dt AND sk.source IN ('*', r.source))
        ORDER BY 1, 2
        """,
        [start, as_of_date - timedelta(days=1), sources, start, as_of_date - timedelta(days=1)],
    ).fetchall()
    out: dict[date, dict[str, str]] = {}
    for dt, source, status in rows:
        out.setdefault(dt, {})[source] = status
    return start, out


def _kind_text(kind: str, dates: dict[date, dict[str, str]], sources: list[str]) -> str | None:
    hit = {x: [s for s, st in by.items() if st == kind] for x, by in dates.items()}
    hit = {x: ss for x, ss in hit.items() if ss}
    if not hit:
        return None
    names = sorted({s for ss in hit.values() for s in ss}, key=sources.index)
    which = "every source" if len(names) == len(sources) else ", ".join(names)
    return f"{kind} {format_ranges(hit, MAX_RANGES_SHOWN)} ({len(hit)} dates; {which})"


def gap_problem(con: duckdb.DuckDBPyConnection, as_of_date: date, sources: list[str]) -> str | None:
    """Why ``as_of_date`` may not run because of an earlier date (None when it may)."""
    start, missing = missing_before(con, as_of_date, sources)
    if not missing:
        return None
    kinds = [_kind_text(k, missing, sources) for k in ("never validated", "failed")]
    first, last = min(missing), max(missing)
    return (
        f"earlier business dates since {start} did not pass the gate: "
        + "; ".join(k for k in kinds if k)
        + f". Load them with `livefin ingest --start {first} --end {last}`, or skip them on "
        f"purpose with `livefin run --start {as_of_date} --allow-gap "
        f'{format_ranges(missing)} --reason "<why>"`'
    )


def record_skips(
    con: duckdb.DuckDBPyConnection,
    dates: list[date],
    reason: str,
    before: date,
    sources: Iterable[str] = ("*",),
) -> int:
    """Record ``dates`` (all before ``before``) as skipped on purpose, with the reason."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise LivefinError(
            '--allow-gap needs a reason: add --reason "<why these dates are skipped>"'
        )
    if len(reason) > MAX_REASON:
        raise LivefinError(f"--reason is {len(reason)} characters; keep it under {MAX_REASON}")
    late = [x for x in dates if x >= before]
    if late:
        raise LivefinError(
            f"--allow-gap {format_ranges(late, MAX_RANGES_SHOWN)}: only dates before {before} "
            "(the first nightly date) can be skipped"
        )
    try:
        by = getpass.getuser()
    except (KeyError, OSError):
        by = "unknown"
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [(x, s, reason, by, now) for x in sorted(set(dates)) for s in sources]
    run_ddl(con, "meta")
    with transaction(con):
        con.executemany(
            "INSERT OR REPLACE INTO meta.calendar_skips "
            "(dt, source, reason, skipped_by, skipped_at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)
