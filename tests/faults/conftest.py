"""Fault tests: shared states and helpers (real processes, real signals, real DuckDB files).

The expensive part is built once per session and copied per test:

* ``pre_l``   the tiny history ingested up to L-1 (L = last tiny date; a copy of the session's
              ``tiny_history`` plus its tail, tests/conftest.py), nightly for L-1 run and
              published (so a previous publication exists), and the champion model retired so the
              next nightly has to train: every stage of ``livefin run --start L`` really runs.
* ``after_l`` ``pre_l`` copied, then ``livefin run --start L`` uninterrupted (in-process): the
              reference every interrupted run must end up equal to.

Helpers are exposed through the ``fl`` fixture (this module) so test files do not import a
module named ``conftest`` (tests/conftest.py has that name too).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from livefin_etl.config import livefin_env

REPO = Path(__file__).resolve().parents[2]
# Captured at import: several conftest modules share the name "conftest" in sys.modules.
_THIS = sys.modules[__name__]
# Columns whose values legitimately differ between two runs of the same date.
# data_fingerprint is not among them: with exact decimal sums the training frame, and so its
# hash, is identical between two runs on the same data (tests/test_determinism.py).
VOLATILE = {"run_id", "seconds", "artifact_path", "report_path"}
VOLATILE_SUFFIXES = ("_at",)  # loaded_at, _loaded_at, built_at, created_at, trained_at, ...
# Append-only run history (one row per validation run): compared through dq.partition_status.
HISTORY_TABLES = {"dq.validation_runs", "dq.expectation_results", "features.merchant_daily_log"}
# Tables compared by an exact order-free hash (large, values parsed from text, no float maths).
HASHED_SCHEMAS = {"raw"}
WAIT_LIMIT_S = 600  # a guard against a hung child, not a timing assertion


@dataclass(frozen=True)
class State:
    home: Path
    landing: Path
    last: date

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse" / "livefin.duckdb"

    @property
    def published(self) -> Path:
        return self.home / "published"

    @property
    def exports(self) -> Path:
        return self.home / "exports"


# --------------------------------------------------------------------------- environment


# One implementation for every test: the package's own env switcher.
env = livefin_env


def last_date(landing: Path) -> date:
    p = json.loads((landing / "_truth" / "params.json").read_text())
    return date.fromisoformat(str(p["start"])) + timedelta(days=int(p["days"]) - 1)


def copy_home(src: Path, dst: Path, *, docs: bool = True) -> Path:
    """Copy a LIVEFIN_HOME. The GX project YAML holds the absolute Data Docs folder; it is
    re-pointed at the copy's own docs folder here too (gx_runner also does so on open)."""
    shutil.copytree(
        src, dst, symlinks=True, ignore=None if docs else shutil.ignore_patterns("docs")
    )
    for yml in dst.rglob("gx/*.yml"):
        text = yml.read_text()
        if str(src) in text:
            yml.write_text(text.replace(str(src), str(dst)))
    return dst


# --------------------------------------------------------------------------- processes


