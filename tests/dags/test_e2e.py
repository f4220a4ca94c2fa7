"""End to end through real Airflow runs (``dag.test()``), against the CLI on the same data.

History (all but the last four sample dates) is ingested once with the pipeline, as an
operator would with ``livefin ingest``. Then Airflow runs ingest + nightly for three dates
(a backfill) and the CLI runs ``livefin run`` for the same dates in a copy of that state; the
limits must match. Later tests work on copies of the Airflow state, so each stays independent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Generator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Columns that legitimately differ between two runs of the same date.
VOLATILE = {"run_id", "created_at", "loaded_at", "updated_at", "published_at", "computed_at"}


@contextmanager
def livefin_env(home: Path, landing: Path) -> Generator[None, None, None]:
    """Point the pipeline (read by get_settings() inside each in-process task) at ``home``."""
    saved = {k: os.environ.get(k) for k in ("LIVEFIN_HOME", "LIVEFIN_LANDING")}
    os.environ["LIVEFIN_HOME"], os.environ["LIVEFIN_LANDING"] = str(home), str(landing)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def copy_state(src: Path, dst: Path) -> Path:
    """Copy a LIVEFIN_HOME. Not docs/: the GX context there stores absolute paths (Data Docs
    of a copy would be written into the original); the copy builds its own."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n.endswith((".lock", ".wal"))}
        return skip | ({"docs"} & set(names) if Path(folder) == src else set())

    shutil.copytree(src, dst, ignore=ignore)
    return dst


def passing_dates(home: Path) -> set[date]:
    """Dates whose every validated source partition passed (or only warned)."""
    import duckdb

    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "select dt, bool_and(status <> 'failed') from dq.partition_status group by dt"
        ).fetchall()
    finally:
        con.close()
    return {d for d, ok in rows if ok}


def limits_rows(home: Path, days: list[date]) -> list[tuple]:
    """limits.financing_limits for ``days`` without run ids/timestamps, floats by their bits.

    Exact on purpose: amounts are summed in exact decimal arithmetic (docs/features.md), so two
    runs of the same data agree to the last bit whatever DuckDB's threads do."""
    import duckdb

    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        cols = [
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns where table_schema = 'limits' "
                "and table_name = 'financing_limits' order by ordinal_position"
            ).fetchall()
        ]
        keep = [c for c in cols if c not in VOLATILE and not c.endswith("_at")]
        rows = con.execute(
            f"select {', '.join(keep)} from limits.financing_limits "
            "where as_of_date in (select unnest(?::DATE[])) order by as_of_date, merchant_id",
            [days],
        ).fetchall()
    finally:
        con.close()
    return [tuple(v.hex() if isinstance(v, float) else v for v in r) for r in rows]


def scalar(home: Path, sql: str, params: list | None = None):
    import duckdb

    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchone()[0]
    finally:
        con.close()


def run_dag(dagbag, dag_id: str, conf: dict):
    """One real Airflow run of ``dag_id`` in this process; returns (state, {task: state})."""
    dr = dagbag.dags[dag_id].test(logical_date=None, run_conf=conf)
    tis = {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
        for ti in dr.get_task_instances()
    }
    return str(dr.state), tis, dr.run_id


