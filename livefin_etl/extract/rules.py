"""The contract applied to rows: value maps, typing per column, the row rules that pick a
quarantine reason, duplicate-key and unknown-reference splits, and keyed PII hashing."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

import duckdb
import polars as pl

from livefin_etl.config import LivefinError
from livefin_etl.contracts import Column, Contract, Mapping
from livefin_etl.warehouse import quote_ident, registered, table_exists

POLARS_TYPES = {
    "VARCHAR": pl.Utf8,
    "DOUBLE": pl.Float64,
    "BIGINT": pl.Int64,
    "DATE": pl.Date,
    "TIMESTAMP": pl.Datetime("us"),
    "BOOLEAN": pl.Boolean,
}

# (reason_code, column, failing-row predicate, message); the first that holds wins.
Check = tuple[str, str | None, pl.Expr, str]


def apply_value_maps(frame: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """Upstream codes -> canonical values (e.g. ``已完成`` -> ``completed``), per the mapping.

    With a declared ``default`` every other non-empty code becomes the default (an unmapped
    platform category -> ``other``); canonical values already in the file are kept."""
    exprs = []
    for col, values in mapping.values.items():
        if col not in frame.columns:
            continue
        text = pl.col(col).cast(pl.Utf8)
        mapped = text.replace(values)
        default = mapping.value_defaults.get(col)
        if default is not None:
            known = [*values, *values.values(), default]
            blank = text.is_null() | (text.str.strip_chars() == "")
            mapped = pl.when(blank | text.is_in(known)).then(mapped).otherwise(pl.lit(default))
        exprs.append(mapped.alias(col))
    return frame.with_columns(exprs) if exprs else frame


# --------------------------------------------------------------------------- typing


TIMESTAMP_FALLBACKS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f")


def _parse(col: Column, fmt: str, fallbacks: bool = True) -> pl.Expr:
    """``col`` parsed from its stripped source text ``__src_<col>``. A timestamp tries the
    mapping's format, then the fallbacks (``fallbacks=False``: the mapping's format only)."""
    as_str = pl.col(f"__src_{col.name}")
    target = POLARS_TYPES[col.type]
    if col.type == "VARCHAR":
        return as_str
    if col.type == "TIMESTAMP":
        formats = (fmt, *TIMESTAMP_FALLBACKS) if fallbacks else (fmt,)
        return pl.coalesce(as_str.str.strptime(pl.Datetime("us"), f, strict=False) for f in formats)
    if col.type == "DATE":
        return as_str.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    if col.type == "BIGINT":
        return as_str.cast(pl.Float64, strict=False).pipe(
            lambda e: pl.when(e == e.round(0)).then(e).otherwise(None).cast(pl.Int64)
        )
    return as_str.cast(target, strict=False)


def typed(frame: pl.DataFrame, contract: Contract, mapping_fmt: str) -> pl.DataFrame:
    """Parse every canonical column; keep the source text beside it to detect type errors.

    The stripped text is computed once and parsed from; a timestamp column is parsed with the
    fallback formats only when the mapping's format left a value unparsed (same result: the
    coalesce takes the first format that parses)."""
    cols = list(contract.columns.values())
    frame = frame.with_columns(
        pl.col(c.name).cast(pl.Utf8).str.strip_chars().alias(f"__src_{c.name}") for c in cols
    )
    exprs, retry = [], []
    for c in cols:
        if frame.schema[c.name] == POLARS_TYPES[c.type] and c.type != "VARCHAR":
            continue  # already typed (Parquet)
        if frame.schema[c.name] == pl.Date and c.type == "TIMESTAMP":
            exprs.append(pl.col(c.name).cast(pl.Datetime("us")))
        else:
            exprs.append(_parse(c, mapping_fmt, fallbacks=False).alias(c.name))
            if c.type == "TIMESTAMP":
                retry.append(c)
    frame = frame.with_columns(exprs)
    again = [
        c for c in retry if (frame[f"__src_{c.name}"].is_not_null() & frame[c.name].is_null()).any()
    ]
    if again:
        frame = frame.with_columns(_parse(c, mapping_fmt).alias(c.name) for c in again)
    return frame


# --------------------------------------------------------------------------- row rules


def _column_checks(c: Column) -> list[Check]:
    src = pl.col(f"__src_{c.name}")
    blank = src.is_null() | (src == "")
    value = pl.col(c.name)
    checks: list[Check] = []
    if c.required:
        checks.append(("missing_required", c.name, blank, f"{c.name} is required"))
    checks.append(
        ("type_error", c.name, ~blank & value.is_null(), f"{c.name} is not a valid {c.type}")
    )
    if c.min is not None:
        checks.append(("below_min", c.name, value < c.min, f"{c.name} below minimum {c.min}"))
    if c.max is not None:
        checks.append(("above_max", c.name, value > c.max, f"{c.name} above maximum {c.max}"))
    if c.allowed:
        allowed = list(c.allowed)
        not_allowed = value.is_not_null() & ~value.is_in(allowed)
        checks.append(("not_allowed", c.name, not_allowed, f"{c.name} not in {allowed}"))
    return checks


def version_column(contract: Contract) -> str | None:
    """The contract's ``history.version_column``: rows of a known key delivered later with a
    later value are new versions of it, not duplicates (None: keys are immutable)."""
    col = (contract.raw.get("history") or {}).get("version_column")
    if col is not None and col not in contract.columns:
        raise LivefinError(f"{contract.name}: history.version_column {col!r} is not a column")
    return col


def _partition_check(contract: Contract, as_of_date: date) -> Check:
    """Rows must belong to the partition's day (with the contract's allowed lag), or for
    ``not_after`` sources simply not lie after it. A source with history also carries changes
    of older keys: only a new key's lag is checked, by :func:`split_versions`."""
    pc = contract.columns[contract.partition_column]
    start = datetime.combine(as_of_date, datetime.min.time())
    end = start + timedelta(days=1)
    col = pl.col(pc.name)
    if version_column(contract) and contract.partition_mode != "not_after":
        bad = col > as_of_date if pc.type == "DATE" else col >= end
        msg = f"{pc.name} after partition date {as_of_date}"
    elif contract.partition_mode == "not_after":
        bad = col > (as_of_date if pc.type == "DATE" else end)
        msg = f"{pc.name} after partition date {as_of_date}"
    else:
        lo = start - timedelta(hours=contract.late_hours)
        if pc.type == "DATE":
            bad = (col < lo.date()) | (col > as_of_date)
        else:
            bad = (col < lo) | (col >= end)
        msg = f"{pc.name} outside partition day {as_of_date} (allowed lag {contract.late_hours} h)"
    return ("outside_partition", pc.name, bad, msg)


