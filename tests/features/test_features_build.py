"""Point-in-time features on hand-made raw rows: hand-computed values, leakage, spine, reruns."""

from __future__ import annotations

import math
from datetime import date, timedelta

import duckdb
import pytest

from livefin_etl import features
from livefin_etl.config import LivefinError
from livefin_etl.testing.rawdata import D, Raw, scenario


def rows(con: duckdb.DuckDBPyConnection, table: str = "features.merchant_features") -> dict:
    df = con.execute(f"select * exclude (built_at) from {table} order by all").df()
    return {(r["merchant_id"], r["as_of_date"].date()): r for r in df.to_dict("records")}


def missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def close(a: float | None, b: float | None) -> bool:
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_hand_computed_merchant(scenario_con: duckdb.DuckDBPyConnection) -> None:
    assert features.build_features(scenario_con, D) == 2  # M3 onboarded on D, M4 inactive
    got = rows(scenario_con)
    assert set(got) == {("M1", D), ("M2", D)}
    m1 = got[("M1", D)]
    # daily net GMV of M1 before D (cancelled excluded, refunds subtracted)
    daily_net = {"01-20": 200, "02-10": 10, "02-11": 10, "02-12": 10, "02-13": 10, "02-14": 10,
                 "02-20": 60, "02-25": 60, "02-27": 100, "02-28": 30}  # fmt: skip
    n90 = 59  # tenure: days of life inside the 90-day window
    mean = sum(daily_net.values()) / n90
    var = sum(v * v for v in daily_net.values()) / n90 - mean**2
    w = features._cfg()["brushing"]["score"]
    scale = features._cfg()["brushing"]["ring_account_scale"]
    sigmoid_z = (
        w["intercept"]
        + w["ring_density"] * (1 / 12)
        + w["ring_account"] * math.log(1 + scale / 13)  # R's 5th of 13 orders in 365 days
        + w["non_live_share"] * 1.0  # no order of the scenario came from a live session
        + w["no_track_share"] * 0.2
        + w["odd_hour_share"] * (4 / 12)
        + w["log_spike"] * math.log((250 / 14) / (250 / 45))
    )
    expected = {
        "category": "apparel",
        "tenure_days": 59,
        # 7d: o1 100 + o2 50 + o6 30 + burst 3x20 ; 30d adds o3 80, cancelled o4 40, ring 5x10
        "gmv_gross_7d": 240.0, "gmv_gross_30d": 410.0, "gmv_gross_90d": 610.0, "gmv_gross_365d": 610.0,
        "gmv_net_7d": 190.0, "gmv_net_30d": 300.0, "gmv_net_90d": 500.0, "gmv_net_365d": 500.0,
        # minus ring order 10, burst 60, empty parcel o6 30
        "gmv_net_adj_30d": 200.0, "gmv_net_adj_90d": 400.0, "gmv_net_adj_365d": 400.0,
        "gmv_growth_30d": 300 / 200 - 1,  # prior 30 days: o5 200
        "gmv_growth_90d": None,  # nothing 91-180 days before
        "gmv_cv_90d": math.sqrt(var) / mean,
        # platform index per active merchant: M1 days + M2 (02-15: 100, 01-05: 300)
        "seasonal_trend_ratio": (300 / 400) / (500 / 900),
        "orders_30d": 12,
        "aov_30d": 370 / 12,
        "refund_rate_30d": 70 / 370,
        "return_rate_30d": 1 / 5,
        "cancel_rate_30d": 1 / 13,
        "on_time_ship_rate_30d": 4 / 5,  # o3 shipped after 72 h
        "mean_delivery_days_30d": 5.0,  # o1 delivered on D is not counted
        "lost_rate_30d": 1 / 5,
        "complaint_rate_30d": 1 / 12,
        "sessions_30d": 2, "viewers_30d": 1500, "watch_minutes_30d": 7000.0,
        "conversion_rate_30d": 12 / 1500,
        "streamer_count_90d": 2,
        "streamer_hhi_90d": (380**2 + 60**2) / 500**2,
        "top_streamer_id": "S1",
        "top_streamer_share_90d": 380 / 500,
        "days_since_top_streamer": 2,  # S1's last session 02-27
        "buyers_90d": 8,
        "buyer_hhi_90d": (160**2 + 0 + 200**2 + 30**2 + 50**2 + 3 * 20**2) / 500**2,
        "repeat_buyer_rate_90d": 2 / 8,  # A and R
        "quality_q": 0.9, "quality_source": "measured",
        "brush_ring_density_30d": 1 / 12,
        "ring_account_share_365d": 1 / 13,
        "non_live_share_30d": 1.0,
        "no_track_share_30d": 1 / 5,
        "odd_hour_share_30d": 4 / 12,
        "gmv_spike_ratio": (250 / 14) / (250 / 45),  # baseline: 59 - 14 = 45 days of life
        "brushing_score": 1 / (1 + math.exp(-sigmoid_z)),
        "active_days_90d": 10,
        "days_since_last_order": 1,
        "suspect_gmv_share_30d": 1 - 200 / 300,
        "feature_version": "features-v4",
    }  # fmt: skip
    missing = [
        k
        for k in features.REQUIRED_COLUMNS
        if k not in expected and k not in ("merchant_id", "as_of_date")
    ]
    assert missing == []
    wrong = {
        k: (m1[k], v)
        for k, v in expected.items()
        if not (m1[k] == v if isinstance(v, str) else close(m1[k], v))
    }
    assert wrong == {}
    m2 = got[("M2", D)]
    assert m2["quality_source"] == "default" and m2["quality_q"] == 0.8
    assert close(m2["seasonal_trend_ratio"], (100 / 400) / (400 / 900))
    assert m2["streamer_hhi_90d"] == 1.0 and m2["buyer_hhi_90d"] == 1.0


