"""What analysts and lenders read, on the session's real published snapshot (tiny_run): every
column commented, money as DECIMAL(18,2), scores as integers, PD to 6 places, in the snapshot's
tables and views and in the Parquet/CSV exports."""

from __future__ import annotations

import csv
import re

import duckdb
import pytest

from livefin_etl.publish.columns import MONEY_TYPE, PROBABILITY_DP, is_money

FLOATS = ("DOUBLE", "FLOAT", "REAL")
# Amounts the naming rule must catch (a rule that missed one would leave it DOUBLE unnoticed).
KNOWN_MONEY = {
    "limits.financing_limits": ("limit_amount", "expected_loss", "outstanding_exposure"),
    "limits.current": ("limit_amount", "data_asset_value", "tier_cap"),
    "limits.merchant_360": ("limit_amount", "reconciled_value", "gmv_net_30d"),
    "limits.portfolio_summary": ("total_limit", "expected_loss", "outstanding_exposure"),
    "valuation.data_asset_values": ("reconciled_value", "replacement_cost"),
    "features.merchant_features": ("gmv_net_adj_30d", "aov_30d"),
    "stress.stress_results": ("limit_after", "el_after"),
}


@pytest.fixture(scope="module")
def snap(tiny_run):
    con = duckdb.connect(str(tiny_run["settings"].published / "livefin.duckdb"), read_only=True)
    yield con
    con.close()


def _columns(con) -> list[tuple[str, str, str, str | None]]:
    return con.execute(
        """select schema_name || '.' || table_name, column_name, data_type, comment
           from duckdb_columns() where database_name = current_database()"""
    ).fetchall()


def test_every_table_view_and_column_of_the_snapshot_has_a_comment(snap):
    cols = _columns(snap)
    assert len({t for t, *_ in cols}) >= 15  # the whole snapshot, views included
    assert [(t, c) for t, c, _, text in cols if not (text or "").strip()] == []
    objects = snap.execute(
        """select table_name, comment from duckdb_tables() where database_name = current_database()
           union all
           select view_name, comment from duckdb_views()
           where database_name = current_database() and not internal"""
    ).fetchall()
    assert [name for name, text in objects if not text] == []


def test_money_is_decimal_scores_integer_pd_rounded_in_snapshot(snap):
    cols = _columns(snap)
    types = {(t, c): ty for t, c, ty, _ in cols}
    money = [(t, c, ty) for t, c, ty, _ in cols if is_money(c) and ty not in ("VARCHAR", "DATE")]
    assert money and all(ty == MONEY_TYPE for _, _, ty in money), money
    assert not [(t, c) for t, c, ty, _ in cols if is_money(c) and ty in FLOATS]
    for table, names in KNOWN_MONEY.items():
        for c in names:
            assert types[(table, c)] == MONEY_TYPE, (table, c)
    assert {ty for (t, c), ty in types.items() if c == "score"} == {"INTEGER"}
    for table in ("limits.financing_limits", "credit.merchant_scores", "limits.merchant_360"):
        n, off = snap.execute(
            f"select count(pd), count(*) filter (where pd <> round(pd, {PROBABILITY_DP})) "
            f"from {table}"
        ).fetchone()
        assert n > 0 and off == 0, table


def test_exports_carry_the_published_types(tiny_run, snap):
    s, last = tiny_run["settings"], tiny_run["last"]
    out = s.exports / "limits" / f"as_of_date={last}"
    parquet = snap.execute(
        f"describe select * from read_parquet('{out / 'limits.parquet'}')"
    ).fetchall()
    ptypes = {r[0]: r[1] for r in parquet}
    assert [c for c, ty in ptypes.items() if is_money(c) and ty != MONEY_TYPE] == []
    assert ptypes["limit_amount"] == MONEY_TYPE and ptypes["score"] == "INTEGER"
    with open(out / "data_dictionary.csv", encoding="utf-8") as f:
        dictionary = {r["column"]: r["type"] for r in csv.DictReader(f)}
    assert dictionary == ptypes
    with open(out / "limits.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    fixed = re.compile(r"^-?\d+\.\d{2}$")
    money = [c for c in rows[0] if is_money(c)]
    assert {"limit_amount", "expected_loss", "outstanding_exposure"} <= set(money)
    bad = [(c, r[c]) for r in rows for c in money if r[c] and not fixed.match(r[c])]
    assert bad == []
    assert all(re.fullmatch(r"-?\d+", r["score"]) for r in rows if r["score"])


@pytest.mark.parametrize(
    ("name", "money"),
    [
        ("limit_amount", True),
        ("el_before", True),
        ("income_cf_year1", True),
        ("gmv_net_adj_365d", True),
        ("principal", True),
        ("el_rate", False),
        ("gmv_shock", False),
        ("gmv_growth_30d", False),
        ("suspect_gmv_share_30d", False),
        ("unit_cost_storage", False),
        ("comparable_price_per_1k", False),
        ("value", False),
        ("quality_q", False),
    ],
)
def test_the_money_naming_rule(name, money):
    assert is_money(name) is money
