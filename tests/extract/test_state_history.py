"""Orders are mutable: a re-delivery with a changed state is an update (state history), the
same version twice is still a duplicate, and features as of D see only what was delivered
before D. Real landing files, real extract, real feature SQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from livefin_etl import features
from livefin_etl.extract import extract_partition
from livefin_etl.warehouse import connect

D1, D2 = date(2025, 3, 1), date(2025, 3, 5)  # first delivery, re-delivery with new states
HEADER = (
    "订单号,商家ID,买家手机号,买家姓名,收货地址,下单时间,商品金额,实付金额,订单状态,退款金额,"
    "直播间ID,主播ID,类目,更新时间,售后单号,售后类型,售后状态,售后原因,售后申请时间,退款时间"
)


def line(
    oid: str, paid: str, status: str, update: str, refund: str = "0.00", sale: str = ""
) -> str:
    row = f"{oid},M1,13812345678,张三,浙江省 杭州市 西湖区 文三路 8号,2025-03-01 10:00:00,"
    row += f"{paid},{paid},{status},{refund},,,服装,{update},"
    return row + (sale or ",,,,,")


REFUND_O1 = "AS1,退货退款,退款成功,尺码不合适,2025-03-03 09:00:00,2025-03-05 09:00:00"
REFUND_O3 = "AS3,仅退款,退款成功,质量问题,2025-03-04 09:00:00,2025-03-04 18:00:00"


def write(path: Path, lines: list[str], encoding: str = "gbk") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    monkeypatch.setenv("LIVEFIN_PII_KEY", "unit-test-key")
    monkeypatch.setenv("LIVEFIN_THREADS", "1")
    from livefin_etl.config import get_settings

    s = get_settings()
    land = s.landing
    write(
        land / "merchants" / f"dt={D1}" / "part-0.csv",
        [
            "merchant_id,merchant_name,category,region,onboard_date",
            "M1,杭州一号服饰店,apparel,浙江,2024-01-01",
        ],
        "utf-8",
    )
    write(
        land / "traffic" / f"dt={D1}" / "part-0.jsonl",
        [
            '{"session_id":"S1","merchant_id":"M1","streamer_id":"ST1",'
            '"start_ts":"2025-03-01 09:00:00","end_ts":"2025-03-01 11:00:00","peak_viewers":10,'
            '"total_viewers":100,"watch_minutes":50.0,"new_followers":1,"gmv_attributed":0.0}'
        ],
        "utf-8",
    )
    write(
        land / "fulfillment" / f"dt={D1}" / "part-0.csv",
        [
            "event_id,order_id,merchant_id,event_type,event_ts,carrier,tracking_no,parcel_weight_g",
            "E1,O1,M1,shipped,2025-03-01 18:00:00,sf,SF1,400",
        ],
        "utf-8",
    )
    # D1's export: three orders as known the next morning
    write(
        land / "orders" / f"dt={D1}" / "part-0.csv",
        [
            HEADER,
            line("O1", "100.00", "已发货", "2025-03-01 18:00:00"),
            line("O2", "50.00", "已完成", "2025-03-01 20:00:00"),
            line("O3", "80.00", "待发货", "2025-03-01 10:00:00"),
        ],
    )
    # D2's export: O1 returned and refunded, O3 partly refunded; O2 did not change
    write(
        land / "orders" / f"dt={D2}" / "part-0.csv",
        [
            HEADER,
            line("O1", "100.00", "已退款", "2025-03-05 09:00:00", "100.00", REFUND_O1),
            line("O3", "80.00", "部分退款", "2025-03-04 18:00:00", "30.00", REFUND_O3),
        ],
        "utf-8-sig",
    )
    return s


@pytest.fixture
def con(home):
    c = connect(home)
    for source in ("merchants", "traffic", "fulfillment"):
        extract_partition(c, home, source, D1)
    yield c
    c.close()


def _feature(con: duckdb.DuckDBPyConnection, as_of_date: date, col: str) -> float | None:
    features.build_features(con, as_of_date)
    return con.execute(
        f"select {col} from features.merchant_features where merchant_id = 'M1' and as_of_date = ?",
        [as_of_date],
    ).fetchone()[0]


def test_redelivery_with_changed_state_is_an_update(home, con) -> None:
    first = extract_partition(con, home, "orders", D1)
    # features between the two deliveries: the first delivery's state, nothing refunded
    between = date(2025, 3, 4)
    assert _feature(con, between, "refund_rate_30d") == 0.0
    assert _feature(con, between, "gmv_net_30d") == 230.0

    second = extract_partition(con, home, "orders", D2)
    assert (first["rows_loaded"], second["rows_loaded"], second["rows_quarantined"]) == (3, 2, 0)
    assert con.execute("select count(*) from meta.quarantine").fetchone()[0] == 0
    history = con.execute(
        "select order_id, _dt, status, refund_amount from raw.orders order by order_id, _dt"
    ).fetchall()
    assert history == [
        ("O1", D1, "shipped", 0.0),
        ("O1", D2, "refunded", 100.0),
        ("O2", D1, "completed", 0.0),
        ("O3", D1, "paid", 0.0),
        ("O3", D2, "partially_refunded", 30.0),
    ]
    current = con.execute(
        "select order_id, status, after_sale_type, after_sale_reason from raw.orders_current "
        "order by 1"
    ).fetchall()
    assert current == [
        ("O1", "refunded", "return_refund", "size"),
        ("O2", "completed", None, None),
        ("O3", "partially_refunded", "refund_only", "quality"),
    ]
    # as of a date between the deliveries the features are unchanged by the later delivery
    assert _feature(con, between, "refund_rate_30d") == 0.0
    # after the re-delivery is known, the refunds count (on the day they were delivered)
    after = date(2025, 3, 6)
    assert _feature(con, after, "refund_rate_30d") == pytest.approx(130 / 230)
    assert _feature(con, after, "gmv_net_30d") == pytest.approx(100.0)
    assert _feature(con, after, "gmv_gross_30d") == pytest.approx(230.0)


def test_the_same_version_twice_is_still_a_duplicate(home, con) -> None:
    extract_partition(con, home, "orders", D1)
    extract_partition(con, home, "orders", D2)
    d3 = date(2025, 3, 6)
    write(
        home.landing / "orders" / f"dt={d3}" / "part-0.csv",
        [
            HEADER,
            # O1 again with the version already loaded on D2: a duplicate
            line("O1", "100.00", "已退款", "2025-03-05 09:00:00", "100.00", REFUND_O1),
            # O2 changed (a later update_ts), delivered twice in one file: first wins
            line("O2", "50.00", "已完成", "2025-03-06 08:00:00"),
            line("O2", "50.00", "已完成", "2025-03-06 09:00:00"),
            # an order never delivered before, placed days ago: not a late delivery
            line("O9", "10.00", "已完成", "2025-03-06 08:00:00"),
        ],
    )
    r = extract_partition(con, home, "orders", d3)
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (4, 1, 3)
    q = con.execute(
        "select line, reason_code from meta.quarantine where dt = ? order by line", [d3]
    ).fetchall()
    assert q == [(2, "duplicate_key"), (4, "duplicate_key"), (5, "outside_partition")]
    assert con.execute("select count(*) from raw.orders where order_id = 'O2'").fetchone()[0] == 2
