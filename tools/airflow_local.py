"""Local Airflow for livefin: the environment, one-time setup, and ``airflow standalone``.

    python -m tools.airflow_local standalone      # what `make airflow` runs
    python -m tools.airflow_local setup           # db migrate + the warehouse pool
    python -m tools.airflow_local env             # `eval "$(...)"` in a shell
    python -m tools.airflow_local backfill --start 2025-03-01 --end 2025-03-07
    python -m tools.airflow_local trigger livefin_nightly --date 2025-03-07
    python -m tools.airflow_local airflow dags list   # any airflow command, same env

Everything Airflow keeps (metadata DB, logs, generated admin password) lives under
``$AIRFLOW_HOME``, default ``$LIVEFIN_HOME/airflow``, never in ``~/airflow``. This module
imports no Airflow itself: Airflow reads its config at import time, so the env must be set
before the ``airflow`` process starts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from livefin_etl.config import REPO_ROOT

DAGS_FOLDER = REPO_ROOT / "dags"
POOL = "livefin_warehouse"
POOL_SLOTS = 1  # DuckDB has one writer
STOP_GRACE_S = 15  # SIGTERM to the whole session, then SIGKILL what is left
DEFAULT_PORT = 8080


def airflow_bin() -> str:
    """The ``airflow`` script of this interpreter's environment (the project venv)."""
    here = Path(sys.executable).parent / "airflow"
    return str(here) if here.exists() else (shutil.which("airflow") or "airflow")


def env(base: Mapping[str, str] | None = None, port: int | None = None) -> dict[str, str]:
    """The process environment for every local Airflow command (base: ``os.environ``)."""
    out = dict(os.environ if base is None else base)
    # Same defaults as config.get_settings(), resolved from ``out`` (the env being built).
    livefin_home = Path(out.get("LIVEFIN_HOME") or Path.cwd() / "state").expanduser().resolve()
    home = Path(out.get("AIRFLOW_HOME") or livefin_home / "airflow").expanduser().resolve()
    out.update(
        {
            "LIVEFIN_HOME": str(livefin_home),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # Pick up edited DAG files quickly on a laptop.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": out.get(
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "30"
            ),
            "LIVEFIN_AIRFLOW_POOL": out.get("LIVEFIN_AIRFLOW_POOL", POOL),
            # Start small: every livefin task waits for the 1-slot pool, so more executor
            # slots (Airflow's default is 32 LocalExecutor workers) would only sit idle in RAM.
            "AIRFLOW__CORE__PARALLELISM": out.get("AIRFLOW__CORE__PARALLELISM", str(POOL_SLOTS)),
            "AIRFLOW__API__WORKERS": out.get("AIRFLOW__API__WORKERS", "1"),
            # `airflow standalone` starts its components as `airflow ...` from PATH: make
            # that this venv's airflow even when the venv is not activated (`make airflow`).
            "PATH": os.pathsep.join([str(Path(airflow_bin()).parent), out.get("PATH", "")]),
        }
    )
    if port is not None:
        out["AIRFLOW__API__PORT"] = str(port)
        out["AIRFLOW__API__BASE_URL"] = f"http://localhost:{port}"
    return out


