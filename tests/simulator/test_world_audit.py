"""The credit world's acceptance figures on the tiny world (tests/conftest.py's session sample):
priced loans with per-loan cash flows, refusals with would-be outcomes only in the truth, and
delinquency paths with cures, measured by the same audit functions bench/bench_world.py uses."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from livefin_etl.simulator import audit


def test_pnl_is_collections_less_principal_and_funding(tiny_landing: Path) -> None:
    t = pl.read_parquet(tiny_landing / "_truth" / "loans.parquet")
    gap = (t["collected"] - t["principal"] - t["funding_cost"] - t["pnl"]).abs()
    assert gap.max() < 0.02
    repaid = t.filter(pl.col("status") == "repaid")
    # a repaid loan collected principal plus its fee, exactly
    assert ((repaid["collected"] - repaid["principal"] - repaid["fee_amount"]).abs() < 0.02).all()
    charged = t.filter(pl.col("status") == "charged_off")
    assert charged.height > 0 and (charged["principal_lost"] > 0).all()
    pnl = audit.book_pnl(t)
    assert pnl["fees_collected"] > 0 and pnl["funding_cost"] > 0


def test_refused_applications_are_landed_and_their_outcomes_only_in_truth(
    tiny_landing: Path,
) -> None:
    apps = audit.read_csv_source(tiny_landing, "applications")
    r = audit.refusals(apps)
    assert r["refusal_share"] >= 0.2
    assert "defaulted_180d" not in apps.columns and "true_pd" not in apps.columns
    truth = pl.read_parquet(tiny_landing / "_truth" / "applications.parquet")
    assert truth.height == apps.height
    refused = truth.filter(~pl.col("approved") & pl.col("window_closed"))
    assert refused.height > 0 and refused["defaulted_180d"].sum() > 0
    # the legacy rule is informative: refused applicants are riskier than approved ones
    approved = truth.filter(pl.col("approved"))
    assert refused["true_pd"].mean() > approved["true_pd"].mean()


def test_delinquency_cures_and_rolls(tiny_landing: Path) -> None:
    loans = audit.read_parquet_source(tiny_landing, "loans")
    reps = audit.read_parquet_source(tiny_landing, "repayments")
    paths = audit.loan_paths(loans, reps, audit.last_landing_date(tiny_landing))
    d = audit.delinquency(paths)
    assert d["cure_share_30"] >= 0.2  # 30+ dpd is a signal, not an oracle
    assert 0 < d["roll_30_60"] < 1 and 0 < d["roll_60_90"] < 1
    # the label from landing repayments equals the truth's
    t = pl.read_parquet(tiny_landing / "_truth" / "loans.parquet").select(
        "loan_id", "defaulted_180d"
    )
    j = paths.join(t, on="loan_id")
    assert ((j["max_dpd_180"] >= 60) == j["defaulted_180d"]).all()
