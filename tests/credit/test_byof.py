"""Bring your own features: any parquet with a binary label; CV without a time column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from livefin_etl.config import LivefinError
from livefin_etl.credit import train_from_file
from livefin_etl.credit.byo import GRID
from livefin_etl.testing.credit_world import small_config


def _frame(n: int = 900, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    purpose = rng.choice(["car", "tv", "business"], n)
    logit = -1.0 + 1.5 * x1 - 1.0 * x2 + 0.8 * (purpose == "business")
    df = pd.DataFrame(
        {
            "applicant_id": [f"A{i}" for i in range(n)],  # id: many levels, not a feature
            "duration": x1,
            "savings": x2,
            "purpose": purpose,
            "noise": rng.normal(size=n),
            "applied_on": pd.date_range("2023-01-01", periods=n, freq="D"),
            "bad": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )
    df.loc[rng.random(n) < 0.05, "savings"] = np.nan
    return df


def test_cv_without_time_column(tmp_path, settings):
    path = tmp_path / "german_like.parquet"
    _frame().to_parquet(path)
    r = train_from_file(settings, path, "bad", out_dir=tmp_path / "out", config=small_config())
    assert r["mode"] == "cv5"
    assert r["auc"] > 0.75 and r["lr_auc"] > 0.75
    assert r["n_oot"] == 900  # every row is evaluated out of fold
    assert "applicant_id" not in r["features"]
    assert {"duration", "savings", "noise"} <= set(r["features"])
    assert any(f.startswith("purpose=") for f in r["features"])
    out = Path(r["artifact_path"])
    assert (out / "model.json").exists() and (out / "report.html").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_window"] == "5-fold out-of-fold"
    assert "Metrics" in (out / "report.html").read_text()


def test_time_split_when_time_column_given(tmp_path, settings):
    path = tmp_path / "timed.parquet"
    _frame().to_parquet(path)
    r = train_from_file(settings, path, "bad", time_col="applied_on", config=small_config())
    assert r["mode"] == "time_split"
    assert r["n_train"] + r["n_valid"] + r["n_oot"] == 900
    assert "applied_on" not in r["features"]
    assert Path(r["artifact_path"]).parent == settings.models / "byof"
    # BYO's inner-CV choice of min_child_weight stands; the warehouse grid is not applied on top
    art = Path(r["artifact_path"])
    used = json.loads((art / "config.json").read_text())["xgboost"]["min_child_weight"]
    assert used in {g["min_child_weight"] for g in GRID}
    assert json.loads((art / "metrics.json").read_text())["tuning"] == {}


def test_bool_label_is_accepted(tmp_path, settings):
    df = _frame()
    df["bad"] = df["bad"].astype(bool)
    path = tmp_path / "b.parquet"
    df.to_parquet(path)
    assert train_from_file(settings, path, "bad", config=small_config())["auc"] > 0.7


@pytest.mark.parametrize(
    ("mutate", "kwargs", "match"),
    [
        (lambda d: d.iloc[0:0], {}, "empty training set"),
        (lambda d: d.assign(bad=d["bad"] + 1), {}, "binary"),
        (lambda d: d.assign(bad=d["bad"] * 3 - 1), {}, "binary"),
        (lambda d: d.assign(bad=0), {}, "single class"),
        (lambda d: d.drop(columns="bad"), {}, "missing columns.*bad"),
        (lambda d: d, {"time_col": "nope"}, "missing columns.*nope"),
        (lambda d: d.assign(bad=d["bad"].astype(float).where(d.index > 3)), {}, "missing values"),
    ],
)
def test_bad_inputs_are_clear_errors(tmp_path, settings, mutate, kwargs, match):
    path = tmp_path / "bad.parquet"
    mutate(_frame()).to_parquet(path)
    with pytest.raises(LivefinError, match=match):
        train_from_file(settings, path, "bad", config=small_config(), **kwargs)


def test_missing_file_is_a_clear_error(tmp_path, settings):
    with pytest.raises(LivefinError, match="not found"):
        train_from_file(settings, tmp_path / "nope.parquet", "bad")


def test_only_label_column_is_a_clear_error(tmp_path, settings):
    path = tmp_path / "only.parquet"
    _frame()[["bad"]].to_parquet(path)
    with pytest.raises(LivefinError, match="no usable feature"):
        train_from_file(settings, path, "bad", config=small_config())
