"""Shared fixtures: one tiny simulated platform and one full pipeline run per test session.

Generating and running the whole pipeline is the expensive part of the suite, so tests that
only read its results share these session fixtures instead of building their own.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest

from livefin_etl.config import livefin_env

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
    """A full `livefin run` over the tiny history: ingest everything, nightly for the last 2 days."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    home = tmp_path_factory.mktemp("tiny_home")
    last = tiny_last_date(tiny_landing)
    with livefin_env(home, LIVEFIN_LANDING=str(tiny_landing)):
        settings = get_settings()
        report = pipeline.run_range(
            last - timedelta(days=1), last, settings, ingest_from=TINY_START
        )
    assert not report.blocked, report.blocked
    return {
        "settings": settings,
        "report": report,
        "last": last,
        "home": home,
        "landing": tiny_landing,
    }


def load_bench_limits():
    """bench/bench_limits.py as a module: its make_upstream builds hand-made upstream tables
    (features, values, scores, loans) for the limits and publish tests."""
    import importlib.util
    import sys

    if "bench_limits" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "bench" / "bench_limits.py"
        spec = importlib.util.spec_from_file_location("bench_limits", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["bench_limits"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["bench_limits"]


@pytest.fixture
def bench():
    return load_bench_limits()


@pytest.fixture
def policy() -> dict:
    import copy

    from livefin_etl.limits import load_policy

    return copy.deepcopy(load_policy())
