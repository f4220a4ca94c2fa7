"""DAG integrity: imports, tags, retries, timeouts, parse time, light module-level imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from livefin_etl.contracts import list_sources

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
EXPECTED = {"livefin_ingest", "livefin_nightly", "livefin_train_weekly", "livefin_stress"}
HEAVY = (
    "polars",
    "duckdb",
    "xgboost",
    "great_expectations",
    "pandas",
    "numpy",
    "sklearn",
    "pyarrow",
    "livefin_etl",
)


def test_no_import_errors_and_expected_dags(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


def test_parse_time_per_file_under_one_second(dagbag) -> None:
    stats = {Path(s.file).name: s.duration.total_seconds() for s in dagbag.dagbag_stats}
    assert set(stats) == {f"{d}.py" for d in EXPECTED}, "helper modules must be .airflowignored"
    slow = {f: t for f, t in stats.items() if t >= 1.0}
    assert not slow, f"DAG files parse too slowly: {slow}"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_and_task_settings(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert "livefin" in dag.tags and len(dag.tags) >= 2
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    for t in dag.tasks:
        assert t.retries >= 2, t.task_id
        assert t.retry_exponential_backoff > 0, t.task_id
        assert t.execution_timeout is not None, t.task_id
        assert t.on_failure_callback, t.task_id
        assert t.pool == "livefin_warehouse", t.task_id


def test_assets_wire_ingest_to_nightly(dagbag) -> None:
    ingest = dagbag.dags["livefin_ingest"]
    nightly = dagbag.dags["livefin_nightly"]
    sources = list_sources()
    produced = {o.uri for t in ingest.tasks for o in t.outlets}
    assert produced == {f"livefin://raw/{s}" for s in sources}
    for s in sources:  # one producer task per source, so one bad source blocks only itself
        assert [o.uri for o in ingest.task_dict.get(f"ingest_{s}").outlets] == [
            f"livefin://raw/{s}"
        ]
    # Contract order: reference checks of later sources need earlier sources' rows for D.
    for a, b in zip(sources, sources[1:], strict=False):
        assert f"ingest_{b}" in ingest.task_dict[f"ingest_{a}"].downstream_task_ids
        assert ingest.task_dict[f"ingest_{b}"].trigger_rule == "all_done"
    assert ingest.task_dict["check"].trigger_rule == "all_done"
    cond = nightly.timetable.asset_condition
    assert type(cond).__name__ == "AssetAll"
    # Runs are keyed by business date: ingest's cron runs and the nightly runs its events start.
    assert type(ingest.timetable).__name__ == "CronPartitionTimetable"
    assert type(nightly.timetable).__name__ == "PartitionedAssetTimetable"
    assert {a.uri for a in cond.objects} == produced
    assert [o.uri for o in nightly.task_dict.get("publish").outlets] == [
        "livefin://published/limits"
    ]
    # The engine switch (issue 18): the env's choice (local) unless the run asks for dask.
    engine = nightly.params.get_param("engine")
    assert engine.value is None and engine.schema["enum"] == [None, "local", "dask"]
    # DuckDB has one writer: mapped shards must run one at a time.
    for tid in ("score", "limits"):
        assert nightly.task_dict.get(tid).max_active_tis_per_dagrun == 1
    edges = [
        ("business_date", "merchant_quality"),
        ("merchant_quality", "features"),
        ("features", "value"),
        ("value", "score"),
        ("plan_shards", "score"),
        ("score", "limits"),
        ("limits", "limits_finalize"),
        ("limits_finalize", "monitor"),
        ("monitor", "publish"),
    ]
    for up, down in edges:
        assert down in nightly.task_dict[up].downstream_task_ids, (up, down)
    # The graph shows the real order: business_date feeds the first stage only (each task
    # pulls the run from its XCom), not an edge to every task.
    assert nightly.task_dict["business_date"].downstream_task_ids == {
        "merchant_quality",
        "plan_shards",
    }
    assert ingest.task_dict["business_date"].downstream_task_ids == {f"ingest_{sources[0]}"}
    train = dagbag.dags["livefin_train_weekly"]
    assert [o.uri for o in train.task_dict.get("gate").outlets] == ["livefin://models/champion"]
    # Evaluation is inside the champion gate (credit), before promotion: no separate task.
    assert set(train.task_dict) == {"business_date", "train", "gate"}
    assert "gate" in train.task_dict["train"].downstream_task_ids


def test_dag_files_import_nothing_heavy(airflow_env: dict[str, str]) -> None:
    """Import each DAG file in a fresh interpreter and look for heavy modules after each."""
    files = sorted(str(p) for p in DAGS.glob("livefin_*.py"))
    code = (
        "import json, runpy, sys\n"
        f"sys.path.insert(0, {str(DAGS)!r})\n"
        "out = {}\n"
        f"for f in {files!r}:\n"
        "    runpy.run_path(f)\n"
        f"    out[f] = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=airflow_env, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(found) == len(files) >= 6
    assert {Path(f).name: mods for f, mods in found.items() if mods} == {}


def test_ruff_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff not installed in this environment")
    proc = subprocess.run(
        [
            str(ruff),
            "check",
            "--preview",
            "--select",
            "AIR3,E,F,I",
            str(DAGS),
            str(ROOT / "tools" / "airflow_local.py"),
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


def test_dags_serialize_for_the_scheduler(dagbag) -> None:
    """What the DAG processor stores; catches e.g. a non-pendulum DAG timezone."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, dag in dagbag.dags.items():
        data = DagSerialization.serialize_dag(dag)
        back = DagSerialization.deserialize_dag(data)
        assert back.dag_id == dag_id
        assert {t.task_id for t in back.tasks} == {t.task_id for t in dag.tasks}


def test_backfill_helper_window_hits_exactly_the_business_dates(airflow_db, dagbag) -> None:
    """`airflow_local backfill --dry-run` through the real `airflow backfill create`: one run
    per business date, its partition key the date (and part of the backfill run ids)."""
    import re
    from datetime import date, datetime, timedelta

    import livefin_dates as ld
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)  # what the DAG processor would have stored
    first, last = date(2025, 10, 18), date(2025, 10, 20)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.airflow_local",
            "backfill",
            "--start",
            str(first),
            "--end",
            str(last),
            "--dry-run",
        ],
        env=airflow_db,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # One run per business date, keyed by it (the partition_key column of the dry run).
    keys = re.findall(r"\|\s*\|\s*(\d{4}-\d\d-\d\d)\s*\|", proc.stdout)
    assert keys == [str(first + timedelta(days=k)) for k in range(3)], proc.stdout[-2000:]
    stamps = re.findall(r"\|\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00)\s*\|", proc.stdout)
    # partition_date is D at 02:00 Shanghai (the tick the scheduled run for D looks back to).
    got = [ld.business_date_for(datetime.fromisoformat(s) + timedelta(days=1)) for s in stamps]
    assert got == [first + timedelta(days=k) for k in range(3)], proc.stdout[-2000:]
