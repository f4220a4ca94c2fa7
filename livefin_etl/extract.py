"""Landing → raw: decode, map, enforce the contract, hash PII, quarantine, load, manifest.

One (source, date) partition is replaced in one DuckDB transaction, so a kill at
any point leaves either the old partition or the new one, never a mix. Rows read
always equal rows loaded plus rows quarantined.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import time
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from livefin_etl.config import LivefinError, Settings, fault_point, pii_key
from livefin_etl.contracts import (
    Column,
    Contract,
    Mapping,
    detect_mapping,
    load_contract,
    load_mappings,
)
from livefin_etl.warehouse import table_exists, transaction

log = logging.getLogger(__name__)

FORMAT_EXT = {"csv": (".csv",), "jsonl": (".jsonl", ".json"), "parquet": (".parquet",)}
POLARS_TYPES = {
    "VARCHAR": pl.Utf8,
    "DOUBLE": pl.Float64,
    "BIGINT": pl.Int64,
    "DATE": pl.Date,
    "TIMESTAMP": pl.Datetime("us"),
    "BOOLEAN": pl.Boolean,
}
LINEAGE = [
    ("_dt", "DATE", "Business date of the landing partition the row came from"),
    ("_file", "VARCHAR", "Landing file name the row came from"),
    ("_line", "BIGINT", "Line (CSV/JSONL, 1 = header for CSV) or row number (Parquet) in the file"),
    ("_contract_version", "VARCHAR", "Source contract version the row was checked against"),
    ("_mapping", "VARCHAR", "Header mapping used to read the file"),
    ("_loaded_at", "TIMESTAMP", "When the partition was loaded"),
]


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


# --------------------------------------------------------------------------- DDL


def ensure_meta_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        create table if not exists meta.load_manifest (
            source varchar, dt date, file varchar, sha256 varchar, bytes bigint,
            rows_read bigint, rows_loaded bigint, rows_quarantined bigint,
            encoding varchar, mapping varchar, contract_version varchar,
            status varchar, message varchar, loaded_at timestamp)""")
    con.execute("""
        create table if not exists meta.quarantine (
            source varchar, dt date, file varchar, line bigint, reason_code varchar,
            reason varchar, column_name varchar, merchant_id varchar, raw_values varchar,
            quarantined_at timestamp)""")
    con.execute(
        "comment on table meta.load_manifest is "
        "'One row per landing file load attempt: checksum, rows read/loaded/quarantined'"
    )
    con.execute(
        "comment on table meta.quarantine is "
        "'Rows (or whole files, line 0) that broke the source contract, with the reason; PII masked'"
    )
    for col, text in {
        "rows_read": "Data rows read from the file",
        "rows_loaded": "Rows loaded into raw.<source>",
        "rows_quarantined": "Rows sent to meta.quarantine (rows_read = loaded + quarantined)",
        "status": "loaded | rejected (whole file refused, partition untouched)",
        "sha256": "Checksum of the file; an unchanged file is not reloaded",
    }.items():
        con.execute(f"comment on column meta.load_manifest.{col} is '{text}'")
    for col, text in {
        "reason_code": "missing_required, type_error, below_min, above_max, not_allowed, "
        "duplicate_key, unknown_reference, outside_partition, row_check, file_error",
        "raw_values": "The offending row as JSON, with PII columns replaced by their keyed hash",
        "line": "Line in the landing file (0 = the whole file)",
    }.items():
        con.execute(f"comment on column meta.quarantine.{col} is '{text}'")


