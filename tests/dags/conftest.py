"""One throw-away Airflow home per test session (never ~/airflow), set before Airflow loads.

Airflow reads its configuration when ``airflow`` is first imported, so the environment is
set here, at conftest import, and test modules import Airflow only inside fixtures/tests.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from tools import airflow_local

DAGS = Path(__file__).resolve().parents[2] / "dags"
_BASE = Path(tempfile.mkdtemp(prefix="livefin-airflow-tests-"))

if "airflow" in sys.modules:  # pragma: no cover - a guard, not a branch we expect
    raise RuntimeError("airflow was imported before tests/dags/conftest.py set AIRFLOW_HOME")

AIRFLOW_ENV = airflow_local.env(
    {**os.environ, "LIVEFIN_HOME": str(_BASE / "livefin"), "AIRFLOW_HOME": str(_BASE / "airflow")}
)
AIRFLOW_ENV.update(
    {
        # Transient-failure retries still happen, but without minutes of waiting in tests.
        "LIVEFIN_RETRY_DELAY_S": "1",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "LIVEFIN_PII_KEY": "livefin-tests-pii-key",
        "LIVEFIN_THREADS": os.environ.get("LIVEFIN_THREADS", "2"),
    }
)
for key in (
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "LIVEFIN_AIRFLOW_POOL",
    "LIVEFIN_RETRY_DELAY_S",
    "LIVEFIN_PII_KEY",
    "LIVEFIN_THREADS",
):
    os.environ[key] = AIRFLOW_ENV[key]
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))


@pytest.fixture(scope="session")
def airflow_env() -> dict[str, str]:
    """The Airflow environment of this session (no DB needed)."""
    return AIRFLOW_ENV


@pytest.fixture(scope="session")
def airflow_db() -> dict[str, str]:
    """Migrated SQLite metadata DB + the warehouse pool, once per session (~10-25 s)."""
    airflow_local.setup(AIRFLOW_ENV)
    import airflow.settings

    assert Path(airflow.settings.AIRFLOW_HOME) == Path(AIRFLOW_ENV["AIRFLOW_HOME"])
    return AIRFLOW_ENV


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS, bundle_name="dags-folder")
