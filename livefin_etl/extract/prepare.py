"""One partition made ready to load, and a backfill's partitions read ahead on a second thread.

Preparing a partition touches no database: its files are read, checksummed, compared with a
snapshot of the manifest taken when the range starts (only this run writes the manifest rows of
its dates, each after that date is prepared), parsed under the contract and checked row by row.
So a backfill reads and checks the next partitions on a worker thread while the calling thread
splits versions, hashes and writes the chunk before them (DuckDB and polars release the GIL);
every database write stays on the calling thread, in date order.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from livefin_etl.config import Settings
from livefin_etl.contracts import Contract, load_mappings
from livefin_etl.extract.read import (
    FORMAT_EXT,
    FileBatch,
    FileRejected,
    landing_files,
    partition_dir,
    read_file,
)
from livefin_etl.extract.rules import first_failure, mark_malformed, reason_exprs, typed
from livefin_etl.extract.shape import mark_problems
from livefin_etl.privacy import scrub

log = logging.getLogger(__name__)

DEFAULT_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

# (file, sha256, status) rows of meta.load_manifest per date, as the range starts
Manifest = dict[date, list[tuple[str, str, str]]]


class Refused(Exception):
    """A partition that cannot be loaded this run; it is left unchanged. ``rejection`` is the
    file to record as rejected (path, sha256, message), when a file was unreadable."""

    def __init__(self, message: str, rejection: tuple[Path, str, str] | None = None):
        super().__init__(scrub(message))
        self.rejection = rejection


@dataclass
class Prepared:
    """A partition's outcome: its checked files, its ``skipped`` result, or its refusal."""

    as_of_date: date
    batches: list[FileBatch] | None = None  # frames typed and checked (``__reason_code``)
    skipped: dict[str, Any] | None = None
    refused: Refused | None = None

    @property
    def data_bytes(self) -> int:
        return sum(b.data_bytes for b in self.batches or [])


def manifest_snapshot(con: duckdb.DuckDBPyConnection, source: str, dates: list[date]) -> Manifest:
    """The manifest rows of the range's dates, read once for the whole range."""
    out: Manifest = {}
    if not dates:
        return out
    rows = con.execute(
        "select dt, file, sha256, status from meta.load_manifest "
        "where source = ? and dt between ? and ?",
        [source, min(dates), max(dates)],
    ).fetchall()
    for dt, file, sha, status in rows:
        out.setdefault(dt, []).append((file, sha, status))
    return out


def manifest_unchanged(rows: list[tuple[str, str, str]], files: dict[str, str]) -> bool:
    """The delivered files are the ones loaded and no refusal of this partition is on record.

    After a refused re-delivery, the good files sent again must be loaded again: the reload
    clears the refusal's records, which would otherwise keep the date's gate closed."""
    loaded = {f: sha for f, sha, status in rows if status == "loaded"}
    refused = any(status == "rejected" for _f, _sha, status in rows)
    return bool(loaded) and loaded == files and not refused


def checked_batch(contract: Contract, batch: FileBatch, as_of_date: date) -> FileBatch:
    """The file with its rows typed, each with its first failing check (``__reason_code``) or
    none, and its partition date and file name."""
    frame = batch.frame
    malformed = "_malformed" in frame.columns
    mapping_fmt = next(
        (m.timestamp_format for m in load_mappings(contract.name) if m.name == batch.mapping),
        DEFAULT_TIMESTAMP_FORMAT,
    )
    frame = first_failure(typed(frame, contract, mapping_fmt), reason_exprs(contract, as_of_date))
    if malformed:
        frame = mark_malformed(frame)
    frame = mark_problems(frame)
    frame = frame.with_columns(pl.lit(batch.name).alias("_file"), pl.lit(as_of_date).alias("_dt"))
    return replace(batch, frame=frame)


def prepare(
    settings: Settings,
    contract: Contract,
    as_of_date: date,
    manifest: list[tuple[str, str, str]] | None,
) -> Prepared:
    """The partition's files read and checked under the contract, or its ``skipped`` result when
    every file is unchanged since the last load (``manifest``: its rows; None forces a load)."""
    source = contract.name
    folder = partition_dir(settings, source, as_of_date)
    try:
        if not folder.is_dir():
            raise Refused(f"landing folder does not exist: {folder}")
        paths = landing_files(folder, contract)
        if not paths:
            raise Refused(f"no {'/'.join(FORMAT_EXT[contract.format])}[.gz] files in {folder}")
        # each file is read and checksummed once: the manifest check and the parse share it
        raws = {p.name: p.read_bytes() for p in paths}
        checksums = {name: hashlib.sha256(raw).hexdigest() for name, raw in raws.items()}
        if manifest is not None and manifest_unchanged(manifest, checksums):
            log.info("extract %s %s: unchanged, skipped", source, as_of_date)
            skipped = {"source": source, "dt": as_of_date.isoformat(), "skipped": True}
            return Prepared(as_of_date, skipped=skipped | {"files": len(paths)})
        batches: list[FileBatch] = []
        for p in paths:
            try:
                batch = read_file(p.name, raws.pop(p.name), checksums[p.name], contract)
            except FileRejected as exc:
                why = (p, checksums[p.name], str(exc))
                raise Refused(f"{exc}; partition left unchanged", why) from None
            batches.append(checked_batch(contract, batch, as_of_date))
        return Prepared(as_of_date, batches=batches)
    except Refused as exc:
        return Prepared(as_of_date, refused=exc)


def prepared_partitions(
    settings: Settings,
    contract: Contract,
    dates: list[date],
    manifest: Manifest | None,
    ahead_bytes: int,
) -> Iterator[Prepared]:
    """Every date prepared, in order. With more than one date and more than one thread allowed
    (``LIVEFIN_THREADS``), a worker thread prepares up to ``ahead_bytes`` of landing data ahead
    of the caller."""

    def produce() -> Iterator[Prepared]:
        for as_of_date in dates:
            rows = None if manifest is None else manifest.get(as_of_date, [])
            yield prepare(settings, contract, as_of_date, rows)

    if len(dates) < 2 or settings.threads < 2:
        yield from produce()
        return
    ahead = _ReadAhead(produce(), ahead_bytes)
    try:
        yield from ahead
    finally:
        ahead.close()


class _ReadAhead:
    """Runs a generator of :class:`Prepared` on a daemon thread, holding at most ``budget`` bytes
    (plus one partition) that the consumer has not taken yet; the worker's errors are raised in
    the consumer."""

    def __init__(self, source: Iterator[Prepared], budget: int):
        self._items: deque[Prepared | BaseException] = deque()
        self._held = 0
        self._budget = budget
        self._done = False
        self._stop = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="livefin-extract-read", daemon=True
        )
        self._thread.start()

    def _run(self, source: Iterator[Prepared]) -> None:
        try:
            for item in source:
                with self._cv:
                    self._items.append(item)
                    self._held += item.data_bytes
                    self._cv.notify_all()
                    while self._held >= self._budget and not self._stop:
                        self._cv.wait()
                    if self._stop:
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            with self._cv:
                self._items.append(exc)
        finally:
            with self._cv:
                self._done = True
                self._cv.notify_all()

    def __iter__(self) -> Iterator[Prepared]:
        while True:
            with self._cv:
                while not self._items and not self._done:
                    self._cv.wait()
                if not self._items:
                    return
                item = self._items.popleft()
                if isinstance(item, Prepared):
                    self._held -= item.data_bytes
                self._cv.notify_all()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the worker after the partition it is reading and wait for it."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()
