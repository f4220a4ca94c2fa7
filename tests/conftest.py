"""Shared fixtures: one tiny simulated platform and one full pipeline run per test session.

Generating and running the whole pipeline is the expensive part of the suite, so tests that
only read its results share these session fixtures instead of building their own.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest


def _ci_config_dir() -> str:
    """config/ with the credit model sized for the tiny CI world, and its stability limit opened.

    The tiny world has 300 days and 200 merchants: 303 loans have matured by its last night,
    183 of them in the training window. With the production ``min_child_weight: 10`` (a loan's
    hessian is ~0.11, so ~90 loans a leaf) no tree can split: the model is a constant, oot AUC
    0.500, which the champion gate's AUC floor refuses (before the gate applied to the first
    model, that constant model silently became champion in every tiny test). With 3 it reaches
    oot AUC 0.77. Those loans were originated in the first ~120 days, while 90-day features are
    still censored by the data start, so the train -> oot score PSI is ~0.35 and a 90-day burn-in
    (production) would leave ~30 days of loans: here the PSI limit is opened instead. The gate's
    production thresholds are proven on the credit tests' own world (tests/credit)."""
    import shutil
    import tempfile

    import yaml

    src = Path(__file__).resolve().parents[1] / "config"
    dst = Path(tempfile.mkdtemp(prefix="livefin-ci-config-")) / "config"
    shutil.copytree(src, dst)
    model = yaml.safe_load((dst / "model.yaml").read_text(encoding="utf-8"))
    model["version"] = f"{model['version']}-ci"
    model["target"]["burn_in_days"] = 0
    model["champion_gate"]["psi_max"] = 5.0
    model["xgboost"]["min_child_weight"] = 3
    (dst / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False), encoding="utf-8")
    return str(dst)


# Before livefin_etl.config is imported: it reads LIVEFIN_CONFIG_DIR once.
os.environ.setdefault("LIVEFIN_CONFIG_DIR", _ci_config_dir())

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
