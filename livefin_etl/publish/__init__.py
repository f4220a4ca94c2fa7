"""Publication: an analyst snapshot and lender exports that move together, and rollback.

A publication is built completely before anything visible changes: the snapshot under
``snapshots/``, its export set and export map archived under ``<home>/publications/<version>/``,
and copies staged under hidden names beside ``published/livefin.duckdb`` and
``exports/limits/as_of_date=D/``. Then one ``os.replace`` of ``published/RECORD.json`` commits it,
and the visible paths are renamed into line with the record (``record.apply``). A run killed
before the commit leaves the previous publication; killed after it, the next publish or
rollback first finishes the job from the record (``record.repair``). Rollback commits a record
that points at an earlier publication and the export sets it was served with.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from livefin_etl.config import LivefinError, Settings, fault_point
from livefin_etl.publish import record
from livefin_etl.publish.build import (
    EXPORT_COLUMNS,
    SNAPSHOT_TABLES,
    build_exports,
    build_snapshot,
    publication_meta,
)
from livefin_etl.publish.record import (
    CURRENT_FILE,
    HISTORY_FILE,
    PUBLISHED_NAME,
    RECORD_FILE,
    Record,
    new_entry,
    repair,
)
from livefin_etl.warehouse import table_exists

__all__ = [
    "CURRENT_FILE",
    "EXPORT_COLUMNS",
    "HISTORY_FILE",
    "PUBLISHED_NAME",
    "RECORD_FILE",
    "SNAPSHOT_TABLES",
    "current",
    "publish",
    "repair",
    "rollback",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def current(settings: Settings) -> dict[str, Any] | None:
    """The committed publication (snapshot name, date, run, version), or None."""
    rec = record.read_record(settings)
    if rec is not None:
        return rec["current"]
    path = settings.published / CURRENT_FILE  # a state published before the record existed
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _repair(settings: Settings) -> Record | None:
    try:
        return repair(settings)
    except OSError as exc:  # e.g. a read-only or full disk: a message, no traceback
        raise LivefinError(
            f"bringing {settings.published} in line with its {RECORD_FILE} failed: {exc}"
        ) from exc


@dataclass(frozen=True)
class _Plan:
    """One publication: where it is built, and the record that commits it."""

    building: Path
    snapshot: Path
    archive: Path
    rec: Record


def _plan(settings: Settings, rec: Record | None, as_of_date: date, run_id: str) -> _Plan:
    seq = (rec["seq"] if rec else 0) + 1
    version = f"v{seq:06d}"
    iso = as_of_date.isoformat()
    name = f"livefin-{iso}-{run_id}.duckdb"
    if rec and any(e["snapshot"] == name for e in rec["history"]):
        # The same run published again (a retried task): a committed file is never overwritten.
        name = f"livefin-{iso}-{run_id}+{seq}.duckdb"
    entry = new_entry("publish", name, iso, run_id, version=version, seq=seq)
    exports = dict(rec["exports"]) if rec else {}
    exports[iso] = version
    history = rec["history"] if rec else []
    new = {"format": record.RECORD_FORMAT, "seq": seq, "current": entry, "exports": exports}
    new["history"] = [*history, entry]
    snaps = record.snapshots_dir(settings)
    return _Plan(
        snaps / f".building-{name}", snaps / name, record.version_dir(settings, version), new
    )


def _build(
    con: duckdb.DuckDBPyConnection, settings: Settings, plan: _Plan, meta: dict[str, Any]
) -> tuple[dict[str, int], dict[str, Any]]:
    """Everything of the publication, complete and fsynced, before the commit."""
    entry = plan.rec["current"]
    as_of_date, run_id = date.fromisoformat(entry["as_of_date"]), entry["run_id"]
    rows = build_snapshot(con, plan.building, as_of_date, run_id, meta)
    if plan.building.with_name(plan.building.name + ".wal").exists():
        raise LivefinError(f"snapshot {plan.building} was not checkpointed cleanly")
    shutil.rmtree(plan.archive, ignore_errors=True)  # an uncommitted try with the same number
    manifest = build_exports(con, plan.archive / "exports", as_of_date, run_id, meta)
    about = {k: entry[k] for k in ("version", "snapshot", "as_of_date", "run_id")}
    record.atomic_write_text(
        plan.archive / "publication.json",
        json.dumps(about | {"exports": plan.rec["exports"]}, sort_keys=True),
    )
    record.fsync_dir(plan.archive.parent)
    fault_point("publish.archived")
    os.replace(plan.building, plan.snapshot)
    record.fsync_dir(plan.snapshot.parent)
    record.stage(settings, plan.rec)
    return rows, manifest


def _discard(settings: Settings, plan: _Plan) -> None:
    """Remove what an uncommitted publication wrote (only its own files)."""
    for p in (plan.building, plan.building.with_name(plan.building.name + ".wal"), plan.snapshot):
        p.unlink(missing_ok=True)
    record.staged_copy(settings, plan.rec["seq"]).unlink(missing_ok=True)
    iso, version = plan.rec["current"]["as_of_date"], plan.rec["current"]["version"]
    shutil.rmtree(record.staged_export(settings, iso, version), ignore_errors=True)
    shutil.rmtree(plan.archive, ignore_errors=True)


def _commit(
    settings: Settings, rec: Record, prepare: Callable[[], T], undo: Callable[[], None], what: str
) -> T:
    """``prepare()`` then the commit of ``rec``; on failure ``undo()`` removes what was written,
    unless the record is already in place (only the fsync after its rename failed)."""
    try:
        out = prepare()
        record.commit(settings, rec)
    except BaseException as exc:
        try:
            committed = record.read_record(settings)["seq"] == rec["seq"]
        except (LivefinError, OSError, TypeError):
            committed = False
        if not committed:
            undo()
        if not isinstance(exc, (OSError, duckdb.Error)):
            raise
        if not committed:  # e.g. disk full: a message, no traceback
            raise LivefinError(
                f"{what} failed (the previous publication is unchanged): {exc}"
            ) from exc
        log.warning("%s: committed, but syncing %s failed: %s", what, RECORD_FILE, exc)
    return out


def _finish(settings: Settings, rec: Record, what: str) -> list[str]:
    """After the commit: bring the visible paths in line, then prune. A failure here leaves a
    committed record that the next publish or rollback completes."""
    try:
        fault_point("publish.after_commit")
        record.apply(settings, rec)
        fault_point("publish.before_prune")
        return record.prune(settings, rec)
    except OSError as exc:
        raise LivefinError(
            f"{what} was committed but the published files are not all in place yet ({exc}); "
            "the next publish or rollback completes it"
        ) from exc


def publish(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of_date: date,
    run_id: str,
    *,
    check_gates: bool = True,
) -> dict[str, Any]:
    """Publish D: snapshot, ``CURRENT.json``, history and lender exports, committed together.

    Refuses (StageBlocked from the quality gate, or LivefinError) before touching anything
    visible when a gate for D failed or D has no limits. The caller holds the writer lock.
    """
    if not _RUN_ID.match(run_id or ""):
        raise LivefinError(f"run_id {run_id!r} is not usable in a file name (use [A-Za-z0-9._-])")
    rec = _repair(settings)  # a killed run's commit is finished first, whatever happens next
    if check_gates:
        from livefin_etl.quality import require_passed

        require_passed(con, as_of_date)
    meta = publication_meta(con, as_of_date)
    if not table_exists(con, "limits.current"):
        from livefin_etl.limits import create_views

        create_views(con)
    plan = _plan(settings, rec, as_of_date, run_id)

    def prepare() -> tuple[dict[str, int], dict[str, Any]]:
        built = _build(con, settings, plan, meta)
        fault_point("publish.before_replace")
        return built

    rows, manifest = _commit(
        settings, plan.rec, prepare, lambda: _discard(settings, plan), f"publishing {as_of_date}"
    )
    removed = _finish(settings, plan.rec, f"publishing {as_of_date}")
    log.info("published %s (%s rows of limits)", plan.snapshot.name, meta["rows"])
    return {
        "as_of_date": as_of_date.isoformat(),
        "run_id": run_id,
        "version": plan.rec["current"]["version"],
        "snapshot_path": str(plan.snapshot),
        "published_path": str(settings.published / PUBLISHED_NAME),
        "export_dir": str(record.served_export(settings, as_of_date.isoformat())),
        "tables": rows,
        "rows": meta["rows"],
        "manifest_files": manifest["files"],
        "pruned_snapshots": removed,
        "published_at": plan.rec["current"]["at"],
    }


def _rollback_target(settings: Settings, rec: Record) -> tuple[dict, dict[str, str]]:
    """The publication before the current one whose snapshot and export sets are all kept."""
    cur = rec["current"]

    def key(e: dict) -> str:
        return e.get("version") or e["snapshot"]

    pubs = [e for e in rec["history"] if e["action"] == "publish"]
    keys = [key(e) for e in pubs]
    if key(cur) not in keys:
        raise LivefinError(f"current snapshot {cur['snapshot']} is not in the publication history")
    idx = len(keys) - 1 - keys[::-1].index(key(cur))
    for e in reversed(pubs[:idx]):
        exports = record.publication_map(settings, e.get("version"))
        snapshot = record.snapshots_dir(settings) / e["snapshot"]
        if key(e) != key(cur) and exports is not None and snapshot.exists():
            return e, exports
    raise LivefinError(
        f"no earlier snapshot to roll back to (kept: {settings.keep_snapshots}; "
        f"current is {cur['snapshot']})"
    )


def rollback(settings: Settings) -> Path:
    """Make the publication before the current one current again: its snapshot and the export
    sets that were served with it (a date it did not serve is withdrawn). Repeating it steps
    further back. The caller holds the writer lock."""
    rec = _repair(settings)
    if rec is None:
        raise LivefinError(
            f"nothing has been published in {settings.published}; nothing to roll back"
        )
    target, exports = _rollback_target(settings, rec)
    seq = rec["seq"] + 1
    ids = {"version": target["version"], "seq": seq}
    entry = new_entry("rollback", target["snapshot"], target["as_of_date"], target["run_id"], **ids)
    new = {"format": record.RECORD_FORMAT, "seq": seq, "current": entry, "exports": exports}
    new["history"] = [*rec["history"], entry]

    def prepare() -> None:
        record.stage(settings, new)
        fault_point("rollback.before_commit")

    _commit(settings, new, prepare, lambda: record.clean_leftovers(settings, rec), "the rollback")
    _finish(settings, new, "the rollback")
    log.info("rolled back the publication to %s", target["snapshot"])
    return record.snapshots_dir(settings) / target["snapshot"]
