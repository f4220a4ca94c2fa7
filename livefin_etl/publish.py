"""Publication: an analyst snapshot swapped in atomically, lender exports, rollback.

Nothing a reader can see changes until every artefact of the run is complete on disk:
the snapshot is built under a temporary name, the export folder in a temporary folder, and only
then are they put in place with ``os.replace`` / an atomic directory exchange. A run killed at
any point leaves the previously published snapshot and exports as they were.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from livefin_etl.config import LivefinError, Settings, fault_point
from livefin_etl.warehouse import quote_ident, quote_literal, run_ddl, table_exists

log = logging.getLogger(__name__)

PUBLISHED_NAME = "livefin.duckdb"
CURRENT_FILE = "CURRENT.json"
HISTORY_FILE = "history.jsonl"
SNAP_ALIAS = "livefin_snap"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# Analyst-facing tables. "dates": rows of the dates that limits.current shows (the snapshot
# stays small); "all": full history.
SNAPSHOT_TABLES: tuple[tuple[str, str], ...] = (
    ("limits.financing_limits", "all"),
    ("features.merchant_features", "dates"),
    ("valuation.data_asset_values", "dates"),
    ("credit.merchant_scores", "dates"),
    ("dq.merchant_quality", "dates"),
    ("credit.model_registry", "all"),
    ("dq.partition_status", "all"),
    ("stress.stress_results", "dates"),
)

EXPORT_COLUMNS = (
    "merchant_id",
    "as_of_date",
    "limit_amount",
    "currency",
    "decision",
    "tier",
    "pd",
    "score",
    "grade",
    "expected_loss",
    "repayment_capacity",
    "collateral_component",
    "data_asset_value",
    "outstanding_exposure",
    "guardrail_scale",
    "reason_codes",
    "reason_texts",
    "model_version",
    "policy_version",
    "valid_from",
    "valid_until",
    "run_id",
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to a temp name beside ``dst``, fsync, then os.replace onto ``dst``."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        _fsync_file(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(dst.parent)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    _fsync_dir(target.parent)


# --------------------------------------------------------------------------- history


def _snapshots_dir(settings: Settings) -> Path:
    return settings.published / "snapshots"


def _read_history(settings: Settings) -> list[dict[str, Any]]:
    path = settings.published / HISTORY_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn last line after a crash
            out.append(json.loads(line))
    return out


def _append_history(settings: Settings, entry: dict[str, Any]) -> None:
    path = settings.published / HISTORY_FILE
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def current(settings: Settings) -> dict[str, Any] | None:
    """What ``published/livefin.duckdb`` is a copy of (snapshot name, date, run), or None."""
    path = settings.published / CURRENT_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _set_current(settings: Settings, snapshot: Path, action: str) -> dict[str, Any]:
    m = re.match(r"^livefin-(\d{4}-\d{2}-\d{2})-(.+)\.duckdb$", snapshot.name)
    entry = {
        "action": action,
        "snapshot": snapshot.name,
        "as_of_date": m.group(1) if m else None,
        "run_id": m.group(2) if m else None,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _copy_atomic(snapshot, settings.published / PUBLISHED_NAME)
    _atomic_write_text(settings.published / CURRENT_FILE, json.dumps(entry, sort_keys=True))
    _append_history(settings, entry)
    return entry


def _prune(settings: Settings) -> list[str]:
    """Keep the snapshots of the last ``keep_snapshots`` publications (and the current one)."""
    keep_n = max(1, int(settings.keep_snapshots))
    published = [e["snapshot"] for e in _read_history(settings) if e.get("action") == "publish"]
    keep: list[str] = []
    for name in reversed(published):
        if name not in keep:
            keep.append(name)
        if len(keep) >= keep_n:
            break
    cur = current(settings)
    if cur:
        keep.append(cur["snapshot"])
    removed = []
    for p in _snapshots_dir(settings).glob("livefin-*.duckdb"):
        if p.name not in keep:
            p.unlink()
            removed.append(p.name)
    return sorted(removed)


def _clean_leftovers(settings: Settings) -> None:
    """Temp files of a run that was killed (the caller holds the writer lock, so none is live)."""
    for p in _snapshots_dir(settings).glob(".building-*"):
        p.unlink(missing_ok=True)
    for p in settings.published.glob(".*.tmp-*"):
        p.unlink(missing_ok=True)
    limits_dir = settings.exports / "limits"
    if limits_dir.exists():
        for p in limits_dir.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in limits_dir.glob(".old-*"):
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- snapshot


def _comments(con: duckdb.DuckDBPyConnection, qualified: str) -> tuple[str | None, dict[str, str]]:
    schema, name = qualified.split(".")
    row = con.execute(
        """select comment from duckdb_tables()
           where database_name = current_database() and schema_name = ? and table_name = ?""",
        [schema, name],
    ).fetchone()
    cols = con.execute(
        """select column_name, comment from duckdb_columns()
           where database_name = current_database() and schema_name = ? and table_name = ?
             and comment is not null""",
        [schema, name],
    ).fetchall()
    return (row[0] if row else None), dict(cols)


def _copy_tables(
    con: duckdb.DuckDBPyConnection, path: Path, as_of_date: date
) -> tuple[dict[str, int], dict[str, tuple[str | None, dict[str, str]]]]:
    """Copy SNAPSHOT_TABLES into the database at ``path``; row counts and comments per table."""
    dates = [
        r[0] for r in con.execute("select distinct as_of_date from limits.current").fetchall()
    ] or [as_of_date]
    date_list = ", ".join(f"DATE {quote_literal(d.isoformat())}" for d in dates)
    rows: dict[str, int] = {}
    comments: dict[str, tuple[str | None, dict[str, str]]] = {}
    con.execute(f"DETACH DATABASE IF EXISTS {SNAP_ALIAS}")
    con.execute(f"ATTACH {quote_literal(str(path))} AS {SNAP_ALIAS}")
    try:
        for table, scope in SNAPSHOT_TABLES:
            if not table_exists(con, table):
                continue
            schema = table.split(".")[0]
            where = ""
            if scope == "dates":
                where = f" where as_of_date in ({date_list})"
            con.execute(f"create schema if not exists {SNAP_ALIAS}.{schema}")
            con.execute(f"create table {SNAP_ALIAS}.{table} as select * from {table}{where}")
            rows[table] = con.execute(f"select count(*) from {SNAP_ALIAS}.{table}").fetchone()[0]
            comments[table] = _comments(con, table)
            fault_point("publish.snapshot_building")
    finally:
        con.execute(f"DETACH DATABASE IF EXISTS {SNAP_ALIAS}")
    return rows, comments


def _describe_snapshot(
    snap: duckdb.DuckDBPyConnection,
    comments: dict[str, tuple[str | None, dict[str, str]]],
    row: list[Any],
) -> None:
    """Comments, views and the meta.publication row (sql/ddl/publish.sql) of a snapshot."""
    from livefin_etl.limits import create_views

    for table, (about, cols) in comments.items():
        if about:
            snap.execute(f"comment on table {quote_ident(table)} is {quote_literal(about)}")
        for c, text in cols.items():
            snap.execute(
                f"comment on column {quote_ident(table)}.{quote_ident(c)} is {quote_literal(text)}"
            )
    create_views(snap)
    run_ddl(snap, "publish")
    snap.execute("insert into meta.publication values (?, ?, ?, ?, ?, ?)", row)


def _build_snapshot(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    as_of_date: date,
    run_id: str,
    meta: dict[str, Any],
) -> dict[str, int]:
    rows, comments = _copy_tables(con, path, as_of_date)
    # Views and comments are created with a direct connection so that they bind to the
    # snapshot's own tables, not to the working warehouse.
    snap = duckdb.connect(str(path))
    try:
        publication = [
            as_of_date,
            run_id,
            datetime.now(UTC).replace(tzinfo=None),
            meta["policy_versions"],
            meta["model_versions"],
            json.dumps(rows),
        ]
        _describe_snapshot(snap, comments, publication)
        snap.execute("CHECKPOINT")
    finally:
        snap.close()
    return rows


# --------------------------------------------------------------------------- exports


def _data_dictionary_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    rows = con.execute(
        """select column_name, data_type, coalesce(comment, '') from duckdb_columns()
           where database_name = current_database() and schema_name = 'limits'
             and table_name = 'financing_limits'"""
    ).fetchall()
    by_name = {r[0]: r for r in rows}
    return [by_name[c] for c in EXPORT_COLUMNS if c in by_name]


def _write_export_files(con: duckdb.DuckDBPyConnection, tmp_dir: Path, as_of_date: date) -> None:
    """limits.parquet, limits.csv (lists joined with |) and data_dictionary.csv of one date."""
    import csv

    cols = ", ".join(EXPORT_COLUMNS)
    base = (
        f"select {cols} from limits.financing_limits where as_of_date = $as_of_date "
        "order by merchant_id"
    )
    params = {"as_of_date": as_of_date}
    parquet = quote_literal(str(tmp_dir / "limits.parquet"))
    con.execute(f"copy ({base}) to {parquet} (format parquet)", params)
    csv_cols = ", ".join(
        f"array_to_string({c}, '|') as {c}" if c in ("reason_codes", "reason_texts") else c
        for c in EXPORT_COLUMNS
    )
    con.execute(
        f"""copy (select {csv_cols} from ({base}))
            to {quote_literal(str(tmp_dir / "limits.csv"))} (header, delimiter ',')""",
        params,
    )
    with open(tmp_dir / "data_dictionary.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["column", "type", "description"])
        for row in _data_dictionary_rows(con):
            w.writerow(row)


def _build_exports(
    con: duckdb.DuckDBPyConnection, tmp_dir: Path, as_of_date: date, run_id: str, meta: dict
) -> dict[str, Any]:
    tmp_dir.mkdir(parents=True)
    _write_export_files(con, tmp_dir, as_of_date)
    n_rows = meta["rows"]
    files = {}
    for name in ("limits.parquet", "limits.csv", "data_dictionary.csv"):
        p = tmp_dir / name
        files[name] = {
            "sha256": _sha256(p),
            "bytes": p.stat().st_size,
            "rows": n_rows if name != "data_dictionary.csv" else len(_data_dictionary_rows(con)),
        }
    manifest = {
        "as_of_date": as_of_date.isoformat(),
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": n_rows,
        "decisions": meta["decisions"],
        "total_limit": meta["total_limit"],
        "currency": meta["currency"],
        "policy_versions": meta["policy_versions"],
        "model_versions": meta["model_versions"],
        "files": files,
    }
    with open(tmp_dir / "manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    for name in files:
        _fsync_file(tmp_dir / name)
    return manifest


# --------------------------------------------------------------------------- entry points


def _publication_meta(con: duckdb.DuckDBPyConnection, as_of_date: date) -> dict[str, Any]:
    """Row count, total, versions, currency and decisions of the limits of ``as_of_date``."""
    if not table_exists(con, "limits.financing_limits"):
        raise LivefinError("limits.financing_limits does not exist; run the limits stage first")
    stats = con.execute(
        """select count(*), sum(limit_amount), list(distinct policy_version order by policy_version),
                  list(distinct model_version order by model_version)
                    filter (where model_version is not null),
                  any_value(currency)
           from limits.financing_limits where as_of_date = ?""",
        [as_of_date],
    ).fetchone()
    if not stats[0]:
        raise LivefinError(f"no limits for {as_of_date}; run the limits stage for that date first")
    decisions = dict(
        con.execute(
            """select decision, count(*) from limits.financing_limits where as_of_date = ?
               group by decision order by decision""",
            [as_of_date],
        ).fetchall()
    )
    return {
        "rows": int(stats[0]),
        "total_limit": float(stats[1] or 0.0),
        "policy_versions": list(stats[2] or []),
        "model_versions": list(stats[3] or []),
        "currency": stats[4],
        "decisions": decisions,
    }


@dataclass(frozen=True)
class _Paths:
    """Where one publication is built (temporary names) and where it lands."""

    snaps: Path
    building: Path
    snapshot: Path
    export_dir: Path
    tmp_export: Path


def _prepare_paths(settings: Settings, as_of_date: date, run_id: str) -> _Paths:
    settings.published.mkdir(parents=True, exist_ok=True)
    snaps = _snapshots_dir(settings)
    snaps.mkdir(parents=True, exist_ok=True)
    limits_dir = settings.exports / "limits"
    limits_dir.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(settings)
    iso = as_of_date.isoformat()
    name = f"livefin-{iso}-{run_id}.duckdb"
    return _Paths(
        snaps=snaps,
        building=snaps / f".building-{name}",
        snapshot=snaps / name,
        export_dir=limits_dir / f"as_of_date={iso}",
        tmp_export=limits_dir / f".tmp-as_of_date={iso}-{run_id}-{os.getpid()}",
    )


def _build_and_swap(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    paths: _Paths,
    key: tuple[date, str],
    meta: dict[str, Any],
) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Build snapshot and exports under temporary names, then swap both in; on any failure the
    temporary files go and the previous publication stays. Returns (rows, manifest, entry)."""
    as_of_date, run_id = key
    building = paths.building
    try:
        rows = _build_snapshot(con, building, as_of_date, run_id, meta)
        for leftover in (building.with_name(building.name + ".wal"),):
            if leftover.exists():
                raise LivefinError(f"snapshot {building} was not checkpointed cleanly")
        manifest = _build_exports(con, paths.tmp_export, as_of_date, run_id, meta)
        os.replace(building, paths.snapshot)
        _fsync_dir(paths.snaps)
        fault_point("publish.before_replace")
        # The two swaps below are the commit; each is atomic on its own and they run
        # back to back, after everything that can fail slowly has already succeeded.
        entry = _set_current(settings, paths.snapshot, "publish")
        _swap_into_place(paths.tmp_export, paths.export_dir)
    except BaseException as exc:
        building.unlink(missing_ok=True)
        building.with_name(building.name + ".wal").unlink(missing_ok=True)
        shutil.rmtree(paths.tmp_export, ignore_errors=True)
        if isinstance(exc, (OSError, duckdb.Error)):  # e.g. disk full: a message, no traceback
            seen = "the previous snapshot and exports are unchanged"
            if current(settings) and current(settings).get("snapshot") == paths.snapshot.name:
                seen = "the snapshot was switched but the exports were not"
            raise LivefinError(f"publishing {as_of_date} failed ({seen}): {exc}") from exc
        raise
    return rows, manifest, entry


