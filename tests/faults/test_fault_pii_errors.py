"""Defect 1 of issue 21: an orders CSV with one unterminated quote used to put the rest of the
file (raw phones, names, addresses) into error texts that were stored, printed and published.

Real CLI subprocesses on a copy of the fault session state: ``livefin -v run`` for L refuses the
delivery, then ``livefin publish`` for L-1 rebuilds the analysts' snapshot (which copies
``dq.partition_status``, L's refusal included). Every table and column of the warehouse and of
every snapshot, every file under LIVEFIN_HOME (exports, logs, docs, the DuckDB files as bytes)
and the captured terminal output are scanned for the fixture's raw values.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import duckdb

from livefin_etl.privacy import MAX_ERROR_CHARS
from livefin_etl.warehouse import quote_ident, quote_literal

SOURCES = ("merchants", "orders", "fulfillment", "traffic", "loans", "repayments")
SURNAMES = ("欧阳", "司徒", "上官", "慕容", "诸葛", "东方", "皇甫", "尉迟")
GIVEN = ("晓峰", "静怡", "婉儿", "云飞", "明月", "子涵", "雨桐", "若曦")
PII_HEADERS = {  # the douyin export's headers, and the canonical ones
    "phone": ("买家手机号", "buyer_phone"),
    "name": ("买家姓名", "buyer_name"),
    "address": ("收货地址", "buyer_address"),
}


def fixture_people(n: int = 64) -> list[dict[str, str]]:
    return [
        {
            "phone": f"1357924{i:04d}",
            "name": SURNAMES[i % 8] + GIVEN[(i // 8) % 8],
            "address": f"四川省成都市武侯区天府大道北段{1000 + i}号{i % 9 + 1}单元{300 + i}室",
        }
        for i in range(n)
    ]


def landing_for(src: Path, dst: Path, day) -> Path:
    for source in SOURCES:
        shutil.copytree(src / source / f"dt={day}", dst / source / f"dt={day}")
    (dst / "_truth").symlink_to(src / "_truth")
    return dst


def poison_orders(folder: Path, people: list[dict[str, str]]) -> int:
    """Rewrite the orders file with the fixture's people; one address opens a quote that never
    closes. Returns the physical line of that row."""
    path = next(p for p in folder.iterdir() if p.name.endswith(".csv"))
    data = path.read_bytes()
    encoding = "utf-8" if data.startswith(b"\xef\xbb\xbf") else "gbk"
    try:
        text = data.decode("utf-8-sig")
        encoding = "utf-8"
    except UnicodeDecodeError:
        text = data.decode("gbk")
    lines = text.splitlines()
    header = lines[0].split(",")
    idx = {k: next(header.index(h) for h in hs if h in header) for k, hs in PII_HEADERS.items()}
    template = lines[1].split(",")
    rows = []
    for i, person in enumerate(people):
        cells = list(template)
        cells[0] = f"{cells[0]}P{i}"  # a fresh order id per row
        for key, col in idx.items():
            cells[col] = person[key]
        rows.append(cells)
    broken = 3  # the fourth data row: fixture rows before and (most of them) after it
    rows[broken][idx["address"]] = '"' + rows[broken][idx["address"]]
    body = [lines[0], *[",".join(r) for r in rows], *lines[1:]]
    path.write_bytes(("\n".join(body) + "\n").encode(encoding))
    return broken + 2  # header is line 1, data row k is line k + 2


def needles(people: list[dict[str, str]]) -> list[str]:
    return sorted({v for p in people for v in p.values()})


def scan_db(db: Path, values: list[str]) -> list[str]:
    """Every column of every table, as text, against the raw values."""
    pattern = "|".join(re.escape(v) for v in values)
    found = []
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            cols = [
                r[0]
                for r in con.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = ? and table_name = ?",
                    [schema, table],
                ).fetchall()
            ]
            row_text = ", '|', ".join(f"coalesce({quote_ident(c)}::varchar, '')" for c in cols)
            name = f"{quote_ident(schema)}.{quote_ident(table)}"
            hits = con.execute(
                f"select count(*) from {name} "
                f"where regexp_matches(concat({row_text}), {quote_literal(pattern)})"
            ).fetchone()[0]
            if hits:
                found.append(f"{db.name}:{schema}.{table} ({hits} rows)")
    finally:
        con.close()
    return found


def scan_files(root: Path, values: list[str]) -> list[str]:
    encoded = [(v, v.encode(enc)) for v in values for enc in ("utf-8", "gbk")]
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {v}" for v, b in encoded if b in data]
    return sorted(set(found))


def test_unterminated_quote_leaks_no_row_content_anywhere(fl, pre_l, tmp_path):
    L = pre_l.last
    home = fl.copy_home(pre_l.home, tmp_path / "home", docs=False)
    landing = landing_for(pre_l.landing, tmp_path / "landing", L)
    people = fixture_people()
    line = poison_orders(landing / "orders" / f"dt={L}", people)
    values = needles(people)

    run = fl.run_cli(["-v", "run", "--start", str(L)], home, landing)
    fl.assert_clean_failure(run, codes=(2,))
    assert f"blocked {L}" in " ".join(run.stderr.split()), run.stderr[-3000:]
    # the snapshot is rebuilt after the refusal: dq.partition_status (L's row too) is copied
    pub = fl.run_cli(["publish", "--date", str(L - timedelta(days=1))], home, landing)
    assert pub.returncode == 0, (pub.stdout + pub.stderr)[-3000:]

    terminal = run.stdout + run.stderr + pub.stdout + pub.stderr
    leaks = [v for v in values if v in terminal]
    snapshots = sorted((home / "published").rglob("*.duckdb"))
    assert snapshots, "no published snapshot to scan"
    for db in [home / "warehouse" / "livefin.duckdb", *snapshots]:
        leaks += scan_db(db, values)
    leaks += scan_files(home, values)
    assert not leaks, leaks

    con = duckdb.connect(str(home / "published" / "livefin.duckdb"), read_only=True)
    try:
        published = con.execute(
            "select status, failed_expectations from dq.partition_status "
            "where source = 'orders' and dt = ?",
            [L],
        ).fetchone()
    finally:
        con.close()
    assert published and published[0] == "failed", published  # the refusal did reach analysts

    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        texts = con.execute(
            "select message from meta.load_manifest where source = 'orders' and dt = ? "
            "and status = 'rejected' union all "
            "select reason from meta.quarantine where source = 'orders' and dt = ?",
            [L, L],
        ).fetchall()
        (failed,) = con.execute(
            "select failed_expectations from dq.partition_status "
            "where source = 'orders' and dt = ?",
            [L],
        ).fetchone()
    finally:
        con.close()
    assert len(texts) == 2, texts  # the manifest's rejection and the file_error quarantine row
    for (text,) in texts:
        assert len(text) <= MAX_ERROR_CHARS and f"line {line}, column" in text, text
    items = json.loads(failed)
    assert items and all(
        len(i) <= MAX_ERROR_CHARS + len("orders.extract:  [critical]") for i in items
    )
    assert f"line {line}" in items[0] and "\n" not in items[0], items
