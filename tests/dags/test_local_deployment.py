"""`make airflow`: start the local deployment, see the livefin DAGs over the REST API, stop it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LIVEFIN_DAGS = {"livefin_ingest", "livefin_nightly", "livefin_train_weekly", "livefin_stress"}
DEADLINE_S = 300  # a loaded 2-core CI box: migrate + 4 Airflow processes + first parse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        url,
        method=method,
        headers=headers,
        data=json.dumps(body).encode() if body is not None else None,
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def wait_for(what: str, fn, deadline: float, proc: subprocess.Popen, log: Path):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"airflow standalone exited ({proc.returncode}) while waiting for "
                f"{what}:\n{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            result = fn()
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text(errors='replace')[-4000:]}")


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM the process group we started, bounded; SIGKILL only if it will not stop."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=30)
    return proc.returncode


def test_make_airflow_serves_livefin_dags(tmp_path: Path) -> None:
    home = tmp_path / "state"
    port = free_port()
    # What a developer's shell has: no AIRFLOW_* (the helper derives them from LIVEFIN_HOME).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "LIVEFIN_HOME": str(home),
            # Keep the side servers off the default ports other sessions may hold.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
    )
    log = tmp_path / "standalone.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "livefin_etl.airflow_local", "standalone", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        deadline = time.monotonic() + DEADLINE_S
        wait_for(
            "the REST API",
            lambda: http("GET", f"{base}/api/v2/version")[0] == 200,
            deadline,
            proc,
            log,
        )
        airflow_home = home / "airflow"
        pw_file = airflow_home / "simple_auth_manager_passwords.json.generated"
        passwords = wait_for(
            "the generated admin password",
            lambda: pw_file.exists() and json.loads(pw_file.read_text()),
            deadline,
            proc,
            log,
        )
        user, password = next(iter(passwords.items()))

        def token() -> str | None:
            code, body = http(
                "POST", f"{base}/auth/token", {"username": user, "password": password}
            )
            return body.get("access_token") if code in (200, 201) and body else None

        tok = wait_for("an API token", token, deadline, proc, log)

        def dag_ids() -> set[str] | None:
            code, body = http("GET", f"{base}/api/v2/dags?limit=100", token=tok)
            ids = {d["dag_id"] for d in body["dags"]} if code == 200 else set()
            return ids if LIVEFIN_DAGS <= ids else None

        ids = wait_for("the livefin DAGs to be parsed", dag_ids, deadline, proc, log)
        assert ids == LIVEFIN_DAGS, "example DAGs or strays are loaded"
        code, errors = http("GET", f"{base}/api/v2/importErrors", token=tok)
        assert code == 200 and errors["total_entries"] == 0, errors
        code, pool = http("GET", f"{base}/api/v2/pools/livefin_warehouse", token=tok)
        assert code == 200 and pool["slots"] == 1
        # State stays inside the project's state folder, never ~/airflow.
        assert (airflow_home / "airflow.db").exists()
    finally:
        rc = stop(proc)
    assert proc.poll() is not None, "airflow standalone did not stop"
    assert rc is not None
