"""Fixtures for tests/publish: the upstream tables are built by hand (bench/bench_limits.py)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_bench():
    """bench/bench_limits.py as a module (its make_upstream is the shared fixture generator)."""
    if "bench_limits" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "bench_limits", REPO / "bench" / "bench_limits.py"
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules["bench_limits"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["bench_limits"]


@pytest.fixture
def bench():
    return load_bench()


@pytest.fixture
def policy() -> dict:
    from livefin_etl.limits import load_policy

    return copy.deepcopy(load_policy())
