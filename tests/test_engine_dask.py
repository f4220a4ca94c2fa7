"""The dask engine (issue 18): the night's score, limits and publish on a 2-worker LocalCluster
give the local engine's tables row for row, also when a worker is SIGKILLed mid-task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from livefin_etl import pipeline
from livefin_etl.config import LivefinError, get_settings, livefin_env
from livefin_etl.engine import cluster, engine_name, with_engine

# Differ between any two runs by design: the run id and the wall-clock stamps.
VOLATILE = {"run_id", "created_at", "published_at", "loaded_at", "built_at"}
# The night's stages from features on: those the dask engine maps, value, monitor, and the
# publish that exports their tables.
STAGES = (
    pipeline.features,
    pipeline.value,
    pipeline.score,
    pipeline.limits,
    pipeline.monitor,
    pipeline.publish,
)
# The table each of those stages writes for the night, compared with the local run's.
NIGHT_TABLES = {
    "features": "features.merchant_features",
    "value": "valuation.data_asset_values",
    "score": "credit.merchant_scores",
    "limits": "limits.financing_limits",
}


@pytest.fixture(scope="module")
def scheduler():
    """One real 2-process LocalCluster for the module; the engine connects by address, as it
    would to a remote scheduler."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as lc:
        yield lc.scheduler_address
        made = cluster._CLIENTS.pop(lc.scheduler_address, None)
        if made is not None:
            made.close()


def _rows(db: Path, table: str, as_of_date) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = [c for c in con.table(table).columns if c not in VOLATILE]
        listed = ", ".join(f'"{c}"' for c in cols)
        return con.execute(
            f"select {listed} from {table} where as_of_date = ? order by merchant_id",
            [as_of_date],
        ).fetchall()
    finally:
        con.close()


def _export(home: Path, as_of_date) -> list[tuple]:
    path = home / "exports" / "limits" / f"as_of_date={as_of_date}" / "limits.parquet"
    with duckdb.connect() as con:
        rel = con.read_parquet(str(path))
        listed = ", ".join(f'"{c}"' for c in rel.columns if c not in VOLATILE)
        return con.execute(f"select {listed} from rel order by merchant_id").fetchall()


def _run_on_dask(tiny_run, home: Path, address: str, stages=STAGES) -> dict:
    """Copy the local run's home, drop the last night's features, values, scores and limits,
    rerun its stages on the dask engine; returns the stages' summaries."""
    import shutil

    last = tiny_run["last"]
    shutil.copytree(tiny_run["home"], home, ignore=shutil.ignore_patterns("*.lock", "*.wal"))
    extra = {"LIVEFIN_LANDING": str(tiny_run["landing"]), "LIVEFIN_DASK_SCHEDULER": address}
    with livefin_env(home, **extra):
        s = with_engine(get_settings(), "dask")
        con = duckdb.connect(str(s.warehouse))
        for table in (NIGHT_TABLES[f.__name__] for f in stages if f.__name__ in NIGHT_TABLES):
            con.execute(f"delete from {table} where as_of_date = ?", [last])
        con.close()
        run_id = pipeline.new_run_id(last)
        return {
            stage.__name__: pipeline.run_stage(stage, last, s, run_id=run_id) for stage in stages
        }


def _assert_same_as_local(tiny_run, home: Path, published: bool = True) -> None:
    last, local = tiny_run["last"], tiny_run["home"]
    for table in NIGHT_TABLES.values():
        want = _rows(local / "warehouse" / "livefin.duckdb", table, last)
        assert len(want) > 100
        assert _rows(home / "warehouse" / "livefin.duckdb", table, last) == want, table
    if not published:
        return
    assert _rows(home / "published" / "livefin.duckdb", "limits.current", last) == _rows(
        local / "published" / "livefin.duckdb", "limits.current", last
    )
    assert _export(home, last) == _export(local, last)


def test_engine_choice_is_validated(tmp_path):
    with livefin_env(tmp_path, LIVEFIN_ENGINE="spark"):
        with pytest.raises(LivefinError, match="unknown engine 'spark'"):
            engine_name(get_settings())
        assert engine_name(with_engine(get_settings(), "dask")) == "dask"
    with livefin_env(tmp_path):
        os.environ.pop("LIVEFIN_ENGINE", None)
        assert engine_name(get_settings()) == "local"


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path):
    with livefin_env(
        tmp_path, LIVEFIN_DASK_SCHEDULER="tcp://127.0.0.1:9", LIVEFIN_DASK_CONNECT_TIMEOUT="1s"
    ):
        with pytest.raises(LivefinError, match=r"cannot reach the dask scheduler tcp://127"):
            cluster.client()


