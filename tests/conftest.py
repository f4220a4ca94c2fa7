"""Shared fixtures: one tiny simulated platform and one full pipeline run per test session.

Generating and running the whole pipeline is the expensive part of the suite, so tests that
only read its results share these session fixtures instead of building their own.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
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


# The last TAIL_DAYS dates are left out of ``tiny_history``: every fixture that needs them ingests
# them itself (the Airflow end-to-end test picks its dates among them), cheaply, on a copy.
TAIL_DAYS = 20


@dataclass(frozen=True)
class History:
    """A LIVEFIN_HOME with the tiny landing ingested (extract + validate) for first..tail-1."""

    home: Path
    landing: Path
    first: date
    tail: date  # first date not ingested
    last: date

    def copy_to(self, dst: Path, *, docs: bool = True) -> Path:
        """Copy the home. The GX project YAML holds the absolute Data Docs folder: it is
        re-pointed at the copy's own docs folder (gx_runner also does so on open)."""
        skip = ["*.lock", "*.wal"] + ([] if docs else ["docs"])
        shutil.copytree(self.home, dst, ignore=shutil.ignore_patterns(*skip))
        for yml in dst.rglob("gx/*.yml"):
            text = yml.read_text()
            if str(self.home) in text:
                yml.write_text(text.replace(str(self.home), str(dst)))
        return dst


@pytest.fixture(scope="session")
def tiny_history(tmp_path_factory, tiny_landing) -> History:
    """The expensive part of every whole-pipeline fixture, done once per session: the tiny
    history ingested up to ``TAIL_DAYS`` before its last date. Fixtures copy it (a 40 MB file)
    and ingest the remaining dates themselves, as a nightly operator would; nobody writes here."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    last = tiny_last_date(tiny_landing)
    tail = last - timedelta(days=TAIL_DAYS)
    home = tmp_path_factory.mktemp("tiny_history") / "home"
    with livefin_env(home, LIVEFIN_LANDING=str(tiny_landing)):
        with pipeline.session(get_settings()) as (s, con):
            pipeline.ingest_range(con, s, pipeline.daterange(TINY_START, tail - timedelta(days=1)))
    return History(home, tiny_landing, TINY_START, tail, last)


@pytest.fixture(scope="session")
def tiny_ingested(tmp_path_factory, tiny_history) -> History:
    """``tiny_history`` with the remaining dates ingested too: every date, nothing computed.
    Read-only for the tests; copy it to write."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    h = tiny_history
    home = h.copy_to(tmp_path_factory.mktemp("tiny_ingested") / "home")
    with livefin_env(home, LIVEFIN_LANDING=str(h.landing)):
        with pipeline.session(get_settings()) as (s, con):
            pipeline.ingest_range(con, s, pipeline.daterange(h.tail, h.last))
    return History(home, h.landing, h.first, h.last + timedelta(days=1), h.last)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_history):
    """A full `livefin run --retrain` over the tiny history: everything ingested (the shared
    ``tiny_history`` plus its tail), trained as of the first nightly date, nightly for the
    last 2 days."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    h = tiny_history
    home = h.copy_to(tmp_path_factory.mktemp("tiny_home") / "home")
    last = h.last
    with livefin_env(home, LIVEFIN_LANDING=str(h.landing)):
        settings = get_settings()
        report = pipeline.run_range(
            last - timedelta(days=1), last, settings, ingest_from=h.tail, retrain=True
        )
    assert not report.blocked, report.blocked
    return {
        "settings": settings,
        "report": report,
        "last": last,
        "home": home,
        "landing": h.landing,
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
