"""The DuckDB route of the gate (sqlcheck) records exactly what the all-GX route records.

On a copy of the tiny world (``tiny_ingested``), a window of dates around a date whose rows GX
finds unexpected is validated twice, first with every row through GX's pandas engine, then with
the grouped DuckDB pass: dq.expectation_results, dq.partition_status and the callers' summaries
must be identical, and so must the GX records Data Docs render for one-date validations.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from livefin_etl import quality
from livefin_etl.config import get_settings, livefin_env
from livefin_etl.quality import gate, gx_runner
from livefin_etl.warehouse import connect

SOURCES = ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments"]
RESULTS = """
select dt, suite, expectation_type, column_name, severity, success, observed_value,
       unexpected_count, unexpected_percent, kwargs
from dq.expectation_results
where source = ? and dt in (select unnest(?::DATE[]))
  and run_id in (select run_id from dq.partition_status where source = ?)
order by all"""
STATUS = """
select dt, status, failed_expectations from dq.partition_status
where source = ? and dt in (select unnest(?::DATE[])) order by dt"""


def _snapshot(con, source: str, dates: list, summaries: list[dict]) -> tuple:
    keep = ("dt", "status", "failed_critical", "failed_warnings", "evaluated", "successful", "rows")
    return (
        con.execute(RESULTS, [source, dates, source]).fetchall(),
        con.execute(STATUS, [source, dates]).fetchall(),
        [{k: s[k] for k in keep} | {"profile": s["profile"]} for s in summaries],
    )


def _records(docs: Path) -> dict[str, dict]:
    """Stored GX validation results (what Data Docs render), by run name."""
    out = {}
    for p in (docs / "gx").rglob("validations/**/*.json"):
        rec = json.loads(p.read_text())
        out[rec["meta"]["run_id"]["run_name"]] = rec
    return out


def _corrupt(con) -> tuple[str, list]:
    """Rows extract would not catch, on two dates next to the orders volume warnings of the
    tiny world: a duplicate order id with an unknown status, an unknown merchant and a refund
    above the paid amount; and a NaN paid amount (a null to pandas, not to DuckDB)."""
    first_warning = con.execute(
        "select min(dt) from dq.partition_status where source = 'orders' and status = 'warning'"
    ).fetchone()[0]
    assert first_warning is not None, "the tiny world has no orders warning date any more"
    bad = [first_warning + timedelta(days=1), first_warning - timedelta(days=2)]
    con.execute(
        """insert into raw.orders select * replace ('lost' as status, 'M-nobody' as merchant_id,
           paid_amount + 10 as refund_amount) from raw.orders where _dt = ? limit 1""",
        [bad[0]],
    )
    con.execute(
        """insert into raw.orders select * replace ('nan'::DOUBLE as paid_amount,
           order_id || '-x' as order_id) from raw.orders where _dt = ? limit 1""",
        [bad[1]],
    )
    return "orders", sorted(bad)


@pytest.fixture()
def home(tmp_path, tiny_ingested):
    dst = tiny_ingested.copy_to(tmp_path / "home", docs=False)
    with livefin_env(dst, LIVEFIN_LANDING=str(tiny_ingested.landing)):
        settings = get_settings()
        con = connect(settings)
        yield settings, con, tiny_ingested
        con.close()


def test_duckdb_route_records_what_gx_records(home, monkeypatch):
    settings, con, world = home
    source, dirty = _corrupt(con)
    dates = [dirty[0] + timedelta(days=k) for k in range(-1, 7)]
    bad = dirty[-1]
    seen = {}
    before: set[str] = set()
    for route in ("gx", "duckdb"):
        before = set(_records(settings.docs))
        monkeypatch.setattr(gate, "ROW_ROUTE", route)
        for src in SOURCES:
            summaries = quality.validate_range(con, settings, src, dates)
            seen[(route, src)] = _snapshot(con, src, dates, summaries)
    for src in SOURCES:
        gx_side, duck_side = seen[("gx", src)], seen[("duckdb", src)]
        assert duck_side[0] == gx_side[0], src  # per expectation and date
        assert duck_side[1] == gx_side[1], src  # partition status and failure texts
        assert duck_side[2] == gx_side[2], src  # row counts, profiles, summaries
    results, status, summaries = seen[("duckdb", source)]
    by_date = {d: s for d, s, _ in status}
    assert by_date[dirty[0]] == by_date[dirty[1]] == "failed"
    assert "warning" in by_date.values()  # a profile warning in the window as well
    failing = [r for r in results if r[0] == bad and r[1] == source and not r[5] and r[7]]
    assert {r[2] for r in failing} >= {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_in_set",
        "expect_column_pair_values_a_to_be_greater_than_b",
    }
    nan = [r for r in results if r[0] == dirty[0] and r[1] == source and not r[5]]
    assert ("expect_column_values_to_not_be_null", "paid_amount") in {(r[2], r[3]) for r in nan}
    row_dirty = {r[0] for r in results if r[1] == source and r[7]}
    assert row_dirty == set(dirty)

    # Data Docs of the DuckDB route: each row-dirty date has its own GX run, the clean dates one
    # range record holding their rows; each record is rendered as a page
    new = {k: v for k, v in _records(settings.docs).items() if k not in before}
    run_of = dict(
        con.execute(
            "select dt, run_id from dq.partition_status where source = ?", [source]
        ).fetchall()
    )
    for d in row_dirty:
        own = new[f"{run_of[d]}:{source}"]
        assert not own["success"]
    own = new[f"{run_of[bad]}:{source}"]
    assert {r["expectation_config"]["type"] for r in own["results"] if not r["success"]} >= {
        r[2] for r in failing
    }
    span = f"range-{dates[0]:%Y%m%d}-{dates[-1]:%Y%m%d}-"
    ranges = [v for k, v in new.items() if k.startswith(span) and k.endswith(f":{source}")]
    assert len(ranges) == 1 and ranges[0]["success"]
    n_clean = sum(s["rows"] for s in summaries if s["dt"] not in row_dirty)
    counts = {r["result"].get("element_count") for r in ranges[0]["results"]}
    assert n_clean in counts, counts
    index = quality.build_data_docs(settings, con)
    pages = [str(p) for p in (index.parent / "validations").rglob("*.html")]
    assert any(run_of[bad] in p for p in pages) and any(span in p for p in pages)


def test_one_date_records_identical(home, monkeypatch):
    """A night (one date): the stored GX record of the DuckDB route equals GX's own run."""
    settings, con, world = home
    source, dirty = _corrupt(con)
    clean = world.last
    cases = [(source, d) for d in dirty] + [
        (s, clean) for s in ("orders", "fulfillment", "traffic")
    ]
    for src, as_of_date in cases:
        recs = {}
        for route in ("gx", "duckdb"):
            monkeypatch.setattr(gate, "ROW_ROUTE", route)
            # a new process: templates come from the earlier dates' files, not from memory
            monkeypatch.setattr(gx_runner, "_TEMPLATES", {})
            run_id = f"dq-test-{route}-{src}-{as_of_date:%Y%m%d}"
            quality.validate_partition(con, settings, src, as_of_date, run_id)
            stored = _records(settings.docs)
            recs[route] = [stored[f"{run_id}:{suite}"] for suite in (src, f"{src}.profile")]
        for duck, gx in zip(recs["duckdb"], recs["gx"], strict=True):
            assert duck["results"] == gx["results"], (src, as_of_date)
            assert duck["statistics"] == gx["statistics"]
            assert duck["success"] == gx["success"]
