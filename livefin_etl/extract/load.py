"""Partitions -> raw: the manifest check, quarantine rows, the chunked load of ``raw.<source>``,
``meta.quarantine`` and ``meta.load_manifest`` in one transaction, and rejection records.

One (source, date) partition is replaced in one DuckDB transaction, so a kill at any point
leaves either the old partition or the new one, never a mix. Rows read always equal rows
loaded plus rows quarantined.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from livefin_etl.config import LivefinError, Settings, fault_point, pii_key
from livefin_etl.contracts import Contract, load_contract
from livefin_etl.extract.prepare import manifest_snapshot, prepared_partitions
from livefin_etl.extract.read import FileBatch
from livefin_etl.extract.rules import (
    hash_pii,
    split_duplicates,
    split_unknown_references,
    split_versions,
    version_column,
)
from livefin_etl.extract.tables import ensure_tables
from livefin_etl.privacy import scrub
from livefin_etl.warehouse import insert_frame, quote_ident, stage_memory, transaction

log = logging.getLogger(__name__)

QUARANTINE_SCHEMA = {
    "source": pl.Utf8,
    "dt": pl.Date,
    "file": pl.Utf8,
    "line": pl.Int64,
    "reason_code": pl.Utf8,
    "reason": pl.Utf8,
    "column_name": pl.Utf8,
    "merchant_id": pl.Utf8,
    "raw_values": pl.Utf8,
    "quarantined_at": pl.Datetime("us"),
}
MANIFEST_INSERT = "insert into meta.load_manifest values (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
SHAPE_INSERT = "insert into meta.load_shape values (?,?,?,?,?,?,?,?,?)"

Pending = list[tuple[date, list[FileBatch]]]
# (as_of_date, batch, rows read) per file of a chunk
PerFile = list[tuple[date, FileBatch, int]]
# a chunk's results per loaded date, and why each refused date was refused
ChunkOutcome = tuple[dict[date, dict[str, Any]], dict[date, str]]


class ExtractErrors(LivefinError):
    """Some partitions of a range were refused; the others were loaded (results attached)."""

    def __init__(self, refused: dict[date, str], results: list[dict[str, Any]]):
        refused = {d: scrub(msg) for d, msg in refused.items()}
        super().__init__(scrub("; ".join(refused.values())))
        self.refused = refused  # business date -> why its partition was refused
        self.errors = list(refused.values())
        self.results = results


class PartitionRefused(LivefinError):
    """One partition's delivery was refused (unreadable, missing, or no valid row over a
    partition that had some); the partition is left unchanged."""


# quarantine rows of a re-delivery refused because none of its rows is valid
REJECTED_REDELIVERY = "rejected_redelivery"


# --------------------------------------------------------------------------- entry points


def extract_partition(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    source: str,
    as_of_date: date,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Load ``landing/<source>/dt=<as_of_date>/*`` into ``raw.<source>`` (replacing that partition)."""
    try:
        return extract_partitions(con, settings, source, [as_of_date], force=force)[0]
    except ExtractErrors as exc:
        raise PartitionRefused(exc.errors[0]) from None


def extract_partitions(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    source: str,
    as_of_dates: list[date],
    *,
    force: bool = False,
    chunk_days: int = 31,
    chunk_bytes: int = 150_000_000,
) -> list[dict[str, Any]]:
    """Load several partitions of one source, each replaced exactly as by
    :func:`extract_partition`, committing ``chunk_days`` partitions per transaction so history
    backfills do not pay per-partition overhead; a chunk is also cut at ``chunk_bytes`` of (gunzipped)
    landing data so memory stays bounded on platform-scale days. Refused partitions are left untouched
    and reported together in :class:`ExtractErrors` after the others are committed.

    DuckDB's memory is the ``extract`` limit (config/resources.yaml) meanwhile: the chunk's
    frames live outside DuckDB."""
    with stage_memory(con, "extract"):
        return _extract_partitions(
            con, settings, source, as_of_dates, force, chunk_days, chunk_bytes
        )


