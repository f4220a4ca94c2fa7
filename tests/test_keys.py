"""The PII key is created once, on purpose (``livefin init``), and checked on every extract; a
missing home is an error for every command but init, demo and sample. Real processes, real files.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
D = date(2025, 3, 1)
MERCHANTS = (
    "merchant_id,merchant_name,category,region,onboard_date\n"
    "M1,杭州一号服饰店,apparel,浙江,2024-01-01\nM2,广州二号食品店,food,广东,2024-06-01\n"
)


def livefin(cwd: Path, *args: str, home: Path | None, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LIVEFIN_HOME", "LIVEFIN_PII_KEY")}
    env.update(PYTHONPATH=str(REPO), COLUMNS="300", LIVEFIN_THREADS="1", **extra)
    if home is not None:
        env["LIVEFIN_HOME"] = str(home)
    exe = Path(sys.executable).parent / "livefin"
    cp = subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    return cp


def extract(home: Path, **extra: str) -> subprocess.CompletedProcess:
    return livefin(home, "extract", "--source", "merchants", "--date", str(D), home=home, **extra)


def with_landing(home: Path) -> Path:
    part = home / "landing" / "merchants" / f"dt={D}" / "part-0.csv"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_text(MERCHANTS, encoding="utf-8")
    return home


def query(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def manifest_rows(home: Path) -> list[tuple]:
    return query(home, "select source, dt, status, rows_loaded from meta.load_manifest order by 1")


@pytest.fixture
def home(tmp_path) -> Path:
    """A home made by `livefin init` (file key), with one merchants delivery, extracted once."""
    home = tmp_path / "home"
    cp = livefin(tmp_path, "init", home=home)
    assert cp.returncode == 0, cp.stderr
    with_landing(home)
    cp = extract(home)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return home


def test_init_creates_the_key_once_and_records_its_fingerprint(tmp_path):
    home = tmp_path / "home"
    assert livefin(tmp_path, "init", home=home).returncode == 0
    key = home / "pii.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_bytes()
    assert len(secret.strip()) == 64
    again = livefin(tmp_path, "init", home=home)
    assert again.returncode == 0 and "kept" in again.stdout
    assert key.read_bytes() == secret  # a second init never replaces the key
    rows = query(home, "select fingerprint, key_source from meta.pii_key")
    assert len(rows) == 1 and rows[0][1] == str(key)
    # the fingerprint identifies the key without containing it
    assert secret.strip().decode() not in rows[0][0] and len(rows[0][0]) == 16


def test_a_missing_key_stops_extract_and_is_not_replaced(home):
    before = manifest_rows(home)
    (home / "pii.key").rename(home.parent / "moved.key")
    cp = extract(home)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1, out
    assert f"PII key {home / 'pii.key'} not found" in out and "`livefin init`" in out, out
    assert not (home / "pii.key").exists()  # no silent new key
    assert manifest_rows(home) == before
    # init does not paper over it either: the warehouse knows which key it was hashed with
    again = livefin(home, "init", home=home)
    assert again.returncode == 1 and "put that key back" in again.stderr, again.stderr
    assert not (home / "pii.key").exists()
    # the original key put back: extract works again
    (home.parent / "moved.key").rename(home / "pii.key")
    assert extract(home).returncode == 0


def test_a_changed_key_stops_extract(home):
    before = manifest_rows(home)
    (home / "pii.key").write_text("0" * 64)
    cp = extract(home)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1, out
    assert "is not the key this warehouse was hashed with" in out, out
    assert "0" * 64 not in out  # never the key itself
    assert manifest_rows(home) == before


def test_env_keys_are_fingerprinted_too(tmp_path):
    home = with_landing(tmp_path / "home")
    first = extract(home, LIVEFIN_PII_KEY="livefin-test-key")
    assert first.returncode == 0, first.stderr
    assert query(home, "select key_source from meta.pii_key") == [("LIVEFIN_PII_KEY",)]
    assert not (home / "pii.key").exists()  # an env key never writes a key file
    other = extract(home, LIVEFIN_PII_KEY="another-key")
    assert other.returncode == 1 and "not the key this warehouse" in other.stderr, other.stderr
    assert extract(home, LIVEFIN_PII_KEY="livefin-test-key").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["extract", "--source", "merchants", "--date", str(D)],
        ["run", "--start", str(D)],
        ["publish", "--rollback"],
        ["model", "promote", "v1"],
    ],
)
def test_a_missing_home_is_an_error(tmp_path, args):
    gone = tmp_path / "nowhere"
    cp = livefin(tmp_path, *args, home=gone, LIVEFIN_PII_KEY="livefin-test-key")
    assert cp.returncode == 1
    assert f"livefin home {gone} does not exist (from LIVEFIN_HOME)" in cp.stderr, cp.stderr
    assert "`livefin init`" in cp.stderr
    assert not gone.exists()
    # LIVEFIN_HOME unset: ./state is looked for, and not created
    cp = livefin(tmp_path, *args, home=None)
    assert cp.returncode == 1
    assert "LIVEFIN_HOME is unset, so ./state was looked for" in cp.stderr, cp.stderr
    assert not (tmp_path / "state").exists()


def test_help_and_home_making_commands_need_no_home(tmp_path):
    assert livefin(tmp_path, "run", "--help", home=None).returncode == 0
    out = tmp_path / "landing"
    cp = livefin(tmp_path, "sample", "--days", "2", "--out", str(out), home=None)
    assert cp.returncode == 0 and (out / "_truth" / "params.json").exists(), cp.stderr
    assert livefin(tmp_path, "init", home=None).returncode == 0
    assert (tmp_path / "state" / "pii.key").exists()
