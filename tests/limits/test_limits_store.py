"""Inputs with absent upstream stages, the sharded staging path and the latest limits date."""

from __future__ import annotations

from datetime import date

import pytest

from livefin_etl import limits, warehouse
from livefin_etl.config import LivefinError, get_settings
from livefin_etl.features import ensure_table, table_spec

D = date(2026, 11, 20)


@pytest.fixture
def con(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    con = warehouse.connect(get_settings())
    yield con
    con.close()


def test_stages_that_never_ran_contribute_nothing(con, bench):
    # Only features and scores exist: quality, values, loans, orders and gates are created empty.
    frames = bench.merchant_frames(D, 30, seed=4)
    ensure_table(con, table_spec("merchant_features"))
    warehouse.run_ddl(con, "credit")
    for table in ("features.merchant_features", "credit.merchant_scores"):
        warehouse.insert_frame(con, table, frames[table])
    assert not warehouse.table_exists(con, "raw.loans")
    inputs = limits.load_inputs(con, D, limits.load_policy())
    assert len(inputs) == 30 and sorted(inputs.columns) == sorted(limits.INPUT_COLUMNS)
    assert inputs["data_asset_value"].isna().all() and inputs["top_streamer_id"].isna().all()
    assert (inputs["outstanding_exposure"] == 0).all() and not inputs["in_default"].any()
    assert not inputs["failed_partition"].any()


def test_sharded_staging_gives_the_unsharded_limits(con, bench):
    settings = get_settings()
    bench.make_upstream(con, D, 120, seed=6)
    cols = "merchant_id, limit_amount, decision, tier, guardrail_scale, reason_codes"
    sql = f"select {cols} from limits.financing_limits where as_of_date = ? order by 1"
    limits.build_limits(con, settings, D, "whole")
    whole = con.execute(sql, [D]).fetchall()
    staged = [limits.stage_inputs(con, D, "sharded", (i, 3)) for i in range(3)]
    assert sum(staged) == 120
    with pytest.raises(LivefinError, match="no staged limit inputs"):
        limits.finalize_from_staging(con, settings, D, "another-run")
    res = limits.finalize_from_staging(con, settings, D, "sharded")
    assert res["merchants"] == 120 and con.execute(sql, [D]).fetchall() == whole
    left = con.execute("select count(*) from limits.limit_inputs_staging").fetchone()[0]
    assert left == 0


def test_a_missing_shard_is_refused(con, bench):
    bench.make_upstream(con, D, 40, seed=6)
    limits.stage_inputs(con, D, "r1", (0, 2))
    with pytest.raises(LivefinError, match=r"shards \[1\] of 2"):
        limits.finalize_from_staging(con, get_settings(), D, "r1")


def test_an_empty_shard_is_not_a_missing_one(con, bench):
    # 5 merchants over 16 shards: most shards have no merchant and stage no rows
    bench.make_upstream(con, D, 5, seed=6)
    staged = [limits.stage_inputs(con, D, "r1", (i, 16)) for i in range(16)]
    assert sum(staged) == 5 and staged.count(0) >= 11
    assert limits.finalize_from_staging(con, get_settings(), D, "r1")["merchants"] == 5


def test_latest_limits_date(con, bench):
    assert limits.latest_limits_date(con) is None
    bench.make_upstream(con, D, 20)
    limits.build_limits(con, get_settings(), D, "r1")
    assert limits.latest_limits_date(con) == D