def publish(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of_date: date,
    run_id: str,
    *,
    check_gates: bool = True,
) -> dict[str, Any]:
    """Publish D: snapshot + atomic swap of ``published/livefin.duckdb`` + lender exports.

    Refuses (StageBlocked from the quality gate, or LivefinError) before touching anything
    visible when a gate for D failed or D has no limits.
    """
    if not _RUN_ID.match(run_id or ""):
        raise LivefinError(f"run_id {run_id!r} is not usable in a file name (use [A-Za-z0-9._-])")
    if check_gates:
        from livefin_etl.quality import require_passed

        require_passed(con, as_of_date)
    meta = _publication_meta(con, as_of_date)
    if not table_exists(con, "limits.current"):
        from livefin_etl.limits import create_views

        create_views(con)
    paths = _prepare_paths(settings, as_of_date, run_id)
    rows, manifest, entry = _build_and_swap(con, settings, paths, (as_of_date, run_id), meta)
    removed = _prune(settings)
    log.info("published %s (%s rows of limits)", paths.snapshot.name, meta["rows"])
    return {
        "as_of_date": as_of_date.isoformat(),
        "run_id": run_id,
        "snapshot_path": str(paths.snapshot),
        "published_path": str(settings.published / PUBLISHED_NAME),
        "export_dir": str(paths.export_dir),
        "tables": rows,
        "rows": meta["rows"],
        "manifest_files": manifest["files"],
        "pruned_snapshots": removed,
        "published_at": entry["at"],
    }


def rollback(settings: Settings) -> Path:
    """Point ``published/livefin.duckdb`` back to the snapshot published before the current one.

    Repeating it steps further back. Exports are per date and are not touched.
    """
    cur = current(settings)
    if cur is None:
        raise LivefinError(
            f"nothing has been published in {settings.published}; nothing to roll back"
        )
    names = [e["snapshot"] for e in _read_history(settings) if e.get("action") == "publish"]
    if cur["snapshot"] not in names:
        raise LivefinError(f"current snapshot {cur['snapshot']} is not in the publication history")
    idx = len(names) - 1 - names[::-1].index(cur["snapshot"])
    snaps = _snapshots_dir(settings)
    for name in reversed(names[:idx]):
        if name != cur["snapshot"] and (snaps / name).exists():
            _set_current(settings, snaps / name, "rollback")
            log.info("rolled back published snapshot to %s", name)
            return snaps / name
    raise LivefinError(
        f"no earlier snapshot to roll back to (kept: {settings.keep_snapshots}; "
        f"current is {cur['snapshot']})"
    )
