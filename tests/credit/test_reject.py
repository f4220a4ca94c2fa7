"""Reject inference (credit/reject.py): fuzzy augmentation's weights, the paired AUC interval,
and the report-only challenger recorded by the tiny world's training run."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np

from livefin_etl.credit import metrics as M
from livefin_etl.credit.reject import _augment


def test_fuzzy_augmentation_adds_each_refused_row_as_bad_and_good_weighted_by_pd() -> None:
    X = np.arange(6, dtype=float).reshape(3, 2)
    y = np.array([0, 1, 0])
    Xr = np.array([[10.0, 11.0], [12.0, 13.0]])
    pr = np.array([0.2, 0.7])
    Xa, ya, wa = _augment(X, y, Xr, pr)
    assert Xa.shape == (7, 2) and (Xa[3:5] == Xr).all() and (Xa[5:] == Xr).all()
    assert list(ya) == [0, 1, 0, 1, 1, 0, 0]
    assert np.allclose(wa, [1, 1, 1, 0.2, 0.7, 0.8, 0.3])
    # each refused applicant counts once in total, split by its PD
    assert np.allclose(wa[3:5] + wa[5:], 1.0)


def test_paired_auc_interval_is_zero_for_the_same_score_and_positive_for_a_better_one() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.1).astype(int)
    good = y + rng.normal(0, 0.8, len(y))
    noise = rng.normal(0, 1, len(y))
    same = M.paired_auc(y, good, good, n_boot=200, seed=1)
    assert same["diff_ci95"] == [0.0, 0.0] and same["ratio_ci95"] == [1.0, 1.0]
    better = M.paired_auc(y, noise, good, n_boot=200, seed=1)
    assert better["diff_ci95"][0] > 0.1  # informative score vs noise: clearly above
    assert better["ratio_ci95"][0] > 1.1


def test_training_records_the_reject_inference_challenger(tiny_run) -> None:
    con = duckdb.connect(str(tiny_run["settings"].warehouse), read_only=True)
    try:
        path = con.execute(
            "select artifact_path from credit.model_registry order by trained_at desc limit 1"
        ).fetchone()[0]
    finally:
        con.close()
    m = json.loads((Path(path) / "metrics.json").read_text())
    ri = m["reject_inference"]
    assert ri["method"] == "fuzzy augmentation", ri
    assert sum(ri["refused"].values()) > 0
    ttd, appr = ri["ttd_oot"], ri["approved_oot"]
    # through the door = the approved oot loans plus the refused oot applicants with a truth
    assert ttd["n"] == appr["n"] + ri["refused_oot"]["n"]
    assert appr["n"] == m["n_eval"]
    for d in (ttd, appr):
        for mod in ("kgb", "fuzzy"):
            assert 0.0 <= d[mod]["auc"] <= 1.0
        lo, hi = d["auc_diff_ci95"]
        assert lo <= d["auc_diff"] <= hi
    # the funded-loan model's own oot AUC is the one the gate judged
    assert abs(appr["kgb"]["auc"] - m["model"]["auc"]) < 1e-9
    assert ri["verdict"].startswith("through-the-door oot AUC")
