"""The only way in: every ``livefin`` command and every Airflow task calls a function here.

Each public function opens its own locked session (safe from a CLI process or an Airflow task
process alike) and returns a small, JSON-able summary fit for XCom. The nightly stages are plain
module-level functions ``stage(con, settings, as_of_date, run_id, shard)``; :data:`STAGES` maps
their names (Airflow task ids, ``livefin`` verbs) to them, and :func:`run_stage` runs one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb

from livefin_etl import calendar, engine
from livefin_etl.config import (
    LivefinError,
    Settings,
    StageBlocked,
    create_pii_key,
    get_settings,
    key_fingerprint,
    pii_key,
    pii_key_location,
)
from livefin_etl.contracts import check_source, list_sources
from livefin_etl.warehouse import connect, run_ddl, transaction, writer_lock

log = logging.getLogger(__name__)

Shard = tuple[int, int]
Progress = Callable[[str], None]


class Stage(Protocol):
    __name__: str

    def __call__(
        self,
        con: duckdb.DuckDBPyConnection,
        settings: Settings,
        as_of_date: date,
        run_id: str,
        shard: Shard | None = None,
    ) -> dict[str, Any]: ...


def new_run_id(as_of_date: date) -> str:
    return f"{as_of_date:%Y%m%d}-{uuid.uuid4().hex[:8]}"


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
        _finish_publication(settings)
        con = connect(settings)
        try:
            yield settings, con
        finally:
            con.close()


def _finish_publication(settings: Settings) -> None:
    """A publication killed after its commit (RECORD.json) is finished by the next writer,
    whatever it runs, so the visible files do not wait for the next publish to agree."""
    from livefin_etl.publish import record

    record.finish(settings)


def _small(result: Any) -> dict[str, Any]:
    """Keep XCom payloads small and JSON-able (dates as ISO text)."""
    result = result if isinstance(result, dict) else {"result": result}
    return {
        k: v.isoformat() if isinstance(v, date) else v
        for k, v in result.items()
        if isinstance(v, (str, int, float, bool, list, date, type(None)))
    }


# --------------------------------------------------------------------------- simulate + ingest


def simulate(
    scale: str,
    seed: int,
    start: date,
    days: int | None,
    out: Path | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``livefin sample``: the simulated platform + lender as landing files (default: the
    landing folder of ``settings``)."""
    from livefin_etl import simulator

    out = out or (settings or get_settings()).landing
    return simulator.generate(scale, seed, start, days, out, **options)