def run_airflow(
    args: Sequence[str], environ: Mapping[str, str] | None = None, check: bool = True, **kwargs
) -> subprocess.CompletedProcess:
    environ = dict(environ or env())
    Path(environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    return subprocess.run([airflow_bin(), *args], env=environ, check=check, **kwargs)


def setup(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Migrate the metadata DB and create the 1-slot pool all livefin tasks share."""
    environ = dict(environ or env())
    run_airflow(["db", "migrate"], environ, stdout=subprocess.DEVNULL)
    run_airflow(
        [
            "pools",
            "set",
            environ["LIVEFIN_AIRFLOW_POOL"],
            str(POOL_SLOTS),
            "livefin: one DuckDB writer at a time",
        ],
        environ,
        stdout=subprocess.DEVNULL,
    )
    return environ


def backfill_args(
    first: date, last: date, dry_run: bool = False, dag_id: str = "livefin_ingest"
) -> list[str]:
    """``airflow backfill create`` arguments covering business dates first..last."""
    sys.path.insert(0, str(DAGS_FOLDER))
    try:
        from livefin_dates import backfill_window
    finally:
        sys.path.remove(str(DAGS_FOLDER))
    start, end = backfill_window(first, last)
    args = [
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        start.isoformat(),
        "--to-date",
        end.isoformat(),
        "--max-active-runs",
        "1",
    ]
    return [*args, "--dry-run"] if dry_run else args


def trigger_args(dag_id: str, business_date: date, when: datetime | None = None) -> list[str]:
    """``airflow dags trigger`` for one business date, with a run id that names it (the grid
    then reads by business date, not by trigger time)."""
    import json

    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return [
        "dags",
        "trigger",
        dag_id,
        "--conf",
        json.dumps({"business_date": business_date.isoformat()}),
        "--run-id",
        f"bd_{business_date.isoformat()}__manual_{stamp}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.airflow_local", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("standalone", help="setup, then `airflow standalone` (UI + scheduler)")
    st.add_argument(
        "--port", type=int, default=int(os.environ.get("LIVEFIN_AIRFLOW_PORT", DEFAULT_PORT))
    )
    sub.add_parser("setup", help="airflow db migrate + the livefin_warehouse pool")
    sub.add_parser("env", help="print export lines for a shell")
    bf = sub.add_parser(
        "backfill", help="backfill livefin_ingest: one run (partition key) per business date"
    )
    bf.add_argument("--start", required=True, type=date.fromisoformat)
    bf.add_argument("--end", required=True, type=date.fromisoformat)
    bf.add_argument("--dry-run", action="store_true")
    tr = sub.add_parser("trigger", help="trigger a DAG for a business date (run id names it)")
    tr.add_argument("dag_id")
    tr.add_argument("--date", required=True, type=date.fromisoformat)
    af = sub.add_parser("airflow", help="run any airflow command with the livefin env")
    af.add_argument("rest", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)

    if ns.cmd == "env":
        import shlex

        for key, value in env().items():
            if key.startswith(("AIRFLOW", "LIVEFIN")):
                print(f"export {key}={shlex.quote(value)}")
        return 0
    if ns.cmd == "setup":
        e = setup()
        print(f"Airflow home {e['AIRFLOW_HOME']}, DAGs {e['AIRFLOW__CORE__DAGS_FOLDER']}")
        return 0
    if ns.cmd == "backfill":
        return run_airflow(backfill_args(ns.start, ns.end, ns.dry_run), check=False).returncode
    if ns.cmd == "trigger":
        return run_airflow(trigger_args(ns.dag_id, ns.date), check=False).returncode
    if ns.cmd == "airflow":
        return run_airflow(ns.rest, check=False).returncode
    e = setup(env(port=ns.port))
    # A deployment makes its home (and PII key) on purpose, once: `livefin init` is idempotent.
    subprocess.run([sys.executable, "-m", "livefin_etl.cli", "init"], env=e, check=True)
    print(
        f"Airflow UI: http://localhost:{ns.port}  (user admin, password in "
        f"{Path(e['AIRFLOW_HOME']) / 'simple_auth_manager_passwords.json.generated'})",
        flush=True,
    )
    return supervise([airflow_bin(), "standalone"], e)


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (from /proc): what `airflow standalone` started,
    grandchildren included, even those that made their own process group."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp session
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _signal_all(sid: int, sig: int) -> None:
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def supervise(
    argv: Sequence[str], environ: Mapping[str, str], grace_s: float = STOP_GRACE_S
) -> int:
    """Run ``argv`` in its own session; on SIGTERM / SIGINT (Ctrl-C) send SIGTERM to every
    process of that session, wait ``grace_s``, then SIGKILL the stragglers. Airflow's own
    shutdown leaves the API server and executor workers running for minutes."""
    child = subprocess.Popen(list(argv), env=dict(environ), start_new_session=True)
    sid = child.pid
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)
        _signal_all(sid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while child.poll() is None and not stopping:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    deadline = time.monotonic() + grace_s
    while session_pids(sid) and time.monotonic() < deadline:
        _signal_all(sid, signal.SIGTERM)  # components started during shutdown, too
        time.sleep(0.5)
    _signal_all(sid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=5)
    end = time.monotonic() + 5
    while session_pids(sid) and time.monotonic() < end:
        time.sleep(0.2)
    print(f"airflow stopped ({len(session_pids(sid))} processes left)", flush=True)
    return 0 if stopping else (child.returncode or 0)


if __name__ == "__main__":
    raise SystemExit(main())
