"""Features whose lookback reaches before the data start are blanked in the training set
(config/model.yaml feature_lookback_days), whole columns only."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from livefin_etl.credit.dataset import TIME_COL, mask_censored_features
from livefin_etl.credit.spec import model_config


def _frame(first_day: int) -> pd.DataFrame:
    start = date(2025, 1, 1)
    days = np.arange(first_day, first_day + 60)
    return pd.DataFrame(
        {
            TIME_COL: [start + timedelta(days=int(d)) for d in days],
            "gmv_growth_90d": np.linspace(5.0, 0.1, len(days)),  # shrinks as history grows
            "gmv_net_adj_365d": np.linspace(1e4, 5e4, len(days)),
            "refund_rate_30d": np.full(len(days), 0.2),
        }
    )


def test_long_lookbacks_are_blanked_when_the_first_loan_lacks_the_history() -> None:
    f = _frame(100)
    why = mask_censored_features(
        f, date(2025, 1, 1), {"gmv_growth_90d": 180, "gmv_net_adj_365d": 365}
    )
    assert set(why) == {"gmv_growth_90d", "gmv_net_adj_365d"}
    assert f["gmv_growth_90d"].isna().all() and f["gmv_net_adj_365d"].isna().all()
    assert f["refund_rate_30d"].notna().all()  # not configured: untouched
    assert "100 days of data" in why["gmv_growth_90d"]


def test_a_long_enough_history_keeps_the_feature() -> None:
    f = _frame(200)
    why = mask_censored_features(
        f, date(2025, 1, 1), {"gmv_growth_90d": 180, "gmv_net_adj_365d": 365}
    )
    assert set(why) == {"gmv_net_adj_365d"}
    assert f["gmv_growth_90d"].notna().all()  # 200 >= 180 days for every loan


def test_no_data_start_changes_nothing() -> None:
    f = _frame(10)
    assert mask_censored_features(f, None, {"gmv_growth_90d": 180}) == {}
    assert f["gmv_growth_90d"].notna().all()


def test_the_shipped_config_lists_the_windows_longer_than_the_burn_in() -> None:
    cfg = model_config()
    burn = int(cfg["target"]["burn_in_days"])
    lookback = cfg["feature_lookback_days"]
    assert lookback["gmv_growth_90d"] == 180 and lookback["gmv_net_adj_365d"] == 365
    assert all(int(v) > burn for v in lookback.values())
    assert set(lookback) <= set(cfg["features"])
