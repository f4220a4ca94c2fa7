"""Fixtures for the credit tests: settings in tmp_path, a real DuckDB file, a synthetic world."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from livefin_etl.config import Settings
from livefin_etl.testing.credit_world import build_world, make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def con(settings: Settings):
    c = duckdb.connect(str(settings.warehouse))
    c.execute("SET threads = 1")
    yield c
    c.close()


@pytest.fixture
def world(con) -> dict:
    return build_world(con)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small champion per test module: (settings, con, train result, world)."""
    from livefin_etl.credit import train
    from livefin_etl.testing.credit_world import AS_OF, small_config, write_truth

    s = make_settings(tmp_path_factory.mktemp("trained"))
    c = duckdb.connect(str(s.warehouse))
    c.execute("SET threads = 1")
    w = build_world(c)
    write_truth(s, w)
    result = train(c, s, AS_OF, config=small_config(), ensure_features=None)
    yield s, c, result, w
    c.close()