def reason_exprs(contract: Contract, as_of_date: date) -> list[Check]:
    """Every check of the contract for one partition, in precedence order."""
    checks: list[Check] = []
    for c in contract.columns.values():
        checks += _column_checks(c)
    for rc in contract.row_checks:
        checks.append(("row_check", None, ~pl.sql_expr(rc["sql"]).fill_null(True), rc["reason"]))
    checks.append(_partition_check(contract, as_of_date))
    return checks


def first_failure(frame: pl.DataFrame, checks: list[Check]) -> pl.DataFrame:
    """Attach the first failing check per row (precedence = list order).

    Each predicate is evaluated once, giving the index of the first failing check; its code,
    column and message are looked up from that index."""
    if not checks:
        none = pl.lit(None, dtype=pl.Utf8)
        return frame.with_columns(
            none.alias("__reason_code"), none.alias("__column"), none.alias("__reason")
        )
    first = pl.lit(None, dtype=pl.UInt32)
    for i, (_rc, _col, pred, _msg) in reversed(list(enumerate(checks))):
        first = pl.when(pred.fill_null(False)).then(pl.lit(i, dtype=pl.UInt32)).otherwise(first)
    frame = frame.with_columns(first.alias("__check"))
    at = list(range(len(checks)))

    def lookup(values: list[str | None]) -> pl.Expr:
        return pl.col("__check").replace_strict(at, values, default=None, return_dtype=pl.Utf8)

    return frame.with_columns(
        lookup([c[0] for c in checks]).alias("__reason_code"),
        lookup([c[1] for c in checks]).alias("__column"),
        lookup([c[3] for c in checks]).alias("__reason"),
    ).drop("__check")


