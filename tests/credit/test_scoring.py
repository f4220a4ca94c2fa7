"""Nightly scoring: coverage, replacement, PD/score/grade consistency, Reg B reasons, explain."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from livefin_etl.config import LivefinError
from livefin_etl.credit import explain, load_champion, score
from livefin_etl.credit.metrics import pd_to_grade, pd_to_score
from livefin_etl.testing.credit_world import AS_OF


@pytest.fixture(scope="module")
def scored(trained):
    s, con, result, world = trained
    n = score(con, s, AS_OF, run_id="run-1")
    df = con.execute(
        "select * from credit.merchant_scores where as_of_date = ? order by merchant_id", [AS_OF]
    ).df()
    return s, con, result, world, n, df


def test_every_merchant_of_the_date_is_scored_once(scored):
    s, con, result, world, n, df = scored
    expected = con.execute(
        "select count(distinct merchant_id) from features.merchant_features where as_of_date = ?",
        [AS_OF],
    ).fetchone()[0]
    assert n == expected == len(df) == len(world["merchants"])
    assert df.merchant_id.is_unique
    assert (df.model_version == result["model_version"]).all()
    assert (df.run_id == "run-1").all()


def test_rescoring_replaces_the_date(scored):
    s, con, result, world, n, df = scored
    score(con, s, AS_OF, run_id="run-2")
    got = con.execute(
        "select run_id, count(*) from credit.merchant_scores where as_of_date = ? group by 1",
        [AS_OF],
    ).fetchall()
    assert got == [("run-2", n)]


def test_pd_score_grade_are_consistent(scored):
    s, con, result, world, n, df = scored
    model = load_champion(con)
    assert df.pd.between(0, 1, inclusive="neither").all()
    assert (df.score.to_numpy() == pd_to_score(df.pd.to_numpy(), model.cfg)).all()
    assert (df.grade.to_numpy() == pd_to_grade(df.pd.to_numpy(), model.cfg)).all()
    # scaling: 600 points at 50:1 odds, 20 points to double the odds
    assert pd_to_score(np.array([1 / 51]), model.cfg)[0] == 600
    assert pd_to_score(np.array([1 / 101]), model.cfg)[0] == 620
    # higher PD, never a better score
    order = np.argsort(df.pd.to_numpy())
    assert (np.diff(df.score.to_numpy()[order]) <= 0).all()


def test_reasons_are_risk_raising_top4_and_truthful(scored):
    s, con, result, world, n, df = scored
    model = load_champion(con)
    feats = con.execute(
        "select * from features.merchant_features where as_of_date = ? order by merchant_id",
        [AS_OF],
    ).df()
    contribs = model.booster.predict(
        xgb.DMatrix(model.spec.matrix(feats), feature_names=model.spec.columns), pred_contribs=True
    )
    groups = model.spec.source_columns
    # fold one-hot columns back into their source feature
    folded = np.zeros((len(feats), len(groups)))
    for i, col in enumerate(model.spec.columns):
        folded[:, groups.index(col if col in model.spec.numeric else col.split("=")[0])] += (
            contribs[:, i]
        )
    code_of = {g: model.cfg["reasons"]["texts"].get(g, {}).get("code", g.upper()) for g in groups}
    feature_of = {v: k for k, v in code_of.items()}
    n_with_reasons = 0
    for i, row in enumerate(df.itertuples(index=False)):
        cited = [getattr(row, f"reason_code_{k}") for k in range(1, 5)]
        shaps = [getattr(row, f"reason_shap_{k}") for k in range(1, 5)]
        present = [c for c in cited if isinstance(c, str)]
        assert len(present) <= 4
        # no gaps: once a slot is empty the rest are empty too
        assert cited[: len(present)] == present
        positive = sorted((v for v in folded[i] if v > 0), reverse=True)
        assert len(present) == min(4, len(positive))
        for k, code in enumerate(present):
            j = groups.index(feature_of[code])
            assert shaps[k] > 0
            assert shaps[k] == pytest.approx(folded[i, j], abs=1e-5)
            assert shaps[k] == pytest.approx(positive[k], abs=1e-5)  # the top ones, in order
        for k in range(len(present), 4):
            assert math.isnan(shaps[k]) and pd.isna(getattr(row, f"reason_text_{k + 1}"))
        n_with_reasons += bool(present)
    assert n_with_reasons > len(df) * 0.5


def test_reason_text_carries_the_actual_value(scored):
    s, con, result, world, n, df = scored
    hit = df[df.reason_code_1 == "REFUND_RATE"]
    assert len(hit) > 0
    row = hit.iloc[0]
    value = con.execute(
        "select refund_rate_30d from features.merchant_features where "
        "merchant_id = ? and as_of_date = ?",
        [row.merchant_id, AS_OF],
    ).fetchone()[0]
    assert row.reason_text_1 == f"Refund rate {value:.0%} over 30 days, above category norm"


def test_table_comments_exist(scored):
    s, con, *_ = scored
    comments = dict(
        con.execute(
            "select table_name, comment from duckdb_tables() where schema_name = 'credit'"
        ).fetchall()
    )
    assert comments.get("merchant_scores") and comments.get("model_registry")
    cols = con.execute(
        "select count(*) from duckdb_columns() where table_name = 'merchant_scores' "
        "and comment is not null"
    ).fetchone()[0]
    assert cols >= 5


def test_explain_prints_pd_score_and_reasons(scored):
    s, con, result, world, n, df = scored
    row = df.iloc[0]
    text = explain(con, s, row.merchant_id, AS_OF)
    assert row.merchant_id in text and result["model_version"] in text
    assert f"score {int(row.score)}" in text and f"grade {row.grade}" in text
    if isinstance(row.reason_code_1, str):
        assert row.reason_code_1 in text and "SHAP +" in text


def test_explain_unknown_merchant_is_an_error(scored):
    s, con, *_ = scored
    with pytest.raises(LivefinError, match="no features"):
        explain(con, s, "NOPE", AS_OF)


def test_score_date_without_features_is_an_error(scored):
    s, con, *_ = scored
    with pytest.raises(LivefinError, match="no rows in features"):
        score(con, s, date(2030, 1, 1))
