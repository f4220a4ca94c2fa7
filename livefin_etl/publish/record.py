"""The publication record: one file says what is published; the visible paths follow it.

``published/RECORD.json`` is the commit. It is replaced with one ``os.replace`` and holds the
current publication, the whole history, and which archived export set is served for every date.
What analysts and lenders open (``published/livefin.duckdb``, ``CURRENT.json``,
``history.jsonl``, ``exports/limits/as_of_date=D/``) is a view of it: :func:`apply` brings those
paths in line right after a commit, and :func:`repair` does it again in the next process that
takes the writer lock, so a kill at any step converges on the committed record (roll forward).
Every step of :func:`apply` is idempotent.

Each publication's export set and the export map it was published with are archived under
``<home>/publications/<version>/`` (nobody reads it but rollback), so a rollback can serve
exactly the export sets that were served with the publication it returns to.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from livefin_etl.config import LivefinError, Settings, fault_point
from livefin_etl.publish.build import fsync_file

PUBLISHED_NAME = "livefin.duckdb"
CURRENT_FILE = "CURRENT.json"
HISTORY_FILE = "history.jsonl"
RECORD_FILE = "RECORD.json"
ARCHIVE_DIR = "publications"
RECORD_FORMAT = 1
_VERSION = re.compile(r"^v(\d+)$")

Record = dict[str, Any]

# --------------------------------------------------------------------------- paths


def snapshots_dir(settings: Settings) -> Path:
    return settings.published / "snapshots"


def limits_dir(settings: Settings) -> Path:
    return settings.exports / "limits"


def version_dir(settings: Settings, version: str) -> Path:
    """Archive of one publication: ``exports/`` (its export set) and ``publication.json``."""
    return settings.home / ARCHIVE_DIR / version


def served_export(settings: Settings, iso: str) -> Path:
    return limits_dir(settings) / f"as_of_date={iso}"


def staged_copy(settings: Settings, seq: int) -> Path:
    return settings.published / f".{PUBLISHED_NAME}.next-{seq}"


def staged_export(settings: Settings, iso: str, version: str) -> Path:
    return limits_dir(settings) / f".next-as_of_date={iso}-{version}"


# --------------------------------------------------------------------------- file system


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put_atomic(dst: Path, fill: Callable[[Path], object]) -> None:
    """``fill`` a temp name beside ``dst``, fsync it, then os.replace onto ``dst``."""
    tmp = dst.with_name(f".{dst.name.lstrip('.')}.tmp-{os.getpid()}")
    try:
        fill(tmp)
        fsync_file(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(dst.parent)


def atomic_write_text(path: Path, text: str) -> None:
    _put_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` onto ``dst`` through a fsynced temp name."""
    _put_atomic(dst, lambda tmp: shutil.copyfile(src, tmp))