def ensure_raw_table(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    cols = [f"{c.stored_name} {c.type}" for c in contract.stored_columns]
    cols += [f"{n} {t}" for n, t, _ in LINEAGE]
    con.execute(f"create table if not exists {contract.table} ({', '.join(cols)})")
    desc = contract.description.replace("'", "''")
    con.execute(f"comment on table {contract.table} is '{desc} (contract {contract.version})'")
    for c in contract.stored_columns:
        text = c.description + (" (keyed hash of PII)" if c.pii == "hash" else "")
        con.execute(
            f"comment on column {contract.table}.{c.stored_name} is '{text.replace(chr(39), '')}'"
        )
    for n, _, text in LINEAGE:
        con.execute(f"comment on column {contract.table}.{n} is '{text}'")


# --------------------------------------------------------------------------- reading


_ENSURED: set[tuple[int, str]] = set()


def ensure_tables(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """DDL and comments once per connection and source, not once per partition."""
    token = (id(con), contract.name)
    if token in _ENSURED and table_exists(con, contract.table):
        return
    ensure_meta_tables(con)
    ensure_raw_table(con, contract)
    _ENSURED.add(token)


def partition_dir(settings: Settings, source: str, day: date) -> Path:
    return settings.landing / source / f"dt={day.isoformat()}"


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


def landing_format(path: Path) -> str:
    """Format suffix of a landing file, ignoring a trailing ``.gz`` (``x.csv.gz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read_file(name: str, raw: bytes, sha: str, contract: Contract) -> FileBatch:
    data = raw
    if name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileRejected(f"{name}: not a readable gzip file ({exc})") from None
    if not data.strip():
        raise FileRejected(f"{name}: file is empty")
    encoding = "binary"
    if contract.format == "csv":
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
        frame = frame.with_row_index("_line", offset=2)
    elif contract.format == "jsonl":
        text, encoding = _decode(data, name)
        frame = _read_jsonl(text, name)
    elif contract.format == "parquet":
        try:
            frame = pl.read_parquet(io.BytesIO(data))
        except Exception as exc:
            raise FileRejected(f"{name}: not a readable Parquet file ({exc})") from None
        frame = frame.with_row_index("_line", offset=1)
    else:  # pragma: no cover - contracts are validated on load
        raise LivefinError(f"unsupported format {contract.format}")
    frame = frame.with_columns(pl.col("_line").cast(pl.Int64))
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
    frame = _apply_value_maps(frame, mapping)
    return FileBatch(name, sha, len(raw), encoding, mapping.name, frame, len(data))


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


def _apply_value_maps(frame: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    exprs = []
    for col, values in mapping.values.items():
        if col in frame.columns:
            exprs.append(pl.col(col).cast(pl.Utf8).replace(values).alias(col))
    return frame.with_columns(exprs) if exprs else frame


# --------------------------------------------------------------------------- typing & checks


def _parse(col: Column, fmt: str) -> pl.Expr:
    src = pl.col(col.name)
    target = POLARS_TYPES[col.type]
    as_str = src.cast(pl.Utf8).str.strip_chars()
    if col.type == "VARCHAR":
        return as_str
    if col.type == "TIMESTAMP":
        return pl.coalesce(
            as_str.str.strptime(pl.Datetime("us"), fmt, strict=False),
            as_str.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False),
            as_str.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False),
        )
    if col.type == "DATE":
        return as_str.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    if col.type == "BIGINT":
        return as_str.cast(pl.Float64, strict=False).pipe(
            lambda e: pl.when(e == e.round(0)).then(e).otherwise(None).cast(pl.Int64)
        )
    return as_str.cast(target, strict=False)


def _typed(frame: pl.DataFrame, contract: Contract, mapping_fmt: str) -> pl.DataFrame:
    """Parse every canonical column; keep the source text beside it to detect type errors."""
    exprs = []
    for c in contract.columns.values():
        exprs.append(pl.col(c.name).cast(pl.Utf8).str.strip_chars().alias(f"__src_{c.name}"))
        if frame.schema[c.name] == POLARS_TYPES[c.type] and c.type != "VARCHAR":
            exprs.append(pl.col(c.name))  # already typed (Parquet)
        elif frame.schema[c.name] == pl.Date and c.type == "TIMESTAMP":
            exprs.append(pl.col(c.name).cast(pl.Datetime("us")))
        else:
            exprs.append(_parse(c, mapping_fmt).alias(c.name))
    return frame.with_columns(exprs)


def _reason_exprs(contract: Contract, day: date) -> list[tuple[str, str | None, pl.Expr, str]]:
    """(reason_code, column, failing-row predicate, message) in precedence order."""
    checks: list[tuple[str, str | None, pl.Expr, str]] = []
    for c in contract.columns.values():
        src = pl.col(f"__src_{c.name}")
        blank = src.is_null() | (src == "")
        if c.required:
            checks.append(("missing_required", c.name, blank, f"{c.name} is required"))
        checks.append(
            (
                "type_error",
                c.name,
                ~blank & pl.col(c.name).is_null(),
                f"{c.name} is not a valid {c.type}",
            )
        )
        if c.min is not None:
            checks.append(
                ("below_min", c.name, pl.col(c.name) < c.min, f"{c.name} below minimum {c.min}")
            )
        if c.max is not None:
            checks.append(
                ("above_max", c.name, pl.col(c.name) > c.max, f"{c.name} above maximum {c.max}")
            )
        if c.allowed:
            checks.append(
                (
                    "not_allowed",
                    c.name,
                    pl.col(c.name).is_not_null() & ~pl.col(c.name).is_in(list(c.allowed)),
                    f"{c.name} not in {list(c.allowed)}",
                )
            )
    for rc in contract.row_checks:
        checks.append(("row_check", None, ~pl.sql_expr(rc["sql"]).fill_null(True), rc["reason"]))
    pc = contract.columns[contract.partition_column]
    start = datetime.combine(day, datetime.min.time())
    end = start + timedelta(days=1)
    col = pl.col(pc.name)
    if contract.partition_mode == "not_after":
        bad = col > (day if pc.type == "DATE" else end)
        msg = f"{pc.name} after partition date {day}"
    else:
        lo = start - timedelta(hours=contract.late_hours)
        if pc.type == "DATE":
            bad = (col < lo.date()) | (col > day)
        else:
            bad = (col < lo) | (col >= end)
        msg = f"{pc.name} outside partition day {day} (allowed lag {contract.late_hours} h)"
    checks.append(("outside_partition", pc.name, bad, msg))
    return checks


def _first_failure(frame: pl.DataFrame, checks: list) -> pl.DataFrame:
    """Attach the first failing check per row (precedence = list order)."""
    code = pl.lit(None, dtype=pl.Utf8)
    column = pl.lit(None, dtype=pl.Utf8)
    reason = pl.lit(None, dtype=pl.Utf8)
    for rc, colname, pred, msg in reversed(checks):
        hit = pred.fill_null(False)
        code = pl.when(hit).then(pl.lit(rc)).otherwise(code)
        column = pl.when(hit).then(pl.lit(colname)).otherwise(column)
        reason = pl.when(hit).then(pl.lit(msg)).otherwise(reason)
    return frame.with_columns(
        code.alias("__reason_code"), column.alias("__column"), reason.alias("__reason")
    )


# --------------------------------------------------------------------------- PII


def hash_values(values: pl.Series, key: bytes) -> pl.Series:
    """Keyed BLAKE2b (a PRF, like HMAC) as 32 hex chars: the same buyer gets the same id.

    Values are hashed from polars' own UTF-8 bytes and hex-encoded by polars, so Python only
    runs the digest; repeated values (names, addresses) are hashed once.
    """
    k = key[:64]
    blake = hashlib.blake2b

    def digest(s: pl.Series) -> pl.Series:
        out = [
            None if v is None else blake(v, key=k, digest_size=16).digest()
            for v in s.cast(pl.Binary).to_list()
        ]
        return pl.Series(out, dtype=pl.Binary).bin.encode("hex")

    uniq = values.drop_nulls().unique()
    if len(uniq) > 0.7 * len(values):
        return digest(values)
    return values.replace_strict(uniq, digest(uniq), default=None, return_dtype=pl.Utf8)


def _hash_pii(
    frame: pl.DataFrame, contract: Contract, key: bytes, keep_source: bool
) -> pl.DataFrame:
    """Drop the ``pii: drop`` columns and hash the ``pii: hash`` ones. Loaded rows drop their
    source text, so it is hashed only for quarantined rows (``keep_source``), which store it in
    ``raw_values``."""
    gone = [c for name in contract.dropped for c in (name, f"__src_{name}") if c in frame.columns]
    frame = frame.drop(gone)
    for c in contract.pii:
        cols = [c, f"__src_{c}"] if keep_source else [c]
        for col in cols:
            if col in frame.columns:
                frame = frame.with_columns(hash_values(frame[col].cast(pl.Utf8), key).alias(col))
    if not keep_source:
        frame = frame.drop([f"__src_{c}" for c in contract.pii if f"__src_{c}" in frame.columns])
    return frame


# --------------------------------------------------------------------------- main entry


def _manifest_unchanged(
    con: duckdb.DuckDBPyConnection, source: str, day: date, files: dict[str, str]
) -> bool:
    rows = con.execute(
        "select file, sha256 from meta.load_manifest where source=? and dt=? and status='loaded'",
        [source, day],
    ).fetchall()
    return bool(rows) and dict(rows) == files


class ExtractErrors(LivefinError):
    """Some partitions of a range were refused; the others were loaded (results attached)."""

    def __init__(self, errors: list[str], results: list[dict[str, Any]]):
        super().__init__("; ".join(errors))
        self.errors = errors
        self.results = results


def extract_partition(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    source: str,
    day: date,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Load ``landing/<source>/dt=<day>/*`` into ``raw.<source>`` (replacing that partition)."""
    try:
        return extract_partitions(con, settings, source, [day], force=force)[0]
    except ExtractErrors as exc:
        raise LivefinError(exc.errors[0]) from None


def extract_partitions(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    source: str,
    days: list[date],
    *,
    force: bool = False,
    chunk_days: int = 31,
    chunk_bytes: int = 150_000_000,
) -> list[dict[str, Any]]:
    """Load several partitions of one source, each replaced exactly as by
    :func:`extract_partition`, committing ``chunk_days`` partitions per transaction so history
    backfills do not pay per-partition overhead; a chunk is also cut at ``chunk_bytes`` of (gunzipped)
    landing data so memory stays bounded on platform-scale days. Refused partitions are left untouched
    and reported together in :class:`ExtractErrors` after the others are committed."""
    contract = load_contract(source)
    ensure_tables(con, contract)
    key = pii_key(settings)
    exts = FORMAT_EXT[contract.format]
    results: dict[date, dict[str, Any]] = {}
    errors: list[str] = []
    pending: list[tuple[date, list[FileBatch]]] = []
    pending_bytes = 0
    for day in sorted(set(days)):
        folder = partition_dir(settings, source, day)
        if not folder.is_dir():
            errors.append(f"{source} {day}: landing folder does not exist: {folder}")
            continue
        paths = sorted(p for p in folder.iterdir() if p.is_file() and landing_format(p) in exts)
        if not paths:
            errors.append(f"{source} {day}: no {'/'.join(exts)}[.gz] files in {folder}")
            continue
        # each file is read and checksummed once: the manifest check and the parse share it
        raws = {p.name: p.read_bytes() for p in paths}
        checksums = {name: hashlib.sha256(raw).hexdigest() for name, raw in raws.items()}
        if not force and _manifest_unchanged(con, source, day, checksums):
            log.info("extract %s %s: unchanged, skipped", source, day)
            results[day] = {
                "source": source,
                "dt": day.isoformat(),
                "skipped": True,
                "files": len(paths),
            }
            continue
        batches: list[FileBatch] = []
        try:
            for p in paths:
                batches.append(_read_file(p.name, raws.pop(p.name), checksums[p.name], contract))
        except FileRejected as exc:
            _record_rejection(con, contract, day, p, checksums[p.name], str(exc))
            errors.append(f"{source} {day}: {exc}; partition left unchanged")
            continue
        pending.append((day, batches))
        pending_bytes += sum(b.data_bytes for b in batches)
        if len(pending) >= chunk_days or pending_bytes >= chunk_bytes:
            results.update(_load_chunk(con, contract, pending, key))
            pending, pending_bytes = [], 0
    if pending:
        results.update(_load_chunk(con, contract, pending, key))
    ordered = [results[d] for d in sorted(results)]
    if errors:
        raise ExtractErrors(errors, ordered)
    return ordered


def _load_chunk(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    pending: list[tuple[date, list[FileBatch]]],
    key: bytes,
) -> dict[date, dict[str, Any]]:
    t0 = time.perf_counter()
    source = contract.name
    loaded_at = datetime.now().replace(microsecond=0)
    good_parts, bad_parts, per_file = [], [], []
    for day, batches in pending:
        checks = _reason_exprs(contract, day)
        for b in batches:
            frame = b.frame
            malformed = frame["_malformed"] if "_malformed" in frame.columns else None
            mapping_fmt = next(
                (m.timestamp_format for m in load_mappings(source) if m.name == b.mapping),
                "%Y-%m-%d %H:%M:%S",
            )
            frame = _typed(frame, contract, mapping_fmt)
            frame = _first_failure(frame, checks)
            if malformed is not None:
                is_bad = pl.col("_malformed").is_not_null()
                frame = frame.with_columns(
                    pl.when(is_bad)
                    .then(pl.lit("type_error"))
                    .otherwise(pl.col("__reason_code"))
                    .alias("__reason_code"),
                    pl.when(is_bad)
                    .then(pl.lit("malformed JSON line"))
                    .otherwise(pl.col("__reason"))
                    .alias("__reason"),
                )
            frame = frame.with_columns(pl.lit(b.name).alias("_file"), pl.lit(day).alias("_dt"))
            per_file.append((day, b, frame.height))
            good_parts.append(frame.filter(pl.col("__reason_code").is_null()))
            bad_parts.append(frame.filter(pl.col("__reason_code").is_not_null()))

    chunk_days = [d for d, _ in pending]
    good = pl.concat(good_parts, how="diagonal_relaxed")
    bad = pl.concat(bad_parts, how="diagonal_relaxed")
    good, dup = _split_duplicates(con, contract, good, chunk_days)
    good, unknown = _split_unknown_references(con, contract, good)
    nonempty = [x for x in (bad, dup, unknown) if x.height]
    bad = pl.concat(nonempty, how="diagonal_relaxed") if nonempty else bad

    good = _hash_pii(good, contract, key, keep_source=False)
    bad = _hash_pii(bad, contract, key, keep_source=True) if bad.height else bad
    mapping_by_file = {(d, b.name): b.mapping for d, b, _ in per_file}
    out = good.select(
        [pl.col(c.name).alias(c.stored_name) for c in contract.stored_columns]
        + [
            pl.col("_dt"),
            pl.col("_file"),
            pl.col("_line"),
            pl.lit(contract.version).alias("_contract_version"),
            pl.struct("_dt", "_file")
            .map_elements(lambda r: mapping_by_file[(r["_dt"], r["_file"])], return_dtype=pl.Utf8)
            .alias("_mapping")
            if len({m for m in mapping_by_file.values()}) > 1
            else pl.lit(next(iter(mapping_by_file.values()))).alias("_mapping"),
            pl.lit(loaded_at).cast(pl.Datetime("us")).alias("_loaded_at"),
        ]
    )
    quarantine = _quarantine_rows(bad, contract, source, loaded_at)

    bad_counts = (
        {(d, f): n for d, f, n in bad.group_by("_dt", "_file").len().iter_rows()}
        if bad.height
        else {}
    )
    manifest = []
    stats: dict[date, list[int]] = {d: [0, 0, 0] for d in chunk_days}
    for day, b, n in per_file:
        nq = int(bad_counts.get((day, b.name), 0))
        stats[day][0] += 1
        stats[day][1] += n
        stats[day][2] += nq
        manifest.append(
            (
                source,
                day,
                b.name,
                b.sha256,
                b.size,
                n,
                n - nq,
                nq,
                b.encoding,
                b.mapping,
                contract.version,
                "loaded",
                None,
                loaded_at,
            )
        )

    fault_point("extract.before_commit")
    days_sql = ", ".join(f"DATE '{d.isoformat()}'" for d in chunk_days)
    with transaction(con):
        con.execute(f"delete from {contract.table} where _dt in ({days_sql})")
        con.register("__extract_out", out.to_arrow())
        cols = ", ".join(out.columns)
        con.execute(f"insert into {contract.table} ({cols}) select {cols} from __extract_out")
        con.unregister("__extract_out")
        con.execute(
            f"delete from meta.quarantine where source = ? and dt in ({days_sql})", [source]
        )
        if quarantine.height:
            con.register("__extract_q", quarantine.to_arrow())
            con.execute("insert into meta.quarantine select * from __extract_q")
            con.unregister("__extract_q")
        con.execute(
            f"delete from meta.load_manifest where source = ? and dt in ({days_sql})", [source]
        )
        con.executemany(
            "insert into meta.load_manifest values (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", manifest
        )
    seconds = round((time.perf_counter() - t0) / len(chunk_days), 3)
    results = {}
    for day in chunk_days:
        files, read, quarantined = stats[day]
        results[day] = {
            "source": source,
            "dt": day.isoformat(),
            "skipped": False,
            "files": files,
            "rows_read": read,
            "rows_loaded": read - quarantined,
            "rows_quarantined": quarantined,
            "seconds": seconds,
        }
        log.info("extract %s", json.dumps(results[day]))
    assert out.height + quarantine.height == sum(s[1] for s in stats.values())
    return results


def _split_duplicates(
    con: duckdb.DuckDBPyConnection, contract: Contract, good: pl.DataFrame, chunk_days: list[date]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first occurrence of a key (by day, file, line); a key already loaded in a
    partition outside this load is a duplicate too (a re-delivery of the same order). The
    look-back is bounded by the contract's ``duplicate_window_days`` so the check stays cheap
    on a year of history."""
    pk = list(contract.primary_key)
    if not good.height:
        return good, good.clear()
    first = good.with_columns(pl.struct(pk).is_first_distinct().alias("__first"))
    window = contract.duplicate_window_days
    lo, hi = min(chunk_days) - timedelta(days=window), max(chunk_days) + timedelta(days=window)
    days_sql = ", ".join(f"DATE '{d.isoformat()}'" for d in chunk_days)
    con.register("__pk", first.select(pk).to_arrow())
    on = " and ".join(f"r.{k} = p.{k}" for k in pk)
    existing = con.sql(
        f"select distinct {', '.join('p.' + k for k in pk)} from __pk p "
        f"semi join {contract.table} r on {on} and r._dt between ? and ? "
        f"and r._dt not in ({days_sql})",
        params=[lo, hi],
    ).pl()
    con.unregister("__pk")
    if existing.height:
        existing = existing.with_columns(pl.lit(True).alias("__seen")).cast(
            {k: first.schema[k] for k in pk}
        )
        first = first.join(existing, on=pk, how="left", nulls_equal=True, maintain_order="left")
    else:
        first = first.with_columns(pl.lit(None, dtype=pl.Boolean).alias("__seen"))
    is_dup = ~pl.col("__first") | pl.col("__seen").fill_null(False)
    dup = first.filter(is_dup).with_columns(
        pl.lit("duplicate_key").alias("__reason_code"),
        pl.lit(",".join(pk)).alias("__column"),
        pl.when(pl.col("__seen").fill_null(False))
        .then(pl.lit("primary key already loaded in another partition"))
        .otherwise(pl.lit("duplicate primary key within the partition"))
        .alias("__reason"),
    )
    keep = first.filter(~is_dup)
    return keep.drop("__first", "__seen"), dup.drop("__first", "__seen")


def _split_unknown_references(
    con: duckdb.DuckDBPyConnection, contract: Contract, good: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A reference is known if the target row was delivered in a partition on or before the
    referencing row's partition date."""
    bad_parts = []
    for col, target in contract.references.items():
        table, tcol = target.split(".")
        known = pl.DataFrame(schema={"__ref": pl.Utf8, "__ref_dt": pl.Date})
        if table_exists(con, f"raw.{table}"):
            # look up only this batch's keys: all of raw.orders is ~100 M rows after a year
            keys = good.select(pl.col(col).drop_nulls().unique().alias("__ref")).to_arrow()
            con.register("__ref_keys", keys)
            try:
                known = con.sql(
                    f"select t.{tcol} as __ref, min(t._dt) as __ref_dt from raw.{table} t "
                    f"semi join __ref_keys k on t.{tcol} = k.__ref group by 1"
                ).pl()
            finally:
                con.unregister("__ref_keys")
        joined = good.join(known, left_on=col, right_on="__ref", how="left", maintain_order="left")
        hit = pl.col(col).is_not_null() & (
            pl.col("__ref_dt").is_null() | (pl.col("__ref_dt") > pl.col("_dt"))
        )
        bad_parts.append(
            joined.filter(hit)
            .drop("__ref_dt")
            .with_columns(
                pl.lit("unknown_reference").alias("__reason_code"),
                pl.lit(col).alias("__column"),
                pl.format(
                    "{} not found in raw.{} (as of {})", pl.lit(col), pl.lit(table), pl.col("_dt")
                ).alias("__reason"),
            )
        )
        good = joined.filter(~hit).drop("__ref_dt")
    bad = [b for b in bad_parts if b.height]
    return good, (pl.concat(bad, how="diagonal_relaxed") if bad else good.clear())


def _quarantine_rows(
    bad: pl.DataFrame, contract: Contract, source: str, at: datetime
) -> pl.DataFrame:
    if not bad.height:
        return pl.DataFrame(
            schema={
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
        )
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


def _record_rejection(
    con: duckdb.DuckDBPyConnection, contract: Contract, day: date, path: Path, sha: str, msg: str
) -> None:
    """A rejected file is recorded (manifest + file-level quarantine row); raw is untouched."""
    now = datetime.now().replace(microsecond=0)
    with transaction(con):
        con.execute(
            "delete from meta.load_manifest where source=? and dt=? and file=? and status='rejected'",
            [contract.name, day, path.name],
        )
        con.execute(
            "insert into meta.load_manifest values (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                contract.name,
                day,
                path.name,
                sha,
                path.stat().st_size,
                0,
                0,
                0,
                None,
                None,
                contract.version,
                "rejected",
                msg,
                now,
            ],
        )
        con.execute(
            "delete from meta.quarantine where source=? and dt=? and file=? and line=0",
            [contract.name, day, path.name],
        )
        con.execute(
            "insert into meta.quarantine values (?,?,?,?,?,?,?,?,?,?)",
            [contract.name, day, path.name, 0, "file_error", msg, None, None, None, now],
        )