def mark_malformed(frame: pl.DataFrame) -> pl.DataFrame:
    """A JSON line that did not parse is a type error, whatever the column checks said."""
    is_bad = pl.col("_malformed").is_not_null()
    return frame.with_columns(
        pl.when(is_bad)
        .then(pl.lit("type_error"))
        .otherwise(pl.col("__reason_code"))
        .alias("__reason_code"),
        pl.when(is_bad)
        .then(pl.lit("malformed JSON line"))
        .otherwise(pl.col("__reason"))
        .alias("__reason"),
    )


# --------------------------------------------------------------------------- keys and references


def _keys_loaded_elsewhere(
    con: duckdb.DuckDBPyConnection, contract: Contract, keys: pl.DataFrame, chunk_days: list[date]
) -> pl.DataFrame:
    """The batch's keys already in ``raw`` within the duplicate window, outside this load's days."""
    pk = list(contract.primary_key)
    window = contract.duplicate_window_days
    lo, hi = min(chunk_days) - timedelta(days=window), max(chunk_days) + timedelta(days=window)
    on = " and ".join(f"r.{quote_ident(k)} = p.{quote_ident(k)}" for k in pk)
    days_in = ", ".join("?" for _ in chunk_days)
    with registered(con, "__pk", keys.to_arrow()):
        return con.sql(
            f"select distinct {', '.join('p.' + quote_ident(k) for k in pk)} from __pk p "
            f"semi join {quote_ident(contract.table)} r on {on} and r._dt between ? and ? "
            f"and r._dt not in ({days_in})",
            params=[lo, hi, *chunk_days],
        ).pl()


def split_duplicates(
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
    existing = _keys_loaded_elsewhere(con, contract, first.select(pk), chunk_days)
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


def _versions_loaded_elsewhere(
    con: duckdb.DuckDBPyConnection, contract: Contract, keys: pl.DataFrame, chunk_days: list[date]
) -> pl.DataFrame:
    """Every loaded version (key, ``_dt``, version) of the batch's keys in the duplicate window
    before this load's last day, outside this load's days."""
    pk, vc = list(contract.primary_key), version_column(contract)
    lo = min(chunk_days) - timedelta(days=contract.duplicate_window_days)
    on = " and ".join(f"r.{quote_ident(k)} = p.{quote_ident(k)}" for k in pk)
    days_in = ", ".join("?" for _ in chunk_days)
    cols = ", ".join(f"r.{quote_ident(c)}" for c in [*pk, "_dt", vc])
    with registered(con, "__pk", keys.unique().to_arrow()):
        return con.sql(
            f"select {cols} from {quote_ident(contract.table)} r semi join __pk p on {on} "
            f"where r._dt between ? and ? and r._dt not in ({days_in})",
            params=[lo, max(chunk_days), *chunk_days],
        ).pl()


def _tag(frame: pl.DataFrame, code: str, column: str, reason: str) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(code).alias("__reason_code"),
        pl.lit(column).alias("__column"),
        pl.lit(reason).alias("__reason"),
    )


def _earlier_versions(seen: pl.DataFrame, pk: list[str], vc: str, floor: datetime) -> pl.DataFrame:
    """``seen`` (sorted by key, then ``_dt``) with ``__has_prev`` (an earlier row of the key)
    and ``__prev_max`` (the latest ``vc`` of the key's earlier rows, nulls as ``floor``).

    A timestamp version is scanned without a window over the key (the slow part of a month's
    orders): keys are contiguous, so each row's group number times a span larger than every
    value, plus the value, grows across groups, and one running max over that Int128 sum
    restarts at every key. Other types take the window."""
    start = pl.int_range(pl.len()) == 0
    for k in pk:
        start = start | ~pl.col(k).eq_missing(pl.col(k).shift(1))
    dtype = seen.schema[vc]
    if not isinstance(dtype, pl.Datetime) or not seen.height:
        return seen.with_columns(
            (pl.col("_dt").cum_count().over(pk) > 1).alias("__has_prev"),
            pl.col(vc).fill_null(floor).cum_max().shift(1).over(pk).alias("__prev_max"),
        )
    value = pl.col(vc).fill_null(pl.lit(floor).cast(dtype)).to_physical()
    lo, hi = seen.select(value.min().alias("lo"), value.max().alias("hi")).row(0)
    group = start.cum_sum().cast(pl.Int128) * (hi - lo + 1)
    running = (group + (value - lo).cast(pl.Int128)).cum_max().shift(1)
    return seen.with_columns(
        (~start).alias("__has_prev"),
        pl.when(~start).then((running - group + lo).cast(pl.Int64).cast(dtype)).alias("__prev_max"),
    )