def test_later_events_do_not_change_features(scenario_con: duckdb.DuckDBPyConnection) -> None:
    features.build_features(scenario_con, D)
    before = rows(scenario_con)
    r = Raw()
    r.merchant("M5", "food", "2025-03-01")
    o = r.order("M1", "2025-03-01 00:00:00", "A", 999, streamer="S2")
    r.order("M1", "2025-03-02 03:00:00", "R", 999)
    r.order("M2", "2025-03-01 23:59:59", "Z", 999, streamer="S9")
    r.event("M1", o, "shipped", "2025-03-01 05:00:00", tracking="")
    r.session("M1", "S2", "2025-03-01 08:00:00", 10**6, 1.0)
    r.write(scenario_con, loaded_at="2025-06-02 00:00:00")
    # dq rows dated D are "as of D" (built from data before D); a row for D + 1 is the future
    scenario_con.execute(
        "insert into dq.merchant_quality values ('M1', date '2025-03-02', 0, 0, 0, 0, 0, 0, 0.1, 'q1')"
    )
    assert features.build_features(scenario_con, D) == 2
    assert rows(scenario_con).keys() == before.keys()
    for key, row in rows(scenario_con).items():
        diff = {
            k: v for k, v in row.items() if not (v == before[key][k] or close(v, before[key][k]))
        }
        assert diff == {}, key


def test_spine_gives_the_nightly_values(scenario_con: duckdb.DuckDBPyConnection) -> None:
    d2 = date(2025, 2, 20)
    features.build_features(scenario_con, D)
    features.build_features(scenario_con, d2)
    scenario_con.execute(
        "create table loans_spine as select * from (values "
        "('M1', date '2025-03-01'), ('M2', date '2025-03-01'), ('M1', date '2025-02-20'), "
        "('M1', date '2025-02-20')) t(merchant_id, as_of_date)"
    )
    target = "features.spine_features"
    assert features.build_features_for_spine(scenario_con, "loans_spine", target) == 3
    nightly = rows(scenario_con)
    spine = rows(scenario_con, "features.spine_features")
    assert set(spine) == {("M1", D), ("M2", D), ("M1", d2)}
    for key, row in spine.items():
        diff = {
            k: v for k, v in row.items() if not (v == nightly[key][k] or close(v, nightly[key][k]))
        }
        assert diff == {}, key
    # as of 02-20 the orders of 02-20 are not yet known
    assert spine[("M1", d2)]["gmv_net_30d"] == 50.0  # ring 5x10 (o5 on 01-20 is 31 days back)
    assert spine[("M1", d2)]["gmv_net_90d"] == 250.0
    # running the spine again replaces its rows
    assert features.build_features_for_spine(scenario_con, "loans_spine", target) == 3
    assert scenario_con.execute("select count(*) from features.spine_features").fetchone()[0] == 3
    # default target: features.merchant_features, where credit training looks for the pairs
    scenario_con.execute(
        "create temp table one_loan as select 'M2' as merchant_id, date '2025-02-10' as as_of_date"
    )
    assert features.build_features_for_spine(scenario_con, "one_loan") == 1
    assert set(rows(scenario_con)) == set(nightly) | {("M2", date(2025, 2, 10))}


