"""A tiny warehouse as extract leaves it: raw.* + meta.load_manifest + meta.quarantine.

The base history (11 clean days of every source) is built once per session and copied into
each test's tmp_path, so each test starts from the same real DuckDB file.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from livefin_etl.config import CONFIG_DIR, get_settings
from livefin_etl.extract import ensure_meta_tables
from livefin_etl.warehouse import connect

START = date(2026, 3, 1)
D = date(2026, 3, 11)  # the day under test; START..D-1 are clean history
MERCHANTS = ["M1", "M2", "M3"]
ORDERS_PER_DAY = 30
LINEAGE = (
    "_dt DATE, _file VARCHAR, _line BIGINT, _contract_version VARCHAR, _mapping VARCHAR, "
    "_loaded_at TIMESTAMP"
)


def _contract(source: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / "sources" / f"{source}.yaml").read_text())


def create_raw(con, source: str) -> None:
    cols = []
    for name, c in _contract(source)["columns"].items():
        cols.append(f"{name}_hash VARCHAR" if c.get("pii") else f"{name} {c['type']}")
    con.execute(f"CREATE TABLE IF NOT EXISTS raw.{source} ({', '.join(cols)}, {LINEAGE})")


def create_meta(con) -> None:
    ensure_meta_tables(con)  # extract's own DDL, so the tests see its columns


def insert_raw(
    con, source: str, dt: date, rows: list[dict], file: str | None = None, start_line: int = 1
) -> None:
    """Insert canonical rows into raw.<source> with lineage, like extract does."""
    if not rows:
        return
    file = file or f"landing/{source}/dt={dt}/part-0"
    cols = list(rows[0].keys())
    allcols = cols + ["_dt", "_file", "_line", "_contract_version", "_mapping", "_loaded_at"]
    values = [
        [r[c] for c in cols]
        + [dt, file, start_line + i, f"{source}-v1", "test", datetime(2026, 1, 1)]
        for i, r in enumerate(rows)
    ]
    ph = ", ".join("?" for _ in allcols)
    con.executemany(f"INSERT INTO raw.{source} ({', '.join(allcols)}) VALUES ({ph})", values)


def manifest(
    con, source: str, dt: date, rows_read: int, rows_loaded: int, rows_quarantined: int = 0
) -> None:
    con.execute("DELETE FROM meta.load_manifest WHERE source = ? AND dt = ?", [source, dt])
    con.execute(
        "INSERT INTO meta.load_manifest (source, dt, file, sha256, bytes, rows_read, rows_loaded, "
        "rows_quarantined, encoding, mapping, contract_version, status, loaded_at) "
        "VALUES (?, ?, ?, 'x', 1, ?, ?, ?, 'utf-8', 'test', 'v1', 'loaded', now())",
        [source, dt, f"landing/{source}/dt={dt}/part-0", rows_read, rows_loaded, rows_quarantined],
    )


def quarantine(
    con,
    source: str,
    dt: date,
    line: int,
    reason_code: str,
    merchant_id: str | None = "M1",
    column: str | None = None,
) -> None:
    con.execute(
        "INSERT INTO meta.quarantine (source, dt, file, line, reason_code, reason, column_name, "
        "merchant_id, raw_values, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', now())",
        [
            source,
            dt,
            f"landing/{source}/dt={dt}/part-0",
            line,
            reason_code,
            reason_code,
            column,
            merchant_id,
        ],
    )


def day_rows(dt: date, n_orders: int = ORDERS_PER_DAY, amount: float = 100.0) -> dict:
    """Clean rows of every source for one day."""
    base = datetime(dt.year, dt.month, dt.day, 10)
    orders, ful, traffic = [], [], []
    for i in range(n_orders):
        m = MERCHANTS[i % 3]
        oid = f"O{dt:%m%d}-{i}"
        orders.append(
            {
                "order_id": oid,
                "merchant_id": m,
                "buyer_phone_hash": f"h{i % 7}",
                "buyer_name_hash": None,
                "buyer_address_hash": None,
                "order_ts": base + timedelta(minutes=i),
                "item_amount": amount + 10,
                "paid_amount": amount,
                "status": "completed",
                "refund_amount": 0.0,
                "session_id": f"S{dt:%m%d}-{m}",
                "streamer_id": f"ST-{m}",
                "category": "food",
            }
        )
        ful.append(
            {
                "event_id": f"E{dt:%m%d}-{i}",
                "order_id": oid,
                "merchant_id": m,
                "event_type": "shipped",
                "event_ts": base + timedelta(hours=2, minutes=i),
                "carrier": "SF",
                "tracking_no": f"T{i}",
                "parcel_weight_g": 500.0,
            }
        )
    for m in MERCHANTS:
        gmv = sum(o["paid_amount"] for o in orders if o["merchant_id"] == m)
        traffic.append(
            {
                "session_id": f"S{dt:%m%d}-{m}",
                "merchant_id": m,
                "streamer_id": f"ST-{m}",
                "start_ts": base,
                "end_ts": base + timedelta(hours=2),
                "peak_viewers": 100,
                "total_viewers": 1000,
                "watch_minutes": 5000.0,
                "new_followers": 10,
                "gmv_attributed": gmv,
            }
        )
    repay = [
        {
            "loan_id": "L1",
            "merchant_id": "M1",
            "repay_date": dt,
            "amount_repaid": 10.0,
            "outstanding": 500.0,
            "dpd": 0,
        }
    ]
    return {"orders": orders, "fulfillment": ful, "traffic": traffic, "repayments": repay}


def load_day(con, dt: date, rows: dict) -> None:
    for source, rs in rows.items():
        insert_raw(con, source, dt, rs)
        manifest(con, source, dt, len(rs), len(rs))


def build_history(con) -> None:
    for s in ("merchants", "orders", "traffic", "fulfillment", "loans", "repayments"):
        create_raw(con, s)
    create_meta(con)
    merchants = [
        {
            "merchant_id": m,
            "merchant_name": f"shop {m}",
            "category": "food",
            "region": "Zhejiang",
            "onboard_date": START - timedelta(days=100),
        }
        for m in MERCHANTS
    ]
    loans = [
        {
            "loan_id": "L1",
            "merchant_id": "M1",
            "origination_date": START,
            "principal": 500.0,
            "fee_amount": 20.0,
            "withhold_rate": 0.1,
            "term_days": 90,
            "legacy_limit": 800.0,
        }
    ]
    insert_raw(con, "merchants", START, merchants)
    manifest(con, "merchants", START, 3, 3)
    insert_raw(con, "loans", START, loans)
    manifest(con, "loans", START, 1, 1)
    d = START
    while d < D:
        load_day(con, d, day_rows(d))
        if d != START:
            for s in ("merchants", "loans"):  # empty daily deliveries
                manifest(con, s, d, 0, 0)
        d += timedelta(days=1)


@pytest.fixture(scope="session")
def base_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "livefin.duckdb"
    settings = get_settings()
    con = connect(settings, path=path)
    build_history(con)
    con.execute("CHECKPOINT")
    con.close()
    return path


@pytest.fixture()
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    monkeypatch.setenv("LIVEFIN_THREADS", "1")
    s = get_settings()
    return dataclasses.replace(s, threads=1)


@pytest.fixture()
def con(base_db, settings):
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(base_db, settings.warehouse)
    c = connect(settings)
    yield c
    c.close()


@pytest.fixture()
def clean_day(con):
    """Day D loaded cleanly for every source (merchants/loans: empty deliveries)."""
    load_day(con, D, day_rows(D))
    for s in ("merchants", "loans"):
        manifest(con, s, D, 0, 0)
    return D
