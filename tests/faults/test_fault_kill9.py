"""kill -9 in every stage of the nightly, then rerun: the end state equals an uninterrupted run,
and the published snapshot / exports were never half-written.

One chain, to keep CI affordable. Each step starts a real process, pauses it inside a stage
(``LIVEFIN_TEST_PAUSE_AT``: after the stage's DELETE+INSERT and before its COMMIT; the publish
points are mid-snapshot and just before the swap) and SIGKILLs it; the next step is the rerun.
The ingest points kill ``livefin run --start L``; the nightly points kill the process one Airflow
task runs (``pipeline.run_stage(stage, L)``, dags/livefin_nightly.py), which spares CI a Great
Expectations start-up per step. After every kill: the killed stage's table holds nothing of L,
the warehouse opens, and the published snapshot and exports are byte-identical to before and
still readable read-only. Last, ``livefin run --start L`` runs uninterrupted (in-process) and
every table equals the reference run's. The state has no champion, so the chain kills the
training task first (``registry.before_commit``), then the nightly stages.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pandas as pd

# (what is killed, pause point, tables whose L rows the killed transaction was writing,
#  stages completed in-process afterwards: the "retry" before the next step)
CHAIN = [
    (
        "run",
        "extract.before_commit",
        ["raw.merchants", "meta.load_manifest", "meta.quarantine"],
        [],
    ),
    ("run", "gate.before_commit", ["dq.partition_status"], ["ingest", "merchant_quality"]),
    ("features", "features.before_commit", ["features.merchant_features"], ["features", "value"]),
    (
        "train",
        "registry.before_commit",
        ["credit.model_registry", "credit.model_events"],
        ["train"],
    ),
    ("score", "scoring.before_commit", ["credit.merchant_scores"], ["score"]),
    ("limits", "limits.before_commit", ["limits.financing_limits"], ["limits"]),
    ("publish", "publish.snapshot_building", [], []),
    ("publish", "publish.before_replace", [], []),
]


def test_kill9_in_every_stage_then_rerun_equals_uninterrupted_run(fl, pre_l, after_l, tmp_path):
    from livefin_etl import pipeline
    from livefin_etl.config import get_settings

    L = pre_l.last
    home = fl.copy_home(pre_l.home, tmp_path / "home")
    pre_digest = fl.warehouse_digest(pre_l.warehouse)
    visible_before = fl.published_digest(home)
    assert visible_before["published"].get("livefin.duckdb"), "pre_l has no publication"
    pub_before = fl.read_publication(home / "published" / "livefin.duckdb")
    assert pub_before[0] == L - timedelta(days=1) and pub_before[2] > 0

    for i, (what, point, tables, then) in enumerate(CHAIN):
        marker = tmp_path / f"paused-{i}"
        argv = ["run", "--start", str(L)] if what == "run" else fl.task_argv(what, L)
        proc = fl.spawn(argv, home, pre_l.landing, point, marker)
        fl.wait_paused(proc, marker, point)
        fl.kill9(proc)

        # Readers and lenders saw nothing: same bytes, still a valid read-only snapshot of L-1.
        assert fl.published_digest(home) == visible_before, f"published/exports changed ({point})"
        assert fl.read_publication(home / "published" / "livefin.duckdb") == pub_before
        assert not (home / "exports" / "limits" / f"as_of_date={L}").exists()

        # The killed transaction left nothing; the warehouse opens (WAL replayed) and is sane.
        now = fl.warehouse_digest(home / "warehouse" / "livefin.duckdb")
        for t in tables:
            if t.startswith("raw."):
                assert now[t] == pre_digest[t], f"{t} changed by the killed {point}"
            else:
                assert now.get(t, []) == pre_digest.get(t, []), (
                    f"{t} changed by the killed {point}: "
                    f"{fl.diff_digests({t: now.get(t, [])}, {t: pre_digest.get(t, [])})}"
                )
        if point == "registry.before_commit":
            # The artifacts were moved into place before the (killed) registry commit.
            assert any(p.name.startswith(f"m-{L:%Y%m%d}-") for p in (home / "models").iterdir())
        with fl.env(home, LIVEFIN_LANDING=str(pre_l.landing)):
            for stage in then:
                if stage == "ingest":
                    with pipeline.session(get_settings()) as (s, con):
                        pipeline.ingest_range(con, s, [L])
                elif stage == "train":
                    pipeline.train(L, get_settings())
                else:
                    pipeline.run_stage(pipeline.STAGES[stage], L, get_settings())

    # The last rerun runs to completion, in-process (same function the CLI calls).
    with fl.env(home, LIVEFIN_LANDING=str(pre_l.landing)):
        report = pipeline.run_range(L, L, get_settings(), retrain=True)
    assert not report.blocked, report.blocked

    problems = fl.diff_digests(
        fl.warehouse_digest(home / "warehouse" / "livefin.duckdb"), after_l["digest"]
    )
    assert not problems, "rerun after kills differs from the uninterrupted run:\n" + "\n".join(
        problems
    )

    ref = after_l["state"]
    # Same model, bit for bit (the registry row was compared above; the artifact too).
    champ = [r for r in after_l["digest"]["credit.model_registry"] if "champion" in r]
    assert champ, "reference run trained no champion"
    version = next(v for v in champ[0] if isinstance(v, str) and v.startswith("m-"))
    assert fl.sha(home / "models" / version / "model.json") == fl.sha(
        ref.home / "models" / version / "model.json"
    )
    assert (
        json.loads((home / "models" / version / "metrics.json").read_text())["model_hash"]
        == json.loads((ref.home / "models" / version / "metrics.json").read_text())["model_hash"]
    )

    # Published L, lenders get the same limits as from the uninterrupted run.
    d, _run, n = fl.read_publication(home / "published" / "livefin.duckdb")
    ref_d, _ref_run, ref_n = fl.read_publication(ref.home / "published" / "livefin.duckdb")
    assert (d, n) == (ref_d, ref_n) == (L, ref_n)
    exp = home / "exports" / "limits" / f"as_of_date={L}"
    ref_exp = ref.home / "exports" / "limits" / f"as_of_date={L}"
    assert sorted(p.name for p in exp.iterdir()) == sorted(p.name for p in ref_exp.iterdir())
    got = pd.read_parquet(exp / "limits.parquet").drop(columns=["run_id"])
    want = pd.read_parquet(ref_exp / "limits.parquet").drop(columns=["run_id"])
    key = ["merchant_id"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    )

    # No debris from the killed runs survives a successful rerun.
    leftovers = [
        p
        for root in (home / "published", home / "exports", home / "models")
        for p in root.rglob(".*")
    ]
    assert not leftovers, f"temp files of killed runs left behind: {leftovers}"
    history = [
        json.loads(x)["snapshot"]
        for x in (home / "published" / "history.jsonl").read_text().splitlines()
        if x.strip()
    ]
    orphans = [
        p.name for p in (home / "published" / "snapshots").iterdir() if p.name not in history
    ]
    assert not orphans, f"snapshots of killed runs left behind: {orphans}"
    shutil.rmtree(home, ignore_errors=True)
