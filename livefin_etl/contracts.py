"""Source contracts and header mappings, read from ``config/sources`` and ``config/mappings``.

A contract is the single description of a source: extract enforces it, the GX
suites derive expectations from it and the docs render it. Onboarding another
platform's export means adding a mapping file, not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from livefin_etl.config import CONFIG_DIR, LivefinError, read_yaml
from livefin_etl.warehouse import quote_ident

# Merchants first: every other source references them.
SOURCE_ORDER = ("merchants", "orders", "traffic", "fulfillment", "loans", "repayments")

DUCKDB_TYPES = {"VARCHAR", "DOUBLE", "BIGINT", "DATE", "TIMESTAMP", "BOOLEAN"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    # "hash": stored only as a keyed hash <name>_hash; "drop": read, checked, never stored
    pii: str | None = None
    description: str = ""
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None

    @property
    def stored_name(self) -> str:
        """PII columns are stored only as their keyed hash."""
        return f"{self.name}_hash" if self.pii else self.name


IDENTITY_KINDS = ("phone", "platform_id", "masked_combined", "none")
LINE_RULES = ("sum", "first", "max", "min", "count")


@dataclass(frozen=True)
class Lines:
    """Line items (one row per 子订单) aggregated to one row per order; see docs/contracts.md."""

    key: str  # canonical column that identifies the order (order_id)
    fields: dict[str, str]  # upstream header -> line-only field (never stored)
    rules: dict[str, Any]  # canonical column -> "sum" | "first" | "max" | "min" | "count" | {...}
    line_id: str | None = (
        None  # line-only field unique per line: a repeat makes the order conflicting
    )
    default: str = "first"


@dataclass(frozen=True)
class Identity:
    """Which canonical columns identify the buyer for repeat-buyer and ring features."""

    kind: str  # phone | platform_id | masked_combined | none
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mapping:
    name: str
    source: str
    headers: dict[str, str]  # upstream header -> canonical column
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"
    value_defaults: dict[str, str] = field(
        default_factory=dict
    )  # column -> value of unmapped codes
    file_name: str | None = None  # regex; its named groups become canonical columns
    constants: dict[str, str] = field(default_factory=dict)
    combine: dict[str, dict[str, Any]] = field(default_factory=dict)  # canonical <- headers
    ignore: tuple[str, ...] = ()  # headers read and discarded
    lines: Lines | None = None
    identity: Identity | None = None

    @property
    def known_headers(self) -> set[str]:
        """Every upstream header this mapping reads; any other header rejects the file."""
        known = set(self.headers) | set(self.ignore)
        for spec in self.combine.values():
            known |= set(spec.get("concat") or spec.get("coalesce") or ())
        if self.lines:
            known |= set(self.lines.fields)
        return known

    @property
    def derived(self) -> set[str]:
        """Canonical columns the mapping supplies without a header of their own."""
        out = set(self.constants) | set(self.combine)
        if self.file_name:
            out |= set(re.compile(self.file_name).groupindex)
        if self.lines:  # computed from line fields: sum_product, count
            out |= {c for c, r in self.lines.rules.items() if isinstance(r, dict) or r == "count"}
        if self.identity and self.identity.kind in ("platform_id", "masked_combined"):
            out.add("buyer_id")
        return out

    def supplies(self, headers: set[str]) -> set[str]:
        """Canonical columns a file with these headers gets under this mapping."""
        return {c for h, c in self.headers.items() if h in headers} | self.derived


@dataclass(frozen=True)
class Contract:
    name: str
    version: str
    format: str
    description: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    partition_column: str
    partition_mode: str  # within_day | not_after
    late_hours: int
    references: dict[str, str]
    row_checks: tuple[dict[str, str], ...]
    raw: dict[str, Any]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.required]

    @property
    def pii(self) -> list[str]:
        """PII columns stored as their keyed hash."""
        return [c.name for c in self.columns.values() if c.pii == "hash"]

    @property
    def dropped(self) -> list[str]:
        """PII columns the lender has no use for: never stored, not even hashed."""
        return [c.name for c in self.columns.values() if c.pii == "drop"]

    @property
    def stored_columns(self) -> list[Column]:
        return [c for c in self.columns.values() if c.pii != "drop"]

    @property
    def table(self) -> str:
        return f"raw.{self.name}"

    @property
    def duplicate_window_days(self) -> int:
        return duplicate_window_days(self.raw)


DUPLICATE_WINDOW_DAYS = 30


def duplicate_window_days(contract: dict[str, Any]) -> int:
    """How far back (and ahead) extract and validation look for an already-loaded key."""
    return int(contract.get("duplicate_window_days", DUPLICATE_WINDOW_DAYS))


def pii_mode(value: Any, where: str) -> str | None:
    """A column's ``pii`` setting: None, "hash" (``true`` too) or "drop"."""
    if value in (None, False):
        return None
    if value is True or value == "hash":
        return "hash"
    if value == "drop":
        return "drop"
    raise LivefinError(f"{where}: pii must be true/hash or drop, got {value!r}")


CONTRACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def list_sources() -> list[str]:
    """Contract names: the file stems of ``config/sources/*.yaml``, each a plain lower-case name."""
    found = set()
    for p in (CONFIG_DIR / "sources").glob("*.yaml"):
        if not CONTRACT_NAME.match(p.stem):
            raise LivefinError(
                f"{p}: a contract file name must match {CONTRACT_NAME.pattern} "
                "(lower-case letters, digits, underscore): rename the file"
            )
        found.add(p.stem)
    ordered = [s for s in SOURCE_ORDER if s in found]
    return ordered + sorted(found - set(ordered))


def check_source(source: Any) -> str:
    """``source`` if it names a contract in the config directory's sources; never a path."""
    known = list_sources()
    if not isinstance(source, str) or source not in known:
        shown = source if isinstance(source, str) and len(source) <= 80 else f"{str(source)[:80]}…"
        raise LivefinError(
            f"unknown source {shown!r}: --source takes a contract name from "
            f"{CONFIG_DIR / 'sources'} ({', '.join(known)})"
        )
    return source


def plain_name(value: Any, where: str) -> str:
    """A contract's source, table or column name: it reaches DDL, so only a plain SQL name
    (letters, digits, underscore) is accepted."""
    plain = isinstance(value, str) and "." not in value
    if plain:
        try:
            quote_ident(value)
        except LivefinError:
            plain = False
    if not plain:
        raise LivefinError(f"{where}: {value!r} is not a plain name (letters, digits, underscore)")
    return value


def _column(name: Any, spec: dict[str, Any], where: str) -> Column:
    name = plain_name(name, f"{where}: column")
    ctype = str(spec["type"]).upper()
    if ctype not in DUCKDB_TYPES:
        raise LivefinError(f"{where}: column {name} has unsupported type {ctype}")
    allowed = spec.get("allowed")
    return Column(
        name=name,
        type=ctype,
        required=bool(spec.get("required", False)),
        pii=pii_mode(spec.get("pii"), f"{where}: column {name}"),
        description=str(spec.get("description", "")),
        allowed=tuple(allowed) if allowed else None,
        min=spec.get("min"),
        max=spec.get("max"),
    )


def _references(data: dict[str, Any], cols: dict[str, Column], where: str) -> dict[str, str]:
    """``column: table.column`` links; both ends become SQL names in extract's look-ups."""
    refs = dict(data.get("references") or {})
    for col, target in refs.items():
        if col not in cols:
            raise LivefinError(f"{where}: reference column {col} is not a column")
        parts = str(target).split(".")
        if len(parts) != 2:
            raise LivefinError(f"{where}: reference {target!r} is not <table>.<column>")
        for part in parts:
            plain_name(part, f"{where}: reference {col}")
    return refs