def copy_tree_atomic(src: Path, dst: Path) -> None:
    """``dst`` appears complete (every file fsynced) or not at all."""
    tmp = dst.with_name(f".tmp-{dst.name.lstrip('.')}-{os.getpid()}")
    try:
        shutil.copytree(src, tmp)
        for p in tmp.iterdir():
            fsync_file(p)
        fsync_dir(tmp)
        os.rename(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(dst.parent)


def _exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def _swap_into_place(tmp_dir: Path, target: Path) -> None:
    """Put ``tmp_dir`` at ``target``; an existing ``target`` is replaced in one atomic step."""
    if not target.exists():
        os.rename(tmp_dir, target)
    elif _exchange_dirs(tmp_dir, target):
        shutil.rmtree(tmp_dir)  # now holds the previous export
    else:  # no renameat2: two renames, the gap is one syscall wide
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.rename(target, old)
        os.rename(tmp_dir, target)
        shutil.rmtree(old)
    fsync_dir(target.parent)


def _remove_dir(target: Path) -> None:
    """The folder disappears in one rename; its files are deleted afterwards."""
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    os.rename(target, old)
    fsync_dir(target.parent)
    shutil.rmtree(old)


def _same_export(served: Path, archived: Path) -> bool:
    """The manifest lists every file's sha256, and a folder is only ever swapped in whole."""
    a, b = served / "manifest.json", archived / "manifest.json"
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


# --------------------------------------------------------------------------- the record


def new_entry(action: str, snapshot: str, iso: str | None, run_id: str | None, **ids: Any) -> dict:
    """One history line; ``ids`` are ``version`` (the publication) and ``seq`` (the commit)."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    entry = {"action": action, "snapshot": snapshot, "as_of_date": iso, "run_id": run_id, "at": at}
    return entry | ids


def read_record(settings: Settings) -> Record | None:
    path = settings.published / RECORD_FILE
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LivefinError(f"{path} cannot be read ({type(exc).__name__}); restore it") from exc
    if rec.get("format") != RECORD_FORMAT:
        raise LivefinError(f"{path} has format {rec.get('format')!r}, expected {RECORD_FORMAT}")
    return rec


def commit(settings: Settings, rec: Record) -> None:
    """The single atomic step that makes ``rec`` the publication."""
    atomic_write_text(settings.published / RECORD_FILE, json.dumps(rec, sort_keys=True, indent=1))


def publication_map(settings: Settings, version: str | None) -> dict[str, str] | None:
    """The export map ``version`` was published with, when its archive is complete; else None."""
    if not version:
        return None
    path = version_dir(settings, version) / "publication.json"
    if not path.exists():
        return None
    exports = json.loads(path.read_text(encoding="utf-8"))["exports"]
    if all(
        (version_dir(settings, v) / "exports" / "manifest.json").exists() for v in exports.values()
    ):
        return exports
    return None


def _history_text(rec: Record) -> str:
    return "".join(json.dumps(e, sort_keys=True) + "\n" for e in rec["history"])


# --------------------------------------------------------------------------- bringing in line


def stage(settings: Settings, rec: Record) -> None:
    """Before a commit: copy what :func:`apply` will rename into place next to its target, so
    the steps after the commit are renames (a full disk fails here, before anything changed)."""
    snapshot = snapshots_dir(settings) / rec["current"]["snapshot"]
    copy_file_atomic(snapshot, staged_copy(settings, rec["seq"]))
    for iso, version in sorted(rec["exports"].items()):
        archived = version_dir(settings, version) / "exports"
        target = staged_export(settings, iso, version)
        if not _same_export(served_export(settings, iso), archived) and not target.exists():
            copy_tree_atomic(archived, target)


def applied(settings: Settings, rec: Record) -> bool:
    """CURRENT.json is written last by :func:`apply`: its commit number says it finished."""
    path = settings.published / CURRENT_FILE
    if not path.exists() or not (settings.published / PUBLISHED_NAME).exists():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("seq") == rec["seq"]
    except json.JSONDecodeError:
        return False


def apply(settings: Settings, rec: Record) -> None:
    """Make every visible path show the publication ``rec`` records (idempotent)."""
    pub = settings.published / PUBLISHED_NAME
    staged = staged_copy(settings, rec["seq"])
    if staged.exists():
        os.replace(staged, pub)
        fsync_dir(pub.parent)
    else:  # killed after the staged copy was used: copy again, the same bytes
        copy_file_atomic(snapshots_dir(settings) / rec["current"]["snapshot"], pub)
    fault_point("publish.after_snapshot")
    _apply_exports(settings, rec)
    fault_point("publish.after_exports")
    history = settings.published / HISTORY_FILE
    text = _history_text(rec)
    if not history.exists() or history.read_text(encoding="utf-8") != text:
        atomic_write_text(history, text)
    fault_point("publish.after_history")
    current = json.dumps(rec["current"], sort_keys=True)
    atomic_write_text(settings.published / CURRENT_FILE, current)


def _apply_exports(settings: Settings, rec: Record) -> None:
    folder = limits_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    for iso, version in sorted(rec["exports"].items()):
        served = served_export(settings, iso)
        archived = version_dir(settings, version) / "exports"
        staged = staged_export(settings, iso, version)
        if _same_export(served, archived):
            shutil.rmtree(staged, ignore_errors=True)
            continue
        if not staged.exists():
            copy_tree_atomic(archived, staged)
        _swap_into_place(staged, served)
    for served in folder.glob("as_of_date=*"):
        if served.is_dir() and served.name.split("=", 1)[1] not in rec["exports"]:
            _remove_dir(served)  # a date the recorded publication never served (rollback)


def clean_leftovers(settings: Settings, rec: Record | None) -> None:
    """Temp files and uncommitted versions of killed runs (the caller holds the writer lock)."""
    for p in snapshots_dir(settings).glob(".building-*"):
        p.unlink(missing_ok=True)
    for p in settings.published.glob(".*"):
        if p.is_file():
            p.unlink(missing_ok=True)
    if limits_dir(settings).exists():
        for p in limits_dir(settings).glob(".*"):
            shutil.rmtree(p, ignore_errors=True)
    archive = settings.home / ARCHIVE_DIR
    if archive.exists():
        seq = rec["seq"] if rec else 0
        for p in archive.iterdir():
            m = _VERSION.match(p.name)
            if p.name.startswith(".") or (m and int(m.group(1)) > seq):
                shutil.rmtree(p, ignore_errors=True)


def prune(settings: Settings, rec: Record) -> list[str]:
    """Keep the last ``keep_snapshots`` publications (and the current one): their snapshots,
    their archives, and every export set one of them served. Never the recorded publication."""
    keep_n = max(1, int(settings.keep_snapshots))

    def key(e: dict) -> str:
        return e.get("version") or e["snapshot"]

    kept: list[dict] = []
    for e in reversed([e for e in rec["history"] if e["action"] == "publish"]):
        if key(e) not in {key(k) for k in kept}:
            kept.append(e)
        if len(kept) >= keep_n:
            break
    kept.append(rec["current"])
    snapshots = {e["snapshot"] for e in kept}
    versions = {e["version"] for e in kept if e.get("version")} | set(rec["exports"].values())
    for e in kept:
        versions |= set((publication_map(settings, e.get("version")) or {}).values())
    removed = []
    for p in snapshots_dir(settings).glob("livefin-*.duckdb"):
        if p.name not in snapshots:
            p.unlink()
            removed.append(p.name)
    archive = settings.home / ARCHIVE_DIR
    if archive.exists():
        for p in archive.iterdir():
            if p.name not in versions:
                shutil.rmtree(p)
    return sorted(removed)


# --------------------------------------------------------------------------- recovery


def _legacy_history(settings: Settings) -> list[dict[str, Any]]:
    path = settings.published / HISTORY_FILE
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a torn last line after a crash
                out.append(json.loads(line))
    return out


def _migrate(settings: Settings) -> Record | None:
    """A state published before the record existed: record what is visible now. Publications
    before the current one have no archived export sets: rollback stops at the current one."""
    path = settings.published / CURRENT_FILE
    if not path.exists():
        return None
    exports = {}
    for served in sorted(limits_dir(settings).glob("as_of_date=*")):
        if (served / "manifest.json").is_file():
            iso = served.name.split("=", 1)[1]
            target = version_dir(settings, f"legacy-{iso}") / "exports"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                copy_tree_atomic(served, target)
            exports[iso] = f"legacy-{iso}"
    # The current publication becomes version "legacy", served with what is visible now.
    current = json.loads(path.read_text(encoding="utf-8")) | {"seq": 0, "version": "legacy"}
    history = _legacy_history(settings)
    ours = [e for e in history if e.get("action") == "publish"]
    ours = [e for e in ours if e.get("snapshot") == current["snapshot"]][-1:]
    if not ours:  # history.jsonl lost or torn: record the current one as its publication
        ours = [current | {"action": "publish"}]
        history.append(ours[0])
    ours[0]["version"] = "legacy"
    about = {k: current.get(k) for k in ("version", "snapshot", "as_of_date", "run_id")}
    version_dir(settings, "legacy").mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        version_dir(settings, "legacy") / "publication.json",
        json.dumps(about | {"exports": exports}, sort_keys=True),
    )
    rec = {"format": RECORD_FORMAT, "seq": 0, "current": current, "history": history}
    rec["exports"] = exports
    commit(settings, rec)
    return rec


def finish(settings: Settings) -> None:
    """Bring the visible paths in line with a committed record a killed run left half applied
    (cheap when there is nothing to do: one small file read)."""
    rec = read_record(settings)
    if rec is not None and not applied(settings, rec):
        apply(settings, rec)


def repair(settings: Settings) -> Record | None:
    """Roll the visible paths forward to the committed record, clear a killed run's debris and
    prune. Called by every publish and rollback under the writer lock, before anything else."""
    for folder in (settings.published, snapshots_dir(settings), limits_dir(settings)):
        folder.mkdir(parents=True, exist_ok=True)
    rec = read_record(settings) or _migrate(settings)
    if rec is not None and not applied(settings, rec):
        apply(settings, rec)
    clean_leftovers(settings, rec)
    if rec is not None:  # a run killed before its prune; also drops uncommitted snapshots
        prune(settings, rec)
    return rec