def test_rerun_is_idempotent_and_incremental(scenario_con: duckdb.DuckDBPyConnection) -> None:
    features.build_features(scenario_con, D)
    first = rows(scenario_con)
    daily = scenario_con.execute("select * from features.merchant_daily order by all").fetchall()
    assert features.build_features(scenario_con, D) == 2
    assert rows(scenario_con).keys() == first.keys()
    assert (
        scenario_con.execute("select count(*) from features.merchant_features").fetchone()[0] == 2
    )
    assert (
        scenario_con.execute("select * from features.merchant_daily order by all").fetchall()
        == daily
    )
    # nothing changed in raw: no day is rebuilt
    assert features.ensure_daily(scenario_con, D - timedelta(days=400), D - timedelta(days=1)) == []
    # the next night builds only its new day; D's rows stay as they were
    features.build_features(scenario_con, D + timedelta(days=1))
    built = scenario_con.execute(
        "select count(*) from features.merchant_features where as_of_date = ?", [D]
    ).fetchone()[0]
    assert built == 2
    assert features.ensure_daily(scenario_con, D - timedelta(days=400), D) == []


def test_late_rows_rebuild_only_their_days(scenario_con: duckdb.DuckDBPyConnection) -> None:
    features.build_features(scenario_con, D)
    r = Raw()
    # 28 h late, loaded with dt=D; its own id (a fresh Raw() would reuse "o1", which is now a
    # later version of order o1, not a new order)
    r.order("M1", "2025-02-28 20:00:00", "L", 70, dt="2025-03-01", order_id="late1")
    r.write(scenario_con, loaded_at="2025-06-03 00:00:00")
    ranges = features.ensure_daily(scenario_con, D - timedelta(days=400), D - timedelta(days=1))
    assert ranges == [(date(2025, 2, 27), date(2025, 2, 28))]  # days whose partitions include dt=D
    features.build_features(scenario_con, D + timedelta(days=1))
    got = rows(scenario_con)[("M1", D + timedelta(days=1))]
    assert got["gmv_net_7d"] == 190.0 + 70.0


def test_brushing_signals_rank_a_brushing_merchant(
    con: duckdb.DuckDBPyConnection, tmp_path
) -> None:
    r = Raw()
    for i in range(4):
        r.merchant(f"C{i}", "food", "2024-06-01")
        r.merchant(f"B{i}", "food", "2024-06-01")
    for day in range(60):
        t = date(2024, 12, 1) + timedelta(days=day)
        for i in range(4):
            # clean: distinct buyers in the daytime, real parcels
            for k in range(3):
                o = r.order(f"C{i}", f"{t} 1{k}:00:00", f"c{i}-{day}-{k}", 50 + 10 * i)
                r.event(f"C{i}", o, "shipped", f"{t} 2{k}:00:00")
            # brushing: the same honest base + a ring of 3 buyers ordering every day at 3 am
            # with empty parcels, growing in the last two weeks
            for k in range(3):
                o = r.order(f"B{i}", f"{t} 1{k}:00:00", f"b{i}-{day}-{k}", 50 + 10 * i)
                r.event(f"B{i}", o, "shipped", f"{t} 2{k}:00:00")
            for k in range(3 if day >= 46 else 1):
                o = r.order(f"B{i}", f"{t} 03:{k:02d}:00", f"ring{i}-{k}", 30)
                r.event(f"B{i}", o, "shipped", f"{t} 09:00:00", tracking="", weight=10.0)
    r.write(con)
    as_of = date(2025, 1, 30)
    assert features.build_features(con, as_of) == 8
    got = rows(con)
    clean = [got[(f"C{i}", as_of)] for i in range(4)]
    brush = [got[(f"B{i}", as_of)] for i in range(4)]
    assert (
        max(c["brushing_score"] for c in clean)
        < 0.1
        < 0.5
        < min(b["brushing_score"] for b in brush)
    )
    for c, b in zip(clean, brush, strict=True):
        assert b["brush_ring_density_30d"] > 0.2 and c["brush_ring_density_30d"] == 0
        assert b["no_track_share_30d"] > 0.2 and c["no_track_share_30d"] == 0
        # brushing buys no extra adjusted GMV: every ring order is removed
        assert b["gmv_net_30d"] > c["gmv_net_30d"]
        assert close(b["gmv_net_adj_30d"], c["gmv_net_adj_30d"])
        assert close(c["gmv_net_adj_30d"], c["gmv_net_30d"])
    truth = tmp_path / "truth.parquet"
    con.execute(
        f"copy (select merchant_id, merchant_id like 'B%' as brushing from raw.merchants) to '{truth}'"
    )
    assert features.brushing_auc(con, truth, as_of) == 1.0
    assert features.auc([0.2, 0.5], [0.5, 0.1]) == 0.625