def _stored_fingerprint(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    run_ddl(con, "meta")
    return con.execute("SELECT fingerprint, key_source FROM meta.pii_key LIMIT 1").fetchone()


def check_pii_key(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Stop unless the PII key is the one this warehouse was hashed with (recorded by its
    fingerprint on first use): another key would silently unlink buyers from earlier days."""
    where = pii_key_location(settings)
    fingerprint = key_fingerprint(pii_key(settings))
    stored = _stored_fingerprint(con)
    if stored is None:
        with transaction(con):
            con.execute(
                "INSERT INTO meta.pii_key VALUES (?, ?, now()::TIMESTAMP)", [fingerprint, where]
            )
    elif stored[0] != fingerprint:
        raise LivefinError(
            f"the PII key from {where} is not the key this warehouse was hashed with "
            f"(fingerprint {fingerprint}, warehouse {stored[0]}, first from {stored[1]}): put the "
            "original key back; a new key would no longer link buyers to earlier days"
        )


def init_home(settings: Settings | None = None) -> dict[str, Any]:
    """``livefin init`` (and the demo's first step): create the home's folders and, once, the
    PII key; record the key's fingerprint in the warehouse."""
    s = settings or get_settings()
    s.home.mkdir(parents=True, exist_ok=True)
    with session(s) as (s, con):
        stored = _stored_fingerprint(con)
        try:
            pii_key(s)
        except LivefinError:
            if stored is not None:  # the key was moved away: a new one would unlink history
                raise LivefinError(
                    f"PII key {pii_key_location(s)} is missing but {s.warehouse} was hashed "
                    f"with key {stored[0]} (from {stored[1]}): put that key back"
                ) from None
        where = create_pii_key(s)
        check_pii_key(con, s)
    return {"home": str(s.home), "pii_key": where, "warehouse": str(s.warehouse)}


def _checked(source: str, dates: list[date]) -> str:
    """A source and dates fit to extract: a known contract name, no date past the clock."""
    calendar.check_clock(dates)
    return check_source(source)


def extract(source: str, as_of_date: date, settings: Settings | None = None, force: bool = False):
    from livefin_etl import extract as ex
    from livefin_etl import quality

    _checked(source, [as_of_date])
    with session(settings) as (s, con):
        check_pii_key(con, s)
        try:
            return ex.extract_partition(con, s, source, as_of_date, force=force)
        except ex.PartitionRefused as exc:
            # a refused (re-)delivery puts the date in doubt, whichever command read it
            quality.record_refused(con, source, as_of_date, str(exc))
            raise


def validate(source: str, as_of_date: date, settings: Settings | None = None) -> dict[str, Any]:
    """GX suite + gate for one partition, then the Data Docs (whose path is in the result)."""
    from livefin_etl import quality

    _checked(source, [as_of_date])
    with session(settings) as (s, con):
        result = quality.validate_partition(con, s, source, as_of_date)
        result["data_docs"] = str(quality.build_data_docs(s, con))
    return result


def ingest_partition(source: str, as_of_date: date, settings: Settings | None = None) -> dict:
    """Extract then validate one (source, date): what one ingest task does."""
    from livefin_etl import extract as ex
    from livefin_etl import quality

    _checked(source, [as_of_date])
    with session(settings) as (s, con):
        check_pii_key(con, s)
        try:
            loaded = ex.extract_partition(con, s, source, as_of_date)
        except LivefinError as exc:
            quality.record_refused(con, source, as_of_date, str(exc))
            raise
        checked = quality.validate_partition(con, s, source, as_of_date)
    return {"extract": loaded, "validate": _small(checked)}


def ingest_range(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dates: list[date],
    sources: list[str] | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """Extract every (source, date), then validate each source's dates in one batch.

    A refused partition (bad file, missing folder) does not stop the others; it is reported
    with ``status='failed'`` and, having no passing validation, blocks its date downstream."""
    calendar.check_clock(dates)
    sources = [check_source(x) for x in sources or list_sources()]
    check_pii_key(con, settings)
    results: list[dict] = []
    for source in sources:
        results.extend(_ingest_source(con, settings, source, dates, progress))
    return results


def _ingest_source(con, settings, source: str, dates: list[date], progress) -> list[dict]:
    from livefin_etl import extract as ex
    from livefin_etl import quality

    if progress:
        progress(f"extract {source} ({len(dates)} dates)")
    results: list[dict] = []
    refused: dict[date, str] = {}
    try:
        results.extend(ex.extract_partitions(con, settings, source, dates))
    except ex.ExtractErrors as exc:
        results.extend(exc.results)
        refused.update(exc.refused)
    if progress:
        progress(f"validate {source} ({len(dates)} dates)")
    ok = [x for x in dates if x not in refused]
    results.extend(
        _small(r) for r in (quality.validate_range(con, settings, source, ok) if ok else [])
    )
    for as_of_date, msg in refused.items():
        # The old rows stay loaded, but a refused (re-)delivery puts the date in doubt.
        quality.record_refused(con, source, as_of_date, msg)
        results.append(
            {
                "source": source,
                "dt": as_of_date.isoformat(),
                "status": "failed",
                "failed_expectations": [msg],
            }
        )
    return results


def ingest(
    start: date, end: date, sources: list[str] | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """``livefin ingest``: backfill a date range, then rebuild the Data Docs."""
    from livefin_etl import quality

    # refused before the warehouse is opened (or created)
    calendar.check_clock(daterange(start, end))
    sources = [check_source(x) for x in sources] if sources else None
    with session(settings) as (s, con):
        results = ingest_range(con, s, daterange(start, end), sources)
        docs = quality.build_data_docs(s, con)
    failed = [r for r in results if r.get("status") == "failed"]
    return {"results": len(results), "failed": failed, "data_docs": str(docs)}


# --------------------------------------------------------------------------- nightly stages


def merchant_quality(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    """Per-merchant data-quality coefficients (GB/T 36344 dimensions) that value and score use."""
    from livefin_etl import quality

    quality.require_passed(con, as_of_date)
    return {"merchant_quality_rows": quality.build_merchant_quality(con, as_of_date)}


def features(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    from livefin_etl import features as feats
    from livefin_etl import quality

    quality.require_passed(con, as_of_date)
    return {"feature_rows": feats.build_features(con, as_of_date)}


def value(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    from livefin_etl import quality, valuation

    quality.require_passed(con, as_of_date)
    return {"value_rows": valuation.build_values(con, as_of_date)}


def score(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    """Score with the champion. No champion blocks the date (training is its own stage)."""
    from livefin_etl import credit, quality

    quality.require_passed(con, as_of_date)
    if credit.champion(con) is None:
        raise StageBlocked(credit.no_champion_reason(con))
    return {"score_rows": credit.score(con, settings, as_of_date, run_id=run_id, shard=shard)}


def limits(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    from livefin_etl import limits as lim
    from livefin_etl import quality

    quality.require_passed(con, as_of_date)
    if shard is not None:
        # Per-merchant inputs per shard; guardrails need the whole book (limits_finalize).
        return {"staged_rows": lim.stage_inputs(con, as_of_date, run_id, shard)}
    return lim.build_limits(con, settings, as_of_date, run_id)


def limits_finalize(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    from livefin_etl import limits as lim
    from livefin_etl import quality

    quality.require_passed(con, as_of_date)
    return lim.finalize_from_staging(con, settings, as_of_date, run_id)


def monitor(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    """Model monitoring into monitor.* (config/monitoring.yaml); `act` warns, or fails if set."""
    from livefin_etl.credit import monitor as mon

    return mon.monitor(con, settings, as_of_date, run_id)


def publish(con, settings, as_of_date, run_id, shard=None) -> dict[str, Any]:
    from livefin_etl import publish as pub

    return pub.publish(con, settings, as_of_date, run_id)


STAGES: dict[str, Stage] = {
    "merchant_quality": merchant_quality,
    "features": features,
    "value": value,
    "score": score,
    "limits": limits,
    "limits_finalize": limits_finalize,
    "monitor": monitor,
    "publish": publish,
}
NIGHTLY_STAGES: tuple[Stage, ...] = (
    *(merchant_quality, features, value, score, limits, monitor, publish),
)
SHARDED_STAGES = frozenset({score, limits})


def _run_one(con, settings, stage: Stage, as_of_date: date, run_id: str, shard=None) -> dict:
    if shard is not None and stage not in SHARDED_STAGES:
        raise LivefinError(f"stage '{stage.__name__}' cannot be sharded (only score and limits)")
    t0 = time.perf_counter()
    out = _small(engine.run(stage, con, settings, as_of_date, run_id, shard))
    out.update(
        stage=stage.__name__,
        as_of_date=as_of_date.isoformat(),
        run_id=run_id,
        seconds=round(time.perf_counter() - t0, 3),
    )
    log.info("stage %s %s done", stage.__name__, as_of_date)
    return out


def run_stage(
    stage: Stage,
    as_of_date: date,
    settings: Settings | None = None,
    run_id: str | None = None,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """Run one nightly stage for one date in its own locked session (an Airflow task).

    ``shard=(i, n)`` runs score or limits for one merchant-hash shard; after all limits shards,
    :func:`limits_finalize` applies the portfolio guardrails to the whole book."""
    if stage not in STAGES.values():
        raise LivefinError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    shard = tuple(shard) if shard is not None else None
    with session(settings) as (s, con):
        return _run_one(con, s, stage, as_of_date, run_id or new_run_id(as_of_date), shard)


def train(as_of_date: date, settings: Settings | None = None, device: str | None = None) -> dict:
    """Train a challenger point-in-time; it becomes champion only if it passes the gate."""
    from livefin_etl import credit

    calendar.check_clock([as_of_date])
    with session(settings) as (s, con):
        return _small(credit.train(con, s, as_of_date, device=device))


def train_from_file(
    features: Path,
    label: str,
    time_col: str | None = None,
    out_dir: Path | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """``livefin model train``: a challenger on an analyst's own feature table (no warehouse)."""
    from livefin_etl import credit

    return credit.train_from_file(
        settings or get_settings(), features, label, time_col=time_col, out_dir=out_dir
    )


# --------------------------------------------------------------------------- ranges


@dataclass
class RunReport:
    ingested: list[dict] = field(default_factory=list)
    trained: dict | None = None
    nightly: list[dict] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    data_docs: str | None = None
    published: dict | None = None
    seconds: float = 0.0


def run_range(
    start: date,
    end: date,
    settings: Settings | None = None,
    *,
    ingest_from: date | None = None,
    stages: tuple[Stage, ...] = NIGHTLY_STAGES,
    retrain: bool = False,
    progress: Progress | None = None,
    allow_gap: list[date] | None = None,
    gap_reason: str | None = None,
) -> RunReport:
    """Ingest ``ingest_from..end`` (default ``start..end``), train as of ``start`` when asked,
    then run the nightly stages for each date in ``start..end``. Stops at the first blocked
    date: later dates depend on it. ``allow_gap`` dates (before ``start``) are first recorded
    as skipped on purpose, with ``gap_reason``, so the gate no longer waits for them."""
    from livefin_etl import credit, quality

    report = RunReport()
    t0 = time.perf_counter()
    calendar.check_clock(daterange(ingest_from or start, end))
    with session(settings) as (s, con):
        if allow_gap:
            calendar.record_skips(con, allow_gap, gap_reason or "", before=start)
        report.ingested = ingest_range(
            con, s, daterange(ingest_from or start, end), progress=progress
        )
        try:
            if retrain:
                if progress:
                    progress(f"train as of {start}")
                report.trained = _small(credit.train(con, s, start))
            for as_of_date in daterange(start, end):
                _run_night(con, s, as_of_date, stages, report, progress)
        except StageBlocked:
            pass
        finally:
            report.data_docs = str(quality.build_data_docs(s, con))
    report.seconds = round(time.perf_counter() - t0, 1)
    return report


def _run_night(con, settings, as_of_date, stages, report: RunReport, progress) -> None:
    run_id = new_run_id(as_of_date)
    for stage in stages:
        if progress:
            progress(f"{stage.__name__} {as_of_date}")
        try:
            out = _run_one(con, settings, stage, as_of_date, run_id)
        except StageBlocked as exc:
            report.blocked[as_of_date.isoformat()] = str(exc)
            raise
        report.nightly.append(out)
        if stage is publish:
            report.published = out


def demo(
    scale: str = "demo",
    seed: int = 42,
    nightly_days: int = 3,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> tuple[RunReport, dict[str, Any] | None]:
    """The embedded default end to end: simulate (or reuse) a platform, ingest its history,
    train as of the first nightly date, run the last nights, then a stress test.

    Returns the run report and the stress result (None when a date was blocked)."""
    import json

    from livefin_etl import simulator

    s = settings or get_settings()
    init_home(s)
    params = s.landing / "_truth" / "params.json"
    if not (params.exists() and json.loads(params.read_text()).get("scale") == scale):
        if progress:
            progress(f"simulating the '{scale}' platform into {s.landing}")
        simulator.generate(
            scale, seed, date(2025, 1, 1), None, s.landing, force=True, progress=False
        )
    p = json.loads(params.read_text())
    first = date.fromisoformat(str(p["start"]))
    last = first + timedelta(days=int(p["days"]) - 1)
    start = last - timedelta(days=nightly_days - 1)
    report = run_range(start, last, s, ingest_from=first, retrain=True, progress=progress)
    if report.blocked:
        return report, None
    return report, stress(last, gmv_shock=-0.3, streamer_exit=True, settings=s)


# --------------------------------------------------------------------------- on demand


def stress(
    as_of_date: date | None,
    gmv_shock: float = -0.3,
    streamer_exit: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Recompute a date's limits (default: the latest) under a GMV shock and/or streamer exit;
    writes ``stress.stress_results``, never the published limits. ``text`` is the report."""
    from livefin_etl import limits as lim

    with session(settings) as (s, con):
        as_of_date = as_of_date or lim.latest_limits_date(con)
        if as_of_date is None:
            raise LivefinError("no limits yet: run the nightly job first")
        result = lim.stress(con, s, as_of_date, gmv_shock=gmv_shock, streamer_exit=streamer_exit)
        result["text"] = lim.format_stress(result)
    return result


def explain(merchant_id: str, as_of_date: date, settings: Settings | None = None) -> str:
    """A merchant's PD, score, grade and SHAP reasons, as text; read-only (no writer lock)."""
    from livefin_etl import reads

    return reads.explain(merchant_id, as_of_date, settings)


def explain_value(merchant_id: str, as_of_date: date, settings: Settings | None = None) -> str:
    """The three valuation approaches for a merchant's data; read-only (no writer lock)."""
    from livefin_etl import reads

    return reads.explain_value(merchant_id, as_of_date, settings)


def promote_model(version: str, settings: Settings | None = None) -> str:
    """Make ``version`` the champion (a person's decision, recorded in the registry)."""
    from livefin_etl import credit

    with session(settings) as (s, con):
        return credit.promote(con, s, version)


def rollback_model(settings: Settings | None = None) -> str:
    """Re-instate the previous champion; returns its version."""
    from livefin_etl import credit

    with session(settings) as (s, con):
        return credit.rollback(con, s)


def status(as_of_date: date | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """``livefin status``: a date's stages, publication and verdicts; read-only, works while a
    run writes the warehouse (then from the published snapshot)."""
    from livefin_etl import reads

    return reads.status(as_of_date, settings)


def rollback_publication(settings: Settings | None = None) -> Path:
    """Point the published snapshot back one version (under the writer lock, so a rollback
    never races a nightly publish)."""
    from livefin_etl import publish as pub

    s = settings or get_settings()
    with writer_lock(s):
        return pub.rollback(s)