def _asset_event_rows(run_id: str) -> list[tuple]:
    """``(uri, extra, partition_key)`` of every asset event an Airflow run emitted."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        return s.execute(
            select(AssetModel.uri, AssetEvent.extra, AssetEvent.partition_key)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == run_id)
        ).all()


def asset_events(run_id: str) -> dict[str, dict]:
    """Asset events an Airflow run emitted: ``{uri: extra}``."""
    return {uri: dict(extra or {}) for uri, extra, _ in _asset_event_rows(run_id)}


def asset_event_keys(run_id: str) -> dict[str, str | None]:
    """Partition key of each asset event an Airflow run emitted: ``{uri: key}``."""
    return {uri: key for uri, _, key in _asset_event_rows(run_id)}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db, tiny_history, tiny_ingested) -> dict:
    """Sample landing + a warehouse with the history ingested (the expensive part, shared with
    the rest of the session: tests/conftest.py ``tiny_history``, ingested up to 20 days before
    the last sample date).

    The simulator injects bad delivery days, so the Airflow dates are chosen, not assumed:
    the latest four consecutive dates whose partitions all pass (found on ``tiny_ingested``,
    the same history with every date ingested). Three are the Airflow backfill; the fourth is
    damaged on purpose in the blocking test.
    """
    from livefin_etl import pipeline

    root = tmp_path_factory.mktemp("livefin-e2e")
    landing, tail, last = tiny_history.landing, tiny_history.tail, tiny_history.last
    ok = passing_dates(tiny_ingested.home)
    windows = [
        [d + timedelta(days=k) for k in range(4)]
        for d in pipeline.daterange(tail, last - timedelta(days=3))
    ]
    good = [w for w in windows if all(d in ok for d in w)]
    assert good, f"no 4 consecutive passing dates in {tail}..{last}; passing: {sorted(ok)}"
    days = good[-1]
    base = tiny_history.copy_to(root / "base")
    with livefin_env(base, landing), pipeline.session() as (s, con):
        if days[0] > tail:
            pipeline.ingest_range(con, s, pipeline.daterange(tail, days[0] - timedelta(days=1)))
    with livefin_env(base, landing):
        # Training is its own stage: the champion every later run scores with.
        trained = pipeline.train(days[0])
    assert trained["status"] == "champion", trained
    return {"root": root, "landing": landing, "base": base, "days": days[:3], "last": days[3]}


@pytest.fixture(scope="module")
def backfilled(world, dagbag) -> dict:
    """Airflow ingest + nightly for three dates, one date after the other (a backfill)."""
    home = copy_state(world["base"], world["root"] / "airflow_state")
    runs = []
    with livefin_env(home, world["landing"]):
        for day in world["days"]:
            conf = {"business_date": day.isoformat()}
            ingest = run_dag(dagbag, "livefin_ingest", conf)
            nightly = run_dag(dagbag, "livefin_nightly", conf)
            runs.append({"day": day, "ingest": ingest, "nightly": nightly})
    return {**world, "home": home, "runs": runs}


# --------------------------------------------------------------------------- tests


def test_backfill_three_dates_succeeds_and_publishes(backfilled) -> None:
    from livefin_etl.contracts import list_sources

    home = backfilled["home"]
    for run in backfilled["runs"]:
        day = run["day"].isoformat()
        state, tis, ingest_run_id = run["ingest"]
        assert state == "success", (day, tis)
        # Each source task emitted its asset event carrying the business date.
        events = asset_events(ingest_run_id)
        assert {u: e.get("business_date") for u, e in events.items()} == {
            f"livefin://raw/{s}": day for s in list_sources()
        }
        # ... and partition key D, even in this key-less (conf) run: what the partitioned
        # nightly needs to start one run for D.
        assert asset_event_keys(ingest_run_id) == {
            f"livefin://raw/{s}": day for s in list_sources()
        }
        state, tis, nightly_run_id = run["nightly"]
        assert state == "success", (day, tis)
        assert asset_events(nightly_run_id)["livefin://published/limits"]["business_date"] == day
        assert (
            scalar(
                home,
                "select count(*) from limits.financing_limits where as_of_date = ?",
                [run["day"]],
            )
            > 0
        )
        # One pipeline run id for every stage of the Airflow run.
        assert (
            scalar(
                home,
                "select count(distinct run_id) from limits.financing_limits where as_of_date = ?",
                [run["day"]],
            )
            == 1
        )
    last = backfilled["days"][-1]
    published = home / "published" / "livefin.duckdb"
    assert published.exists()
    assert (home / "exports" / "limits" / f"as_of_date={last}" / "limits.parquet").exists()
    import duckdb

    con = duckdb.connect(str(published), read_only=True)
    try:
        assert (
            con.execute(
                "select count(*) from limits.financing_limits where as_of_date = ?", [last]
            ).fetchone()[0]
            > 0
        )
    finally:
        con.close()


def test_airflow_limits_match_cli_run(backfilled) -> None:
    days = backfilled["days"]
    cli_home = copy_state(backfilled["base"], backfilled["root"] / "cli_state")
    env = {
        **os.environ,
        "LIVEFIN_HOME": str(cli_home),
        "LIVEFIN_LANDING": str(backfilled["landing"]),
    }
    livefin = Path(sys.executable).parent / "livefin"
    proc = subprocess.run(
        [str(livefin), "run", "--start", days[0].isoformat(), "--end", days[-1].isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = limits_rows(cli_home, days)
    assert len(cli) > 0
    assert limits_rows(backfilled["home"], days) == cli


def test_rerun_of_a_date_gives_identical_limits(backfilled, dagbag) -> None:
    day = backfilled["days"][-1]
    home = copy_state(backfilled["home"], backfilled["root"] / "rerun_state")
    before = limits_rows(home, [day])
    old_run = scalar(
        home, "select min(run_id) from limits.financing_limits where as_of_date = ?", [day]
    )
    with livefin_env(home, backfilled["landing"]):
        state, tis, _ = run_dag(dagbag, "livefin_nightly", {"business_date": day.isoformat()})
    assert state == "success", tis
    new_run = scalar(
        home, "select min(run_id) from limits.financing_limits where as_of_date = ?", [day]
    )
    assert new_run != old_run, "the date was not recomputed"
    assert limits_rows(home, [day]) == before


def test_critical_failure_blocks_the_date_and_keeps_published(
    backfilled, dagbag, capfd, caplog
) -> None:
    day = backfilled["last"]
    home = copy_state(backfilled["home"], backfilled["root"] / "blocked_state")
    # Hard-linked copy of the landing; only the one file we damage is replaced.
    landing = backfilled["root"] / "blocked_landing"
    shutil.copytree(backfilled["landing"], landing, copy_function=os.link)
    orders = sorted((landing / "orders" / f"dt={day}").glob("*.csv"))
    assert orders
    for f in orders:  # deliver only half of the day's orders: the row-count check is critical
        data = f.read_bytes()
        lines = data.splitlines(keepends=True)
        f.unlink()
        f.write_bytes(b"".join(lines[: 1 + (len(lines) - 1) // 2]))
    published = home / "published" / "livefin.duckdb"
    snapshot_before = published.read_bytes()
    limits_before = limits_rows(home, backfilled["days"])

    conf = {"business_date": day.isoformat()}
    with livefin_env(home, landing):
        state, tis, ingest_run = run_dag(dagbag, "livefin_ingest", conf)
        assert state == "failed", tis
        assert tis["ingest_orders"] == "failed"
        # Later sources still ran; `check` fails the run naming the source.
        assert sorted(t for t, st in tis.items() if st != "success") == ["check", "ingest_orders"]
        # The failed source produced no asset event, so the nightly would not be triggered.
        events = asset_events(ingest_run)
        assert "livefin://raw/orders" not in events
        assert len(events) == len(tis) - 3
        capfd.readouterr()
        state, tis, _ = run_dag(dagbag, "livefin_nightly", conf)
    out = "".join(capfd.readouterr()) + caplog.text
    assert state == "failed", tis
    # The first stage after the date (merchant quality) meets the closed gate; nothing after runs.
    assert tis["merchant_quality"] == "failed"
    assert tis["features"] == "upstream_failed"
    assert tis["publish"] in ("upstream_failed", "None")
    failed = json.loads(
        scalar(
            home,
            "select failed_expectations from dq.partition_status "
            "where source = 'orders' and dt = ?",
            [day],
        )
    )
    critical = [f for f in failed if f.endswith("[critical]")]
    assert critical
    assert f"quality gate for {day} is closed" in out
    assert all(f in out for f in critical), critical
    assert f"livefin stage merchant_quality failed for business date {day}" in out
    # Nothing changed for lenders.
    assert published.read_bytes() == snapshot_before
    assert (
        scalar(home, "select count(*) from limits.financing_limits where as_of_date = ?", [day])
        == 0
    )
    assert limits_rows(home, backfilled["days"]) == limits_before


def test_sharded_scoring_and_limits_match_single_shard(backfilled, dagbag) -> None:
    day = backfilled["days"][-1]
    home = copy_state(backfilled["home"], backfilled["root"] / "sharded_state")
    with livefin_env(home, backfilled["landing"]):
        state, tis, _ = run_dag(
            dagbag, "livefin_nightly", {"business_date": day.isoformat(), "shards": 4}
        )
    assert state == "success", tis
    assert {t for t in tis if t.startswith("score[")} == {f"score[{i}]" for i in range(4)}
    assert limits_rows(home, [day]) == limits_rows(backfilled["home"], [day])


def test_weekly_dag_with_a_refused_model_keeps_the_champion(
    backfilled, dagbag, tmp_path, monkeypatch
) -> None:
    """A model below the AUC floor is registered as a challenger by the weekly DAG; the gate task
    is skipped (no champion asset event) and the previous champion keeps scoring."""
    import yaml

    from livefin_etl import config

    day = backfilled["days"][-1]
    home = copy_state(backfilled["home"], backfilled["root"] / "refused_state")
    before = scalar(
        home, "select model_version from credit.model_registry where status = 'champion'"
    )
    assert before is not None
    strict = tmp_path / "config"
    shutil.copytree(config.CONFIG_DIR, strict)
    model = yaml.safe_load((strict / "model.yaml").read_text())
    model["champion_gate"]["auc_min"] = 0.999
    (strict / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    monkeypatch.setattr(config, "CONFIG_DIR", strict)
    config.load_config.cache_clear()
    with livefin_env(home, backfilled["landing"]):
        state, tis, run_id = run_dag(
            dagbag, "livefin_train_weekly", {"business_date": day.isoformat()}
        )
    assert state == "success", tis
    assert tis["train"] == "success" and tis["gate"] == "skipped", tis
    assert "livefin://models/champion" not in asset_events(run_id)
    refused = scalar(
        home,
        "select status || ': ' || reason from credit.model_registry where as_of_date = ? "
        "and model_version <> ?",
        [day, before],
    )
    assert refused.startswith("challenger: ") and "below floor 0.999" in refused, refused
    assert (
        scalar(home, "select model_version from credit.model_registry where status = 'champion'")
        == before
    )
    # The next night scores with the champion that stayed in force.
    monkeypatch.undo()
    config.load_config.cache_clear()
    with livefin_env(home, backfilled["landing"]):
        from livefin_etl import pipeline

        pipeline.run_stage(pipeline.score, day)
    assert (
        scalar(
            home,
            "select distinct model_version from credit.merchant_scores where as_of_date = ?",
            [day],
        )
        == before
    )


def test_weekly_training_and_stress_dags(backfilled, dagbag) -> None:
    day = backfilled["days"][-1]
    home = copy_state(backfilled["home"], backfilled["root"] / "train_state")
    with livefin_env(home, backfilled["landing"]):
        state, tis, _ = run_dag(dagbag, "livefin_train_weekly", {"business_date": day.isoformat()})
        assert state == "success", tis
        assert tis["gate"] in ("success", "skipped")
        assert (
            scalar(home, "select count(*) from credit.model_registry where as_of_date = ?", [day])
            >= 1
        )
        # No business_date: the stress DAG takes the latest limits date.
        state, tis, _ = run_dag(
            dagbag, "livefin_stress", {"gmv_shock": -0.5, "streamer_exit": True}
        )
        assert state == "success", tis
    latest = scalar(home, "select max(as_of_date) from limits.financing_limits")
    assert latest == day
    assert (
        scalar(
            home,
            "select count(*) from stress.stress_results where as_of_date = ? and gmv_shock = -0.5",
            [day],
        )
        > 0
    )
