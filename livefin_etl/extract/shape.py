"""Mapping steps beyond renaming, all declared in the mapping file (docs/contracts.md):
values from the file name or constants, combined columns, line items aggregated to orders and
the buyer identity. A row the shape cannot make valid carries ``_problem*`` columns and is
quarantined with that reason."""

from __future__ import annotations

import re

import polars as pl

from livefin_etl.contracts import Contract, Lines, Mapping

PROBLEM_COLUMNS = ("_problem_code", "_problem_column", "_problem")
# separator of the parts of a combined identity: never inside a phone, name or address
IDENTITY_SEP = "\x1f"


def _text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Utf8).str.strip_chars()


def _filled(col: str) -> pl.Expr:
    """The value, or null when empty."""
    t = _text(col)
    return pl.when(t == "").then(None).otherwise(t)


def file_name_values(name: str, mapping: Mapping) -> dict[str, str] | None:
    """Canonical values the mapping takes from the file name (None: the name does not match)."""
    if not mapping.file_name:
        return {}
    base = name[:-3] if name.lower().endswith(".gz") else name
    hit = re.fullmatch(mapping.file_name, base)
    return None if hit is None else {k: v for k, v in hit.groupdict().items() if v is not None}


def combine_columns(frame: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """``combine``: canonical columns built from several upstream headers (concat / coalesce)."""
    exprs = []
    for col, spec in mapping.combine.items():
        if "concat" in spec:
            parts = [_filled(h) for h in spec["concat"] if h in frame.columns]
            joined = pl.concat_str([p.fill_null("") for p in parts], separator=spec.get("sep", ""))
            any_part = (
                pl.any_horizontal([p.is_not_null() for p in parts]) if parts else pl.lit(False)
            )
            exprs.append(pl.when(any_part).then(joined).otherwise(None).alias(col))
        else:
            parts = [_filled(h) for h in spec["coalesce"] if h in frame.columns]
            exprs.append((pl.coalesce(parts) if parts else pl.lit(None, pl.Utf8)).alias(col))
    return frame.with_columns(exprs) if exprs else frame


def _number(col: str) -> pl.Expr:
    return _text(col).cast(pl.Float64, strict=False)


def _sum(values: pl.Expr, source: list[str]) -> pl.Expr:
    """Sum of the order's lines as text; a line that is not a number is passed on as such, so the
    order is quarantined as a type error instead of being summed short."""
    bad = pl.any_horizontal([_filled(c).is_not_null() & _number(c).is_null() for c in source])
    first_bad = pl.concat_str([_text(c) for c in source], separator=" × ").filter(bad).first()
    total = values.sum().round(6).cast(pl.Utf8)
    return (
        pl.when(bad.any())
        .then(first_bad)
        .when(values.is_not_null().any())
        .then(total)
        .otherwise(None)
    )


def _rule(col: str, rule: object, fmt: str) -> pl.Expr:
    if isinstance(rule, dict):
        a, b = rule["sum_product"]
        return _sum(_number(a) * _number(b), [a, b]).alias(col)
    if rule == "sum":
        return _sum(_number(col), [col]).alias(col)
    if rule == "count":
        return pl.len().cast(pl.Utf8).alias(col)
    value = _filled(col)
    if rule == "first":
        return value.drop_nulls().first().alias(col)
    # max / min: as a timestamp in the mapping's format, else as a number, else as text
    key = pl.coalesce(
        value.str.strptime(pl.Datetime("us"), fmt, strict=False).dt.epoch("us").cast(pl.Float64),
        value.cast(pl.Float64, strict=False),
    )
    pick = key.arg_max() if rule == "max" else key.arg_min()
    plain = value.max() if rule == "max" else value.min()
    return pl.when(key.is_not_null().any()).then(value.get(pick)).otherwise(plain).alias(col)


def aggregate_lines(
    frame: pl.DataFrame, mapping: Mapping, contract: Contract
) -> tuple[pl.DataFrame, int | None]:
    """One row per order from the line rows (``lines``), and how many line rows there were.

    The order's ``_line`` is its first line's; ``_lines`` counts its lines. An order whose line
    id repeats is marked as a duplicate (the line was delivered twice in one file)."""
    lines: Lines | None = mapping.lines
    if lines is None or lines.key not in frame.columns:
        return frame, None
    canon = [
        c
        for c in contract.columns
        if c != lines.key and (c in frame.columns or isinstance(lines.rules.get(c), dict))
    ]
    aggs = [_rule(c, lines.rules.get(c, lines.default), mapping.timestamp_format) for c in canon]
    aggs += [pl.col("_line").min(), pl.len().alias("_lines")]
    if lines.line_id and lines.line_id in frame.columns:
        repeated = _filled(lines.line_id).drop_nulls().is_duplicated().any()
        aggs += [
            pl.when(repeated).then(pl.lit("duplicate_key")).alias("_problem_code"),
            pl.when(repeated).then(pl.lit(lines.line_id)).alias("_problem_column"),
            pl.when(repeated)
            .then(pl.lit(f"a {lines.line_id} appears twice in the order's lines"))
            .alias("_problem"),
        ]
    keyed = frame.filter(_filled(lines.key).is_not_null())
    out = keyed.group_by(lines.key, maintain_order=True).agg(aggs)
    # line rows without an order key stay rows of their own: the contract quarantines them
    orphan = frame.filter(_filled(lines.key).is_null()).select(
        [lines.key, *[c for c in canon if c in frame.columns], "_line"]
    )
    out = pl.concat([out, orphan], how="diagonal_relaxed") if orphan.height else out
    return out.sort("_line"), frame.height


def apply_identity(frame: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """``buyer_id`` and ``buyer_id_kind`` from the declared identity (default: the phone)."""
    if "buyer_id_kind" not in frame.columns:
        return frame
    ident = mapping.identity
    kind = ident.kind if ident else "phone"
    given = _filled("buyer_id_kind")
    if kind == "phone":
        phone = _filled("buyer_phone")
        masked = phone.str.contains("*", literal=True).fill_null(False)
        frame = frame.with_columns(
            pl.coalesce(given, pl.when(phone.is_not_null()).then(pl.lit("phone"))).alias(
                "buyer_id_kind"
            ),
            pl.when(masked).then(pl.lit("not_allowed")).alias("__masked_code"),
            # the phone is this mapping's buyer identity: a row without one cannot be grouped
            pl.when(phone.is_null() & given.is_null())
            .then(pl.lit("missing_required"))
            .alias("__phone_code"),
        )
        frame = _flag(
            frame,
            "__masked_code",
            "buyer_phone",
            "buyer_phone is masked: map it to buyer_phone_masked and declare an identity",
        )
        return _flag(frame, "__phone_code", "buyer_phone", "buyer_phone is required")
    if kind == "none":
        return frame.with_columns(
            pl.lit(None, pl.Utf8).alias("buyer_id"), pl.lit(None, pl.Utf8).alias("buyer_id_kind")
        )
    parts = [_filled(c) for c in ident.columns]
    present = pl.any_horizontal([p.is_not_null() for p in parts])
    joined = pl.concat_str([p.fill_null("") for p in parts], separator=IDENTITY_SEP)
    return frame.with_columns(
        pl.when(present).then(joined).alias("buyer_id"),
        pl.when(present).then(pl.lit(kind)).alias("buyer_id_kind"),
    )


def _flag(frame: pl.DataFrame, code_col: str, column: str, reason: str) -> pl.DataFrame:
    """Turn a per-row code into the ``_problem*`` columns (an earlier problem wins)."""
    hit = pl.col(code_col).is_not_null()
    exprs = []
    for name, value in zip(
        PROBLEM_COLUMNS, (pl.col(code_col), pl.lit(column), pl.lit(reason)), strict=True
    ):
        new = pl.when(hit).then(value)
        exprs.append((pl.coalesce(pl.col(name), new) if name in frame.columns else new).alias(name))
    return frame.with_columns(exprs).drop(code_col)


def mark_problems(frame: pl.DataFrame) -> pl.DataFrame:
    """A row the mapping's shape marked is quarantined with that reason."""
    if "_problem_code" not in frame.columns:
        return frame
    hit = pl.col("_problem_code").is_not_null()
    return frame.with_columns(
        pl.when(hit).then(pl.col(src)).otherwise(pl.col(dst)).alias(dst)
        for src, dst in zip(PROBLEM_COLUMNS, ("__reason_code", "__column", "__reason"), strict=True)
    )


def identity_rows(frame: pl.DataFrame) -> int | None:
    """Rows whose buyer has a usable identity (None: the source has no identity columns)."""
    if "buyer_id_kind" not in frame.columns:
        return None
    return int(frame["buyer_id_kind"].is_not_null().sum())
