"""Calibration and CBPE against ground truth (issue 16 acceptance 5, issue 17 CBPE).

The synthetic credit world knows every loan's true PD, so the PDs' spread and the CBPE estimate
can be judged without label noise: the calibration slope against the true PDs (soft labels)
and CBPE against the AUC the model's ranking truly expects. Also the min_child_weight rule
that fixed the compressed PDs of model-v5 (config ``tuning``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from livefin_etl.credit import training as T
from livefin_etl.credit.monitor_outcomes import expected_auc_ks
from livefin_etl.credit.spec import model_config, spec_from_frame
from livefin_etl.testing.credit_world import AS_OF, small_config, write_truth


def truth_slope(pd_: np.ndarray, true_pd: np.ndarray) -> float:
    """Calibration slope with the true PDs as soft labels: 1 = the PDs' spread is right."""
    x = np.log(pd_ / (1 - pd_)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6, max_iter=2000).fit(
        np.vstack([x, x]),
        np.r_[np.ones(len(x)), np.zeros(len(x))],
        sample_weight=np.r_[true_pd, 1 - true_pd],
    )
    return float(lr.coef_[0, 0])


def truth_expected_auc(rank: np.ndarray, true_pd: np.ndarray) -> float:
    """The AUC a ranking realises on average when loan i defaults with its true PD (pairs by
    brute force: an independent check of the CBPE formula's O(n log n) version)."""
    d = rank[:, None] - rank[None, :]
    w = true_pd[:, None] * (1 - true_pd[None, :])
    np.fill_diagonal(w, 0.0)
    return float(np.sum(w * ((d > 0) + 0.5 * (d == 0))) / np.sum(w))


def test_pds_match_the_true_pds_and_cbpe_the_truly_expected_auc(settings, con, world) -> None:
    write_truth(settings, world)
    f = T.fit(con, settings, AS_OF, config=small_config(), ensure_features=None)
    p, q = f.ev.pd_eval, f.ev.oracle_eval
    assert len(p) > 200 and not np.isnan(q).any()
    # spread and level of the out-of-time PDs against the truth (no label noise)
    assert 0.8 <= truth_slope(p, q) <= 1.25
    assert abs(p.mean() - q.mean()) < 0.02
    # CBPE from the PDs alone against the AUC their ranking truly expects on these loans
    assert expected_auc_ks(p)[0] == pytest.approx(truth_expected_auc(p, q), abs=0.03)
    # the realised AUC scatters around that by label noise; the oracle ranks better still
    assert truth_expected_auc(q, q) > truth_expected_auc(p, q)
    assert f.metrics["tuning"]["min_child_weight"] in f.cfg["tuning"]["min_child_weight"]


def _rare_defaults(n: int, seed: int):
    """A 4 % default rate with a risky tail (x1 > 1, a sixth of the rows): ~10 expected
    defaults per leaf need ~250 rows, so min_child_weight 10 can hardly isolate the tail."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    true_pd = 1 / (1 + np.exp(-(-4.0 + 1.2 * x[:, 0] + 1.5 * np.maximum(x[:, 1] - 1, 0))))
    return x, (rng.random(n) < true_pd).astype(int), true_pd


def test_min_child_weight_is_chosen_by_valid_logloss_and_frees_the_risky_tail() -> None:
    import pandas as pd

    cfg = model_config(None)
    cfg["features"] = {"a": 1, "b": 1, "c": 0}
    cfg["categorical"] = {"columns": [], "max_levels": 12}
    cfg["xgboost"].update({"n_estimators": 300, "early_stopping_rounds": 30})
    cfg["tuning"] = {"min_child_weight": [10, 1]}
    x, y, q = _rare_defaults(2000, 1)
    spec = spec_from_frame(pd.DataFrame(x, columns=["a", "b", "c"]), cfg, strict=True)
    tr, va = slice(0, 1000), slice(1000, 2000)
    booster, used, info = T.tune_booster(x[tr], y[tr], x[va], y[va], spec, cfg, threads=1)
    losses = {float(k): v for k, v in info["valid_logloss"].items()}
    assert info["min_child_weight"] == min(losses, key=losses.get)
    assert used["xgboost"]["min_child_weight"] == info["min_child_weight"]
    assert info["rounds"] == booster.num_boosted_rounds()
    # the winner's margins separate the riskiest tenth at least as well as the fixed 10 does
    fixed = {**cfg, "xgboost": {**cfg["xgboost"], "min_child_weight": 10.0}}
    b10 = T.fit_booster(x[tr], y[tr], x[va], y[va], spec, fixed, threads=1)
    top = q[va] >= np.quantile(q[va], 0.9)
    spread = {}
    for name, b in (("tuned", booster), ("fixed", b10)):
        m = T.margins(b, x[va], spec, 1)
        spread[name] = float(m[top].mean() - m[~top].mean())
    assert info["min_child_weight"] == 1.0
    assert spread["tuned"] >= spread["fixed"]
