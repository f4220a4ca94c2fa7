"""Merchant quality Q: in [0, 1], lower for merchants whose data was corrupted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import START, D, insert_raw, quarantine

from livefin_etl.config import LivefinError, load_config
from livefin_etl.quality import build_merchant_quality

DIMS = ["completeness", "validity", "accuracy", "consistency", "timeliness", "uniqueness"]


def _rows(con):
    return {
        r[0]: dict(zip(["merchant_id", *DIMS, "quality_q", "rows_considered", "v"], r, strict=True))
        for r in con.execute(
            f"select merchant_id, {', '.join(DIMS)}, quality_q, rows_considered, "
            "quality_version from dq.merchant_quality where as_of_date = ?",
            [D],
        ).fetchall()
    }


def test_clean_merchants_score_high(con):
    assert build_merchant_quality(con, D) == 3
    rows = _rows(con)
    for m in ("M1", "M2", "M3"):
        assert rows[m]["quality_q"] == pytest.approx(1.0)
        assert rows[m]["v"] == load_config("quality")["version"]
        assert rows[m]["rows_considered"] > 0


def test_corrupted_merchant_gets_lower_q(con):
    day = START + timedelta(days=4)
    # M2: duplicates and missing fields quarantined, late rows accepted, orders never shipped
    for line in range(100, 110):
        quarantine(con, "orders", day, line, "duplicate_key", merchant_id="M2")
    for line in range(110, 115):
        quarantine(con, "orders", day, line, "missing_required", merchant_id="M2")
    con.execute(
        "delete from raw.fulfillment where merchant_id = 'M2' and _dt < ?",
        [START + timedelta(days=3)],
    )
    late = [
        {
            "order_id": f"LATE{i}",
            "merchant_id": "M2",
            "buyer_phone_hash": "h",
            "buyer_name_hash": None,
            "buyer_address_hash": None,
            "order_ts": day - timedelta(days=1),
            "item_amount": 1.0,
            "paid_amount": 1.0,
            "status": "completed",
            "refund_amount": 0.0,
            "session_id": None,
            "streamer_id": None,
            "category": "food",
        }
        for i in range(5)
    ]
    insert_raw(con, "orders", day, late, start_line=500)
    build_merchant_quality(con, D)
    rows = _rows(con)
    m1, m2 = rows["M1"], rows["M2"]
    assert m2["quality_q"] < m1["quality_q"] - 0.01
    for d in ("completeness", "consistency", "timeliness", "uniqueness"):
        assert m2[d] < m1[d], d
    for r in rows.values():
        assert all(0.0 <= r[d] <= 1.0 for d in [*DIMS, "quality_q"])


def test_rerun_replaces_and_window_is_strictly_before(con):
    build_merchant_quality(con, D)
    # rows on D itself must not count
    quarantine(con, "orders", D, 900, "duplicate_key", merchant_id="M3")
    assert build_merchant_quality(con, D) == 3
    assert _rows(con)["M3"]["uniqueness"] == pytest.approx(1.0)
    assert con.execute("select count(*) from dq.merchant_quality").fetchone()[0] == 3


def test_bad_date_is_clear_error(con):
    with pytest.raises(LivefinError, match="datetime.date"):
        build_merchant_quality(con, "2026-03-11")  # type: ignore[arg-type]