@cache
def load_contract(source: str) -> Contract:
    path = CONFIG_DIR / "sources" / f"{check_source(source)}.yaml"
    data = read_yaml(path)
    name = plain_name(data.get("name"), f"{path}: name")
    if name != source:
        raise LivefinError(f"{path}: name {name!r} must equal the file name {source!r}")
    cols = {c.name: c for c in (_column(n, spec, str(path)) for n, spec in data["columns"].items())}
    part = data["partition"]
    for key in data["primary_key"]:
        if key not in cols:
            raise LivefinError(f"{path}: primary key column {key} is not a column")
    if part["column"] not in cols:
        raise LivefinError(f"{path}: partition column {part['column']} is not a column")
    return Contract(
        name=name,
        version=data["version"],
        format=data["format"],
        description=data.get("description", ""),
        columns=cols,
        primary_key=tuple(data["primary_key"]),
        partition_column=part["column"],
        partition_mode=part.get("mode", "within_day"),
        late_hours=int(part.get("late_hours", 0)),
        references=_references(data, cols, str(path)),
        row_checks=tuple(data.get("row_checks") or ()),
        raw=data,
    )


def _values(data: dict[str, Any], where: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """``values``: per column either ``{code: value}`` or ``{map: {code: value}, default: v}``."""
    values, defaults = {}, {}
    for col, spec in (data.get("values") or {}).items():
        if isinstance(spec, dict) and "map" in spec:
            values[col] = {str(k): str(v) for k, v in (spec["map"] or {}).items()}
            if spec.get("default") is not None:
                defaults[col] = str(spec["default"])
        elif isinstance(spec, dict):
            values[col] = {str(k): str(v) for k, v in spec.items()}
        else:
            raise LivefinError(f"{where}: values.{col} must be a mapping of codes")
    return values, defaults


def _lines(data: dict[str, Any], canon: set[str], where: str) -> Lines | None:
    spec = data.get("lines")
    if not spec:
        return None
    fields = {str(k): str(v) for k, v in (spec.get("fields") or {}).items()}
    clash = set(fields.values()) & canon
    if clash:
        raise LivefinError(f"{where}: lines.fields {sorted(clash)} are canonical columns")
    names = canon | set(fields.values())
    rules = dict(spec.get("rules") or {})
    for col, rule in rules.items():
        if col not in canon:
            raise LivefinError(f"{where}: lines.rules.{col} is not a canonical column")
        if isinstance(rule, dict):
            args = rule.get("sum_product")
            if (
                len(rule) != 1
                or not isinstance(args, list)
                or len(args) != 2
                or not set(args) <= names
            ):
                raise LivefinError(
                    f"{where}: lines.rules.{col} must be one of {LINE_RULES} "
                    "or {sum_product: [field, field]}"
                )
        elif rule not in LINE_RULES:
            raise LivefinError(f"{where}: lines.rules.{col}: {rule!r} not one of {LINE_RULES}")
    key, line_id = spec.get("key", "order_id"), spec.get("line_id")
    default = spec.get("default", "first")
    if key not in canon or (line_id is not None and line_id not in fields.values()):
        raise LivefinError(f"{where}: lines.key must be canonical, lines.line_id a lines field")
    if default not in ("first", "max", "min"):
        raise LivefinError(f"{where}: lines.default must be first, max or min")
    return Lines(key, fields, rules, line_id, default)


def _identity(data: dict[str, Any], canon: set[str], where: str) -> Identity | None:
    spec = data.get("identity")
    if spec is None:
        return None
    kind, cols = spec.get("kind"), tuple(spec.get("from") or ())
    if kind not in IDENTITY_KINDS:
        raise LivefinError(f"{where}: identity.kind must be one of {IDENTITY_KINDS}")
    if not {"buyer_id", "buyer_id_kind"} <= canon:
        raise LivefinError(f"{where}: the contract has no buyer_id/buyer_id_kind columns")
    if not set(cols) <= canon:
        raise LivefinError(f"{where}: identity.from {sorted(set(cols) - canon)} not canonical")
    expected = {"phone": ("buyer_phone",), "platform_id": ("buyer_id",), "none": ()}
    if kind in expected and cols and cols != expected[kind]:
        raise LivefinError(f"{where}: identity kind {kind} uses {list(expected[kind])}")
    if kind == "masked_combined" and len(cols) < 2:
        # a masked phone is shared by many buyers: alone it would invent rings
        raise LivefinError(f"{where}: identity masked_combined needs at least two columns")
    return Identity(kind, cols or expected.get(kind, ()))


def _combine(data: dict[str, Any], canon: set[str], where: str) -> dict[str, dict[str, Any]]:
    out = {}
    for col, spec in (data.get("combine") or {}).items():
        ok = isinstance(spec, dict) and (("concat" in spec) != ("coalesce" in spec))
        if col not in canon or not ok:
            raise LivefinError(
                f"{where}: combine.{col} must be a canonical column with concat or coalesce"
            )
        out[col] = dict(spec)
    return out


def _file_name(data: dict[str, Any], canon: set[str], where: str) -> str | None:
    pattern = data.get("file_name")
    if pattern is None:
        return None
    try:
        groups = set(re.compile(str(pattern)).groupindex)
    except re.error as exc:
        raise LivefinError(f"{where}: file_name is not a valid regex ({exc})") from None
    if not groups or not groups <= canon:
        raise LivefinError(f"{where}: file_name needs named groups that are canonical columns")
    return str(pattern)


def parse_mapping(data: dict[str, Any], contract: Contract, where: str) -> Mapping:
    """One mapping file, checked against the contract (every name must exist)."""
    canon = set(contract.columns)
    lines = _lines(data, canon, where)
    line_fields = set(lines.fields.values()) if lines else set()
    unknown = set((data.get("headers") or {}).values()) - canon
    if unknown:
        raise LivefinError(f"{where}: maps to unknown canonical columns {sorted(unknown)}")
    constants = {str(k): str(v) for k, v in (data.get("constants") or {}).items()}
    if not set(constants) <= canon:
        raise LivefinError(f"{where}: constants {sorted(set(constants) - canon)} not canonical")
    values, defaults = _values(data, where)
    if not set(values) <= canon | line_fields:
        raise LivefinError(f"{where}: values for unknown columns {sorted(set(values) - canon)}")
    return Mapping(
        name=data.get("name", where),
        source=contract.name,
        headers=dict(data.get("headers") or {}),
        values=values,
        timestamp_format=data.get("timestamp_format", "%Y-%m-%d %H:%M:%S"),
        value_defaults=defaults,
        file_name=_file_name(data, canon, where),
        constants=constants,
        combine=_combine(data, canon, where),
        ignore=tuple(data.get("ignore") or ()),
        lines=lines,
        identity=_identity(data, canon, where),
    )


@cache
def load_mappings(source: str) -> tuple[Mapping, ...]:
    """All mappings for a source; the identity mapping (canonical headers) is implicit."""
    contract = load_contract(source)
    out = []
    for path in sorted((CONFIG_DIR / "mappings" / source).glob("*.yaml")):
        data = read_yaml(path)
        out.append(parse_mapping({"name": path.stem} | data, contract, str(path)))
    identity = Mapping(name="canonical", source=source, headers={c: c for c in contract.columns})
    return (*out, identity)


def detect_mapping(source: str, headers: list[str]) -> Mapping:
    """Pick the mapping whose headers best cover the file's header row.

    The winner must supply every required column; it is the one that explains
    most of the file's headers (ties go to the first file in name order).
    """
    contract = load_contract(source)
    present = set(headers)
    best: tuple[int, Mapping] | None = None
    for m in load_mappings(source):
        covered = m.supplies(present)
        if not set(contract.required) <= covered:
            continue
        score = sum(1 for h in headers if h in m.known_headers)
        if best is None or score > best[0]:
            best = (score, m)
    if best is None:
        # Report against the mapping that came closest, so the message is actionable.
        def missing(m: Mapping) -> list[str]:
            covered = m.supplies(present)
            return [c for c in contract.required if c not in covered]

        closest = min(load_mappings(source), key=lambda m: len(missing(m)))
        raise LivefinError(
            f"{source}: missing required columns {missing(closest)} "
            f"(closest mapping '{closest.name}')"
        )  # no header row in the text: when a file has none, its first row is data
    return best[1]
