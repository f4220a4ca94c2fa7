"""Training set: matured loans only, correct labels, point-in-time features, no leakage."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from livefin_etl.config import LivefinError
from livefin_etl.credit import build_training_set, time_split
from livefin_etl.testing.credit_world import AS_OF, build_world, make_features, small_config


def _frame(con) -> pd.DataFrame:
    return build_training_set(con, AS_OF, small_config(), ensure_features=None)


def test_only_matured_loans_with_true_labels(con, world):
    df = _frame(con)
    assert "LRECENT1" not in set(df.loan_id) and "LRECENT2" not in set(df.loan_id)
    assert len(df) == len(world["labels"]) - 2
    expected = df.loan_id.map(world["labels"])
    assert (df.is_default.to_numpy() == expected.to_numpy()).all()
    assert 0.05 < df.is_default.mean() < 0.4
    # origination + horizon <= as_of for every row
    horizon = small_config()["target"]["horizon_days"]
    assert (
        pd.to_datetime(df.origination_date) + pd.Timedelta(days=horizon) <= pd.Timestamp(AS_OF)
    ).all()


def test_features_are_those_of_the_origination_date(con, world):
    """Every row carries the features the world generated for its loan's origination date."""
    df = _frame(con)
    truth = world["loan_features"].set_index("loan_id").loc[df.loan_id]
    assert len(df) == len(world["loan_features"]) - 2  # all but the two unmatured loans
    assert (df.merchant_id.to_numpy() == truth.merchant_id.to_numpy()).all()
    assert (
        pd.to_datetime(df.origination_date).to_numpy()
        == pd.to_datetime(truth.origination_date).to_numpy()
    ).all()
    for col in [*world["names"], "category"]:
        got, want = df[col].to_numpy(), truth[col].to_numpy()
        if col == "category":
            assert (got == want).all(), col
        else:
            np.testing.assert_allclose(got.astype(float), want.astype(float), err_msg=col)


def test_leakage_later_features_and_repayments_change_nothing(con, world):
    before = _frame(con)
    # features dated after origination (the day after, and the scoring date) get wild values
    con.execute("""
        insert into features.merchant_features
        select * replace (as_of_date + 1 as as_of_date, 0.99 as refund_rate_30d,
                          1e9 as gmv_net_adj_90d)
        from features.merchant_features f where as_of_date < DATE '2025-01-01'
          and not exists (select 1 from features.merchant_features g
                          where g.merchant_id = f.merchant_id and g.as_of_date = f.as_of_date + 1)
    """)
    con.execute(
        "update features.merchant_features set refund_rate_30d = 0.999 where as_of_date = ?",
        [AS_OF],
    )
    # repayments after the horizon (and after as_of) say every loan defaulted
    con.execute("""
        insert into raw.repayments
        select loan_id, merchant_id, origination_date + 181, 0, 1, 999 from raw.loans
        union all
        select loan_id, merchant_id, DATE '2025-02-01', 0, 1, 999 from raw.loans
    """)
    after = _frame(con)
    cols = [c for c in before.columns if c not in ("max_dpd", "repayment_rows")]
    pd.testing.assert_frame_equal(before[cols], after[cols])
    assert (after.max_dpd == before.max_dpd).all()


def test_repayment_inside_horizon_changes_label(con, world):
    """Positive control for the leakage test: the label does react to in-window data."""
    before = _frame(con)
    good = before.loc[before.is_default == 0, "loan_id"].iloc[0]
    con.execute(
        "insert into raw.repayments select loan_id, merchant_id, origination_date + 179, "
        "0, 1, 61 from raw.loans where loan_id = ?",
        [good],
    )
    after = _frame(con)
    assert after.set_index("loan_id").loc[good, "is_default"] == 1


