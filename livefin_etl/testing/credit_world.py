"""Synthetic credit world with a known causal signal (shared by the credit tests and bench)."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import yaml

from livefin_etl.config import REPO_ROOT, Settings, load_config

AS_OF = date(2025, 1, 15)
CATEGORIES = ["womens_clothing", "beauty", "food", "electronics"]


def production_gate() -> dict:
    """``champion_gate`` as shipped in the repository's config/model.yaml.

    The suite may point LIVEFIN_CONFIG_DIR at a copy with the gate opened for the tiny world;
    the credit tests prove the real thresholds, so they take them from the shipped file."""
    text = (REPO_ROOT / "config" / "model.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)["champion_gate"])


def small_config(**xgb_overrides) -> dict:
    """The configured model (config/model.yaml) with a small, fast model for tests and the
    shipped champion gate."""
    cfg = copy.deepcopy(load_config("model"))
    cfg["xgboost"].update({"n_estimators": 40, "early_stopping_rounds": 10, **xgb_overrides})
    cfg["champion_gate"] = production_gate()
    return cfg


def make_settings(tmp_path: Path) -> Settings:
    home = tmp_path / "state"
    s = Settings(
        home=home,
        landing=home / "landing",
        warehouse=home / "warehouse" / "livefin.duckdb",
        published=home / "published",
        exports=home / "exports",
        models=home / "models",
        docs=home / "docs",
        airflow_home=home / "airflow",
        threads=1,
    )
    s.ensure_dirs()
    return s


def true_logit(f: pd.DataFrame) -> np.ndarray:
    """The known data-generating process (the oracle)."""
    return (
        -2.3
        + 4.0 * (f["refund_rate_30d"] - 0.28)
        - 0.7 * (np.log(f["gmv_net_adj_90d"]) - 11.0)
        + 3.0 * (f["brushing_score"] - 0.1)
        + 1.2 * (f["top_streamer_share_90d"] - 0.6)
        - 0.0008 * (f["tenure_days"] - 700)
        + 0.5 * (f["category"] == "womens_clothing")
    ).to_numpy()


def make_features(
    rng: np.random.Generator, keys: pd.DataFrame, feature_names: list[str]
) -> pd.DataFrame:
    """One row per (merchant_id, as_of_date) with every configured feature plus category."""
    n = len(keys)
    f = keys.reset_index(drop=True).copy()
    for c in feature_names:  # unconstrained noise by default
        f[c] = rng.normal(1.0, 0.3, n)
    f["category"] = rng.choice(CATEGORIES, n)
    f["refund_rate_30d"] = rng.beta(2, 5, n)
    f["gmv_net_adj_90d"] = np.exp(rng.normal(11.0, 1.0, n))
    f["gmv_net_adj_30d"] = f["gmv_net_adj_90d"] / 3 * rng.uniform(0.7, 1.3, n)
    f["gmv_gross_30d"] = f["gmv_net_adj_30d"] * rng.uniform(1.1, 1.8, n)
    f["brushing_score"] = rng.beta(1, 8, n)
    f["top_streamer_share_90d"] = rng.uniform(0.2, 1.0, n)
    f["tenure_days"] = rng.integers(30, 1500, n).astype(float)
    f["on_time_ship_rate_30d"] = rng.beta(8, 2, n)
    f.loc[rng.random(n) < 0.05, "quality_q"] = np.nan  # missing values must be handled
    f["feature_version"] = "test-v1"
    return f


def _loan_book(rng: np.random.Generator, merchants: list[str], n_loans: int) -> pd.DataFrame:
    """Loans spread over 18 months, plus two recent ones whose window has not closed."""
    start = date(2023, 1, 1)
    span = (date(2024, 7, 1) - start).days
    loans = pd.DataFrame(
        {
            "loan_id": [f"L{i:06d}" for i in range(n_loans)],
            "merchant_id": rng.choice(merchants, n_loans),
            "origination_date": [
                start + timedelta(days=int(d)) for d in rng.integers(0, span, n_loans)
            ],
        }
    )
    # a few recent loans whose window has not closed: must be excluded
    recent = pd.DataFrame(
        {
            "loan_id": ["LRECENT1", "LRECENT2"],
            "merchant_id": merchants[:2],
            "origination_date": [AS_OF - timedelta(days=30), AS_OF - timedelta(days=100)],
        }
    )
    return pd.concat([loans, recent], ignore_index=True)


def _repayments(rng: np.random.Generator, fl: pd.DataFrame) -> pd.DataFrame:
    """Six repayment rows per loan; a bad loan reaches 60+ dpd between day 90 and 175."""
    reps = []
    for lid, mid, od, bad in fl[
        ["loan_id", "merchant_id", "origination_date", "is_bad"]
    ].itertuples(index=False):
        bad_day = int(rng.integers(90, 176)) if bad else None
        for k in (30, 60, 90, 120, 150, 175):
            dpd = 0 if (bad_day is None or k < bad_day - 60) else max(0, 60 + k - bad_day)
            if bad and k >= bad_day:
                dpd = max(dpd, 60)
            reps.append(
                (
                    lid,
                    mid,
                    od + timedelta(days=k),
                    100.0,
                    5000.0,
                    int(dpd if bad else rng.integers(0, 15)),
                )
            )
    return pd.DataFrame(
        reps,
        columns=["loan_id", "merchant_id", "repay_date", "amount_repaid", "outstanding", "dpd"],
    )


def _write_tables(
    con: duckdb.DuckDBPyConnection, loans: pd.DataFrame, rep: pd.DataFrame, feats: pd.DataFrame
) -> None:
    con.execute(
        "create schema if not exists raw; create schema if not exists features; "
        "create schema if not exists credit"
    )
    con.register("_l", loans)
    con.register("_r", rep)
    con.register("_f", feats)
    con.execute(
        "create or replace table raw.loans as select loan_id, merchant_id, "
        "origination_date::DATE origination_date, principal, fee_amount, withhold_rate, "
        "term_days::BIGINT term_days, legacy_limit from _l"
    )
    con.execute(
        "create or replace table raw.repayments as select loan_id, merchant_id, "
        "repay_date::DATE repay_date, amount_repaid, outstanding, dpd::BIGINT dpd from _r"
    )
    con.execute(
        "create or replace table features.merchant_features as "
        "select * replace (as_of_date::DATE as as_of_date) from _f"
    )
    for t in ("_l", "_r", "_f"):
        con.unregister(t)


def build_world(
    con: duckdb.DuckDBPyConnection,
    *,
    n_merchants: int = 400,
    n_loans: int = 1600,
    seed: int = 7,
    score_date: date = AS_OF,
) -> dict:
    """raw.loans, raw.repayments, features.merchant_features (origination dates + score date).

    Returns the truth: ``truth`` (loan_id, true_pd), ``labels`` (loan_id -> 0/1),
    ``loan_features`` (every loan with the features generated for its origination date),
    ``merchants`` and ``names`` (configured features)."""
    rng = np.random.default_rng(seed)
    names = list(load_config("model")["features"])
    merchants = [f"M{i:05d}" for i in range(n_merchants)]
    loans = _loan_book(rng, merchants, n_loans)
    keys = (
        loans[["merchant_id", "origination_date"]]
        .drop_duplicates()
        .rename(columns={"origination_date": "as_of_date"})
    )
    feats = make_features(rng, keys, names)
    fl = loans.merge(
        feats, left_on=["merchant_id", "origination_date"], right_on=["merchant_id", "as_of_date"]
    )
    p = 1 / (1 + np.exp(-true_logit(fl)))
    fl["is_bad"] = rng.random(len(fl)) < p
    fl["true_pd"] = p
    loans = fl[["loan_id", "merchant_id", "origination_date"]].copy()
    loans["principal"] = 10000.0
    loans["fee_amount"] = 800.0
    loans["withhold_rate"] = 0.1
    loans["term_days"] = 120
    loans["legacy_limit"] = 1.5 * fl["gmv_gross_30d"].to_numpy()
    rep = _repayments(rng, fl)
    # scoring-date features for every merchant (the nightly spine)
    d_keys = pd.DataFrame({"merchant_id": merchants, "as_of_date": score_date})
    d_feats = make_features(rng, d_keys, names)
    _write_tables(con, loans, rep, pd.concat([feats, d_feats], ignore_index=True))
    return {
        "truth": fl[["loan_id", "true_pd"]],
        "merchants": merchants,
        "names": names,
        "labels": dict(zip(fl["loan_id"], fl["is_bad"].astype(int), strict=True)),
        "loan_features": fl.drop(columns=["as_of_date", "is_bad", "true_pd"]),
    }


def write_truth(settings: Settings, world: dict) -> Path:
    """The simulator's oracle file (report-only input)."""
    path = settings.landing / "_truth" / "loans.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    world["truth"].to_parquet(path, index=False)
    return path
