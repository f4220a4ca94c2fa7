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


@dataclass(frozen=True)
class Mapping:
    name: str
    source: str
    headers: dict[str, str]  # upstream header -> canonical column
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"


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


@cache
def load_mappings(source: str) -> tuple[Mapping, ...]:
    """All mappings for a source; the identity mapping (canonical headers) is implicit."""
    contract = load_contract(source)
    out = []
    for path in sorted((CONFIG_DIR / "mappings" / source).glob("*.yaml")):
        data = read_yaml(path)
        unknown = set(data["headers"].values()) - set(contract.columns)
        if unknown:
            raise LivefinError(f"{path}: maps to unknown canonical columns {sorted(unknown)}")
        out.append(
            Mapping(
                name=data.get("name", path.stem),
                source=source,
                headers=dict(data["headers"]),
                values={k: dict(v) for k, v in (data.get("values") or {}).items()},
                timestamp_format=data.get("timestamp_format", "%Y-%m-%d %H:%M:%S"),
            )
        )
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
        covered = {canon for up, canon in m.headers.items() if up in present}
        if not set(contract.required) <= covered:
            continue
        score = sum(1 for h in headers if h in m.headers)
        if best is None or score > best[0]:
            best = (score, m)
    if best is None:
        # Report against the mapping that came closest, so the message is actionable.
        def missing(m: Mapping) -> list[str]:
            covered = {canon for up, canon in m.headers.items() if up in present}
            return [c for c in contract.required if c not in covered]

        closest = min(load_mappings(source), key=lambda m: len(missing(m)))
        raise LivefinError(
            f"{source}: missing required columns {missing(closest)} "
            f"(closest mapping '{closest.name}')"
        )  # no header row in the text: when a file has none, its first row is data
    return best[1]
