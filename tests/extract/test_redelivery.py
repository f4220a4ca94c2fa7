"""A re-delivery with no valid row never replaces a partition that had valid rows (issue 21,
item 6): real extract, real validation, real DuckDB file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from livefin_etl import pipeline, quality
from livefin_etl.config import LivefinError, StageBlocked
from livefin_etl.extract import extract_partition

D = date(2025, 3, 1)
HEADER = "订单号,商家ID,买家手机号,买家姓名,收货地址,下单时间,商品金额,实付金额,订单状态,退款金额,直播间ID,主播ID,类目"


def order(oid: str, paid: str = "90.00") -> str:
    return (
        f"{oid},M1,13912345678,张三,浙江省杭州市西湖区文三路8号,2025-03-01 10:00:00,100.00,"
        f"{paid},已完成,0.00,S1,ST1,服装"
    )


def deliver(s, rows: list[str], name: str = "part-0.csv") -> Path:
    folder = s.landing / "orders" / f"dt={D}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    path = folder / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def s(home):
    return home


def ingest(s) -> list[dict]:
    with pipeline.session(s) as (_s, con):
        return pipeline.ingest_range(con, s, [D], sources=["merchants", "orders"])


def state(s) -> dict:
    con = duckdb.connect(str(s.warehouse), read_only=True)
    try:
        q = "select {} from {} where {} order by all"
        return {
            "raw": con.execute("select order_id from raw.orders order by 1").fetchall(),
            "manifest": con.execute(
                q.format(
                    "file, status, rows_read, rows_loaded, rows_quarantined",
                    "meta.load_manifest",
                    "source = 'orders'",
                )
            ).fetchall(),
            "quarantine": con.execute(
                q.format("file, line, reason_code", "meta.quarantine", "source = 'orders'")
            ).fetchall(),
            "gate": con.execute(
                "select status, failed_expectations from dq.partition_status "
                "where source = 'orders' and dt = ?",
                [D],
            ).fetchone(),
        }
    finally:
        con.close()


def gate_closed(s) -> bool:
    con = duckdb.connect(str(s.warehouse), read_only=True)
    try:
        quality.require_passed(con, D, sources=["orders"])
    except StageBlocked:
        return True
    finally:
        con.close()
    return False


@pytest.mark.parametrize("in_place", [True, False], ids=["overwritten-in-place", "new-file-name"])
def test_wholly_invalid_redelivery_is_rejected_and_keeps_the_partition(s, in_place):
    deliver(s, [order("O1"), order("O2")])
    ingest(s)
    before = state(s)
    assert before["raw"] == [("O1",), ("O2",)] and not gate_closed(s)

    # every row invalid: paid_amount is not a number
    bad_rows = [order("O7", paid="x"), order("O8", paid="y"), order("O9", paid="z")]
    name = "part-0.csv" if in_place else "part-1.csv"
    deliver(s, bad_rows, name)
    results = ingest(s)
    after = state(s)
    failed = [r for r in results if r.get("status") == "failed" and r["source"] == "orders"]
    assert failed and "no valid row" in failed[0]["failed_expectations"][0], results

    assert after["raw"] == before["raw"]  # the good partition stays
    assert set(before["manifest"]) < set(after["manifest"])  # the loaded record too
    assert (name, "rejected", 3, 0, 3) in after["manifest"]
    rejected_q = [q for q in after["quarantine"] if q[2] == "rejected_redelivery"]
    assert rejected_q == [(name, line, "rejected_redelivery") for line in (2, 3, 4)]
    # rows read = loaded + quarantined for every manifest row, against the quarantine table
    for file, status, read, loaded, quarantined in after["manifest"]:
        assert read == loaded + quarantined
        if status == "rejected":
            assert len([q for q in rejected_q if q[0] == file]) == quarantined
    status, why = after["gate"]
    assert status == "failed" and "no valid row" in why and "2 loaded rows" in why
    assert gate_closed(s)

    # the same bad delivery again: same records, no duplicates; still closed
    ingest(s)
    assert state(s)["manifest"] == after["manifest"]
    assert state(s)["quarantine"] == after["quarantine"]
    assert gate_closed(s)

    # a corrected delivery replaces the partition and its refusal records, and reopens the gate
    deliver(s, [order("O4"), order("O5")])
    ingest(s)
    fixed = state(s)
    assert fixed["raw"] == [("O4",), ("O5",)]
    assert fixed["manifest"] == [("part-0.csv", "loaded", 2, 2, 0)]
    assert fixed["quarantine"] == []
    assert fixed["gate"][0] != "failed" and not gate_closed(s)


def test_header_only_redelivery_is_rejected_too(s):
    deliver(s, [order("O1")])
    ingest(s)
    deliver(s, [])
    ingest(s)
    after = state(s)
    assert after["raw"] == [("O1",)]
    assert ("part-0.csv", "rejected", 0, 0, 0) in after["manifest"]
    assert gate_closed(s)


def test_first_delivery_with_no_valid_row_still_loads(s):
    """Nothing to lose: the partition is written (all quarantined) and the gate judges it."""
    deliver(s, [order("O1", paid="x")])
    ingest(s)
    after = state(s)
    assert after["raw"] == [] and after["manifest"] == [("part-0.csv", "loaded", 1, 0, 1)]


def test_extract_command_refusal_closes_the_gate(s):
    deliver(s, [order("O1")])
    ingest(s)
    deliver(s, [order("O2", paid="x")])
    with pytest.raises(LivefinError, match="no valid row"):
        pipeline.extract("orders", D, s)
    assert state(s)["raw"] == [("O1",)] and gate_closed(s)
    with pipeline.session(s) as (_s, con), pytest.raises(LivefinError, match="no valid row"):
        extract_partition(con, s, "orders", D, force=True)


def test_the_good_file_sent_again_after_a_refusal_reopens_the_gate(s):
    """The platform re-sends the very file that had loaded (same bytes): it is not skipped as
    unchanged while a refusal is on record, so the refusal's records go and the gate reopens."""
    good = [order("O1"), order("O2")]
    deliver(s, good)
    ingest(s)
    loaded = state(s)
    deliver(s, [order("O7", paid="x")])  # overwrites part-0.csv: every row invalid
    ingest(s)
    assert gate_closed(s)
    deliver(s, good)  # the original bytes again
    ingest(s)
    again = state(s)
    assert again["raw"] == loaded["raw"] and again["manifest"] == loaded["manifest"]
    assert again["quarantine"] == [] and not gate_closed(s)