def livefin_argv(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "livefin"
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-m", "livefin_etl.cli", *args]


def child_env(
    home: Path, landing: Path, pause_at: str | None = None, marker: Path | None = None, **extra: str
) -> dict[str, str]:
    e = dict(os.environ)
    for k in ("LIVEFIN_TEST_PAUSE_AT", "LIVEFIN_TEST_PAUSE_MARKER", "LIVEFIN_TEST_PAUSE_FILE"):
        e.pop(k, None)
    e.update(
        LIVEFIN_HOME=str(home),
        LIVEFIN_LANDING=str(landing),
        PYTHONPATH=str(REPO),
        COLUMNS="200",  # rich wraps long error lines at 80 columns otherwise
        **extra,
    )
    if pause_at:
        assert marker is not None
        e.update(
            LIVEFIN_TEST_PAUSE_AT=pause_at,
            LIVEFIN_TEST_PAUSE_MARKER=str(marker),  # config.fault_point
            LIVEFIN_TEST_PAUSE_FILE=str(marker),  # publish._pause
            LIVEFIN_TEST_PAUSE_SECONDS="900",
        )
    return e


def spawn(
    args: list[str],
    home: Path,
    landing: Path,
    pause_at: str | None = None,
    marker: Path | None = None,
    **extra: str,
) -> subprocess.Popen:
    return subprocess.Popen(
        args if args[0] == sys.executable else livefin_argv(*args),
        cwd=home,
        env=child_env(home, landing, pause_at, marker, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# What one Airflow task runs: the weekly training's pipeline.train, or a nightly stage through
# pipeline.run_stage (dags/livefin_nightly.py).
TASK = (
    "import sys, datetime as d; from livefin_etl import pipeline; "
    "as_of_date = d.date.fromisoformat(sys.argv[2]); "
    "pipeline.train(as_of_date) if sys.argv[1] == 'train' "
    "else pipeline.run_stage(pipeline.STAGES[sys.argv[1]], as_of_date)"
)


def task_argv(stage: str, day: date) -> list[str]:
    return [sys.executable, "-c", TASK, stage, day.isoformat()]


def run_cli(
    args: list[str], home: Path, landing: Path, timeout: float = WAIT_LIMIT_S, **kw: Any
) -> subprocess.CompletedProcess:
    return subprocess.run(
        livefin_argv(*args),
        cwd=home,
        env=child_env(home, landing),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def wait_paused(proc: subprocess.Popen, marker: Path, point: str) -> None:
    """Wait until the child wrote the pause marker; fail with its output if it exited first."""
    end = time.monotonic() + WAIT_LIMIT_S
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f"child exited with {proc.returncode} before reaching {point}\n"
                f"stdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
            )
        if time.monotonic() > end:
            kill9(proc)
            pytest.fail(f"child never reached {point}")
        time.sleep(0.05)


def kill9(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"child ended with {proc.returncode}, not SIGKILL"


def assert_clean_failure(cp: subprocess.CompletedProcess | Any, codes=(1, 2)) -> None:
    """A user-facing failure: expected exit code, a message, never a Python traceback."""
    text = (cp.stdout or "") + (cp.stderr or "")
    assert "Traceback" not in text, f"traceback printed:\n{text[-4000:]}"
    assert cp.returncode in codes, f"exit code {cp.returncode}:\n{text[-4000:]}"


# --------------------------------------------------------------------------- digests


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else v  # exact: identical runs are bit-identical
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    return v


def _kept_columns(con, schema: str, table: str) -> list[str]:
    cols = [
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and "
            "table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
    ]
    return [c for c in cols if c not in VOLATILE and not c.endswith(VOLATILE_SUFFIXES)]


def warehouse_digest(db: Path) -> dict[str, Any]:
    """Every table's content minus volatile columns: raw.* as (count, order-free exact hash),
    the rest as sorted rows, floats exact."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        out: dict[str, Any] = {}
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_catalog = current_database() order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            name = f"{schema}.{table}"
            if name in HISTORY_TABLES:
                continue
            cols = ", ".join(f'"{c}"' for c in _kept_columns(con, schema, table))
            if schema in HASHED_SCHEMAS:
                out[name] = con.execute(
                    f"select count(*), coalesce(sum(hash({cols})::hugeint), 0)::varchar from {name}"
                ).fetchone()
            else:
                rows = con.execute(f"select {cols} from {name}").fetchall()
                out[name] = sorted((_norm(r) for r in rows), key=repr)
        return out
    finally:
        con.close()


def diff_digests(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    problems = []
    for name in sorted(set(got) | set(want)):
        if name not in got:
            problems.append(f"{name}: missing")
        elif name not in want:
            problems.append(f"{name}: unexpected table")
        elif got[name] != want[name]:
            g, w = got[name], want[name]
            if isinstance(g, list):
                extra = [r for r in g if r not in w][:2]
                lost = [r for r in w if r not in g][:2]
                problems.append(
                    f"{name}: {len(g)} rows vs {len(w)}; e.g. extra {extra!r}, missing {lost!r}"
                )
            else:
                problems.append(f"{name}: {g} vs {w}")
    return problems


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (hidden temp files included)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _visible(rel: str) -> bool:
    return not any(part.startswith(".") for part in Path(rel).parts)


def published_digest(state_home: Path) -> dict[str, Any]:
    """What readers and lenders can see: the published DB, its pointer files, all exports
    (hidden temp names of an unfinished run excluded: they are nobody's input)."""
    pub = state_home / "published"
    return {
        "published": {
            k: v
            for k, v in tree_digest(pub).items()
            if not k.startswith("snapshots/") and _visible(k)
        },
        "exports": {k: v for k, v in tree_digest(state_home / "exports").items() if _visible(k)},
    }


def read_publication(db: Path) -> tuple[date, str, int]:
    """Open the published snapshot read-only (as an analyst would) and read what it is."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        d, run_id = con.execute("select as_of_date, run_id from meta.publication").fetchone()
        n = con.execute("select count(*) from limits.current").fetchone()[0]
        return d, run_id, n
    finally:
        con.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fl():
    """This module: the helpers above, for the test files."""
    return _THIS


@pytest.fixture(scope="session")
def pre_l(tmp_path_factory, tiny_history) -> State:
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    h = tiny_history  # tests/conftest.py: first..tail-1 already ingested, shared
    last = h.last
    # Without the history's GX validation results: every later Data Docs build of pre_l and
    # its copies (after_l, the kill -9 rerun) renders the tail's results only. The fault tests
    # compare the warehouse, the publication and exports, never the Data Docs pages.
    home = h.copy_to(tmp_path_factory.mktemp("faults") / "pre_l", docs=False)
    with env(home, LIVEFIN_LANDING=str(h.landing)):
        s = get_settings()
        report = pipeline.run_range(
            last - timedelta(days=1), last - timedelta(days=1), s, ingest_from=h.tail, retrain=True
        )
        assert not report.blocked, report.blocked
        with pipeline.session(s) as (_s, con):
            # No champion: the next run trains a fresh one first (training is its own stage).
            con.execute(
                "update credit.model_registry set status = 'retired', "
                "reason = 'fault tests: retired so the next nightly trains' "
                "where status = 'champion'"
            )
    return State(home, h.landing, last)


@pytest.fixture(scope="session")
def after_l(tmp_path_factory, pre_l) -> dict[str, Any]:
    """``livefin run --start L`` on a copy of ``pre_l``, uninterrupted: the reference."""
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    home = copy_home(pre_l.home, tmp_path_factory.mktemp("faults_ref") / "after_l")
    with env(home, LIVEFIN_LANDING=str(pre_l.landing)):
        report = pipeline.run_range(pre_l.last, pre_l.last, get_settings(), retrain=True)
    assert not report.blocked, report.blocked
    state = State(home, pre_l.landing, pre_l.last)
    return {"state": state, "digest": warehouse_digest(state.warehouse), "report": report}