def _previous_versions(
    cand: pl.DataFrame, prior: pl.DataFrame, pk: list[str], vc: str
) -> pl.DataFrame:
    """``cand`` (one row per key and date) with ``__has_prev`` (an earlier version exists, in
    raw or earlier in this load) and ``__prev_max`` (the latest earlier version value)."""
    floor = datetime(1, 1, 1)
    prior = prior.cast({vc: cand.schema[vc]})
    again = cand.filter(pl.struct(pk).is_duplicated()).select(pk)  # on several days of the load
    if prior.height and not again.height and prior["_dt"].max() < cand["_dt"].min():
        # every earlier version of a key is in prior: no ordered scan needed
        prev = prior.group_by(pk).agg(pl.col(vc).fill_null(floor).max().alias("__prev_max"))
        cand = cand.join(prev, on=pk, how="left").with_columns(
            pl.col("__prev_max").is_not_null().alias("__has_prev")
        )
    elif prior.height or again.height:
        # only keys delivered before or on several days can have a previous version
        touched = pl.concat([prior.select(pk), again]).unique()
        sub = cand.join(touched, on=pk, how="semi")
        seen = pl.concat(
            [sub.select([*pk, "_dt", vc, "__row"]), prior], how="diagonal_relaxed"
        ).sort([*pk, "_dt"])
        seen = _earlier_versions(seen, pk, vc, floor).filter(pl.col("__row").is_not_null())
        cand = cand.join(
            seen.select("__row", "__has_prev", "__prev_max"), on="__row", how="left"
        ).with_columns(pl.col("__has_prev").fill_null(False))
    else:  # no key was delivered before
        cand = cand.with_columns(
            pl.lit(False).alias("__has_prev"),
            pl.lit(None, dtype=cand.schema[vc]).alias("__prev_max"),
        )
    return cand


