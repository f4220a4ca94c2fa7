"""The livefin status page: the quality gate as a date x source grid, next to the Data Docs.

Written as static HTML (no script, no network) to ``<docs>/data_docs/status.html`` after every
Data Docs build, from ``dq.partition_status`` (the gate's state) and ``dq.expectation_results``
(the failing expectations with their observed values). Each failing expectation links to the GX
result page of its validation run; the page uses the Bootstrap copy that ``docs_offline``
installs in the site.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb

from livefin_etl.quality.docs_offline import VENDOR
from livefin_etl.warehouse import table_exists

PAGE = "status.html"
SEVERITY = {"failed": "critical", "warning": "warning", "passed": ""}
_CLASS = {"failed": "table-danger", "warning": "table-warning", "passed": "table-success"}

_FAILURES = """
select e.source, e.dt, e.suite, e.expectation_type, e.column_name, e.severity,
       e.observed_value, e.unexpected_count, e.kwargs, e.run_id
from dq.expectation_results e
join dq.partition_status p
  on p.source = e.source and p.dt = e.dt and p.run_id = e.run_id
where not e.success
order by e.dt, e.source, e.severity = 'warning', e.suite, e.expectation_type, e.column_name
"""


def _result_page(site: Path, run_id: str, suite: str) -> str | None:
    """Relative URL of the GX result page of ``suite`` in validation run ``run_id``."""
    folder = site / "validations" / Path(*suite.split(".")) / f"{run_id}:{suite}"
    pages = sorted(folder.glob("*/*.html"))
    if not pages:
        return None
    return quote(pages[-1].relative_to(site).as_posix())


def _observed(row: dict[str, Any]) -> str:
    """What was seen: the metric and its bounds for the one-row profile suites, else how many
    rows broke the expectation with up to 5 of their values."""
    kwargs = json.loads(row["kwargs"] or "{}")
    bounds = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k in ("min_value", "max_value"))
    bounds = f"; expected {bounds}" if bounds else ""
    value = row["observed_value"]
    if row["suite"].endswith(".profile") and value:
        seen = json.loads(value) if value.startswith("[") else [value]
        return f"observed {', '.join(str(v) for v in seen)}{bounds}"
    if row["unexpected_count"]:
        return f"{row['unexpected_count']} unexpected" + (f" e.g. {value}" if value else "")
    return f"observed {value}{bounds}" if value is not None else "failed"


def _cell(status: str | None, failures: list[dict[str, Any]], site: Path) -> str:
    if status is None:
        return '<td class="table-secondary">not validated</td>'
    items = []
    for f in failures:
        name = f"{f['suite']}.{f['expectation_type']}({f['column_name'] or ''})"
        page = _result_page(site, f["run_id"], f["suite"])
        label = html.escape(name)
        link = f'<a href="{page}">{label}</a>' if page else label
        items.append(
            f'<li class="failure" data-severity="{f["severity"]}">{link}: '
            f"{html.escape(_observed(f))} [{f['severity']}]</li>"
        )
    severity = SEVERITY.get(status, "")
    head = f'<span class="status">{html.escape(status)}</span>'
    if severity:
        head += f' <span class="badge badge-secondary severity">{severity}</span>'
    body = f'<ul class="mb-0 small">{"".join(items)}</ul>' if items else ""
    return f'<td class="{_CLASS.get(status, "")}" data-status="{status}">{head}{body}</td>'


def _grid(con: duckdb.DuckDBPyConnection) -> tuple[list, list, dict, dict]:
    rows = con.execute("select source, dt, status from dq.partition_status").fetchall()
    sources = sorted({r[0] for r in rows})
    dates = sorted({r[1] for r in rows}, reverse=True)
    status = {(r[1], r[0]): r[2] for r in rows}
    failures: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    cur = con.execute(_FAILURES)
    names = [c[0] for c in cur.description]
    for r in cur.fetchall():
        f = dict(zip(names, r, strict=True))
        failures[(f["dt"], f["source"])].append(f)
    return sources, dates, status, failures


def write_status_page(con: duckdb.DuckDBPyConnection, site: Path) -> Path:
    """Write ``site/status.html`` from the gate tables; returns its path."""
    out = site / PAGE
    if table_exists(con, "dq.partition_status"):
        sources, dates, status, failures = _grid(con)
    else:
        sources, dates, status, failures = [], [], {}, {}
    head = "".join(f"<th>{html.escape(s)}</th>" for s in sources)
    body = []
    for d in dates:
        cells = "".join(_cell(status.get((d, s)), failures.get((d, s), []), site) for s in sources)
        body.append(f'<tr data-date="{d.isoformat()}"><th>{d.isoformat()}</th>{cells}</tr>')
    failed = sum(1 for v in status.values() if v == "failed")
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>livefin data-quality gate</title>
<link rel="stylesheet" href="{VENDOR}/bootstrap/css/bootstrap.min.css"></head>
<body class="container-fluid py-3">
<h1 class="h3">livefin data-quality gate</h1>
<p>Gate status per business date and source (<code>dq.partition_status</code>), written {at}.
<b>failed</b>: a critical expectation failed and the night is blocked; <b>warning</b>: only
warning expectations failed. {len(dates)} dates, {failed} failed partitions.
<a href="index.html">GX Data Docs</a>.</p>
<table id="gate" class="table table-sm table-bordered">
<thead><tr><th>business date</th>{head}</tr></thead>
<tbody>{"".join(body)}</tbody></table></body></html>
"""
    tmp = out.with_name(f".{PAGE}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
