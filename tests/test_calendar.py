"""The calendar the pipeline trusts: no silent gaps, nothing past the clock, and every command a
message suggests exists (livefin_etl.calendar, quality.require_passed, the CLI)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from livefin_etl import calendar, quality
from livefin_etl.cli import app
from livefin_etl.config import LivefinError, StageBlocked, load_config
from livefin_etl.warehouse import table_exists

REPO = Path(__file__).resolve().parents[1]
SOURCES = list(load_config("quality")["required_sources"])
START = date(2025, 3, 1)


# --------------------------------------------------------------------------- ranges


def test_ranges_round_trip():
    dates = [START, START + timedelta(1), START + timedelta(2), START + timedelta(5)]
    text = calendar.format_ranges(dates)
    assert text == "2025-03-01..2025-03-03,2025-03-06"
    assert calendar.parse_ranges(text) == dates
    assert calendar.parse_ranges(" 2025-03-06 , 2025-03-01..2025-03-03") == dates
    for bad in ("2025-03-05..2025-03-01", "yesterday", "", "2025-02-30"):
        with pytest.raises(LivefinError):
            calendar.parse_ranges(bad)


# --------------------------------------------------------------------------- gaps (real DuckDB)


@pytest.fixture
def con(tmp_path):
    """A warehouse whose gate passed every source on START..START+9 but these:
    +3..+5 never delivered, +7 orders failed."""
    c = duckdb.connect(str(tmp_path / "w.duckdb"))
    quality.ensure_tables(c)
    rows = []
    for i in range(10):
        if 3 <= i <= 5:
            continue
        for s in SOURCES:
            status = "failed" if (i == 7 and s == "orders") else "passed"
            failed = '["orders.extract: refused [critical]"]' if status == "failed" else "[]"
            rows.append((s, START + timedelta(i), status, f"r{i}", failed))
    c.executemany("insert into dq.partition_status values (?, ?, ?, ?, ?, now()::timestamp)", rows)
    yield c
    c.close()


def test_a_gap_closes_the_gate_of_every_later_date(con):
    day = START + timedelta(9)
    with pytest.raises(StageBlocked) as info:
        quality.require_passed(con, day)
    msg = str(info.value)
    assert msg.startswith(f"quality gate for {day} is closed:")
    assert "earlier business dates since 2025-03-01 did not pass the gate" in msg
    assert "never validated 2025-03-04..2025-03-06 (3 dates; every source)" in msg
    assert "failed 2025-03-08 (1 dates; orders)" in msg
    assert "`livefin ingest --start 2025-03-04 --end 2025-03-08`" in msg
    assert (
        "`livefin run --start 2025-03-10 --allow-gap 2025-03-04..2025-03-06,2025-03-08 "
        '--reason "<why>"`' in msg
    )
    # a date before the gap is open: only earlier dates count
    quality.require_passed(con, START + timedelta(2))


def test_skipping_on_purpose_opens_the_gate_and_is_recorded(con):
    day = START + timedelta(9)
    gap = calendar.parse_ranges("2025-03-04..2025-03-06")
    calendar.record_skips(con, gap, "platform outage: no export", before=day)
    with pytest.raises(StageBlocked, match=r"failed 2025-03-08 \(1 dates; orders\)") as info:
        quality.require_passed(con, day)
    assert "never validated" not in str(info.value)
    # a per-source skip covers that source only
    calendar.record_skips(
        con, [START + timedelta(7)], "orders lost", before=day, sources=["orders"]
    )
    quality.require_passed(con, day)
    rows = con.execute(
        "select dt, source, reason, skipped_by from meta.calendar_skips order by dt, source"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (START + timedelta(3), "*", "platform outage: no export"),
        (START + timedelta(4), "*", "platform outage: no export"),
        (START + timedelta(5), "*", "platform outage: no export"),
        (START + timedelta(7), "orders", "orders lost"),
    ]
    assert all(r[3] for r in rows)


def test_a_skip_needs_a_reason_and_an_earlier_date(con):
    day = START + timedelta(9)
    with pytest.raises(LivefinError, match="needs a reason"):
        calendar.record_skips(con, [START + timedelta(3)], "  ", before=day)
    with pytest.raises(LivefinError, match="only dates before 2025-03-10"):
        calendar.record_skips(con, [day], "why", before=day)
    assert not table_exists(con, "meta.calendar_skips")  # nothing recorded, nothing created


def test_a_configured_start_ignores_older_gaps(con, tmp_path, monkeypatch):
    from livefin_etl import config

    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "calendar.yaml").write_text(
        (config.CONFIG_DIR / "calendar.yaml")
        .read_text()
        .replace("start: null", "start: 2025-03-09")
    )
    (cfg / "quality.yaml").write_text((config.CONFIG_DIR / "quality.yaml").read_text())
    monkeypatch.setattr(config, "CONFIG_DIR", cfg)
    load_config.cache_clear()
    try:
        quality.require_passed(con, START + timedelta(9))
    finally:
        load_config.cache_clear()


# --------------------------------------------------------------------------- the clock


def test_the_gate_refuses_a_date_later_than_the_clock(con, monkeypatch):
    day = START + timedelta(2)
    quality.require_passed(con, day)
    monkeypatch.setenv("LIVEFIN_TODAY", str(day))  # D is complete only from D+1 on
    with pytest.raises(StageBlocked, match=f"business date {day} is later than the clock allows"):
        quality.require_passed(con, day)
    monkeypatch.setenv("LIVEFIN_TODAY", str(day + timedelta(1)))
    quality.require_passed(con, day)


def livefin(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LIVEFIN_HOME=str(home), PYTHONPATH=str(REPO), COLUMNS="400")
    env.update(extra)
    exe = Path(sys.executable).parent / "livefin"
    cp = subprocess.run(
        [str(exe), *args], cwd=home, env=env, capture_output=True, text=True, timeout=900
    )
    assert "Traceback" not in cp.stdout + cp.stderr, (cp.stdout + cp.stderr)[-4000:]
    return cp


def test_a_future_date_is_never_extracted(tmp_path):
    """The issue's 2027 date: refused before anything is opened or created."""
    home = tmp_path / "home"
    home.mkdir()
    future = date.today() + timedelta(days=400)
    part = home / "landing" / "orders" / f"dt={future}" / "part-0.csv"
    part.parent.mkdir(parents=True)
    part.write_text("order_id\n1\n")
    for args in (
        ["extract", "--source", "orders", "--date", str(future)],
        ["ingest", "--start", str(future), "--end", str(future)],
        ["run", "--start", str(future)],
    ):
        cp = livefin(home, *args)
        assert cp.returncode == 1, cp.stderr
        assert f"business date {future} is later than the clock allows" in cp.stderr, cp.stderr
        assert "Asia/Shanghai" in cp.stderr
    assert not (home / "warehouse").exists()


