"""Training: determinism, monotone constraints, artifacts, metrics, report, device fallback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import numpy as np
import pytest
import xgboost as xgb

from livefin_etl.config import LivefinError, load_config
from livefin_etl.credit import resolve_device, train
from livefin_etl.credit.artifacts import load_model
from livefin_etl.credit.report import SECTIONS
from livefin_etl.credit.training import xgb_params
from livefin_etl.testing.credit_world import AS_OF, build_world, make_settings, small_config


def test_same_data_and_seed_give_same_model_hash(tmp_path):
    hashes = []
    for name in ("a", "b"):
        s = make_settings(tmp_path / name)
        c = duckdb.connect(str(s.warehouse))
        build_world(c, n_merchants=150, n_loans=700)
        r = train(c, s, AS_OF, config=small_config(), ensure_features=None)
        hashes.append(r["model_hash"])
        stored = Path(r["artifact_path"], "model.json").read_bytes()
        import hashlib

        assert hashlib.sha256(stored).hexdigest() == r["model_hash"]
        assert r["model_version"] == f"m-{AS_OF:%Y%m%d}-{r['model_hash'][:8]}"
        again = train(c, s, AS_OF, config=small_config(), ensure_features=None)
        assert again["already_registered"] and again["model_version"] == r["model_version"]
        assert c.execute("select count(*) from credit.model_registry").fetchone()[0] == 1
        c.close()
    assert hashes[0] == hashes[1]
    # a different seed is a different model (the hash is not constant)
    s = make_settings(tmp_path / "c")
    c = duckdb.connect(str(s.warehouse))
    build_world(c, n_merchants=150, n_loans=700)
    other = train(c, s, AS_OF, config=small_config(seed=99), ensure_features=None)
    assert other["model_hash"] != hashes[0]


def test_monotone_constraints_hold_on_a_sweep(trained):
    s, con, result, world = trained
    model = load_model(result["artifact_path"])
    feats = con.execute(
        "select * from features.merchant_features where as_of_date = ? "
        "order by merchant_id limit 40",
        [AS_OF],
    ).df()
    X = model.spec.matrix(feats)
    checked = 0
    for j, (col, direction) in enumerate(
        zip(model.spec.columns, model.spec.constraints(), strict=True)
    ):
        if direction == 0:
            continue
        lo, hi = np.nanpercentile(X[:, j], [0, 100])
        grid = np.linspace(lo - abs(lo) * 0.5 - 1, hi + abs(hi) * 0.5 + 1, 25)
        Xg = np.repeat(X[None, :, :], len(grid), axis=0)  # grid × rows × features
        Xg[:, :, j] = grid[:, None]
        m = model.booster.predict(
            xgb.DMatrix(Xg.reshape(-1, X.shape[1]), feature_names=model.spec.columns),
            output_margin=True,
        ).reshape(len(grid), len(X))
        diffs = np.diff(m, axis=0) * direction
        assert (diffs >= -1e-6).all(), f"{col} violates its monotone direction {direction}"
        assert np.ptp(m) >= 0  # sanity: the sweep produced predictions
        checked += 1
    assert checked >= 20
    # the constraint vector handed to xgboost is the configured one, in column order
    params = xgb_params(model.cfg, model.spec, 1, "cpu")
    assert (
        params["monotone_constraints"] == "(" + ",".join(map(str, model.spec.constraints())) + ")"
    )


def test_learns_the_known_signal_and_reports_baselines(trained):
    s, con, result, world = trained
    m = result["metrics"]
    assert m["model"]["auc"] > 0.65
    assert 0.2 < m["model"]["ks"] < 0.7  # usable, not suspiciously high
    assert m["lr_baseline"]["auc"] > 0.6
    assert "legacy_rule" in m and "oracle" in m
    assert m["oracle"]["auc"] >= m["model"]["auc"] - 0.05  # the oracle is the ceiling
    assert m["model"]["gini"] == pytest.approx(2 * m["model"]["auc"] - 1)
    assert len(m["deciles"]) == 10
    assert sum(d["n"] for d in m["deciles"]) == result["n_oot"]
    assert m["psi_score"] < 0.25
    # the top SHAP drivers include the causal features of the simulation
    top = sorted(m["shap_mean_abs"], key=m["shap_mean_abs"].get, reverse=True)[:6]
    assert {"refund_rate_30d", "gmv_net_adj_90d"} & set(top)


def test_artifacts_are_json_and_complete(trained):
    s, con, result, world = trained
    folder = Path(result["artifact_path"])
    assert folder.parent == s.models
    for name in (
        "model.json",
        "calibrator.json",
        "features.json",
        "constraints.json",
        "config.json",
        "metrics.json",
        "data_fingerprint.txt",
        "report.html",
    ):
        assert (folder / name).exists(), name
    json.loads((folder / "model.json").read_text())  # JSON, not pickle
    cal = json.loads((folder / "calibrator.json").read_text())
    assert cal["method"] == "platt" and cal["a"] > 0  # PD increases with the margin
    assert (folder / "data_fingerprint.txt").read_text().strip() == result["data_fingerprint"]
    cons = json.loads((folder / "constraints.json").read_text())
    assert cons["refund_rate_30d"] == 1 and cons["gmv_net_adj_90d"] == -1


def test_report_has_every_section(trained):
    s, con, result, world = trained
    report = Path(result["report_path"])
    assert report == s.docs / "models" / result["model_version"] / "report.html"
    text = report.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in text, section
    assert text.count("data:image/png;base64,") >= 6
    for needle in (
        "Logistic regression baseline",
        "Legacy rule",
        "Oracle",
        result["data_fingerprint"],
        load_config("model")["version"],
        "PSI",
    ):
        assert needle in text
    assert 'src="http' not in text  # self-contained


def test_isotonic_calibration_is_supported(tmp_path):
    s = make_settings(tmp_path)
    c = duckdb.connect(str(s.warehouse))
    build_world(c, n_merchants=150, n_loans=700)
    cfg = small_config()
    cfg["calibration"]["method"] = "isotonic"
    r = train(c, s, AS_OF, config=cfg, ensure_features=None)
    cal = json.loads(Path(r["artifact_path"], "calibrator.json").read_text())
    assert cal["method"] == "isotonic" and cal["x"] == sorted(cal["x"])
    assert all(b >= a for a, b in zip(cal["y"], cal["y"][1:], strict=False))


def test_bad_config_is_refused(con, world, settings):
    cfg = small_config()
    cfg["features"]["refund_rate_30d"] = 2
    with pytest.raises(LivefinError, match="monotone"):
        train(con, settings, AS_OF, config=cfg, ensure_features=None)
    cfg = small_config()
    cfg["split"]["oot"] = 0.5
    with pytest.raises(LivefinError, match="sum to 1"):
        train(con, settings, AS_OF, config=cfg, ensure_features=None)


def test_device_resolution_cpu_and_unknown():
    assert resolve_device(None) == "cpu"
    assert resolve_device("") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(LivefinError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_cuda_without_a_visible_gpu_falls_back_to_cpu_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible, whatever the machine has
    with caplog.at_level(logging.WARNING, logger="livefin_etl.credit.training"):
        assert resolve_device("cuda") == "cpu"
    assert any(
        "device=cuda" in r.getMessage() and "using CPU" in r.getMessage() for r in caplog.records
    )


def test_cuda_fallbacks_and_success_follow_the_probe(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="livefin_etl.credit.training")
    # an xgboost build without CUDA
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": False})
    assert resolve_device("cuda") == "cpu"
    assert "has no CUDA" in caplog.text
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": True})

    # a CUDA build whose probe fit raises
    def broken(*args, **kwargs):
        raise xgb.core.XGBoostError("no CUDA-capable device is detected\nmore")

    monkeypatch.setattr(xgb, "train", broken)
    caplog.clear()
    assert resolve_device("cuda:0") == "cpu"
    assert "device=cuda:0 unusable (no CUDA-capable device is detected)" in caplog.text

    # a probe that reports the device it really used
    class Probe:
        def __init__(self, used: str) -> None:
            self.used = used

        def save_config(self) -> str:
            return json.dumps({"learner": {"generic_param": {"device": self.used}}})

    monkeypatch.setattr(xgb, "train", lambda *a, **k: Probe("cpu"))
    caplog.clear()
    assert resolve_device("cuda") == "cpu"
    assert "xgboost chose cpu" in caplog.text
    monkeypatch.setattr(xgb, "train", lambda *a, **k: Probe("cuda:0"))
    caplog.clear()
    assert resolve_device("cuda") == "cuda"  # usable: kept, no warning
    assert caplog.text == ""
