"""publish / rollback on real DuckDB files: snapshot, atomic swap, exports, retention."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from livefin_etl import limits, publish, warehouse
from livefin_etl.config import LivefinError, StageBlocked, get_settings

D = dt.date(2026, 11, 20)
REQUIRED = ("merchants", "orders", "traffic", "fulfillment", "loans", "repayments")


def mark_gates(con: duckdb.DuckDBPyConnection, day: dt.date, status: str = "passed") -> None:
    failed = json.dumps(["expect_column_values_to_not_be_null(order_id) [critical]"])
    for src in REQUIRED:
        con.execute("delete from dq.partition_status where source = ? and dt = ?", [src, day])
        con.execute(
            "insert into dq.partition_status values (?, ?, ?, 'v', ?, now())",
            [src, day, status, failed if status == "failed" else "[]"],
        )


def prepare(con, settings, bench, day: dt.date, run_id: str, seed: int = 0, n: int = 60) -> None:
    bench.make_upstream(con, day, n, seed=seed)
    mark_gates(con, day)
    limits.build_limits(con, settings, day, run_id=run_id)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(folder.iterdir())}


def published_run(settings) -> str:
    ro = duckdb.connect(str(settings.published / "livefin.duckdb"), read_only=True)
    try:
        return ro.execute("select run_id from meta.publication").fetchone()[0]
    finally:
        ro.close()


def served(settings) -> dict[str, dict[str, str]]:
    return {p.name: tree_digest(p) for p in (settings.exports / "limits").glob("as_of_date=*")}


def assert_in_line(settings) -> dict:
    """Snapshot, CURRENT.json, history and every export folder describe RECORD.json."""
    pub = settings.published
    rec = json.loads((pub / "RECORD.json").read_text())
    assert json.loads((pub / "CURRENT.json").read_text()) == rec["current"]
    lines = (pub / "history.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == rec["history"]
    assert published_run(settings) == rec["current"]["run_id"]
    assert sha(pub / "livefin.duckdb") == sha(pub / "snapshots" / rec["current"]["snapshot"])
    assert sorted(served(settings)) == sorted(f"as_of_date={k}" for k in rec["exports"])
    for iso, version in rec["exports"].items():
        archived = settings.home / "publications" / version / "exports"
        assert tree_digest(settings.exports / "limits" / f"as_of_date={iso}") == tree_digest(
            archived
        )
    return rec


@pytest.fixture
def wh(tmp_path, monkeypatch, bench):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    monkeypatch.setenv("LIVEFIN_KEEP_SNAPSHOTS", "2")
    settings = get_settings()
    con = warehouse.connect(settings)
    prepare(con, settings, bench, D, "r1")
    yield settings, con
    con.close()


def test_publish_builds_snapshot_and_lender_exports(wh):
    settings, con = wh
    res = publish.publish(con, settings, D, "r1")
    pub = settings.published / "livefin.duckdb"
    assert Path(res["snapshot_path"]).exists() and sha(pub) == sha(Path(res["snapshot_path"]))
    assert not list(settings.published.glob("*.wal"))
    ro = duckdb.connect(str(pub), read_only=True)
    try:
        assert ro.execute("select count(*) from limits.current").fetchone()[0] == 60
        assert ro.execute("select count(*) from limits.merchant_360").fetchone()[0] == 60
        assert ro.execute("select sum(merchants) from limits.portfolio_summary").fetchone()[0] == 60
        assert ro.execute("select as_of_date, run_id from meta.publication").fetchone() == (D, "r1")
        for t in (
            "features.merchant_features",
            "credit.merchant_scores",
            "dq.merchant_quality",
            "valuation.data_asset_values",
        ):
            assert ro.execute(f"select count(*) from {t}").fetchone()[0] == 60, t
        comments = ro.execute(
            """select table_name, column_name from duckdb_columns()
               where schema_name = 'limits' and table_name = 'financing_limits' and comment is null"""
        ).fetchall()
        assert comments == []
        assert all(
            c
            for (c,) in ro.execute(
                "select comment from duckdb_views() where schema_name='limits'"
            ).fetchall()
        )
    finally:
        ro.close()

    out = Path(res["export_dir"])
    assert out == settings.exports / "limits" / f"as_of_date={D}"
    assert sorted(p.name for p in out.iterdir()) == [
        "data_dictionary.csv",
        "limits.csv",
        "limits.parquet",
        "manifest.json",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] == "r1" and manifest["rows"] == 60
    assert manifest["policy_versions"] == ["policy-v1"] and manifest["model_versions"] == [
        "model-bench"
    ]
    for name, info in manifest["files"].items():
        assert sha(out / name) == info["sha256"], name
    n_parquet = con.execute(
        f"select count(*) from read_parquet('{out / 'limits.parquet'}')"
    ).fetchone()[0]
    with open(out / "limits.csv", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert n_parquet == len(csv_rows) == 60
    assert sum(float(r["limit_amount"]) for r in csv_rows) == pytest.approx(manifest["total_limit"])
    with open(out / "data_dictionary.csv", encoding="utf-8") as f:
        dictionary = list(csv.DictReader(f))
    assert [r["column"] for r in dictionary] == list(csv_rows[0])
    assert all(r["description"] and r["type"] for r in dictionary)


def test_blocked_gate_publishes_nothing(wh, bench):
    settings, con = wh
    publish.publish(con, settings, D, "r1")
    before_pub = sha(settings.published / "livefin.duckdb")
    before_exp = tree_digest(settings.exports / "limits" / f"as_of_date={D}")
    d2 = D + dt.timedelta(days=1)
    prepare(con, settings, bench, d2, "r2", seed=5)
    mark_gates(con, d2, "failed")
    with pytest.raises(StageBlocked):
        publish.publish(con, settings, d2, "r2")
    assert sha(settings.published / "livefin.duckdb") == before_pub
    assert tree_digest(settings.exports / "limits" / f"as_of_date={D}") == before_exp
    assert not (settings.exports / "limits" / f"as_of_date={d2}").exists()
    assert [p.name for p in (settings.published / "snapshots").iterdir()] == [
        f"livefin-{D}-r1.duckdb"
    ]


def test_rerun_replaces_export_and_rollback_steps_back(wh, bench):
    settings, con = wh
    publish.publish(con, settings, D, "r1")
    limits.build_limits(con, settings, D, run_id="r1b")
    publish.publish(con, settings, D, "r1b")
    manifest = json.loads(
        (settings.exports / "limits" / f"as_of_date={D}" / "manifest.json").read_text()
    )
    assert manifest["run_id"] == "r1b"
    assert not list((settings.exports / "limits").glob(".*"))  # no temp or old folders left
    assert published_run(settings) == "r1b"

    back = publish.rollback(settings)
    assert back.name == f"livefin-{D}-r1.duckdb"
    assert published_run(settings) == "r1"
    assert_in_line(settings)
    manifest = json.loads(
        (settings.exports / "limits" / f"as_of_date={D}" / "manifest.json").read_text()
    )
    assert manifest["run_id"] == "r1"  # lenders get the export of the restored publication
    assert publish.current(settings)["snapshot"] == back.name
    with pytest.raises(LivefinError, match="no earlier snapshot"):
        publish.rollback(settings)
    assert published_run(settings) == "r1"


def test_only_the_last_n_snapshots_are_kept(wh, bench):
    settings, con = wh
    assert settings.keep_snapshots == 2
    for i in range(3):
        publish.publish(con, settings, D, f"k{i}")
    names = sorted(p.name for p in (settings.published / "snapshots").iterdir())
    assert names == [f"livefin-{D}-k1.duckdb", f"livefin-{D}-k2.duckdb"]
    assert publish.rollback(settings).name == f"livefin-{D}-k1.duckdb"


def test_bad_input_is_refused(wh):
    settings, con = wh
    with pytest.raises(LivefinError, match="run_id"):
        publish.publish(con, settings, D, "../evil")
    with pytest.raises(LivefinError, match="no limits for"):
        publish.publish(con, settings, D - dt.timedelta(days=3), "r9", check_gates=False)
    with pytest.raises(LivefinError, match="nothing has been published"):
        publish.rollback(settings)
    assert not (settings.published / "livefin.duckdb").exists()


def test_rollback_serves_the_export_sets_of_the_publication_it_returns_to(wh, bench, monkeypatch):
    _settings, con = wh
    monkeypatch.setenv("LIVEFIN_KEEP_SNAPSHOTS", "3")
    settings = get_settings()
    d2 = D + dt.timedelta(days=1)
    publish.publish(con, settings, D, "r1")
    first = served(settings)
    prepare(con, settings, bench, d2, "r2", seed=3)
    publish.publish(con, settings, d2, "r2")
    second = served(settings)
    limits.build_limits(con, settings, D, run_id="r3")
    publish.publish(con, settings, D, "r3")  # a rerun of the earlier date
    assert served(settings)[f"as_of_date={D}"] != first[f"as_of_date={D}"]

    publish.rollback(settings)  # to r2: D is served as it was then (r1's set), d2 as r2's
    assert served(settings) == second
    assert assert_in_line(settings)["current"]["run_id"] == "r2"
    publish.rollback(settings)  # to r1: d2 was never served with it, lenders no longer see it
    assert served(settings) == first
    assert assert_in_line(settings)["current"]["run_id"] == "r1"

    publish.publish(con, settings, d2, "r4")  # publishing after a rollback builds on it
    rec = assert_in_line(settings)
    assert served(settings)[f"as_of_date={D}"] == first[f"as_of_date={D}"]
    assert [e["action"] for e in rec["history"]] == ["publish"] * 3 + ["rollback"] * 2 + ["publish"]


def test_the_same_run_published_twice_never_overwrites_a_committed_snapshot(wh):
    settings, con = wh
    publish.publish(con, settings, D, "r1")
    first = sha(settings.published / "snapshots" / f"livefin-{D}-r1.duckdb")
    res = publish.publish(con, settings, D, "r1")  # e.g. a retried Airflow task
    assert Path(res["snapshot_path"]).name == f"livefin-{D}-r1+2.duckdb"
    assert sha(settings.published / "snapshots" / f"livefin-{D}-r1.duckdb") == first
    assert assert_in_line(settings)["current"]["run_id"] == "r1"
    assert publish.rollback(settings).name == f"livefin-{D}-r1.duckdb"
    assert sha(settings.published / "livefin.duckdb") == first


def test_prune_keeps_the_recorded_publication_and_the_export_sets_it_serves(wh, bench, monkeypatch):
    from livefin_etl.publish import record

    _settings, con = wh
    monkeypatch.setenv("LIVEFIN_KEEP_SNAPSHOTS", "3")
    settings = get_settings()
    for run in ("k0", "k1", "k2"):
        publish.publish(con, settings, D, run)
    publish.rollback(settings)
    publish.rollback(settings)
    assert publish.current(settings)["run_id"] == "k0"
    monkeypatch.setenv("LIVEFIN_KEEP_SNAPSHOTS", "1")
    small = get_settings()
    rec = json.loads((settings.published / "RECORD.json").read_text())
    assert record.prune(small, rec) == [f"livefin-{D}-k1.duckdb"]
    # k0 is current though older than the one kept publication (k2): its files stay.
    assert sorted(p.name for p in (settings.published / "snapshots").iterdir()) == [
        f"livefin-{D}-k0.duckdb",
        f"livefin-{D}-k2.duckdb",
    ]
    assert sorted(p.name for p in (settings.home / "publications").iterdir()) == [
        "v000001",
        "v000003",
    ]
    assert_in_line(small)


def test_a_state_published_before_the_record_existed_is_taken_over(wh):
    settings, con = wh
    publish.publish(con, settings, D, "r1")
    before = served(settings)
    pub = settings.published
    # What the previous code left: no record, no archive, entries without version or seq.
    (pub / "RECORD.json").unlink()
    shutil.rmtree(settings.home / "publications")
    strip = ("seq", "version")
    entry = json.loads((pub / "CURRENT.json").read_text())
    (pub / "CURRENT.json").write_text(json.dumps({k: entry[k] for k in entry if k not in strip}))
    (pub / "history.jsonl").write_text(
        json.dumps({k: entry[k] for k in entry if k not in strip}) + "\n"
    )
    assert publish.current(settings)["run_id"] == "r1"

    publish.publish(con, settings, D, "r2")
    assert assert_in_line(settings)["current"]["run_id"] == "r2"
    publish.rollback(settings)
    assert assert_in_line(settings)["current"]["run_id"] == "r1"
    assert served(settings) == before
    with pytest.raises(LivefinError, match="no earlier snapshot"):
        publish.rollback(settings)
