"""`make airflow`: start the local deployment, see the livefin DAGs over the REST API, stop it."""

from __future__ import annotations

import json
import os
import shutil
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


class Deployment:
    """A running `make airflow` (airflow standalone) with a logged-in API client."""

    def __init__(self, proc: subprocess.Popen, base: str, log: Path, home: Path, token: str):
        self.proc, self.base, self.log, self.home, self.token = proc, base, log, home, token

    def api(self, method: str, path: str, body: dict | None = None) -> tuple:
        return http(method, f"{self.base}/api/v2/{path}", body, token=self.token)

    def wait(self, what: str, fn, seconds: float):
        return wait_for(what, fn, time.monotonic() + seconds, self.proc, self.log)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, tiny_run):
    """`airflow standalone` over a copy of the tiny warehouse (history ingested, model trained,
    limits published for the last date), the way `make airflow` starts it."""
    tmp = tmp_path_factory.mktemp("airflow_deploy")
    home = tmp / "state"
    shutil.copytree(tiny_run["home"], home, ignore=shutil.ignore_patterns("airflow", "*.lock"))
    port = free_port()
    # What a developer's shell has: no AIRFLOW_* (the helper derives them from LIVEFIN_HOME).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "LIVEFIN_HOME": str(home),
            "LIVEFIN_LANDING": str(tiny_run["landing"]),
            "LIVEFIN_RETRIES": "0",
            # Keep the side servers off the default ports other sessions may hold.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
    )
    log = tmp / "standalone.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.airflow_local", "standalone", "--port", str(port)],
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
        pw_file = home / "airflow" / "simple_auth_manager_passwords.json.generated"
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
        yield Deployment(proc, base, log, home, tok)
    finally:
        rc = stop(proc)
        assert proc.poll() is not None and rc is not None, "airflow standalone did not stop"


def test_make_airflow_serves_livefin_dags(deployment: Deployment) -> None:
    def dag_ids() -> set[str] | None:
        code, body = deployment.api("GET", "dags?limit=100")
        ids = {d["dag_id"] for d in body["dags"]} if code == 200 else set()
        return ids if LIVEFIN_DAGS <= ids else None

    ids = deployment.wait("the livefin DAGs to be parsed", dag_ids, DEADLINE_S)
    assert ids == LIVEFIN_DAGS, "example DAGs or strays are loaded"
    code, errors = deployment.api("GET", "importErrors")
    assert code == 200 and errors["total_entries"] == 0, errors
    code, pool = deployment.api("GET", "pools/livefin_warehouse")
    assert code == 200 and pool["slots"] == 1
    # State stays inside the project's state folder, never ~/airflow.
    assert (deployment.home / "airflow" / "airflow.db").exists()


