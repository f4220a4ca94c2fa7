"""Validation windows and intervals (issue 16 item 8): a 3-month out-of-time window by days, its
fallback on a short history, bootstrap intervals for AUC/KS and Wilson intervals per decile."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from livefin_etl.credit import metrics as M
from livefin_etl.credit.dataset import window_split
from livefin_etl.credit.spec import model_config

SPLIT = {"train": 0.6, "valid": 0.2, "oot": 0.2, "oot_days": 92, "min_oot_defaults": 30}


def _loans(days: int, n: int, seed: int = 0) -> tuple[pd.Series, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = date(2024, 1, 1)
    t = pd.Series(sorted(start + timedelta(days=int(d)) for d in rng.integers(0, days, n)))
    return t, (rng.random(n) < 0.1).astype(int)


def test_oot_window_is_the_last_92_days_and_reports_its_defaults() -> None:
    t, y = _loans(540, 3000)
    split, info = window_split(t, y, SPLIT)
    ts = pd.to_datetime(t)
    cut = ts.max() - pd.Timedelta(days=92)
    assert (split[(ts > cut).to_numpy()] == "oot").all()
    assert not (split[(ts <= cut).to_numpy()] == "oot").any()
    # train before valid before oot, and the train:valid ratio of the fractions
    last_train = ts[split == "train"].max()
    assert last_train <= ts[split == "valid"].min()
    assert (split == "train").sum() / (split != "oot").sum() == pytest.approx(0.75, abs=0.02)
    assert info["oot_loans"] == int((split == "oot").sum())
    assert info["oot_defaults"] == int(y[split == "oot"].sum())
    assert 85 <= info["oot_days"] <= 92 and not info["shortened"]
    assert info["meets_target"] == (info["oot_defaults"] >= 30)


def test_short_history_falls_back_to_the_fraction_and_says_so() -> None:
    t, y = _loans(150, 800)  # 92 of 150 days would be ~60% of the loans
    split, info = window_split(t, y, SPLIT)
    assert info["shortened"] and not info["meets_target"]
    assert (split == "oot").mean() == pytest.approx(0.2, abs=0.03)


def test_shipped_config_asks_for_three_months_and_300_defaults() -> None:
    split = model_config(None)["split"]
    assert split["oot_days"] >= 90 and split["min_oot_defaults"] >= 300


def test_bootstrap_interval_covers_the_auc_and_narrows_with_data() -> None:
    rng = np.random.default_rng(3)
    widths = []
    for n in (500, 5000):
        p = rng.beta(1, 8, n)
        y = (rng.random(n) < p).astype(int)
        auc, ks = M.auc_ks(y, p)
        ci = M.bootstrap_auc_ks(y, p, n_boot=300, seed=1)
        assert ci["auc_ci95"][0] < auc < ci["auc_ci95"][1]
        assert ci["ks_ci95"][0] < ks < ci["ks_ci95"][1]
        widths.append(ci["auc_ci95"][1] - ci["auc_ci95"][0])
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): ten times the loans, a third of the width


def test_decile_gap_interval_contains_the_truth_for_calibrated_pds() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(1, 8, 20000)
    y = (rng.random(len(p)) < p).astype(int)
    gaps = M.calibration_gaps(M.decile_table(y, p))
    covered = [d["gap_ci95"][0] <= 0 <= d["gap_ci95"][1] for d in gaps]
    assert sum(covered) >= 9  # 95% intervals: at most one decile out by chance
    assert all(abs(d["gap"]) < 0.02 for d in gaps)
    # a model whose PDs are half the truth shows it in the slope and the gaps
    assert M.calibration_slope(y, p)["slope"] == pytest.approx(1.0, abs=0.1)
    worse = M.calibration_gaps(M.decile_table(y, p / 2))
    assert sum(d["gap_ci95"][0] > 0 for d in worse) >= 8