def _extract_partitions(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    source: str,
    as_of_dates: list[date],
    force: bool,
    chunk_days: int,
    chunk_bytes: int,
) -> list[dict[str, Any]]:
    contract = load_contract(source)
    ensure_tables(con, contract)
    key = pii_key(settings)
    results: dict[date, dict[str, Any]] = {}
    errors: dict[date, str] = {}
    pending: Pending = []
    pending_bytes = 0
    dates = sorted(set(as_of_dates))
    manifest = None if force else manifest_snapshot(con, source, dates)
    # the next chunk is read and checked on a worker thread while this one is written
    stream = prepared_partitions(settings, contract, dates, manifest, ahead_bytes=chunk_bytes)
    with closing(stream):
        for p in stream:
            if p.refused is not None:
                if p.refused.rejection is not None:
                    _record_rejection(con, contract, p.as_of_date, *p.refused.rejection)
                errors[p.as_of_date] = f"{source} {p.as_of_date}: {p.refused}"
                continue
            if p.skipped is not None:  # unchanged since the last load
                results[p.as_of_date] = p.skipped
                continue
            pending.append((p.as_of_date, p.batches or []))
            pending_bytes += p.data_bytes
            if len(pending) >= chunk_days or pending_bytes >= chunk_bytes:
                _merge(_load_chunk(con, contract, pending, key), results, errors)
                pending, pending_bytes = [], 0
    if pending:
        _merge(_load_chunk(con, contract, pending, key), results, errors)
    ordered = [results[d] for d in sorted(results)]
    if errors:
        raise ExtractErrors(errors, ordered)
    return ordered


def _merge(chunk: ChunkOutcome, results: dict, errors: dict[date, str]) -> None:
    loaded, refused = chunk
    results.update(loaded)
    errors.update(refused)


# --------------------------------------------------------------------------- one partition


def _record_rejection(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    as_of_date: date,
    path: Path,
    sha: str,
    msg: str,
) -> None:
    """A rejected file is recorded (manifest + file-level quarantine row); raw is untouched."""
    msg = scrub(msg)
    now = datetime.now().replace(microsecond=0)
    source, name = contract.name, path.name
    manifest = [source, as_of_date, name, sha, path.stat().st_size, 0, 0, 0, None, None]
    manifest += [contract.version, "rejected", msg, now]
    with transaction(con):
        con.execute(
            "delete from meta.load_manifest where source=? and dt=? and file=? and status='rejected'",
            [source, as_of_date, name],
        )
        con.execute(MANIFEST_INSERT, manifest)
        con.execute(
            "delete from meta.quarantine where source=? and dt=? and file=? "
            "and (line=0 or reason_code=?)",
            [source, as_of_date, name, REJECTED_REDELIVERY],
        )
        con.execute(
            "insert into meta.quarantine values (?,?,?,?,?,?,?,?,?,?)",
            [source, as_of_date, name, 0, "file_error", msg, None, None, None, now],
        )


# --------------------------------------------------------------------------- one chunk


def _load_chunk(
    con: duckdb.DuckDBPyConnection, contract: Contract, pending: Pending, key: bytes
) -> ChunkOutcome:
    """Check, hash and load the chunk's partitions in one transaction; their results, and the
    re-deliveries refused because not one of their rows is valid."""
    t0 = time.perf_counter()
    loaded_at = datetime.now().replace(microsecond=0)
    good, bad, per_file = _checked_rows(con, contract, pending)
    refused = _invalid_redeliveries(con, contract, good, bad, per_file)
    if refused:
        is_refused = pl.col("_dt").is_in(list(refused))
        _record_invalid_redeliveries(
            con, contract, refused, per_file, bad.filter(is_refused), key, loaded_at
        )
        bad = bad.filter(~is_refused)
        per_file = [f for f in per_file if f[0] not in refused]
        pending = [p for p in pending if p[0] not in refused]
        if not pending:
            return {}, refused
    chunk_days = [d for d, _ in pending]
    good = hash_pii(good, contract, key, keep_source=False)
    bad = hash_pii(bad, contract, key, keep_source=True) if bad.height else bad
    out = _raw_rows(good, contract, per_file, loaded_at)
    quarantine = quarantine_rows(bad, contract, contract.name, loaded_at)
    manifest, stats = _manifest_rows(contract, per_file, bad, loaded_at)
    shapes = _shape_rows(contract.name, per_file, loaded_at)
    _commit(con, contract, chunk_days, out, quarantine, manifest, shapes)
    seconds = round((time.perf_counter() - t0) / len(chunk_days), 3)
    results = {d: _result(contract.name, d, stats.get(d, [0, 0, 0]), seconds) for d in chunk_days}
    assert out.height + quarantine.height == sum(s[1] for s in stats.values())
    return results, refused


def _invalid_redeliveries(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    good: pl.DataFrame,
    bad: pl.DataFrame,
    per_file: PerFile,
) -> dict[date, str]:
    """Dates of the chunk whose delivery has no valid row while raw already holds rows for
    them: loading would wipe a good partition, so the delivery is refused instead."""
    loaded = set(good["_dt"].unique().to_list()) if good.height else set()
    empty = sorted({d for d, _, _ in per_file} - loaded)
    if not empty:
        return {}
    held = dict(
        con.execute(
            f"select _dt, count(*) from {quote_ident(contract.table)} "
            f"where _dt in ({', '.join('?' for _ in empty)}) group by 1",
            empty,
        ).fetchall()
    )
    out = {}
    for as_of_date in empty:
        if not held.get(as_of_date):
            continue  # a first delivery (or an empty partition): loading it loses nothing
        read = sum(n for d, _, n in per_file if d == as_of_date)
        codes = bad.filter(pl.col("_dt") == as_of_date)["__reason_code"].value_counts(sort=True)
        why = ", ".join(f"{c} {n}" for c, n in codes.head(3).iter_rows()) or "no rows"
        out[as_of_date] = (
            f"re-delivery has no valid row ({read} read, all quarantined: {why}) while the "
            f"partition holds {held[as_of_date]} loaded rows; rejected, partition left unchanged"
        )
    return out


