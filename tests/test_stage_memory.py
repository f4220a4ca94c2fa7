"""DuckDB memory per stage (config/resources.yaml): each stage runs under its own limit, the
connection default comes back afterwards, and LIVEFIN_DUCKDB_MEMORY overrides every entry."""

from __future__ import annotations

import duckdb
import pytest

from livefin_etl.config import load_config
from livefin_etl.warehouse import memory_limit, stage_memory


def _limit(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("select current_setting('memory_limit')").fetchone()[0]


def _as_set(con: duckdb.DuckDBPyConnection, value: str) -> str:
    """What DuckDB reports after SET memory_limit = value (it rounds and renames units)."""
    probe = duckdb.connect()
    probe.execute(f"SET memory_limit = '{value}'")
    return _limit(probe)


def test_each_stage_gets_its_configured_limit_and_the_default_comes_back(monkeypatch) -> None:
    monkeypatch.delenv("LIVEFIN_DUCKDB_MEMORY", raising=False)
    limits = load_config("resources")["duckdb_memory_limit"]
    con = duckdb.connect()
    before = _as_set(con, str(limits["default"]))
    for stage in ("extract", "validate", "features", "train"):
        assert memory_limit(stage) == str(limits[stage])
        with stage_memory(con, stage):
            assert _limit(con) == _as_set(con, str(limits[stage]))
        assert _limit(con) == before
    # a stage the file does not name runs under the default
    assert memory_limit("publish") == str(limits["default"])


def test_the_limit_comes_back_when_the_stage_fails(monkeypatch) -> None:
    monkeypatch.delenv("LIVEFIN_DUCKDB_MEMORY", raising=False)
    con = duckdb.connect()
    with pytest.raises(RuntimeError), stage_memory(con, "extract"):
        raise RuntimeError("boom")
    assert _limit(con) == _as_set(con, memory_limit("default"))


def test_the_environment_overrides_every_stage(monkeypatch) -> None:
    monkeypatch.setenv("LIVEFIN_DUCKDB_MEMORY", "700MB")
    con = duckdb.connect()
    for stage in ("extract", "features", "default"):
        assert memory_limit(stage) == "700MB"
        with stage_memory(con, stage):
            assert _limit(con) == _as_set(con, "700MB")
