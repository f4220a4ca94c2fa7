"""Landing files -> polars: where a partition lives, decoding (BOM, UTF-8, GBK, gzip), CSV /
JSON-lines / Parquet readers and the header mapping to canonical columns."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from polars.exceptions import PanicException

from livefin_etl.config import LivefinError, Settings
from livefin_etl.contracts import Contract, Mapping, detect_mapping
from livefin_etl.extract.rules import apply_value_maps
from livefin_etl.extract.shape import (
    aggregate_lines,
    apply_identity,
    combine_columns,
    file_name_values,
    identity_rows,
)
from livefin_etl.privacy import scrub

# polars panics in Rust on some corrupt input (a PanicException, which is a BaseException, not an
# Exception): for a reader that is a failure like any other (found by bench/bench_fuzz.py).
READ_ERRORS = (Exception, PanicException)
log = logging.getLogger(__name__)

FORMAT_EXT = {"csv": (".csv",), "jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}


class FileRejected(LivefinError):
    """A whole file could not be read under the contract; nothing of the partition is written.

    Its text is stored (manifest, quarantine, gate) and printed, so it names the problem and
    where it is, never the rows; it is scrubbed and bounded here as a second line of defence."""

    def __init__(self, message: str):
        super().__init__(scrub(message))


@dataclass
class FileBatch:
    name: str
    sha256: str
    size: int  # bytes as delivered (the manifest's)
    encoding: str
    mapping: str
    frame: pl.DataFrame  # canonical columns as read (strings or native), plus _line
    data_bytes: int  # bytes after gunzip: what a chunk holds in memory
    line_rows: int | None = None  # line-item rows read, when the mapping aggregates lines
    identity_rows: int | None = None  # rows with a usable buyer identity (orders)
    identity: str | None = None  # the identity the mapping declares (orders)


def partition_dir(settings: Settings, source: str, as_of_date: date) -> Path:
    """``landing/<source>/dt=<as_of_date>``: one business date of one source."""
    return settings.landing / source / f"dt={as_of_date.isoformat()}"


def landing_format(path: Path) -> str:
    """Format suffix of a landing file, ignoring a trailing ``.gz`` (``x.csv.gz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def landing_files(folder: Path, contract: Contract) -> list[Path]:
    """The partition's files in the contract's format (plain or gzipped), in name order."""
    exts = FORMAT_EXT[contract.format]
    return sorted(p for p in folder.iterdir() if p.is_file() and landing_format(p) in exts)


def _decode(data: bytes, name: str) -> tuple[str, str]:
    """UTF-8 with BOM, UTF-8, then GBK (the platform's legacy export encoding)."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise FileRejected(
                f"{name}: has a UTF-8 BOM but is not valid UTF-8 ({_byte_position(data, exc)})"
            ) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gbk"), "gbk"
    except UnicodeDecodeError as exc:
        raise FileRejected(
            f"{name}: cannot decode as UTF-8 or GBK ({_byte_position(data, exc)})"
        ) from None


def _gunzip(name: str, raw: bytes) -> bytes:
    if not name.lower().endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"{name}: not a readable gzip file ({type(exc).__name__})") from None


def _read_csv(data: bytes, name: str) -> tuple[pl.DataFrame, str]:
    text, encoding = _decode(data, name)
    # polars reads UTF-8 bytes: pass the file's own bytes unless they had to be transcoded
    body = data[3:] if encoding == "utf-8-sig" else data if encoding == "utf-8" else None
    payload = body if body is not None else text.encode()
    try:
        frame = pl.read_csv(payload, infer_schema=False, has_header=True)
    except READ_ERRORS:  # polars raises several error types for malformed CSV
        # polars' text quotes the rest of the file: locate the problem ourselves instead
        raise FileRejected(f"{name}: not a readable CSV ({_csv_problem(text)})") from None
    # a final newline ends the last record: it cannot sit inside an earlier record's field
    newlines = payload.count(b"\n") - payload.endswith(b"\n")
    return _with_physical_lines(frame, newlines), encoding


def _byte_position(data: bytes, exc: UnicodeDecodeError) -> str:
    """Where decoding failed, as line and byte, without the bytes themselves."""
    offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
    line = data.count(b"\n", 0, offset) + 1
    return f"invalid byte sequence at line {line}, byte offset {offset}"


def _csv_problem(text: str) -> str:
    """Problem class and position of the first record that breaks CSV rules (RFC 4180 quoting,
    more fields than the header), found with the standard library's strict reader."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(lines, strict=True)
    start, width = 1, None
    try:
        for row in reader:
            if width is None:
                width = len(row)
            elif len(row) > width:
                return f"line {start}, column {width + 1}: {len(row)} fields, header has {width}"
            start = reader.line_num + 1
    except csv.Error as exc:
        first = lines[start - 1] if start <= len(lines) else ""
        # the column of the record's first quote: where an unbalanced quote usually opens
        before = first[: first.find('"')] if '"' in first else first
        column = len(next(csv.reader([before]), [])) or 1
        if "end of data" in str(exc) or "EOF" in str(exc):
            return f"line {start}, column {column}: quoted field never closed"
        if "expected after" in str(exc):
            return f"line {start}, column {column}: unbalanced quote (text after a closing quote)"
        return f"line {start}, column {column}: malformed quoting"
    return "malformed CSV"


def _with_physical_lines(frame: pl.DataFrame, newlines: int | None = None) -> pl.DataFrame:
    """``_line``: the physical line each record starts on. A quoted field may hold newlines,
    so the record index alone drifts by one per embedded newline.

    ``newlines``: the file's count of ``\\n``, less a final one. The header and every record
    but the last end with one, so when there are no more than that, no field before the last
    record holds one (the only ones that shift a line) and the per-field count is skipped."""
    header_extra = sum(c.count("\n") for c in frame.columns)
    text_cols = [c for c, t in frame.schema.items() if t == pl.Utf8]
    no_embedded = newlines is not None and newlines - header_extra - frame.height <= 0
    if not text_cols or frame.height == 0 or no_embedded:
        return frame.with_row_index("_line", offset=2 + header_extra)
    embedded = pl.sum_horizontal(
        pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in text_cols
    )
    line = (
        pl.int_range(pl.len(), dtype=pl.Int64)
        + 2
        + header_extra
        + embedded.cum_sum().shift(1, fill_value=0).cast(pl.Int64)
    )
    return frame.select(line.alias("_line"), pl.all())


def _read_parquet(data: bytes, name: str) -> pl.DataFrame:
    # pyarrow reads: on some corrupt page headers polars' own reader panics (found by the fuzz
    # bench); the conversion can still panic on a corrupt schema, hence READ_ERRORS.
    import pyarrow.parquet as pq

    try:
        # ParquetFile, not read_table: read_table goes through pyarrow.dataset, whose import
        # pulls in pandas (~3 s of fixed cost per process) for the same single-file read
        frame = pl.from_arrow(pq.ParquetFile(io.BytesIO(data)).read())
    except READ_ERRORS as exc:  # noqa: BLE001 - the class is enough; the text may quote values
        raise FileRejected(f"{name}: not a readable Parquet file ({type(exc).__name__})") from None
    return frame.with_row_index("_line", offset=1)


def _read_jsonl(text: str, name: str) -> pl.DataFrame:
    """Fast path: polars parses the whole file. If any line is malformed (or blank), parse line
    by line instead, so one bad line is quarantined rather than the whole file."""
    body = text[:-1] if text.endswith("\n") else text
    if body and "\n\n" not in body and not body.startswith("\n"):
        try:
            frame = pl.read_ndjson(io.BytesIO(body.encode()), infer_schema_length=None)
        except READ_ERRORS:  # polars raises several types; the slow path decides
            frame = None
        if frame is not None and frame.height == body.count("\n") + 1:
            try:
                frame = frame.select(
                    [
                        pl.col(c).cast(pl.Utf8) if frame.schema[c] != pl.Utf8 else pl.col(c)
                        for c in frame.columns
                    ]
                )
            except READ_ERRORS:  # nested values: let the line parser judge them
                return _read_jsonl_lines(text, name)
            return frame.with_row_index("_line", offset=1)
    return _read_jsonl_lines(text, name)


def _read_jsonl_lines(text: str, name: str) -> pl.DataFrame:
    """Parse line by line so one malformed line is quarantined, not the whole file."""
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except json.JSONDecodeError as exc:
            # position only: the line itself may hold personal data
            bad.append((i, f"malformed JSON at line {i}, column {exc.colno}: {exc.msg}"))
            continue
        except ValueError:
            bad.append((i, f"line {i} is not a JSON object"))
            continue
        rows.append({k: (None if v is None else str(v)) for k, v in obj.items()} | {"_line": i})
    if not rows and not bad:
        raise FileRejected(f"{name}: file has no JSON rows")
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    if bad:
        # Keep malformed lines as rows with a marker so they flow into quarantine.
        badf = pl.DataFrame({"_line": [b[0] for b in bad], "_malformed": [b[1] for b in bad]})
        frame = pl.concat([frame, badf], how="diagonal_relaxed") if rows else badf
    return frame


def _read_any(data: bytes, name: str, fmt: str) -> tuple[pl.DataFrame, str]:
    """The file's rows (with ``_line``) and the encoding it was read in."""
    if fmt == "csv":
        frame, encoding = _read_csv(data, name)
    elif fmt == "jsonl":
        text, encoding = _decode(data, name)
        frame = _read_jsonl(text, name)
    elif fmt == "parquet":
        frame, encoding = _read_parquet(data, name), "binary"
    else:  # pragma: no cover - contracts are validated on load
        raise LivefinError(f"unsupported format {fmt}")
    return frame.with_columns(pl.col("_line").cast(pl.Int64)), encoding


def _to_canonical(
    frame: pl.DataFrame, name: str, contract: Contract
) -> tuple[pl.DataFrame, Mapping, int | None]:
    """Rename the file's headers to canonical columns by the best mapping and apply its shape
    (file-name values, constants, combined columns, value maps, line items, buyer identity);
    refuse the file if a header is unknown, two headers land on one column or the file name does
    not match the mapping's pattern. Also returns the line rows read (None: no line items)."""
    headers = [c for c in frame.columns if c not in ("_line", "_malformed")]
    try:
        mapping = detect_mapping(contract.name, headers)
    except LivefinError as exc:
        raise FileRejected(f"{name}: {exc}; {len(headers)} columns found") from None
    known = mapping.known_headers
    unknown = [h for h in headers if h not in known]
    if unknown:
        raise FileRejected(
            f"{name}: unknown columns {unknown} not in contract {contract.version} "
            f"or mapping '{mapping.name}'; add them to a mapping or the contract"
        )
    from_name = file_name_values(name, mapping)
    if from_name is None:
        raise FileRejected(
            f"{name}: file name does not match mapping '{mapping.name}' file_name pattern "
            f"{mapping.file_name!r}; rename the file or fix the pattern"
        )
    frame = combine_columns(frame, mapping)
    fields = mapping.lines.fields if mapping.lines else {}
    renames = {
        h: mapping.headers.get(h) or fields[h]
        for h in headers
        if h in mapping.headers or h in fields
    }
    frame = frame.drop([h for h in headers if h not in renames]).rename(renames)
    dupes = {c for c in frame.columns if frame.columns.count(c) > 1}
    given = set(from_name) | set(mapping.constants)
    if dupes or given & set(frame.columns):
        raise FileRejected(
            f"{name}: several headers map to {sorted(dupes | (given & set(frame.columns)))}"
        )
    frame = frame.with_columns(
        pl.lit(v, dtype=pl.Utf8).alias(k) for k, v in (mapping.constants | from_name).items()
    )
    frame = apply_value_maps(frame, mapping)
    frame, line_rows = aggregate_lines(frame, mapping, contract)
    for canon in contract.columns:
        if canon not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(canon))
    return apply_identity(frame, mapping), mapping, line_rows


def read_file(name: str, raw: bytes, sha: str, contract: Contract) -> FileBatch:
    """One delivered file as canonical columns; :class:`FileRejected` if it cannot be read."""
    data = _gunzip(name, raw)
    if not data or data.isspace():  # not data.strip(): that copies the whole file
        raise FileRejected(f"{name}: file is empty")
    frame, encoding = _read_any(data, name, contract.format)
    frame, mapping, line_rows = _to_canonical(frame, name, contract)
    batch = FileBatch(name, sha, len(raw), encoding, mapping.name, frame, len(data), line_rows)
    batch.identity_rows = identity_rows(frame)
    if batch.identity_rows is not None:
        batch.identity = mapping.identity.kind if mapping.identity else "phone"
    if batch.identity_rows == 0 and frame.height:
        # say it plainly: features grouping buyers (rings, repeat buyers) will be null
        log.warning(
            "%s: mapping '%s' gives no usable buyer identity (%s): repeat-buyer and ring "
            "features are null for these rows",
            name,
            mapping.name,
            mapping.identity.kind if mapping.identity else "no buyer_phone",
        )
    return batch
