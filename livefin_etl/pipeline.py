"""The order of stages for a business date: the one place both ``livefin run`` and the DAGs call.

Every public function here opens its own locked session, so it is safe to call
from a CLI process or an Airflow task process alike, and returns only small,
JSON-able summaries (counts, paths, ids) fit for XCom.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from livefin_etl.config import LivefinError, Settings, StageBlocked, get_settings
from livefin_etl.contracts import list_sources
from livefin_etl.warehouse import connect, writer_lock

log = logging.getLogger(__name__)

NIGHTLY_STAGES = ("features", "value", "score", "limits", "publish")


def new_run_id(day: date) -> str:
    return f"{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"


def daterange(start: date, end: date) -> list[date]:
    if end < start:
        raise LivefinError(f"end date {end} is before start date {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@contextmanager
def session(
    settings: Settings | None = None,
) -> Generator[tuple[Settings, duckdb.DuckDBPyConnection], None, None]:
    """Writer lock + connection; the lock is taken first so a second run fails fast."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    with writer_lock(settings):
        con = connect(settings)
        try:
            yield settings, con
        finally:
            con.close()


# --------------------------------------------------------------------------- single stages


def extract(source: str, day: date, settings: Settings | None = None, force: bool = False) -> dict:
    from livefin_etl import extract as ex

    with session(settings) as (s, con):
        return ex.extract_partition(con, s, source, day, force=force)


def validate(source: str, day: date, settings: Settings | None = None) -> dict:
    from livefin_etl import quality

    with session(settings) as (s, con):
        return quality.validate_partition(con, s, source, day)


def ingest_partition(source: str, day: date, settings: Settings | None = None) -> dict:
    """Extract then validate one (source, date): what one ingest task does."""
    from livefin_etl import extract as ex
    from livefin_etl import quality

    with session(settings) as (s, con):
        try:
            loaded = ex.extract_partition(con, s, source, day)
        except LivefinError as exc:
            quality.record_refused(con, source, day, str(exc))
            raise
        checked = quality.validate_partition(con, s, source, day)
    return {"extract": loaded, "validate": _small(checked)}


def _small(result: dict) -> dict:
    """Keep XCom payloads small and JSON-able."""
    return {
        k: v for k, v in result.items() if isinstance(v, (str, int, float, bool, list, type(None)))
    }


def _stage_fn(stage: str, shard: tuple[int, int] | None = None) -> Callable[..., Any]:
    if shard is not None and stage not in ("score", "limits"):
        raise LivefinError(f"stage '{stage}' cannot be sharded (only score and limits)")

    def features(con, s, day, run_id):
        from livefin_etl import features as f
        from livefin_etl import quality

        quality.require_passed(con, day)
        q = quality.build_merchant_quality(con, day)
        n = f.build_features(con, day)
        return {"merchant_quality_rows": q, "feature_rows": n}

    def value(con, s, day, run_id):
        from livefin_etl import quality, valuation

        quality.require_passed(con, day)
        return {"value_rows": valuation.build_values(con, day)}

    def score(con, s, day, run_id):
        from livefin_etl import credit, quality

        quality.require_passed(con, day)
        if credit.champion(con) is None:
            if shard is not None:
                raise LivefinError(
                    "no champion model: run the weekly training before sharded scoring"
                )
            log.info("no champion model yet: training as of %s", day)
            credit.train(con, s, day)
        return {"score_rows": credit.score(con, s, day, run_id=run_id, shard=shard)}

    def limits(con, s, day, run_id):
        from livefin_etl import limits as lim
        from livefin_etl import quality

        quality.require_passed(con, day)
        if shard is not None:
            # Per-merchant inputs per shard; guardrails need the whole book (limits_finalize).
            return {"staged_rows": lim.stage_inputs(con, day, run_id, shard)}
        return lim.build_limits(con, s, day, run_id)

    def limits_finalize(con, s, day, run_id):
        from livefin_etl import limits as lim
        from livefin_etl import quality

        quality.require_passed(con, day)
        return lim.finalize_from_staging(con, s, day, run_id)

    def publish(con, s, day, run_id):
        from livefin_etl import publish as pub

        return pub.publish(con, s, day, run_id)

    fns = {
        "features": features,
        "value": value,
        "score": score,
        "limits": limits,
        "limits_finalize": limits_finalize,
        "publish": publish,
    }
    if stage not in fns:
        raise LivefinError(f"unknown stage '{stage}' (stages: {', '.join(fns)})")
    return fns[stage]


