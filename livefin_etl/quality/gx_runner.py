"""Great Expectations plumbing: one file context per docs folder, suites loaded from JSON.

The context lives under ``settings.docs / "gx"`` (generated ids, validation results) and its
Data Docs site under ``settings.docs / "data_docs"``; nothing GX generates goes into git.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from livefin_etl.quality.suites import Spec

SITE = "livefin"
DATASOURCE = "livefin"
# Schema-level expectations: their outcome depends on column types only, which batches.fetch
# fixes from the DuckDB schema, so a multi-date result holds for each date.
SCHEMA_LEVEL = {
    "expect_column_to_exist",
    "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_be_of_type",
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
}
_SUMMARY = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
_LOCK = threading.Lock()
_STATE: dict[str, _Gx] = {}


def quiet() -> None:
    """Silence GX analytics, INFO logging and tqdm bars (the context turns bars off too)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    for name in ("great_expectations", "posthog", "urllib3", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import structlog  # GX may route through structlog where installed

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except ImportError:  # pragma: no cover - optional
        pass


@dataclass
class _Gx:
    context: Any
    datasource: Any
    definitions: dict[str, tuple[str, Any]] = field(default_factory=dict)  # name -> (fp, vd)


def _context(docs: Path) -> _Gx:
    key = str(docs.resolve())
    with _LOCK:
        state = _STATE.get(key)
        if state is not None:
            return state
        quiet()
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.execution_engine import pandas_execution_engine

        # GX fingerprints every pandas batch under 1 GB (pandas hash + md5 of all cells) only for
        # its batch markers: ~30 % of a large validation. Lineage is the manifest's sha256.
        pandas_execution_engine.HASH_THRESHOLD = 0

        docs.mkdir(parents=True, exist_ok=True)
        ctx = gx.get_context(mode="file", project_root_dir=str(docs))
        sites = ctx.get_config().data_docs_sites or {}
        if "local_site" in sites:
            ctx.delete_data_docs_site("local_site")
        want = str(docs.resolve() / "data_docs")
        site = (ctx.get_config().data_docs_sites or {}).get(SITE)
        if site and site.get("store_backend", {}).get("base_directory") != want:
            # A copied or moved state folder: point the site at this folder again.
            ctx.delete_data_docs_site(SITE)
        if SITE not in (ctx.get_config().data_docs_sites or {}):
            ctx.add_data_docs_site(
                SITE,
                {
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": want,
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        ctx.variables.save()
        try:
            ds = ctx.data_sources.get(DATASOURCE)
        except (KeyError, ValueError, LookupError, Exception):  # noqa: BLE001 - GX raises varied types
            ds = ctx.data_sources.add_pandas(DATASOURCE)
        state = _Gx(ctx, ds)
        _STATE[key] = state
        return state


def _definition(state: _Gx, name: str, specs: list[Spec], fingerprint: str) -> Any:
    """The validation definition for suite ``name``, (re)registered when the JSON changed."""
    cached = state.definitions.get(name)
    if cached and cached[0] == fingerprint:
        return cached[1]
    stored = _stored_definition(state, name, fingerprint, len(specs))
    if stored is not None:
        return stored
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    ctx = state.context
    suite = gx.ExpectationSuite(name=name, meta={"livefin_fingerprint": fingerprint})
    for i, s in enumerate(specs):
        suite.add_expectation_configuration(ExpectationConfiguration(**s.gx_config(i)))
    suite = ctx.suites.add_or_update(suite)
    try:
        asset = state.datasource.get_asset(name)
    except LookupError:
        asset = state.datasource.add_dataframe_asset(name)
    try:
        bd = asset.get_batch_definition("whole")
    except (KeyError, LookupError, ValueError):
        bd = asset.add_batch_definition_whole_dataframe("whole")
    vd = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=bd, suite=suite)
    )
    state.definitions[name] = (fingerprint, vd)
    return vd


def _stored_definition(state: _Gx, name: str, fingerprint: str, n: int) -> Any | None:
    """The definition a previous process registered, when its suite has this fingerprint.

    Re-registering rewrites and re-reads the suite: ~0.15 s per suite and process, most of a
    small night's validation."""
    try:
        vd = state.context.validation_definitions.get(name)
    except Exception:  # noqa: BLE001 - GX raises varied types for a missing or stale entry
        return None
    suite = vd.suite
    if (suite.meta or {}).get("livefin_fingerprint") != fingerprint or len(suite.expectations) != n:
        return None
    state.definitions[name] = (fingerprint, vd)
    return vd


@dataclass
class Outcome:
    """One expectation's result in the gate's terms."""

    spec: Spec
    success: bool
    observed_value: str | None
    unexpected_count: int | None
    unexpected_percent: float | None
    unexpected_index: list[int] | None = None
    error: bool = False


def _jsonable(v: Any) -> str:
    return json.dumps(v, default=str, ensure_ascii=False)


def run(
    docs: Path,
    name: str,
    specs: list[Spec],
    fingerprint: str,
    df: pd.DataFrame,
    run_name: str,
    complete: bool = False,
    keep_if: Callable[[list[Outcome]], bool] | None = None,
) -> list[Outcome]:
    """Validate ``df`` against suite ``name``; return one outcome per spec.

    One GX ``Validator`` pass, then the result is kept for Data Docs under ``run_name`` when it is
    small: always for SUMMARY; for COMPLETE (every unexpected row's index, used to split a
    multi-date batch by date) only when it holds no unexpected row and ``keep_if(outcomes)``.
    Serialising hundreds of thousands of indices was ~75 % of a large validation.
    """
    from great_expectations.validator.v1_validator import Validator

    state = _context(docs)
    vd = _definition(state, name, specs, fingerprint)
    fmt: dict[str, Any] = {**_SUMMARY, "result_format": "COMPLETE" if complete else "SUMMARY"}
    if complete:
        fmt["return_unexpected_index_query"] = False
    validator = Validator(
        batch_definition=vd.batch_definition,
        batch_parameters={"dataframe": df},
        result_format=fmt,
    )
    res = validator.validate_expectation_suite(vd.suite)
    out = _outcomes(res, specs, complete)
    if not complete or (keep_if is not None and _clean(out) and keep_if(out)):
        _store(state, vd, validator.active_batch_id, res, run_name)
    return out


@dataclass
class Template:
    """GX's result for an empty frame of a batch's dtypes: the shape of a clean record."""

    outcomes: list[Outcome]
    batch_id: str
    result: Any


_TEMPLATES: dict[tuple, Template] = {}


def template(
    docs: Path, name: str, specs: list[Spec], fingerprint: str, empty: pd.DataFrame
) -> Template:
    """GX run on ``empty`` (0 rows): schema-level outcomes hold for any rows of these dtypes."""
    from great_expectations.validator.v1_validator import Validator

    key = (str(docs.resolve()), name, fingerprint, tuple(map(str, empty.dtypes.items())))
    cached = _TEMPLATES.get(key) or _load_template(docs, key, specs)
    if cached is not None:
        _TEMPLATES[key] = cached
        return cached
    vd = _definition(_context(docs), name, specs, fingerprint)
    validator = Validator(
        batch_definition=vd.batch_definition,
        batch_parameters={"dataframe": empty},
        result_format=dict(_SUMMARY),
    )
    res = validator.validate_expectation_suite(vd.suite)
    found = Template(_outcomes(res, specs, False), validator.active_batch_id, res)
    _TEMPLATES[key] = found
    path = _template_path(docs, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # racing writers
    tmp.write_text(json.dumps({"batch_id": found.batch_id, "result": res.to_json_dict()}))
    os.replace(tmp, path)
    return found


def _template_path(docs: Path, key: tuple) -> Path:
    import hashlib

    import great_expectations as gx

    digest = hashlib.sha256(repr((gx.__version__, key)).encode()).hexdigest()[:24]
    return docs / "gx" / "uncommitted" / "livefin_templates" / f"{digest}.json"


def _load_template(docs: Path, key: tuple, specs: list[Spec]) -> Template | None:
    """A template an earlier process computed (GX's JSON of the result, read back by GX's own
    schema): a night validates each suite once, so the in-process cache alone never hits."""
    from great_expectations.core.expectation_validation_result import (
        expectationSuiteValidationResultSchema,
    )

    path = _template_path(docs, key)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        res = expectationSuiteValidationResultSchema.load(data["result"])
        return Template(_outcomes(res, specs, False), str(data["batch_id"]), res)
    except Exception:  # noqa: BLE001 - a stale or torn file: compute the template again
        return None


def store_clean(
    docs: Path,
    name: str,
    specs: list[Spec],
    fingerprint: str,
    tpl: Template,
    counts: tuple[int, list[int | None]],
    run_name: str,
) -> None:
    """Keep, under ``run_name``, the record GX gives rows with no unexpected value: the template
    with each row-level result rebuilt by GX's own formatter from (rows, nonnull per spec)."""
    from great_expectations.expectations.expectation import _format_map_output, parse_result_format

    rows, nonnull = counts
    res = copy.deepcopy(tpl.result)
    for r in res.results:
        i = int(r.expectation_config.meta["livefin_key"])
        if specs[i].type in SCHEMA_LEVEL:
            continue
        had_index = "partial_unexpected_index_list" in (r.result or {})
        r.success = True
        r.result = _format_map_output(
            parse_result_format(dict(_SUMMARY)),
            True,
            element_count=rows,
            nonnull_count=nonnull[i],
            unexpected_count=0,
            unexpected_list=[],
            unexpected_index_list=[] if had_index else None,
        )["result"]
    markers = res.meta.get("batch_markers")
    if isinstance(markers, dict) and "ge_load_time" in markers:  # when these rows were seen
        markers["ge_load_time"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    vd = _definition(_context(docs), name, specs, fingerprint)
    _store(_context(docs), vd, tpl.batch_id, res, run_name)


def _clean(outcomes: list[Outcome]) -> bool:
    """Every expectation ran and none saw an unexpected row (aggregate ones may still fail)."""
    return not any(o.error or o.unexpected_count for o in outcomes)


def _store(state: _Gx, vd: Any, batch_id: str, res: Any, run_name: str) -> None:
    """Keep a result exactly as ``ValidationDefinition.run`` would have kept it."""
    from great_expectations.constants import DATAFRAME_REPLACEMENT_STR
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    res.meta.update(
        validation_id=vd.id,
        checkpoint_id=None,
        run_id=run_id,
        validation_time=run_id.run_time,
        batch_parameters={"dataframe": DATAFRAME_REPLACEMENT_STR},
    )
    suite_id = ExpectationSuiteIdentifier(name=vd.suite.name)
    state.context.validation_results_store.store_validation_results(
        suite_validation_result=res,
        suite_validation_result_identifier=ValidationResultIdentifier(
            batch_identifier=batch_id,
            expectation_suite_identifier=suite_id,
            run_id=run_id,
        ),
        expectation_suite_identifier=suite_id,
    )


def _outcomes(res: Any, specs: list[Spec], complete: bool) -> list[Outcome]:
    by_key: dict[int, Any] = {}
    for r in res.results:
        by_key[int(r.expectation_config.meta["livefin_key"])] = r
    out = []
    for i, spec in enumerate(specs):
        r = by_key.get(i)
        if r is None:  # GX dropped it: count as failed rather than silently pass
            out.append(Outcome(spec, False, "error: not evaluated", None, None, error=True))
            continue
        info = r.exception_info or {}
        if info.get("raised_exception") or any(
            isinstance(v, dict) and v.get("raised_exception") for v in info.values()
        ):
            msg = info.get("exception_message") or next(
                (v.get("exception_message") for v in info.values() if isinstance(v, dict)), ""
            )
            first = str(msg).strip().splitlines()[0] if msg else "exception"
            out.append(Outcome(spec, False, f"error: {first}"[:500], None, None, error=True))
            continue
        result = r.result or {}
        if "unexpected_count" in result:
            count = int(result.get("unexpected_count") or 0)
            pct = result.get("unexpected_percent")
            pct = float(pct) if pct is not None else (0.0 if count == 0 else None)
            observed = _jsonable(result.get("partial_unexpected_list", [])[:5]) if count else None
            idx = None
            if complete and count:
                idx = [int(x) for x in result.get("unexpected_index_list") or []]
            out.append(Outcome(spec, bool(r.success), observed, count, pct, idx))
        else:
            ov = result.get("observed_value")
            out.append(Outcome(spec, bool(r.success), None if ov is None else str(ov), None, None))
    return out


def build_docs(docs: Path) -> Path:
    """Render the Data Docs site (index + one page per kept validation result)."""
    state = _context(docs)
    state.context.build_data_docs(site_names=[SITE])
    index = docs.resolve() / "data_docs" / "index.html"
    return index
