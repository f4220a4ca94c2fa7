"""Stress scenarios run the same policy code on shocked inputs."""

from __future__ import annotations

from datetime import date

import pytest

from livefin_etl import limits, warehouse
from livefin_etl.config import LivefinError, get_settings
from livefin_etl.limits.inputs import load_inputs
from livefin_etl.limits.policy import validate_policy

D = date(2026, 11, 20)


@pytest.fixture
def wh(tmp_path, monkeypatch, bench):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    settings = get_settings()
    con = warehouse.connect(settings)
    bench.make_upstream(con, D, 200, seed=3)
    yield settings, con
    con.close()


def test_gmv_shock_lowers_exposure_and_is_written(wh, policy):
    settings, con = wh
    base = limits.build_limits(con, settings, D, run_id="r1", policy=policy)
    res = limits.stress(con, settings, D, gmv_shock=-0.3, policy=policy)
    # "before" is the same code path as build_limits.
    assert res["total_limit_before"] == pytest.approx(base["total_limit"])
    assert res["total_limit_after"] < res["total_limit_before"]
    assert res["total_el_after"] < res["total_el_before"]
    assert 0 < res["limits_changed"] <= 200 and len(res["top_affected"]) == 10
    changes = [abs(r["limit_after"] - r["limit_before"]) for r in res["top_affected"]]
    assert changes == sorted(changes, reverse=True)
    rows = con.execute(
        """select count(*), sum(limit_before), sum(limit_after), any_value(params)
           from stress.stress_results where scenario_id = ?""",
        [res["scenario_id"]],
    ).fetchone()
    assert rows[0] == 200
    assert rows[1] == pytest.approx(res["total_limit_before"])
    assert rows[2] == pytest.approx(res["total_limit_after"])
    assert '"gmv_shock": -0.3' in rows[3]
    text = limits.format_stress(res)
    assert "limits changed" in text and res["top_affected"][0]["merchant_id"] in text
    # Rerunning the scenario replaces it; a different scenario is kept beside it.
    limits.stress(con, settings, D, gmv_shock=-0.3, policy=policy)
    limits.stress(con, settings, D, gmv_shock=-0.3, streamer_exit=True, policy=policy)
    counts = con.execute(
        "select scenario_id, count(*) from stress.stress_results group by 1 order by 1"
    ).fetchall()
    assert [c for _, c in counts] == [200, 200]


def test_streamer_exit_hits_every_shop_of_leaving_streamers(wh, policy):
    """A dependent merchant's top streamer leaves every shop they sell for (issue 16): the
    fixture's streamers are a Zipf pool, so shops that are not dependent are hit too, and shops
    that never sold through a leaving streamer keep their limit."""
    settings, con = wh
    policy["guardrails"].update(max_streamer_share=1.0, max_category_share=1.0, el_budget=1e18)
    res = limits.stress(con, settings, D, gmv_shock=0.0, streamer_exit=True, policy=policy)
    dep = policy["stress"]["streamer_dependency_share"]
    inputs = load_inputs(con, D, validate_policy(policy))
    share = inputs["top_streamer_share_90d"].fillna(0.0)
    leaving = set(inputs.loc[share >= dep, "top_streamer_id"].dropna())
    hit = dict(zip(inputs["merchant_id"], inputs["top_streamer_id"].isin(leaving), strict=True))
    dependent = dict(zip(inputs["merchant_id"], share >= dep, strict=True))
    rows = con.execute(
        "select merchant_id, limit_after - limit_before from stress.stress_results "
        "where scenario_id = ?",
        [res["scenario_id"]],
    ).fetchall()
    assert all(delta == 0 for m, delta in rows if not hit[m])
    assert any(delta < 0 for m, delta in rows if dependent[m])
    assert any(delta < 0 for m, delta in rows if hit[m] and not dependent[m])
    assert all(delta <= 0 for _, delta in rows)


def test_bad_shock_is_rejected(wh):
    settings, con = wh
    with pytest.raises(LivefinError, match="gmv_shock"):
        limits.stress(con, settings, D, gmv_shock=-1.5)