def test_ingest_asset_events_trigger_the_nightly(deployment: Deployment, tiny_run) -> None:
    """The scheduler, not a test harness, runs a backfill of livefin_ingest for D and starts
    livefin_nightly from its asset events; every run is keyed (and the scheduled and backfill
    runs named) by its business date."""
    from datetime import datetime

    import duckdb

    from livefin_etl.contracts import list_sources

    day = tiny_run["last"].isoformat()
    published = deployment.home / "published" / "livefin.duckdb"

    def published_run() -> list:
        con = duckdb.connect(str(published), read_only=True)
        try:
            return con.execute(
                "select distinct run_id from limits.financing_limits where as_of_date = ?", [day]
            ).fetchall()
        finally:
            con.close()

    before = published_run()
    assert len(before) == 1
    for dag_id in ("livefin_ingest", "livefin_nightly"):
        deployment.wait(
            f"{dag_id} to be parsed",
            lambda d=dag_id: deployment.api("GET", f"dags/{d}")[0] == 200,
            DEADLINE_S,
        )
        code, _ = deployment.api("PATCH", f"dags/{dag_id}", {"is_paused": False})
        assert code == 200
    # A real backfill of one business date (what `tools.airflow_local backfill` creates): no
    # conf, the date comes from the run's partition key alone.
    import livefin_dates as ld

    start, end = ld.backfill_window(tiny_run["last"], tiny_run["last"])
    code, backfill = deployment.api(
        "POST",
        "backfills",
        {
            "dag_id": "livefin_ingest",
            "from_date": start.isoformat(),
            "to_date": end.isoformat(),
            "max_active_runs": 1,
        },
    )
    assert code in (200, 201), backfill

    def backfill_run():
        code, body = deployment.api("GET", "dags/livefin_ingest/dagRuns?limit=20")
        runs = [r for r in (body or {}).get("dag_runs", []) if r["run_type"] == "backfill"]
        return runs[0] if runs else None

    run = deployment.wait("the backfill run", backfill_run, 120)
    # Named and keyed by the business date, not by the cron tick.
    assert run["partition_key"] == day, run
    assert run["dag_run_id"].startswith("backfill__") and f"__{day}__" in run["dag_run_id"]

    # Unpausing also lets the cron timetable create its own latest run (a business date with
    # no landing files here, so it fails); follow the backfill run.
    def finished(dag_id: str, run_type: str | None = None, run_id: str | None = None):
        def check():
            code, body = deployment.api("GET", f"dags/{dag_id}/dagRuns?limit=20")
            runs = [
                r
                for r in (body or {}).get("dag_runs", [])
                if (run_type is None or r["run_type"] == run_type)
                and (run_id is None or r["dag_run_id"] == run_id)
            ]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            return done[0] if done else None

        return check

    ingest = deployment.wait(
        "livefin_ingest to finish",
        finished("livefin_ingest", run_id=run["dag_run_id"]),
        600,
    )
    assert ingest["state"] == "success", deployment.log.read_text(errors="replace")[-3000:]
    nightly = deployment.wait(
        "the asset-triggered livefin_nightly to finish",
        finished("livefin_nightly", "asset_triggered"),
        600,
    )
    assert nightly["state"] == "success", deployment.log.read_text(errors="replace")[-3000:]
    code, body = deployment.api("GET", "dags/livefin_nightly/dagRuns?limit=10")
    # nothing else started it, and the failed cron ingest run updated no asset
    assert [r["run_type"] for r in body["dag_runs"]] == ["asset_triggered"]
    # The nightly for D's raw assets is the partition D (shown in the grid and the API).
    assert nightly["partition_key"] == day, nightly
    code, body = deployment.api("GET", "dags/livefin_ingest/dagRuns?limit=20")
    scheduled = [r for r in body["dag_runs"] if r["run_type"] == "scheduled"]
    assert scheduled, body
    for r in scheduled:  # the cron run: keyed by the day before its 02:00 Shanghai tick
        expected = ld.business_date_for(datetime.fromisoformat(r["run_after"])).isoformat()
        assert r["partition_key"] == expected, r
        assert f"__{expected}__" in r["dag_run_id"], r
    code, events = deployment.api(
        "GET", f"dags/livefin_nightly/dagRuns/{nightly['dag_run_id']}/upstreamAssetEvents"
    )
    assert code == 200
    uris = {e["uri"] for e in events["asset_events"]}
    assert uris == {f"livefin://raw/{s}" for s in list_sources()}
    assert {e["extra"].get("business_date") for e in events["asset_events"]} == {day}
    # the nightly published a new run for that date, atomically replacing the old one
    after = published_run()
    assert len(after) == 1 and after != before


def _tree(root: int) -> dict[int, int]:
    """pid -> session id of ``root`` and every descendant (from /proc)."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                procs[int(entry)] = (int(fields[1]), int(fields[3]))
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            tree[pid] = procs[pid][1]
            todo.extend(p for p, (ppid, _) in procs.items() if ppid == pid)
    return tree


def test_sigterm_stops_every_process_within_30s(deployment: Deployment) -> None:
    """Last in this module: SIGTERM to the `make airflow` process alone (as a service manager
    or `kill` sends it) stops the whole tree it started, within 30 s; few workers started."""
    from tools.airflow_local import session_pids

    tree = _tree(deployment.proc.pid)
    assert len(tree) > 3, f"airflow standalone has not started its components: {tree}"
    # Start small: parallelism 1 (the pool's slots), one API worker, instead of ~38 processes.
    assert len(tree) <= 20, f"{len(tree)} processes started"
    sessions = set(tree.values())
    t0 = time.monotonic()
    os.kill(deployment.proc.pid, signal.SIGTERM)
    left: list[int] = list(tree)
    while time.monotonic() - t0 < 30:
        left = [p for p in tree if Path(f"/proc/{p}").exists() and _tree(p)]
        left += [p for sid in sessions for p in session_pids(sid)]
        if not left and deployment.proc.poll() is not None:
            break
        time.sleep(0.5)
    assert not left, (
        f"still running {time.monotonic() - t0:.0f} s after SIGTERM: {sorted(set(left))}"
    )
    assert deployment.proc.returncode == 0
    port = deployment.base.rsplit(":", 1)[1]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(port))) != 0, "the API still answers"