def test_ring_accounts_shared_across_shops(con: duckdb.DuckDBPyConnection) -> None:
    """A ring's accounts repeat at the shops that hire it: an order is a ring order once its
    account is a repeat buyer here and has been a repeat buyer at another shop, judged on its own
    day only. A loyal buyer of one shop, a repeat buyer with one order elsewhere and a one-off
    buyer of many shops are not rings; nor is a loyal buyer repeating at two shops of one category
    (features-v4), unless it repeated at the other shop on ring_same_category_repeat_days days."""
    r = Raw()
    for m, cat in (("P1", "food"), ("P2", "beauty"), ("Q", "food"), ("F1", "food"), ("F2", "food")):
        r.merchant(m, cat, "2024-06-01")
    expected = set()
    for j in range(4):  # ring pool x0..x3, below ring_min_orders at every shop
        r.order("P1", "2025-01-01 12:00:00", f"x{j}", 30)
        r.order("P2", "2025-01-05 12:00:00", f"x{j}", 30)
        r.order("P1", "2025-01-10 12:00:00", f"x{j}", 30)  # repeat here, one order elsewhere
        expected.add(r.order("P2", "2025-01-15 12:00:00", f"x{j}", 30))  # repeat at P1 too
        expected.add(r.order("P1", "2025-01-20 12:00:00", f"x{j}", 30))
    for k in range(3):
        r.order("Q", f"2025-01-0{k + 2} 12:00:00", "loyal", 50)  # repeats at one shop only
        for m in ("P1", "P2", "Q"):
            r.order(m, f"2025-01-0{k + 2} 13:00:00", f"once{k}", 50)  # one order per shop
    # a loyal buyer of two food shops: a repeat at each, one repeat day elsewhere: not a ring
    for m, dd in (("F1", 2), ("F1", 4), ("F2", 6), ("F2", 8)):
        r.order(m, f"2025-01-0{dd} 15:00:00", "fan", 40)
    # repeat buyer at F1 on 3 days (below ring_min_orders), then a repeat at F2: a ring order
    for dd in (2, 3, 4, 5):
        r.order("F1", f"2025-01-0{dd} 16:00:00", "heavy", 40)
    r.order("F2", "2025-01-10 16:00:00", "heavy", 40)
    expected.add(r.order("F2", "2025-01-12 16:00:00", "heavy", 40))
    r.write(con)
    as_of = date(2025, 1, 25)
    features.build_features(con, as_of)
    flagged = {
        oid
        for (oid,) in con.execute(
            "select order_id from features.suspect_orders where is_ring"
        ).fetchall()
    }
    assert flagged == expected
    got = rows(con)
    assert close(got[("P1", as_of)]["ring_account_share_365d"], 4 / 15)
    assert got[("Q", as_of)]["ring_account_share_365d"] == 0.0
    assert got[("P1", as_of)]["brushing_score"] > got[("Q", as_of)]["brushing_score"]


def test_clear_errors(con: duckdb.DuckDBPyConnection, tmp_path) -> None:
    with pytest.raises(LivefinError, match="run extract"):
        features.build_features(con, D)
    scenario().write(con)
    with pytest.raises(LivefinError, match="table or view name"):
        features.build_features_for_spine(con, "x; drop table raw.orders")
    con.execute("create table bad_spine as select 'M1' as merchant")
    with pytest.raises(LivefinError, match="merchant_id, as_of_date"):
        features.build_features_for_spine(con, "bad_spine")
    con.execute(
        "create table null_spine as select 'M1' as merchant_id, cast(null as date) as as_of_date"
    )
    with pytest.raises(LivefinError, match="null"):
        features.build_features_for_spine(con, "null_spine")
    with pytest.raises(LivefinError, match="truth file not found"):
        features.brushing_auc(con, tmp_path / "nope.parquet", D)


def test_schema_is_the_contract(scenario_con: duckdb.DuckDBPyConnection) -> None:
    features.build_features(scenario_con, D)
    cols = {
        r[0]: r[1]
        for r in scenario_con.execute(
            "select column_name, comment from duckdb_columns() "
            "where schema_name = 'features' and table_name = 'merchant_features'"
        ).fetchall()
    }
    assert set(features.REQUIRED_COLUMNS) <= set(cols)
    assert all(c for c in cols.values())  # every column commented
    tables = scenario_con.execute(
        "select table_name, comment from duckdb_tables() where schema_name = 'features'"
    ).fetchall()
    assert {t for t, _ in tables} >= {"merchant_features", "merchant_daily", "suspect_orders"}
    assert all(c for _, c in tables)
    # declared uniqueness holds
    for model in ("merchant_features", "merchant_daily", "merchant_streamer_daily", "platform_daily",
                  "suspect_orders", "merchant_daily_log"):  # fmt: skip
        spec = features.table_spec(model)
        key = ", ".join(spec.unique)
        dup = scenario_con.execute(
            f"select count(*) from (select {key} from {spec.table} group by all having count(*) > 1)"
        ).fetchone()[0]
        assert dup == 0, model