def split_versions(
    con: duckdb.DuckDBPyConnection, contract: Contract, good: pl.DataFrame, chunk_days: list[date]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Duplicates of a source with history. A key twice in one delivery is a duplicate (the
    first row wins); a key delivered in an earlier partition is an update when its version
    column is later than every earlier version, else the same version again (a duplicate). A
    key never delivered before must lie within the partition's allowed lag.

    The verdicts are worked out on the key, date and version columns alone; the wide frame is
    filtered once into rows kept and rows quarantined (in their original order)."""
    pk, vc, pc = list(contract.primary_key), version_column(contract), contract.partition_column
    if not good.height:
        return good, good.clear()
    narrow = good.select(list(dict.fromkeys([*pk, "_dt", vc, pc]))).with_row_index("__row")
    narrow = narrow.with_columns(pl.struct([*pk, "_dt"]).is_first_distinct().alias("__first"))
    cand = narrow.filter(pl.col("__first"))
    prior = _versions_loaded_elsewhere(con, contract, cand.select(pk), chunk_days)
    cand = _previous_versions(cand, prior, pk, vc)
    newer = pl.col(vc).is_not_null() & (pl.col(vc) > pl.col("__prev_max"))
    stale = pl.col("__has_prev") & ~newer.fill_null(False)
    lo = pl.col("_dt").cast(pl.Datetime("us")) - pl.duration(hours=contract.late_hours)
    too_old = ~pl.col("__has_prev") & (pl.col(pc).cast(pl.Datetime("us")) < lo).fill_null(False)
    pk_text = ",".join(pk)
    verdict = cand.select(
        "__row",
        pl.when(stale)
        .then(pl.lit(1, dtype=pl.UInt8))
        .when(too_old)
        .then(pl.lit(2, dtype=pl.UInt8))
        .alias("__verdict"),
    )
    # 0: a key twice in one delivery, 1: same or older version again, 2: too old for a new key
    verdict = (
        narrow.select("__row", "__first")
        .join(verdict, on="__row", how="left", maintain_order="left")
        .select(
            pl.when(~pl.col("__first"))
            .then(pl.lit(0, dtype=pl.UInt8))
            .otherwise(pl.col("__verdict"))
            .alias("__verdict")
        )
        .to_series()
    )
    codes = ["duplicate_key", "duplicate_key", "outside_partition"]
    columns = [pk_text, pk_text, pc]
    reasons = [
        "duplicate primary key within the partition",
        f"primary key already loaded in another partition with the same or a later {vc}",
        f"{pc} before the partition day by more than {contract.late_hours} h and not a known key",
    ]
    is_bad = verdict.is_not_null()
    keep = good.filter(~is_bad)
    bad = good.filter(is_bad)
    v = verdict.filter(is_bad)

    def pick(values: list[str]) -> pl.Series:
        return v.replace_strict([0, 1, 2], values, return_dtype=pl.Utf8)

    bad = bad.with_columns(
        pick(codes).alias("__reason_code"),
        pick(columns).alias("__column"),
        pick(reasons).alias("__reason"),
    )
    return keep, bad


def _first_delivery(
    con: duckdb.DuckDBPyConnection, good: pl.DataFrame, col: str, table: str, tcol: str
) -> pl.DataFrame:
    """For this batch's values of ``col``: the first partition date ``raw.<table>.<tcol>`` has it."""
    known = pl.DataFrame(schema={"__ref": pl.Utf8, "__ref_dt": pl.Date})
    target = f"raw.{table}"
    if not table_exists(con, target):
        return known
    # look up only this batch's keys: all of raw.orders is ~100 M rows after a year
    keys = good.select(pl.col(col).drop_nulls().unique().alias("__ref")).to_arrow()
    with registered(con, "__ref_keys", keys):
        return con.sql(
            f"select t.{quote_ident(tcol)} as __ref, min(t._dt) as __ref_dt "
            f"from {quote_ident(target)} t "
            f"semi join __ref_keys k on t.{quote_ident(tcol)} = k.__ref group by 1"
        ).pl()


def split_unknown_references(
    con: duckdb.DuckDBPyConnection, contract: Contract, good: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A reference is known if the target row was delivered in a partition on or before the
    referencing row's partition date."""
    bad_parts = []
    for col, target in contract.references.items():
        table, tcol = target.split(".")
        known = _first_delivery(con, good, col, table, tcol)
        # the verdict on the two columns it needs; the wide frame is only filtered
        hit = (
            good.select(col, "_dt")
            .join(known, left_on=col, right_on="__ref", how="left", maintain_order="left")
            .select(
                pl.col(col).is_not_null()
                & (pl.col("__ref_dt").is_null() | (pl.col("__ref_dt") > pl.col("_dt")))
            )
            .to_series()
        )
        if not hit.any():
            continue
        bad_parts.append(
            good.filter(hit).with_columns(
                pl.lit("unknown_reference").alias("__reason_code"),
                pl.lit(col).alias("__column"),
                pl.format(
                    "{} not found in raw.{} (as of {})", pl.lit(col), pl.lit(table), pl.col("_dt")
                ).alias("__reason"),
            )
        )
        good = good.filter(~hit)
    bad = [b for b in bad_parts if b.height]
    return good, (pl.concat(bad, how="diagonal_relaxed") if bad else good.clear())


# --------------------------------------------------------------------------- PII


def hash_values(values: pl.Series, key: bytes) -> pl.Series:
    """Keyed BLAKE2b (a PRF, like HMAC) as 32 hex chars: the same buyer gets the same id.

    Values are hashed from polars' own UTF-8 bytes and hex-encoded by polars, so Python only
    runs the digest; repeated values (names, addresses) are hashed once.
    """
    # copying a keyed state skips re-processing the key block for every value (~2x faster)
    fresh = hashlib.blake2b(key=key[:64], digest_size=16).copy

    def digest(s: pl.Series) -> pl.Series:
        out: list[bytes | None] = []
        append = out.append
        for v in s.cast(pl.Binary).to_list():
            if v is None:
                append(None)
            else:
                h = fresh()
                h.update(v)
                append(h.digest())
        return pl.Series(out, dtype=pl.Binary).bin.encode("hex")

    uniq = values.drop_nulls().unique()
    if len(uniq) > 0.7 * len(values):
        return digest(values)
    return values.replace_strict(uniq, digest(uniq), default=None, return_dtype=pl.Utf8)


def hash_pii(
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
