"""Registry: champion/challenger gate both ways, promote, rollback, audit trail."""

from __future__ import annotations

import numpy as np
import pytest
from credit_world import AS_OF, small_config

from livefin_etl.config import LivefinError
from livefin_etl.credit import (
    build_training_set,
    current_champion,
    promote,
    registry_rows,
    rollback,
    score,
    train,
)
from livefin_etl.credit.registry import gate


def _status(con) -> dict[str, str]:
    return {r["model_version"]: r["status"] for r in registry_rows(con)}


def _frame(con):
    return build_training_set(con, AS_OF, small_config(), ensure_features=None)


def test_gate_and_promote_rollback_cycle(con, world, settings):
    cfg = small_config()
    a = train(con, settings, AS_OF, config=cfg, ensure_features=None)
    assert a["status"] == "champion" and "first model" in a["reason"]

    # worse: same features, labels shuffled -> AUC ~ 0.5, stays challenger with the reason
    frame = _frame(con)
    worse = frame.copy()
    worse["is_default"] = np.random.default_rng(1).permutation(worse["is_default"].to_numpy())
    c = train(
        con,
        settings,
        AS_OF,
        features_df=worse,
        label="is_default",
        time_col="origination_date",
        config=cfg,
    )
    assert c["status"] == "challenger"
    assert "oot AUC" in c["reason"] and a["model_version"] in c["reason"]
    assert current_champion(con)["model_version"] == a["model_version"]

    # better: a label the features explain well -> becomes champion, A is superseded
    better = frame.copy()
    better["is_default"] = (
        better["refund_rate_30d"] > better["refund_rate_30d"].quantile(0.8)
    ).astype(int)
    b = train(
        con,
        settings,
        AS_OF,
        features_df=better,
        label="is_default",
        time_col="origination_date",
        config=cfg,
    )
    assert b["status"] == "champion", b["reason"]
    assert b["auc_oot"] > a["auc_oot"]
    st = _status(con)
    assert st[a["model_version"]] == "retired" and st[c["model_version"]] == "challenger"
    rows = {r["model_version"]: r for r in registry_rows(con)}
    assert f"superseded by {b['model_version']}" in rows[a["model_version"]]["reason"]

    # a person promotes the challenger; rollback goes back step by step
    assert promote(con, settings, c["model_version"]) == c["model_version"]
    assert current_champion(con)["model_version"] == c["model_version"]
    assert sum(v == "champion" for v in _status(con).values()) == 1
    assert rollback(con, settings) == b["model_version"]
    assert _status(con)[c["model_version"]] == "retired"
    assert rollback(con, settings) == a["model_version"]
    with pytest.raises(LivefinError, match="no earlier champion"):
        rollback(con, settings)
    assert current_champion(con)["model_version"] == a["model_version"]

    # scoring follows the reinstated champion
    score(con, settings, AS_OF)
    versions = con.execute("select distinct model_version from credit.merchant_scores").fetchall()
    assert versions == [(a["model_version"],)]

    # the audit trail recorded every step, in order
    actions = [
        r[0]
        for r in con.execute("select action from credit.model_events order by event_seq").fetchall()
    ]
    assert actions == [
        "register",
        "register",
        "supersede",
        "register",
        "supersede",
        "promote",
        "rollback",
        "reinstate",
        "rollback",
        "reinstate",
    ]


def test_promote_unknown_version_is_an_error(con, world, settings):
    with pytest.raises(LivefinError, match="not in credit.model_registry"):
        promote(con, settings, "m-20990101-deadbeef")


def test_champion_is_none_before_training_even_read_only(settings, tmp_path):
    import duckdb

    from livefin_etl.credit import champion

    path = tmp_path / "ro.duckdb"
    duckdb.connect(str(path)).close()
    ro = duckdb.connect(str(path), read_only=True)
    assert champion(ro) is None
    ro.close()


def test_rollback_without_champion_is_an_error(con, settings):
    with pytest.raises(LivefinError, match="no champion"):
        rollback(con, settings)


def test_score_without_champion_says_train_first(con, world, settings):
    with pytest.raises(LivefinError, match="livefin train"):
        score(con, settings, AS_OF)


@pytest.mark.parametrize(
    ("auc", "psi", "expected", "why"),
    [
        (0.80, 0.05, "champion", ">="),
        (0.795, 0.05, "champion", ">="),  # within tolerance
        (0.78, 0.05, "challenger", "oot AUC"),
        (0.90, 0.30, "challenger", "PSI"),
        (0.90, float("nan"), "challenger", "PSI"),
        (float("nan"), 0.05, "challenger", "could not"),
    ],
)
def test_gate_rules(auc, psi, expected, why):
    champ = {"model_version": "m-1", "auc_oot": 0.80}
    status, reason = gate(champ, auc, psi, small_config())
    assert status == expected and why in reason


def test_first_model_is_champion_even_without_history():
    assert gate(None, 0.6, 0.05, small_config())[0] == "champion"
