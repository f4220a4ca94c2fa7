"""Suites: readable JSON under ``expectations/``, completed from the source contracts.

A suite JSON holds ``name``, ``expectations`` (row-level, run on the partition's rows) and
``profile_expectations`` (run on the one-row partition profile, merged with
``expectations/partition_profile.json``). With ``"derive_from_contract": true`` the loader adds the
checks the contract already states, so no column is described twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from livefin_etl.config import CONFIG_DIR, EXPECTATIONS_DIR, LivefinError, load_config, read_yaml
from livefin_etl.contracts import pii_mode

SEVERITIES = ("critical", "warning")
DIMENSIONS = ("completeness", "validity", "accuracy", "consistency", "timeliness", "uniqueness")

# pandas dtypes a DuckDB type may arrive as (batches are normalised in batches.py, so one each
# is enough; the rest keep the check honest if normalisation changes).
TYPE_LISTS: dict[str, list[str]] = {
    "VARCHAR": ["StringDtype", "object"],
    "BIGINT": ["Int64Dtype", "int64"],
    "INTEGER": ["Int64Dtype", "int64", "Int32Dtype", "int32"],
    "DOUBLE": ["float64", "Float64Dtype"],
    "BOOLEAN": ["BooleanDtype", "bool"],
    "TIMESTAMP": ["datetime64[us]", "datetime64[ns]"],
    "DATE": ["datetime64[us]", "datetime64[ns]"],
}


def _load_contract(source: str) -> dict[str, Any]:
    """The parsed source contract. The one place to swap for ``contracts.load_contract``."""
    try:  # the contracts module is the owner once it exists
        from livefin_etl.contracts import load_contract  # type: ignore[attr-defined]
    except ImportError:
        load_contract = None
    if load_contract is not None:
        return dict(load_contract(source).raw)
    path = CONFIG_DIR / "sources" / f"{source}.yaml"
    if not path.exists():
        raise LivefinError(f"no source contract {path}")
    return read_yaml(path)


def list_suites() -> list[str]:
    """Suite names available under expectations/ (the shared profile file excluded)."""
    return sorted(p.stem for p in EXPECTATIONS_DIR.glob("*.json") if p.stem != "partition_profile")


@dataclass(frozen=True)
class Spec:
    """One expectation as the gate sees it (type + kwargs for GX, severity + dimension for us)."""

    type: str
    kwargs: dict[str, Any]
    severity: str
    dimension: str
    notes: str | None = None
    origin: str = "suite"  # suite | contract | profile

    @property
    def column(self) -> str | None:
        k = self.kwargs
        if "column" in k:
            return str(k["column"])
        if "column_A" in k:
            return f"{k['column_A']},{k['column_B']}"
        if "column_list" in k:
            return ",".join(k["column_list"])
        if "column_set" in k:
            return ",".join(k["column_set"])
        return None

    def label(self, suite: str) -> str:
        return f"{suite}.{self.type}({self.column or ''})"

    def gx_config(self, key: int) -> dict[str, Any]:
        meta = {"severity": self.severity, "dimension": self.dimension, "livefin_key": key}
        if self.notes:
            meta["notes"] = self.notes
        return {"type": self.type, "kwargs": self.kwargs, "meta": meta}


@dataclass(frozen=True)
class Reference:
    column: str  # column of this table
    table: str  # qualified table it must exist in, e.g. raw.merchants
    target: str  # column there
    severity: str = "critical"
    notes: str | None = None

    @property
    def helper(self) -> str:
        return f"_ref_{self.column}"


@dataclass
class SuiteSpec:
    name: str
    table: str
    partition_column: str
    order_by: list[str]
    rows: list[Spec]
    profile: list[Spec]
    has_profile: bool
    contract: dict[str, Any] | None = None
    references: list[Reference] = field(default_factory=list)
    row_checks: list[tuple[str, str]] = field(default_factory=list)
    window: dict[str, Any] | None = None  # {column, mode, late_hours}
    global_key: list[str] | None = None
    value_column: str | None = None
    fingerprint: str = ""

    @property
    def profile_name(self) -> str:
        return f"{self.name}.profile"


def _resolve_params(obj: Any, thresholds: dict[str, Any], where: str) -> Any:
    """Replace {"$PARAMETER": name} with the number from config/quality.yaml thresholds."""
    if isinstance(obj, dict):
        if set(obj) == {"$PARAMETER"}:
            name = obj["$PARAMETER"]
            if name not in thresholds:
                raise LivefinError(f"{where}: threshold '{name}' not in config/quality.yaml")
            return thresholds[name]
        return {k: _resolve_params(v, thresholds, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve_params(v, thresholds, where) for v in obj]
    return obj


def _spec(entry: dict[str, Any], thresholds: dict[str, Any], where: str, origin: str) -> Spec:
    if not isinstance(entry, dict) or "type" not in entry:
        raise LivefinError(f"{where}: each expectation needs a 'type'")
    meta = entry.get("meta") or {}
    severity = meta.get("severity", "critical")
    dimension = meta.get("dimension", "validity")
    if severity not in SEVERITIES:
        raise LivefinError(f"{where}: severity '{severity}' not one of {SEVERITIES}")
    if dimension not in DIMENSIONS:
        raise LivefinError(f"{where}: dimension '{dimension}' not one of {DIMENSIONS}")
    kwargs = _resolve_params(copy.deepcopy(entry.get("kwargs") or {}), thresholds, where)
    return Spec(entry["type"], kwargs, severity, dimension, meta.get("notes"), origin)


def _column_name(col: str, spec: dict[str, Any]) -> str:
    return f"{col}_hash" if pii_mode(spec.get("pii"), col) == "hash" else col


def _is_true(
    column: str,
    dimension: str,
    notes: str | None,
    severity: str = "critical",
    origin: str = "contract",
) -> Spec:
    """A helper column the SQL batch computes per row must be True on every row."""
    return Spec(
        "expect_column_values_to_be_in_set",
        {"column": column, "value_set": [True]},
        severity,
        dimension,
        notes,
        origin=origin,
    )


def _contract_spec(
    type_: str, kwargs: dict[str, Any], dimension: str, notes: str | None = None
) -> Spec:
    return Spec(type_, kwargs, "critical", dimension, notes, origin="contract")


def _column_specs(name: str, c: dict[str, Any]) -> list[Spec]:
    """Checks one contract column states: required, type, allowed values, bounds."""
    out: list[Spec] = []
    if c.get("required"):
        out.append(
            _contract_spec("expect_column_values_to_not_be_null", {"column": name}, "completeness")
        )
    typ = str(c.get("type", "VARCHAR")).upper()
    if typ in TYPE_LISTS:
        out.append(
            _contract_spec(
                "expect_column_values_to_be_in_type_list",
                {"column": name, "type_list": TYPE_LISTS[typ]},
                "validity",
            )
        )
    if c.get("allowed"):
        out.append(
            _contract_spec(
                "expect_column_values_to_be_in_set",
                {"column": name, "value_set": list(c["allowed"])},
                "validity",
            )
        )
    if c.get("warn_values"):
        # values a mapping defaulted (category `other`): counted per partition, never blocking
        out.append(
            Spec(
                "expect_column_values_to_not_be_in_set",
                {"column": name, "value_set": list(c["warn_values"])},
                "warning",
                "validity",
                f"{name} defaulted by a mapping (e.g. an unmapped platform category)",
                origin="contract",
            )
        )
    if c.get("min") is not None or c.get("max") is not None:
        kw: dict[str, Any] = {"column": name}
        if c.get("min") is not None:
            kw["min_value"] = c["min"]
        if c.get("max") is not None:
            kw["max_value"] = c["max"]
        out.append(_contract_spec("expect_column_values_to_be_between", kw, "validity"))
    return out


def _key_specs(pk: list[str]) -> list[Spec]:
    """Uniqueness of the primary key within the batch."""
    if len(pk) == 1:
        return [
            _contract_spec("expect_column_values_to_be_unique", {"column": pk[0]}, "uniqueness")
        ]
    if pk:
        return [
            _contract_spec(
                "expect_compound_columns_to_be_unique", {"column_list": pk}, "uniqueness"
            )
        ]
    return []


def _helper_specs(
    contract: dict[str, Any], pk: list[str], skip_row_checks: set[str]
) -> tuple[list[Spec], dict[str, Any]]:
    """Checks on helper columns the SQL batch computes (global key, event window, row checks),
    and what the batch must compute for them."""
    out: list[Spec] = []
    extra: dict[str, Any] = {"global_key": None, "window": None, "row_checks": []}
    # A source with state history re-delivers known keys (older events) as new versions, which
    # extract has already told apart from duplicates and late rows: check only "not after D".
    history = bool((contract.get("history") or {}).get("version_column"))
    if pk and contract.get("primary_key_scope") == "global" and not history:
        extra["global_key"] = pk
        out.append(
            _is_true(
                "_pk_first_seen", "uniqueness", "key not already loaded in an earlier partition"
            )
        )
    part = contract.get("partition") or {}
    if part.get("column"):
        extra["window"] = {
            "column": part["column"],
            "mode": "not_after" if history else part.get("mode", "within_day"),
            "late_hours": int(part.get("late_hours") or 0),
        }
        out.append(
            _is_true("_in_window", "timeliness", "event time inside [D - late_hours, D + 1 day)")
        )
    for rc in contract.get("row_checks") or []:
        if rc["name"] in skip_row_checks:
            continue
        extra["row_checks"].append((rc["name"], rc["sql"]))
        out.append(_is_true(f"_check_{rc['name']}", "accuracy", rc.get("reason")))
    return out, extra


def _derive(contract: dict[str, Any], skip_row_checks: set[str]) -> tuple[list[Spec], dict]:
    """Expectations the contract implies, plus what the SQL batch must compute for them."""
    # `pii: drop` columns are never stored, so there is nothing in raw to check
    cols = {
        k: v
        for k, v in (contract.get("columns") or {}).items()
        if pii_mode(v.get("pii"), k) != "drop"
    }
    # One set check instead of expect_column_to_exist per column: GX keeps only one
    # expect_column_to_exist per suite (it treats them as the same table-level expectation).
    out = [
        _contract_spec(
            "expect_table_columns_to_match_set",
            {"column_set": [_column_name(k, v) for k, v in cols.items()], "exact_match": False},
            "validity",
            "every contract column is present in raw",
        )
    ]
    for col, c in cols.items():
        out.extend(_column_specs(_column_name(col, c), c))
    pk = [_column_name(k, cols.get(k, {})) for k in contract.get("primary_key") or []]
    out.extend(_key_specs(pk))
    helpers, extra = _helper_specs(contract, pk, skip_row_checks)
    return out + helpers, extra


def _read_json(name: str) -> dict[str, Any]:
    path = EXPECTATIONS_DIR / f"{name}.json"
    if not path.exists():
        raise LivefinError(f"no suite {path} (known: {', '.join(list_suites())})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LivefinError(
            f"suite {path}, line {exc.lineno}, column {exc.colno}: JSON syntax error ({exc.msg})"
        ) from None
    if data.get("name") != name:
        raise LivefinError(f"suite {path} must have name '{name}'")
    return data


def load_suite(name: str) -> SuiteSpec:
    """Suite ``name`` from expectations/<name>.json, contract-derived entries first."""
    data = _read_json(name)
    thresholds = load_config("quality").get("thresholds") or {}
    where = f"expectations/{name}.json"
    rows: list[Spec] = []
    extra: dict[str, Any] = {"global_key": None, "window": None, "row_checks": []}
    contract = None
    refs: list[Reference] = []
    if data.get("derive_from_contract"):
        contract = _load_contract(name)
        derived, extra = _derive(contract, set(data.get("skip_row_checks") or []))
        rows.extend(derived)
        for col, target in (contract.get("references") or {}).items():
            table, tcol = target.split(".")
            refs.append(Reference(col, f"raw.{table}", tcol))
    for col, ref in (data.get("references") or {}).items():
        table, tcol = ref["to"].split(".")
        refs = [r for r in refs if r.column != col]
        refs.append(
            Reference(col, f"raw.{table}", tcol, ref.get("severity", "critical"), ref.get("notes"))
        )
    for r in refs:
        if r.severity not in SEVERITIES:
            raise LivefinError(f"{where}: reference severity '{r.severity}' unknown")
        rows.append(
            _is_true(
                r.helper,
                "consistency",
                r.notes or f"{r.column} exists in {r.table}.{r.target} (loaded <= D)",
                severity=r.severity,
                origin="contract" if data.get("derive_from_contract") else "suite",
            )
        )
    for i, e in enumerate(data.get("expectations") or []):
        rows.append(_spec(e, thresholds, f"{where} expectations[{i}]", "suite"))
    has_profile = bool(data.get("profile", True))
    profile: list[Spec] = []
    if has_profile:
        common = _read_json("partition_profile")
        for i, e in enumerate(common.get("expectations") or []):
            profile.append(_spec(e, thresholds, f"partition_profile.json[{i}]", "profile"))
        for i, e in enumerate(data.get("profile_expectations") or []):
            profile.append(_spec(e, thresholds, f"{where} profile_expectations[{i}]", "profile"))
    is_source = data.get("table") is None
    spec = SuiteSpec(
        name=name,
        table=data.get("table") or f"raw.{name}",
        partition_column=data.get("partition_column") or "_dt",
        order_by=data.get("order_by")
        or (["_dt", "_file", "_line"] if is_source else [data.get("partition_column") or "_dt"]),
        rows=rows,
        profile=profile,
        has_profile=has_profile,
        contract=contract,
        references=refs,
        row_checks=extra["row_checks"],
        window=extra["window"],
        global_key=extra["global_key"],
        value_column=data.get("profile_value_column"),
    )
    blob = json.dumps(
        [
            [s.gx_config(i) for i, s in enumerate(rows)],
            [s.gx_config(i) for i, s in enumerate(profile)],
        ],
        sort_keys=True,
        default=str,
    )
    spec.fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return spec
