from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from livefin_etl.testing.rawdata import D, scenario  # noqa: F401 (re-exported for the tests)
from livefin_etl.warehouse import connect


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = connect(path=tmp_path / "w.duckdb")
    yield c
    c.close()


@pytest.fixture
def scenario_con(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    scenario().write(con)
    con.execute(
        "create table dq.merchant_quality (merchant_id VARCHAR, as_of_date DATE, "
        "completeness DOUBLE, validity DOUBLE, accuracy DOUBLE, consistency DOUBLE, "
        "timeliness DOUBLE, uniqueness DOUBLE, quality_q DOUBLE, quality_version VARCHAR)"
    )
    con.execute(
        "insert into dq.merchant_quality values ('M1', date '2025-02-28', 1, 1, 1, 1, 1, 1, 0.9, 'q1')"
    )
    return con