@pytest.mark.slow  # ~50 s: six stages on the cluster, then the CLI as a real process
def test_night_on_dask_equals_local(tiny_run, scheduler, tmp_path):
    out = _run_on_dask(tiny_run, tmp_path / "dask", scheduler)
    assert out["features"]["engine"] == out["score"]["engine"] == out["limits"]["engine"] == "dask"
    assert out["features"]["shards"] == out["score"]["shards"] == 4  # two per worker thread
    assert out["features"]["feature_rows"] == out["score"]["score_rows"] > 100
    assert out["score"]["score_rows"] == out["limits"]["merchants"]
    _assert_same_as_local(tiny_run, tmp_path / "dask")
    # the single writer cleaned the run's inputs and parts off the lake
    assert not any((tmp_path / "dask" / "lake" / "runs").iterdir())
    # the CLI's --engine flag, as a real process, on the same cluster by its address
    env = {
        **os.environ,
        "LIVEFIN_HOME": str(tmp_path / "dask"),
        "LIVEFIN_DASK_SCHEDULER": scheduler,
    }
    env.update(LIVEFIN_LANDING=str(tiny_run["landing"]), COLUMNS="200")
    cp = subprocess.run(
        [str(Path(sys.executable).parent / "livefin"), "score", "--date", str(tiny_run["last"])]
        + ["--engine", "dask"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "dask" in cp.stdout and "Traceback" not in cp.stderr
    # the Airflow tasks' call with the DAG's `engine` param
    run = {"business_date": str(tiny_run["last"]), "run_id": "dag-run", "engine": "dask"}
    with livefin_env(tmp_path / "dask", **{k: env[k] for k in ("LIVEFIN_DASK_SCHEDULER",)}):
        assert _dag_common().run_stage(run, lambda p: p.limits)["engine"] == "dask"
    _assert_same_as_local(tiny_run, tmp_path / "dask", published=False)


def _dag_common():
    dags = str(Path(__file__).resolve().parents[1] / "dags")
    if dags not in sys.path:
        sys.path.insert(0, dags)
    import livefin_common

    return livefin_common


def test_worker_killed_mid_task_is_retried(tiny_run, scheduler, tmp_path):
    from distributed import Client

    marker = tmp_path / "killed.pid"
    arm = {"LIVEFIN_TEST_KILL_AT": "engine.shard_task", "LIVEFIN_TEST_KILL_MARKER": str(marker)}

    def set_env(values: dict) -> None:  # runs in the worker processes
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    with Client(scheduler) as c:
        before = set(c.run(os.getpid).values())
        c.run(set_env, arm)
        try:
            _run_on_dask(tiny_run, tmp_path / "dask", scheduler, (pipeline.score, pipeline.limits))
        finally:
            c.run(set_env, dict.fromkeys(arm))
        killed = int(marker.read_text())
        assert killed in before  # a real worker process died in a shard task ...
        with pytest.raises(ProcessLookupError):
            os.kill(killed, 0)
        assert killed not in set(c.run(os.getpid).values())
    # ... and its shard was redone
    _assert_same_as_local(tiny_run, tmp_path / "dask", published=False)


def test_exported_inputs_split_by_shard(tmp_path):
    """Each shard mounts exactly its merchants' rows under the warehouse name; a shard without
    rows gets the table's columns and types, empty; a `whole` table reaches every shard."""
    from livefin_etl.engine import lake
    from livefin_etl.warehouse import shard_of

    ids = [f"M{i:06d}" for i in range(40)]
    shards = 3
    # merchants of shard 2 have no orders: its files are the typed empty stand-in
    with_orders = [m for m in ids if shard_of(m, shards) != 2]
    with duckdb.connect() as con:
        con.execute("create schema raw")
        con.execute("create table raw.orders (merchant_id varchar, amount decimal(18, 2))")
        con.executemany("insert into raw.orders values (?, ?)", [(m, 1.25) for m in with_orders])
        con.execute("create table days as select range::int as n from range(3)")
        sharded = {
            "raw.orders": f"select t.*, m._shard from raw.orders as t join {lake.SHARD_MAP} "
            "as m using (merchant_id)"
        }
        lake.export_by_shard(con, tmp_path, ids, shards, sharded, {"days": "select * from days"})
    seen = []
    for i in range(shards):
        with duckdb.connect() as con:
            lake.mount_shard(con, tmp_path, i)
            rows = con.execute("select merchant_id, amount from raw.orders").fetchall()
            types = [t for _, t, *_ in con.execute("describe raw.orders").fetchall()]
            assert types == ["VARCHAR", "DECIMAL(18,2)"]
            assert con.execute("select count(*) from days").fetchone()[0] == 3
        assert all(shard_of(m, shards) == i for m, _ in rows)
        assert (len(rows) == 0) == (i == 2)
        seen += [m for m, _ in rows]
    assert sorted(seen) == with_orders
