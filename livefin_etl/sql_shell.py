"""``livefin sql``: analysts' SQL on the published snapshot, read-only, from the project's own
environment (the duckdb package ships no shell, and the PyPI DuckDB CLI cannot open a file
written by duckdb 2.x). One query prints a table, CSV or JSON; no query starts a small shell."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

from livefin_etl.config import LivefinError

FORMATS = ("table", "csv", "json")
MAX_TABLE_ROWS = 1000


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return "|".join(_cell(v) for v in value)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def render(cols: list[str], rows: list[tuple], fmt: str, out: TextIO, console: Any) -> None:
    """Print a result: a readable table (rich), CSV with header, or a JSON array of objects."""
    if fmt not in FORMATS:
        raise LivefinError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(cols)
        w.writerows([_cell(v) if isinstance(v, (list, tuple)) else v for v in r] for r in rows)
        return
    if fmt == "json":
        objs = [{c: _jsonable(v) for c, v in zip(cols, r, strict=True)} for r in rows]
        out.write(json.dumps(objs, ensure_ascii=False) + "\n")
        return
    from rich.table import Table

    table = Table(*cols)
    for r in rows[:MAX_TABLE_ROWS]:
        table.add_row(*(_cell(v) for v in r))
    console.print(table)
    more = (
        f" (first {MAX_TABLE_ROWS} shown; --format csv for all)"
        if len(rows) > MAX_TABLE_ROWS
        else ""
    )
    console.print(f"{len(rows):,} row{'s' if len(rows) != 1 else ''}{more}")


def statements(lines: Iterable[str]) -> Iterable[str]:
    """Statements from lines of input, each ending with ``;`` (as in the DuckDB shell)."""
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        text = "\n".join(buf).strip()
        if text.endswith(";"):
            yield text.rstrip(";").strip()
            buf = []
    tail = "\n".join(buf).strip()
    if tail:
        yield tail


def _lines(prompt: bool) -> Iterable[str]:
    while True:
        try:
            line = input("livefin> ") if prompt else next(sys.stdin).rstrip("\n")
        except (EOFError, StopIteration):
            return
        if line.strip() in (".quit", ".exit"):
            return
        yield line


def shell(con: Any, fmt: str, console: Any, err: Any) -> None:
    """Read statements until ``;`` and print each result; errors are one line, the shell goes
    on. ``.quit`` or end of input leaves."""
    tty = sys.stdin.isatty()
    if tty:
        err.print(
            "livefin sql: the published snapshot, read-only. End statements with ';', "
            "'.quit' to leave."
        )
    import duckdb

    for stmt in statements(_lines(tty)):
        if not stmt:
            continue
        try:
            cur = con.execute(stmt)
            cols = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall() if cols else []
        except duckdb.Error as exc:  # one line, and the shell goes on
            err.print(f"[bold red]error:[/] {str(exc).splitlines()[0]}")
            continue
        if cols:
            render(cols, rows, fmt, sys.stdout, console)