# --------------------------------------------------------------------------- the defect, end to end


@pytest.fixture(scope="module")
def gapped(tmp_path_factory, tiny_landing):
    """Seven delivered days; on the next four only merchants and loans arrived (the event
    sources were never delivered); then `livefin run` for the twelfth."""
    home = tmp_path_factory.mktemp("gap") / "home"
    env = {"LIVEFIN_LANDING": str(tiny_landing)}
    first = json.loads((tiny_landing / "_truth" / "params.json").read_text())["start"]
    first = date.fromisoformat(str(first))
    assert livefin(home.parent, "init", LIVEFIN_HOME=str(home), **env).returncode == 0
    cp = livefin(home, "ingest", "--start", str(first), "--end", str(first + timedelta(6)), **env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    a, b = str(first + timedelta(7)), str(first + timedelta(10))
    # later deliveries reference these, so the twelfth can pass its own gate
    cp = livefin(
        home,
        "ingest",
        "--start",
        a,
        "--end",
        b,
        "--source",
        "merchants",
        "--source",
        "loans",
        **env,
    )
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return home, first, env


def test_after_a_gap_the_next_date_does_not_publish(gapped):
    home, first, env = gapped
    day = first + timedelta(11)
    cp = livefin(home, "run", "--start", str(day), **env)
    assert cp.returncode == 2, cp.stdout + cp.stderr
    gap = f"{first + timedelta(7)}..{first + timedelta(10)}"
    text = " ".join(cp.stderr.split())
    assert f"blocked {day}:" in text
    missing = "orders, traffic, fulfillment, repayments"
    assert f"never validated {gap} (4 dates; {missing})" in text, text
    assert f'`livefin run --start {day} --allow-gap {gap} --reason "<why>"`' in text
    assert not (home / "published" / "livefin.duckdb").exists()

    # the suggested command, with a reason: the calendar opens, the night runs its stages
    cp = livefin(
        home, "run", "--start", str(day), "--allow-gap", gap, "--reason", "test outage", **env
    )
    text = " ".join(cp.stderr.split())
    assert "earlier business dates" not in text, text
    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        skips = con.execute("select dt, source, reason from meta.calendar_skips").fetchall()
        built = con.execute(
            "select count(*) from dq.merchant_quality where as_of_date = ?", [day]
        ).fetchone()[0]
    finally:
        con.close()
    assert sorted(skips) == [(first + timedelta(i), "*", "test outage") for i in range(7, 11)]
    assert built > 0, text
    # it stops only where this small history must: no credit model trained yet
    assert cp.returncode == 2 and f"blocked {day}: no model trained yet" in text, text


def test_allow_gap_refuses_later_dates_and_needs_a_reason(gapped):
    home, first, env = gapped
    day = first + timedelta(11)
    cp = livefin(home, "run", "--start", str(day), "--allow-gap", str(day), "--reason", "x", **env)
    assert cp.returncode == 1 and f"only dates before {day}" in cp.stderr, cp.stderr
    cp = livefin(home, "run", "--start", str(day), "--allow-gap", str(first + timedelta(8)), **env)
    assert cp.returncode == 1 and "needs a reason" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------- suggested commands

_SUGGESTED = re.compile(r"`(livefin [^`]+)`")


def _message_texts(path: Path) -> list[str]:
    """String constants and f-strings (placeholders as X) of a module, docstrings excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append(
                "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docs:
                out.append(node.value)
    return out


def suggested_commands() -> set[str]:
    found = set()
    for root in (REPO / "livefin_etl", REPO / "dags"):
        for path in root.rglob("*.py"):
            for text in _message_texts(path):
                found.update(m.group(1) for m in _SUGGESTED.finditer(text))
    return found


def test_every_suggested_command_and_option_exists():
    suggestions = suggested_commands()
    # the hints this issue is about are among them (so the scan itself works)
    prefixes = {" ".join(s.split()[:2]) for s in suggestions}
    assert {"livefin init", "livefin ingest", "livefin run", "livefin train"} <= prefixes
    group = typer.main.get_command(app)
    runner = CliRunner()
    for suggestion in sorted(suggestions):
        words = suggestion.split()[1:]
        path, cmd = [], group
        while words and isinstance(cmd, typer.core.TyperGroup) and words[0] in cmd.commands:
            path.append(words[0])
            cmd = cmd.commands[words.pop(0)]
        assert path and not isinstance(cmd, typer.core.TyperGroup), f"no command: {suggestion}"
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, f"{suggestion}: {result.output}"
        known = {o for p in cmd.params for o in p.opts}
        for option in (w for w in words if w.startswith("--")):
            assert option in known, f"`{suggestion}` names {option}, which `livefin "
            f"{' '.join(path)}` does not have"
            assert option in result.output, f"{option} missing from the help of {path}"
