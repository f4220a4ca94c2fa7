"""Data-quality gate: GX suites per source, partition status, Data Docs, merchant quality.

Great Expectations is imported lazily (it takes seconds), so importing this package is cheap
for DAG parsing and for stages that only call :func:`require_passed`.
"""

from livefin_etl.quality.gate import (
    build_data_docs,
    ensure_tables,
    record_refused,
    require_passed,
    validate_partition,
    validate_range,
)
from livefin_etl.quality.merchant import build_merchant_quality
from livefin_etl.quality.suites import list_suites, load_suite

__all__ = [
    "build_data_docs",
    "build_merchant_quality",
    "ensure_tables",
    "list_suites",
    "load_suite",
    "record_refused",
    "require_passed",
    "validate_partition",
    "validate_range",
]