def _record_invalid_redeliveries(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    refused: dict[date, str],
    per_file: PerFile,
    bad: pl.DataFrame,
    key: bytes,
    at: datetime,
) -> None:
    """Manifest ``rejected`` rows with their counts and every row quarantined (so rows read =
    loaded + quarantined still holds per file), replacing earlier refusals of the same files;
    raw and the loaded files' records are untouched."""
    hashed = hash_pii(bad, contract, key, keep_source=True) if bad.height else bad
    quarantine = quarantine_rows(hashed, contract, contract.name, at)
    quarantine = quarantine.with_columns(
        pl.format("{}: {} (re-delivery rejected)", pl.col("reason_code"), pl.col("reason")).alias(
            "reason"
        ),
        pl.lit(REJECTED_REDELIVERY).alias("reason_code"),
    )
    files = [(d, b, n) for d, b, n in per_file if d in refused]
    with transaction(con):
        for as_of_date, b, n in files:
            con.execute(
                "delete from meta.load_manifest where source=? and dt=? and file=? "
                "and status='rejected'",
                [contract.name, as_of_date, b.name],
            )
            con.execute(
                "delete from meta.quarantine where source=? and dt=? and file=? "
                "and (line=0 or reason_code=?)",
                [contract.name, as_of_date, b.name, REJECTED_REDELIVERY],
            )
            nq = quarantine.filter((pl.col("dt") == as_of_date) & (pl.col("file") == b.name)).height
            con.execute(
                MANIFEST_INSERT,
                [contract.name, as_of_date, b.name, b.sha256, b.size, n, 0, nq, b.encoding]
                + [b.mapping, contract.version, "rejected", refused[as_of_date], at],
            )
        insert_frame(con, "meta.quarantine", _arrow(quarantine), quarantine.columns)


def _checked_rows(
    con: duckdb.DuckDBPyConnection, contract: Contract, pending: Pending
) -> tuple[pl.DataFrame, pl.DataFrame, PerFile]:
    """The chunk split into rows to load and rows to quarantine (row rules, then duplicate keys,
    then unknown references), with each file's rows read."""
    good_parts, bad_parts, per_file = [], [], []
    for as_of_date, batches in pending:
        for b in batches:  # checked when prepared (prepare.checked_batch)
            frame = b.frame
            per_file.append((as_of_date, b, frame.height))
            good_parts.append(frame.filter(pl.col("__reason_code").is_null()))
            bad_parts.append(frame.filter(pl.col("__reason_code").is_not_null()))
    good = pl.concat(good_parts, how="diagonal_relaxed")
    bad = pl.concat(bad_parts, how="diagonal_relaxed")
    split = split_versions if version_column(contract) else split_duplicates
    good, dup = split(con, contract, good, [d for d, _ in pending])
    good, unknown = split_unknown_references(con, contract, good)
    nonempty = [x for x in (bad, dup, unknown) if x.height]
    bad = pl.concat(nonempty, how="diagonal_relaxed") if nonempty else bad
    return good, bad, per_file


def _raw_rows(
    good: pl.DataFrame, contract: Contract, per_file: PerFile, loaded_at: datetime
) -> pl.DataFrame:
    """Rows as stored in ``raw.<source>``: contract columns, then lineage."""
    mapping_by_file = {(d, b.name): b.mapping for d, b, _ in per_file}
    if len(set(mapping_by_file.values())) > 1:
        mapping = (
            pl.struct("_dt", "_file")
            .map_elements(lambda r: mapping_by_file[(r["_dt"], r["_file"])], return_dtype=pl.Utf8)
            .alias("_mapping")
        )
    else:
        mapping = pl.lit(next(iter(mapping_by_file.values()))).alias("_mapping")
    return good.select(
        [pl.col(c.name).alias(c.stored_name) for c in contract.stored_columns]
        + [
            pl.col("_dt"),
            pl.col("_file"),
            pl.col("_line"),
            pl.lit(contract.version).alias("_contract_version"),
            mapping,
            pl.lit(loaded_at).cast(pl.Datetime("us")).alias("_loaded_at"),
        ]
    )


