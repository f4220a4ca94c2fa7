"""Scale-out path: scoring and limits sharded by merchant hash give the unsharded answer."""

from __future__ import annotations

import shutil

import duckdb

from livefin_etl import pipeline
from livefin_etl.config import get_settings, livefin_env
from livefin_etl.warehouse import in_shard, shard_of

COLS = (
    "merchant_id, limit_amount, decision, tier, grade, round(pd, 12), round(expected_loss, 6), "
    "guardrail_scale, reason_codes"
)


def _limits(path, day):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            f"select {COLS} from limits.financing_limits where as_of_date = ? order by merchant_id",
            [day],
        ).fetchall()
    finally:
        con.close()


def test_shard_of_is_stable_and_partitions():
    ids = [f"M{i:06d}" for i in range(1000)]
    assert [shard_of(m, 4) for m in ids[:5]] == [shard_of(m, 4) for m in ids[:5]]
    masks = [in_shard(ids, (i, 4)) for i in range(4)]
    assert all(sum(col) == 1 for col in zip(*masks, strict=True))  # each id in exactly one shard
    assert min(sum(m) for m in masks) > 150  # roughly balanced


def test_one_and_four_shards_give_identical_limits(tiny_run, tmp_path):
    last = tiny_run["last"]
    baseline = _limits(tiny_run["settings"].warehouse, last)
    assert len(baseline) > 100
    home = tmp_path / "sharded"
    shutil.copytree(tiny_run["home"], home, ignore=shutil.ignore_patterns("*.lock"))
    with livefin_env(home, LIVEFIN_LANDING=str(tiny_run["landing"])):
        s = get_settings()
        con = duckdb.connect(str(s.warehouse))
        con.execute("delete from limits.financing_limits where as_of_date = ?", [last])
        con.execute("delete from credit.merchant_scores where as_of_date = ?", [last])
        con.close()
        run_id = pipeline.new_run_id(last)
        scored = [
            pipeline.run_stage(pipeline.score, last, s, run_id=run_id, shard=(i, 4))["score_rows"]
            for i in range(4)
        ]
        staged = [
            pipeline.run_stage(pipeline.limits, last, s, run_id=run_id, shard=(i, 4))["staged_rows"]
            for i in range(4)
        ]
        pipeline.run_stage(pipeline.limits_finalize, last, s, run_id=run_id)
        assert sum(scored) == sum(staged) == len(baseline)
        assert all(n > 0 for n in scored)
        assert _limits(s.warehouse, last) == baseline
