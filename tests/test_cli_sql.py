"""``livefin sql`` and the read commands, as real CLI processes on the tiny run's published
snapshot: the README's analyst command as written, csv/json output, the shell, and read
commands that refuse an empty home without creating anything."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(home: Path | None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "LIVEFIN_HOME"}
    e.update(PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}", COLUMNS="200", PYTHONPATH=str(REPO))
    if home is not None:
        e["LIVEFIN_HOME"] = str(home)
    return e


def _livefin(args: list[str], home: Path | None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "livefin"), *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def _snapshot_rows(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home / "published" / "livefin.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def readme_analyst_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"Analysts query the published snapshot.*?```bash\n(.*?)```", text, re.S)
    assert m, "README has no analyst command block"
    return m.group(1).strip()


def test_readme_analyst_command_runs_as_written(tiny_run, tmp_path):
    cmd = readme_analyst_command()
    assert "livefin sql" in cmd
    # As from a fresh clone: the repo's .venv/bin/livefin, the default home ./state.
    clone = tmp_path / "clone"
    (clone / ".venv").mkdir(parents=True)
    (clone / ".venv" / "bin").symlink_to(BIN)
    (clone / "state").symlink_to(tiny_run["home"])
    cp = subprocess.run(
        ["bash", "-c", cmd], cwd=clone, env=_env(None), capture_output=True, text=True, timeout=300
    )
    assert cp.returncode == 0, cp.stderr
    want = _snapshot_rows(
        tiny_run["home"], "select tier, count(*) from limits.current group by tier order by tier"
    )
    assert want, "the fixture published no limits"
    for tier, n in want:
        assert re.search(rf"│\s*{tier}\s*│\s*{n}\s*│", cp.stdout), (tier, n, cp.stdout)


def test_sql_csv_and_json_match_the_snapshot(tiny_run):
    q = "select merchant_id, limit_amount, reason_codes from limits.current order by merchant_id"
    want = _snapshot_rows(tiny_run["home"], q)
    cp = _livefin(["sql", "--format", "csv", q], tiny_run["home"])
    assert cp.returncode == 0, cp.stderr
    rows = list(csv.reader(io.StringIO(cp.stdout)))
    assert rows[0] == ["merchant_id", "limit_amount", "reason_codes"]
    assert [r[0] for r in rows[1:]] == [w[0] for w in want]
    assert [float(r[1]) for r in rows[1:]] == [float(w[1]) for w in want]
    cp = _livefin(["sql", "--format", "json", q], tiny_run["home"])
    assert cp.returncode == 0, cp.stderr
    objs = json.loads(cp.stdout)
    assert [o["merchant_id"] for o in objs] == [w[0] for w in want]
    assert [o["reason_codes"] for o in objs] == [list(w[2]) for w in want]


def test_sql_is_read_only_and_errors_are_one_line(tiny_run):
    cp = _livefin(["sql", "create table limits.x as select 1"], tiny_run["home"])
    assert cp.returncode == 1
    assert "Traceback" not in cp.stderr and "read-only" in cp.stderr.lower(), cp.stderr


def test_sql_shell_reads_statements_until_semicolon(tiny_run):
    script = (
        "select 40 + 2 as answer;\nselect nope_col;\nselect count(*) as n\n  from limits.current;\n"
    )
    cp = _livefin(["sql", "--format", "csv"], tiny_run["home"], input=script)
    assert cp.returncode == 0, cp.stderr
    n = _snapshot_rows(tiny_run["home"], "select count(*) from limits.current")[0][0]
    assert cp.stdout.split() == ["answer", "42", "n", str(n)]
    assert "nope_col" in cp.stderr and "Traceback" not in cp.stderr


def test_read_commands_refuse_an_empty_or_missing_home_and_create_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    for home in (empty, missing):
        for args in (
            ["explain", "M000001", "--date", "2025-01-10"],
            ["explain-value", "M000001", "--date", "2025-01-10"],
            ["status"],
            ["sql", "select 1"],
        ):
            cp = _livefin(args, home)
            assert cp.returncode == 1, (args, cp.stdout, cp.stderr)
            msg = " ".join(cp.stderr.split())
            assert "livefin init" in msg and "livefin demo" in msg, msg
            assert "Traceback" not in msg
            assert len(cp.stderr.strip().splitlines()) <= 3, cp.stderr  # one (wrapped) line
    assert list(empty.iterdir()) == [] and not missing.exists()


def test_explain_unknown_merchant(tiny_run):
    last = tiny_run["last"].isoformat()
    cp = _livefin(["explain", "NOPE", "--date", last], tiny_run["home"])
    assert cp.returncode == 1
    assert "unknown merchant NOPE" in " ".join(cp.stderr.split()), cp.stderr


def test_cli_start_up_imports_nothing_heavy():
    """Heavy imports load inside commands (behind a spinner), never when the CLI starts."""
    code = (
        "import sys, livefin_etl.cli; "
        "print([m for m in ('duckdb', 'polars', 'pandas', 'xgboost', 'great_expectations') "
        "if m in sys.modules])"
    )
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == "[]"