def test_time_split_keeps_dates_whole_and_ordered(con, world):
    df = _frame(con)
    order = {"train": 0, "valid": 1, "oot": 2}
    by_date = df.groupby("origination_date")["split"].nunique()
    assert (by_date == 1).all()
    ranks = df["split"].map(order).to_numpy()
    dates = pd.to_datetime(df.origination_date).to_numpy()
    assert (np.diff(ranks[np.argsort(dates, kind="stable")]) >= 0).all()
    shares = df["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.6, abs=0.05)


def test_time_split_single_date_puts_everything_in_train():
    s = time_split(pd.Series([date(2024, 1, 1)] * 10), {"train": 0.6, "valid": 0.2, "oot": 0.2})
    assert set(s) == {"train"}


def test_missing_features_built_through_spine(con, world):
    full = _frame(con)
    victims = full.iloc[:25][["merchant_id", "origination_date"]]
    saved = con.execute("select * from features.merchant_features").df()
    con.register("_v", victims)
    con.execute(
        "delete from features.merchant_features f using _v "
        "where f.merchant_id = _v.merchant_id and f.as_of_date = _v.origination_date"
    )
    calls = []

    def fake_builder(c: duckdb.DuckDBPyConnection, spine: str) -> int:
        pairs = c.execute(f"select merchant_id, as_of_date from {spine}").df()
        calls.append(pairs)
        c.register("_saved", saved)
        c.execute(
            f"insert into features.merchant_features select s.* from _saved s "
            f"join {spine} p on p.merchant_id = s.merchant_id and p.as_of_date = s.as_of_date"
        )
        return len(pairs)

    dropped = _frame(con)
    assert len(dropped) == len(full) - len(victims)
    rebuilt = build_training_set(con, AS_OF, small_config(), ensure_features=fake_builder)
    assert len(calls) == 1
    assert len(calls[0]) == len(victims.drop_duplicates())
    assert len(rebuilt) == len(full)
    assert not con.execute(
        "select count(*) from duckdb_tables() where table_name = 'credit_training_spine'"
    ).fetchone()[0]


def test_duplicate_feature_rows_are_refused(con, world):
    con.execute(
        "insert into features.merchant_features select * from features.merchant_features "
        "where as_of_date < DATE '2024-01-01' limit 1"
    )
    with pytest.raises(LivefinError, match="duplicate"):
        _frame(con)


def test_burn_in_drops_loans_with_censored_history(con, world):
    full = _frame(con)
    con.execute("create table raw.orders as select TIMESTAMP '2023-03-01 10:00:00' as order_ts")
    cfg = small_config()
    cfg["target"]["burn_in_days"] = 90
    df = build_training_set(con, AS_OF, cfg, ensure_features=None)
    cutoff = pd.Timestamp("2023-05-30")
    assert (pd.to_datetime(df.origination_date) >= cutoff).all()
    dropped = int((pd.to_datetime(full.origination_date) < cutoff).sum())
    assert dropped > 0 and len(df) == len(full) - dropped
    assert df.attrs["loans_in_burn_in"] == dropped
    cfg["target"]["burn_in_days"] = 2000
    with pytest.raises(LivefinError, match="burn-in"):
        build_training_set(con, AS_OF, cfg, ensure_features=None)


def test_no_matured_loans_is_a_clear_error(con, world):
    with pytest.raises(LivefinError, match="empty training set"):
        build_training_set(con, date(2023, 2, 1), small_config(), ensure_features=None)


def test_missing_raw_tables_is_a_clear_error(tmp_path):
    c = duckdb.connect(str(tmp_path / "empty.duckdb"))
    with pytest.raises(LivefinError, match="raw.loans"):
        build_training_set(c, AS_OF, small_config(), ensure_features=None)


def test_make_features_has_every_configured_feature():
    cfg = small_config()
    keys = pd.DataFrame({"merchant_id": ["a"], "as_of_date": [AS_OF]})
    f = make_features(np.random.default_rng(0), keys, list(cfg["features"]))
    assert set(cfg["features"]) <= set(f.columns)


def test_world_builder_is_reproducible(tmp_path):
    frames = []
    for name in ("a", "b"):
        c = duckdb.connect(str(tmp_path / f"{name}.duckdb"))
        build_world(c, n_merchants=50, n_loans=200)
        frames.append(build_training_set(c, AS_OF, small_config(), ensure_features=None))
        c.close()
    pd.testing.assert_frame_equal(frames[0], frames[1])
