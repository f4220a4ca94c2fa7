"""A source contract is data that reaches DDL: names must be plain, texts are quoted."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from livefin_etl import config, contracts
from livefin_etl.config import LivefinError
from livefin_etl.extract import ensure_tables


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """A private copy of ``config/`` that tests may edit; caches cleared around it."""
    out = tmp_path / "config"
    shutil.copytree(config.CONFIG_DIR, out)
    monkeypatch.setattr(config, "CONFIG_DIR", out)
    monkeypatch.setattr(contracts, "CONFIG_DIR", out)
    contracts.load_contract.cache_clear()
    contracts.load_mappings.cache_clear()
    yield out
    contracts.load_contract.cache_clear()
    contracts.load_mappings.cache_clear()


def _edit(cfg, source: str, old: str, new: str) -> None:
    path = cfg / "sources" / f"{source}.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("name: merchants", 'name: "merchants (x int); drop table meta.quarantine; --"'),
        ("name: merchants", "name: raw.merchants"),
        ("  merchant_id:", '  "merchant_id varchar); --":'),
    ],
)
def test_crafted_names_are_refused(cfg, old, new):
    _edit(cfg, "merchants", old, new)
    with pytest.raises(LivefinError, match="not a plain name"):
        contracts.load_contract("merchants")


def test_crafted_reference_is_refused(cfg):
    _edit(cfg, "orders", "merchants.merchant_id", '"merchants; --.merchant_id"')
    with pytest.raises(LivefinError, match="not a plain name"):
        contracts.load_contract("orders")


def test_descriptions_with_quotes_reach_comments_intact(cfg):
    _edit(cfg, "merchants", "description: ", "description: It's the merchants' table; ")
    _edit(cfg, "merchants", "description: Platform merchant id", 'description: "Merchant\'s id"')
    con = duckdb.connect()
    con.execute("create schema raw")
    ensure_tables(con, contracts.load_contract("merchants"))
    table = con.execute(
        "select comment from duckdb_tables() where schema_name = 'raw' and table_name = 'merchants'"
    ).fetchone()[0]
    assert table.startswith("It's the merchants' table; ")
    column = con.execute(
        "select comment from duckdb_columns() where schema_name = 'raw' "
        "and table_name = 'merchants' and column_name = 'merchant_id'"
    ).fetchone()[0]
    assert column == "Merchant's id"
    tables = con.execute(
        "select table_schema, table_name from information_schema.tables"
    ).fetchall()
    assert sorted(tables) == [
        ("meta", "load_manifest"),
        ("meta", "quarantine"),
        ("raw", "merchants"),
    ]
