"""Shared fixtures: one tiny simulated platform and one full pipeline run per test session.

Generating and running the whole pipeline is the expensive part of the suite, so tests that
only read its results share these session fixtures instead of building their own.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest

from livefin_etl.testing.tiny_config import tiny_config_dir

# Before livefin_etl.config is imported: it reads LIVEFIN_CONFIG_DIR once.
os.environ.setdefault("LIVEFIN_CONFIG_DIR", tiny_config_dir())

from livefin_etl.config import livefin_env  # noqa: E402

os.environ.setdefault("LIVEFIN_THREADS", "2")
os.environ.setdefault("LIVEFIN_PII_KEY", "livefin-test-key")

TINY_SEED = 7
TINY_START = date(2025, 1, 1)


@pytest.fixture(scope="session")
def tiny_landing(tmp_path_factory) -> Path:
    """The tiny simulated platform (landing files + _truth), generated once."""
    from livefin_etl import simulator as sample

    out = tmp_path_factory.mktemp("tiny") / "landing"
    sample.generate("tiny", TINY_SEED, TINY_START, None, out, progress=False)
    return out


def tiny_last_date(landing: Path) -> date:
    import json

    p = json.loads((landing / "_truth" / "params.json").read_text())
    return date.fromisoformat(str(p["start"])) + timedelta(days=int(p["days"]) - 1)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_landing):
    """A full `livefin run --retrain` over the tiny history: ingest everything, train as of the
    first nightly date, nightly for the last 2 days."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    home = tmp_path_factory.mktemp("tiny_home")
    last = tiny_last_date(tiny_landing)
    with livefin_env(home, LIVEFIN_LANDING=str(tiny_landing)):
        settings = get_settings()
        report = pipeline.run_range(
            last - timedelta(days=1), last, settings, ingest_from=TINY_START, retrain=True
        )
    assert not report.blocked, report.blocked
    return {
        "settings": settings,
        "report": report,
        "last": last,
        "home": home,
        "landing": tiny_landing,
    }


@pytest.fixture
def bench():
    """The synthetic upstream world of the limits and publish tests: its make_upstream builds
    hand-made upstream tables (features, values, scores, loans)."""
    from livefin_etl.testing import limits_world

    return limits_world


@pytest.fixture
def policy() -> dict:
    import copy

    from livefin_etl.limits import load_policy

    return copy.deepcopy(load_policy())