def quarantine_rows(
    bad: pl.DataFrame, contract: Contract, source: str, at: datetime
) -> pl.DataFrame:
    """Rows for ``meta.quarantine``: the reason and the offending row as JSON (PII hashed)."""
    if not bad.height:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    src_cols = [f"__src_{c}" for c in contract.columns if f"__src_{c}" in bad.columns]
    raw_json = bad.select(
        pl.struct(
            [pl.col(s).alias(s.removeprefix("__src_")) for s in src_cols]
            + ([pl.col("_malformed")] if "_malformed" in bad.columns else [])
        ).struct.json_encode()
    ).to_series()
    merchant = (
        bad["__src_merchant_id"]
        if "__src_merchant_id" in bad.columns
        else pl.Series([None] * bad.height)
    )
    return pl.DataFrame(
        {
            "source": [source] * bad.height,
            "dt": bad["_dt"],
            "file": bad["_file"],
            "line": bad["_line"].cast(pl.Int64),
            "reason_code": bad["__reason_code"],
            "reason": bad["__reason"],
            "column_name": bad["__column"],
            "merchant_id": merchant.cast(pl.Utf8),
            "raw_values": raw_json,
            "quarantined_at": [at] * bad.height,
        },
        schema_overrides={"dt": pl.Date, "quarantined_at": pl.Datetime("us")},
    )


def _manifest_rows(
    contract: Contract, per_file: PerFile, bad: pl.DataFrame, loaded_at: datetime
) -> tuple[list[tuple], dict[date, list[int]]]:
    """One ``meta.load_manifest`` row per file, and [files, read, quarantined] per partition."""
    bad_counts = (
        {(d, f): n for d, f, n in bad.group_by("_dt", "_file").len().iter_rows()}
        if bad.height
        else {}
    )
    manifest = []
    stats: dict[date, list[int]] = {}
    for as_of_date, b, n in per_file:
        nq = int(bad_counts.get((as_of_date, b.name), 0))
        s = stats.setdefault(as_of_date, [0, 0, 0])
        s[0], s[1], s[2] = s[0] + 1, s[1] + n, s[2] + nq
        counts = (b.sha256, b.size, n, n - nq, nq, b.encoding, b.mapping)
        manifest.append(
            (
                contract.name,
                as_of_date,
                b.name,
                *counts,
                contract.version,
                "loaded",
                None,
                loaded_at,
            )
        )
    return manifest, stats


def _shape_rows(source: str, per_file: PerFile, loaded_at: datetime) -> list[tuple]:
    """``meta.load_shape``: line rows and buyer identity per file, where the mapping has them."""
    return [
        (source, d, b.name, b.mapping, b.line_rows, n, b.identity, b.identity_rows, loaded_at)
        for d, b, n in per_file
        if b.line_rows is not None or b.identity is not None
    ]


def _commit(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    chunk_days: list[date],
    out: pl.DataFrame,
    quarantine: pl.DataFrame,
    manifest: list[tuple],
    shapes: list[tuple],
) -> None:
    """Replace the chunk's partitions in raw, quarantine, manifest and shape rows: all or
    nothing."""
    days_in = ", ".join("?" for _ in chunk_days)
    source = contract.name
    fault_point("extract.before_commit")
    with transaction(con):
        con.execute(
            f"delete from {quote_ident(contract.table)} where _dt in ({days_in})", chunk_days
        )
        insert_frame(con, contract.table, _arrow(out), out.columns)
        con.execute(
            f"delete from meta.quarantine where source = ? and dt in ({days_in})",
            [source, *chunk_days],
        )
        insert_frame(con, "meta.quarantine", _arrow(quarantine), quarantine.columns)
        con.execute(
            f"delete from meta.load_manifest where source = ? and dt in ({days_in})",
            [source, *chunk_days],
        )
        con.executemany(MANIFEST_INSERT, manifest)
        con.execute(
            f"delete from meta.load_shape where source = ? and dt in ({days_in})",
            [source, *chunk_days],
        )
        if shapes:
            con.executemany(SHAPE_INSERT, shapes)


def _arrow(frame: pl.DataFrame) -> Any:
    """The frame as Arrow without a copy: string views, which DuckDB reads directly (the
    default large strings copy every text value)."""
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def _result(source: str, as_of_date: date, stats: list[int], seconds: float) -> dict[str, Any]:
    files, read, quarantined = stats
    result = {
        "source": source,
        "dt": as_of_date.isoformat(),
        "skipped": False,
        "files": files,
        "rows_read": read,
        "rows_loaded": read - quarantined,
        "rows_quarantined": quarantined,
        "seconds": seconds,
    }
    log.info("extract %s", json.dumps(result))
    return result