def run_stage(
    stage: str,
    day: date,
    settings: Settings | None = None,
    run_id: str | None = None,
    shard: tuple[int, int] | None = None,
) -> dict:
    """Run one nightly stage for one date in its own locked session (an Airflow task).

    ``shard=(i, n)`` runs score or limits for one merchant-hash shard; after all limits shards,
    ``limits_finalize`` applies the portfolio guardrails to the whole book."""
    run_id = run_id or new_run_id(day)
    with session(settings) as (s, con):
        t0 = time.perf_counter()
        out = _stage_fn(stage, tuple(shard) if shard is not None else None)(con, s, day, run_id)
        out = _small(out if isinstance(out, dict) else {"result": out})
        out.update(
            stage=stage,
            as_of_date=day.isoformat(),
            run_id=run_id,
            seconds=round(time.perf_counter() - t0, 3),
        )
        log.info("stage %s %s done", stage, day)
        return out


def train(day: date, settings: Settings | None = None, device: str | None = None) -> dict:
    from livefin_etl import credit

    with session(settings) as (s, con):
        return _small(credit.train(con, s, day, device=device))


# --------------------------------------------------------------------------- ranges


@dataclass
class RunReport:
    ingested: list[dict] = field(default_factory=list)
    nightly: list[dict] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    data_docs: str | None = None
    published: dict | None = None
    seconds: float = 0.0


def ingest_range(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    days: list[date],
    sources: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Extract every (source, date), then validate each source's dates in one batch.

    A refused partition (bad file, missing folder) does not stop the others; it is reported
    with ``status='failed'`` and, having no passing validation, blocks its date downstream."""
    from livefin_etl import extract as ex
    from livefin_etl import quality

    sources = sources or list_sources()
    results: list[dict] = []
    for source in sources:
        if progress:
            progress(f"extract {source} ({len(days)} dates)")
        refused: dict[str, str] = {}
        try:
            results.extend(ex.extract_partitions(con, settings, source, days))
        except ex.ExtractErrors as exc:
            results.extend(exc.results)
            for msg in exc.errors:
                refused[msg.split(": ", 1)[0]] = msg
        if progress:
            progress(f"validate {source} ({len(days)} dates)")
        ok_days = [d for d in days if f"{source} {d}" not in refused]
        for r in quality.validate_range(con, settings, source, ok_days) if ok_days else []:
            results.append(_small(r))
        for key, msg in refused.items():
            day = date.fromisoformat(key.split(" ", 1)[1])
            # The old rows stay loaded, but a refused (re-)delivery puts the day in doubt.
            quality.record_refused(con, source, day, msg)
            results.append(
                {
                    "source": source,
                    "dt": day.isoformat(),
                    "status": "failed",
                    "failed_expectations": [msg],
                }
            )
    return results


def run_range(
    start: date,
    end: date,
    settings: Settings | None = None,
    *,
    ingest_from: date | None = None,
    stages: tuple[str, ...] = NIGHTLY_STAGES,
    retrain: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Ingest ``ingest_from..end`` (default ``start..end``), then run the nightly stages for each
    date in ``start..end``. Stops at the first blocked date: later dates depend on it."""
    from livefin_etl import quality

    report = RunReport()
    t0 = time.perf_counter()
    with session(settings) as (s, con):
        report.ingested = ingest_range(
            con, s, daterange(ingest_from or start, end), progress=progress
        )
        try:
            for day in daterange(start, end):
                run_id = new_run_id(day)
                if retrain and day == start:
                    from livefin_etl import credit

                    if progress:
                        progress(f"train as of {day}")
                    credit.train(con, s, day)
                for stage in stages:
                    if progress:
                        progress(f"{stage} {day}")
                    try:
                        out = _stage_fn(stage)(con, s, day, run_id)
                    except StageBlocked as exc:
                        report.blocked[day.isoformat()] = str(exc)
                        raise
                    out = _small(out if isinstance(out, dict) else {"result": out})
                    out.update(stage=stage, as_of_date=day.isoformat(), run_id=run_id)
                    report.nightly.append(out)
                    if stage == "publish":
                        report.published = out
        except StageBlocked:
            pass
        finally:
            report.data_docs = str(quality.build_data_docs(s))
    report.seconds = round(time.perf_counter() - t0, 1)
    return report
