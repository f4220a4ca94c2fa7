"""A source contract is data that reaches DDL: names must be plain, texts are quoted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from livefin_etl import config, contracts, pipeline
from livefin_etl.config import LivefinError
from livefin_etl.extract import ensure_tables

REPO = Path(__file__).resolve().parents[2]
D = date(2025, 3, 1)


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
        ("meta", "calendar_skips"),
        ("meta", "load_manifest"),
        ("meta", "load_shape"),
        ("meta", "pii_key"),
        ("meta", "quarantine"),
        ("raw", "merchants"),
    ]


# --------------------------------------------------------------------------- --source is a name

HOSTILE_SOURCES = [
    "../../some/dir/x",
    "../mappings/orders/douyin",
    "orders/../merchants",
    "/etc/passwd",
    "Orders",
    "orders; drop table limits.financing_limits",
    "",
]


def _livefin(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LIVEFIN_HOME=str(home), PYTHONPATH=str(REPO), COLUMNS="300")
    exe = Path(sys.executable).parent / "livefin"
    return subprocess.run(
        [str(exe), *args], cwd=home, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def hostile_home(tmp_path) -> Path:
    """A home whose warehouse already holds a table the hostile contract tried to drop, and a
    YAML anywhere on disk crafted as a contract."""
    home = tmp_path / "home"
    (home / "warehouse").mkdir(parents=True)
    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"))
    con.execute("create schema limits; create table limits.financing_limits (x int)")
    con.execute("insert into limits.financing_limits values (1)")
    con.close()
    crafted = tmp_path / "some" / "dir" / "x.yaml"
    crafted.parent.mkdir(parents=True)
    crafted.write_text(
        "name: 'x (a int); drop table limits.financing_limits; --'\nversion: v1\nformat: csv\n"
        "columns: {a: {type: BIGINT}}\nprimary_key: [a]\npartition: {column: a}\n",
        encoding="utf-8",
    )
    return home


def _tables(home: Path) -> list[tuple]:
    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        return con.execute(
            "select table_schema, table_name from information_schema.tables order by 1, 2"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("command", ["extract", "validate"])
def test_cli_source_must_be_a_contract_name(hostile_home, command):
    before = _tables(hostile_home)
    for source in ["../../some/dir/x", "../mappings/orders/douyin", "/etc/passwd"]:
        cp = _livefin(hostile_home, command, "--source", source, "--date", str(D))
        text = cp.stdout + cp.stderr
        assert cp.returncode == 1, text
        assert "Traceback" not in text and "KeyError" not in text, text
        assert f"unknown source {source!r}" in text, text
        assert "contract name" in text and "merchants, orders" in text, text
    assert _tables(hostile_home) == before == [("limits", "financing_limits")]


@pytest.mark.parametrize("source", HOSTILE_SOURCES)
def test_pipeline_functions_refuse_hostile_sources(hostile_home, source, monkeypatch):
    """The entry points the Airflow tasks call refuse the same inputs as the CLI."""
    monkeypatch.setenv("LIVEFIN_HOME", str(hostile_home))
    before = _tables(hostile_home)
    calls = [
        lambda: pipeline.extract(source, D),
        lambda: pipeline.validate(source, D),
        lambda: pipeline.ingest_partition(source, D),
        lambda: pipeline.ingest(D, D, [source]),
    ]
    for call in calls:
        with pytest.raises(LivefinError, match="unknown source"):
            call()
    with pytest.raises(LivefinError, match="unknown source"):
        contracts.load_contract(source)
    assert _tables(hostile_home) == before


def test_contract_name_must_equal_the_file_stem(cfg):
    _edit(cfg, "merchants", "name: merchants", "name: orders")
    with pytest.raises(LivefinError, match="must equal the file name 'merchants'"):
        contracts.load_contract("merchants")


@pytest.mark.parametrize("stem", ["Merchants2", "shop-orders", "1orders", "orders.v2"])
def test_contract_file_names_must_be_plain(cfg, stem):
    shutil.copy(cfg / "sources" / "orders.yaml", cfg / "sources" / f"{stem}.yaml")
    with pytest.raises(LivefinError, match=r"must match \^\[a-z\]\[a-z0-9_\]\*\$"):
        contracts.list_sources()
