"""Landing files -> polars: where a partition lives, decoding (BOM, UTF-8, GBK, gzip), CSV /
JSON-lines / Parquet readers and the header mapping to canonical columns."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from livefin_etl.config import LivefinError, Settings
from livefin_etl.contracts import Contract, Mapping, detect_mapping
from livefin_etl.extract.rules import apply_value_maps

FORMAT_EXT = {"csv": (".csv",), "jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}


class FileRejected(LivefinError):
    """A whole file could not be read under the contract; nothing of the partition is written."""


@dataclass
class FileBatch:
    name: str
    sha256: str
    size: int  # bytes as delivered (the manifest's)
    encoding: str
    mapping: str
    frame: pl.DataFrame  # canonical columns as read (strings or native), plus _line
    data_bytes: int  # bytes after gunzip: what a chunk holds in memory


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
            raise FileRejected(f"{name}: has a UTF-8 BOM but is not valid UTF-8 ({exc})") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gbk"), "gbk"
    except UnicodeDecodeError as exc:
        raise FileRejected(f"{name}: cannot decode as UTF-8 or GBK ({exc})") from None


def _gunzip(name: str, raw: bytes) -> bytes:
    if not name.lower().endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"{name}: not a readable gzip file ({exc})") from None


def _read_csv(data: bytes, name: str) -> tuple[pl.DataFrame, str]:
    text, encoding = _decode(data, name)
    # polars reads UTF-8 bytes: pass the file's own bytes unless they had to be transcoded
    body = data[3:] if encoding == "utf-8-sig" else data if encoding == "utf-8" else None
    try:
        frame = pl.read_csv(
            body if body is not None else text.encode(),
            infer_schema=False,
            has_header=True,
        )
    except Exception as exc:  # polars raises several error types for malformed CSV
        raise FileRejected(f"{name}: not a readable CSV ({exc})") from None
    return frame.with_row_index("_line", offset=2), encoding


def _read_parquet(data: bytes, name: str) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise FileRejected(f"{name}: not a readable Parquet file ({exc})") from None
    return frame.with_row_index("_line", offset=1)


def _read_jsonl(text: str, name: str) -> pl.DataFrame:
    """Fast path: polars parses the whole file. If any line is malformed (or blank), parse line
    by line instead, so one bad line is quarantined rather than the whole file."""
    body = text[:-1] if text.endswith("\n") else text
    if body and "\n\n" not in body and not body.startswith("\n"):
        try:
            frame = pl.read_ndjson(io.BytesIO(body.encode()), infer_schema_length=None)
        except Exception:  # noqa: BLE001 - polars raises several types; the slow path decides
            frame = None
        if frame is not None and frame.height == body.count("\n") + 1:
            try:
                frame = frame.select(
                    [
                        pl.col(c).cast(pl.Utf8) if frame.schema[c] != pl.Utf8 else pl.col(c)
                        for c in frame.columns
                    ]
                )
            except Exception:  # noqa: BLE001 - nested values: let the line parser judge them
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
        except ValueError as exc:
            bad.append((i, f"{exc}: {line[:200]}"))
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
) -> tuple[pl.DataFrame, Mapping]:
    """Rename the file's headers to canonical columns by the best mapping; refuse the file if a
    header is unknown or two headers land on one column."""
    headers = [c for c in frame.columns if c not in ("_line", "_malformed")]
    try:
        mapping = detect_mapping(contract.name, headers)
    except LivefinError as exc:
        raise FileRejected(f"{name}: {exc}") from None
    unknown = [h for h in headers if h not in mapping.headers]
    if unknown:
        raise FileRejected(
            f"{name}: unknown columns {unknown} not in contract {contract.version} "
            f"or mapping '{mapping.name}'; add them to a mapping or the contract"
        )
    frame = frame.rename({h: mapping.headers[h] for h in headers})
    dupes = {c for c in frame.columns if frame.columns.count(c) > 1}
    if dupes:
        raise FileRejected(f"{name}: several headers map to {sorted(dupes)}")
    for canon in contract.columns:
        if canon not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(canon))
    return apply_value_maps(frame, mapping), mapping


def read_file(name: str, raw: bytes, sha: str, contract: Contract) -> FileBatch:
    """One delivered file as canonical columns; :class:`FileRejected` if it cannot be read."""
    data = _gunzip(name, raw)
    if not data.strip():
        raise FileRejected(f"{name}: file is empty")
    frame, encoding = _read_any(data, name, contract.format)
    frame, mapping = _to_canonical(frame, name, contract)
    return FileBatch(name, sha, len(raw), encoding, mapping.name, frame, len(data))
