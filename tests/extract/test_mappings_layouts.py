"""Real export layouts load with a mapping file only (issue 15, item 3): a 抖店-style and a
快手小店-style GBK export, one shop per file with the shop id only in the file name, line items,
masked phone / name, split address, separate submit / pay / complete times, after-sales status
beside the order status, categories outside the canonical five."""

from __future__ import annotations

import csv
import io
import logging
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from livefin_etl.config import CONFIG_DIR, LivefinError
from livefin_etl.contracts import load_contract, load_mappings, parse_mapping
from livefin_etl.extract import PartitionRefused, extract_partition
from livefin_etl.warehouse import SQL_DIR, run_sql_file

D = date(2025, 3, 1)  # the merchants partition of the home fixture (conftest.py)
LAYOUTS = Path(__file__).parent / "layouts"
DOUDIAN = "doudian_M1_20250301.csv"
KUAISHOU = "kwaixiaodian_M2_orders_20250302.csv"
D2 = D + timedelta(days=1)


def rows_of(name: str) -> list[dict[str, str]]:
    """The fixture's line rows, read independently of extract (GBK, as delivered)."""
    return list(csv.DictReader(io.StringIO((LAYOUTS / name).read_bytes().decode("gbk"))))


def deliver(home, name: str, as_of_date: date, as_name: str | None = None) -> Path:
    folder = home.landing / "orders" / f"dt={as_of_date}"
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(LAYOUTS / name, folder / (as_name or name)))


def mapping(name: str):
    return next(m for m in load_mappings("orders") if m.name == name)


def test_fixtures_are_in_the_platform_layout():
    for name, shop_header in ((DOUDIAN, "店铺"), (KUAISHOU, "店铺")):
        raw = (LAYOUTS / name).read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # GBK, as the back office exports it
        rows = rows_of(name)
        assert not any(shop_header in h for h in rows[0])  # no shop column ...
        shop = name.split("_")[1]
        assert shop.encode() not in raw  # ... and the shop id nowhere in the content
        orders = [r.get("主订单编号") or r.get("订单号") for r in rows]
        assert len(set(orders)) < len(orders)  # several lines per order
        phones = [r.get("收件人手机号") or r.get("收货人电话") for r in rows]
        assert all("****" in p for p in phones)


def test_doudian_export_loads_with_its_mapping_only(home, con):
    deliver(home, DOUDIAN, D)
    r = extract_partition(con, home, "orders", D)
    lines = rows_of(DOUDIAN)
    orders = list(dict.fromkeys(x["主订单编号"] for x in lines))
    # rows read are orders (the file's line rows aggregated): loaded + quarantined
    assert r["rows_read"] == len(orders) == r["rows_loaded"] + r["rows_quarantined"]
    shape = con.execute(
        "select mapping, line_rows, rows_read, identity from meta.load_shape where dt = ?", [D]
    ).fetchall()
    assert shape == [("doudian", len(lines), len(orders), "masked_combined")]
    manifest = con.execute(
        "select encoding, mapping, rows_read, rows_loaded + rows_quarantined "
        "from meta.load_manifest where source = 'orders'"
    ).fetchall()
    assert manifest == [("gbk", "doudian", len(orders), len(orders))]
    # the two broken orders: a non-numeric quantity, a 子订单 delivered twice
    bad = con.execute(
        "select reason_code, column_name from meta.quarantine where source='orders' order by line"
    ).fetchall()
    assert bad == [("type_error", "item_amount"), ("duplicate_key", "line_id")]
    got = {
        row[0]: row[1:]
        for row in con.execute(
            "select order_id, merchant_id, item_amount, paid_amount, refund_amount, status, "
            "after_sale_status, strftime(order_ts, '%Y/%m/%d %H:%M:%S'), _line from raw.orders"
        ).fetchall()
    }
    assert len(got) == r["rows_loaded"]
    for oid, (shop, item, paid, refund, _status, _after, order_ts, line) in got.items():
        mine = [x for x in lines if x["主订单编号"] == oid]
        assert shop == "M1"  # from the file name
        assert item == pytest.approx(sum(float(x["商品单价"]) * float(x["商品数量"]) for x in mine))
        assert paid == pytest.approx(sum(float(x["商品实付金额"]) for x in mine))
        assert refund == pytest.approx(sum(float(x["退款金额"]) for x in mine))
        # the declared order time: payment, or submission for an order closed unpaid
        assert order_ts == (mine[0]["支付完成时间"] or mine[0]["订单提交时间"])
        assert line == 2 + lines.index(mine[0])  # physical line of the order's first line
    # after-sales status is its own column, beside the order status
    refunded = [o for o, v in got.items() if v[5] == "refunded"]
    assert refunded and all(got[o][4] == "completed" for o in refunded)


def test_unmapped_categories_land_as_other_and_a_warning_counts_them(home, con):
    from livefin_etl.quality import validate_partition

    deliver(home, KUAISHOU, D2)
    r = extract_partition(con, home, "orders", D2)
    assert r["rows_loaded"] + r["rows_quarantined"] == r["rows_read"]
    known = set(mapping("kuaishou").values["category"])
    loaded = {x[0] for x in con.execute("select order_id from raw.orders").fetchall()}
    expected_other = {
        x["订单号"]
        for x in rows_of(KUAISHOU)
        if x["一级类目"] not in known and x["订单号"] in loaded
    }
    other = {
        x[0]
        for x in con.execute("select order_id from raw.orders where category = 'other'").fetchall()
    }
    assert other == expected_other and other  # loaded, not quarantined
    assert not con.execute(
        "select count(*) from meta.quarantine where reason_code = 'not_allowed'"
    ).fetchone()[0]
    gate = validate_partition(con, home, "orders", D2)
    assert gate["status"] == "warning"  # counted, never blocking
    counted = con.execute(
        "select severity, success, unexpected_count from dq.expectation_results "
        "where source = 'orders' and dt = ? and expectation_type = "
        "'expect_column_values_to_not_be_in_set' and column_name = 'category'",
        [D2],
    ).fetchall()
    assert counted == [("warning", False, len(other))]


def test_identity_is_what_the_mapping_declares(home, con):
    deliver(home, DOUDIAN, D)
    deliver(home, KUAISHOU, D2)
    extract_partition(con, home, "orders", D)
    extract_partition(con, home, "orders", D2)
    ids = dict(con.execute("select order_id, buyer_id_hash from raw.orders").fetchall())
    kinds = dict(con.execute("select order_id, buyer_id_kind from raw.orders").fetchall())
    assert con.execute("select count(buyer_phone_hash) from raw.orders").fetchone()[0] == 0
    # 抖店: the same masked phone, name and address is one buyer; the same masked phone with
    # another name and address is another buyer (a masked phone alone would invent a ring)
    by_order = {x["主订单编号"]: x for x in rows_of(DOUDIAN) if x["主订单编号"] in ids}
    people = {
        o: (x["收件人手机号"], x["收件人"], x["省"] + x["详细地址"]) for o, x in by_order.items()
    }
    for a in people:
        for b in people:
            assert (ids[a] == ids[b]) == (people[a] == people[b]), (a, b)
    assert len({p[0] for p in people.values()}) < len(set(people.values()))  # shared masked phone
    # 快手: the opaque buyer id; an order without one has no identity (kind null)
    ks = {x["订单号"]: x["买家ID"] for x in rows_of(KUAISHOU) if x["订单号"] in ids}
    for a, buyer in ks.items():
        assert kinds[a] == ("platform_id" if buyer else None)
        assert (ids[a] is None) == (not buyer)
        for b in ks:
            if buyer and ks[b]:
                assert (ids[a] == ids[b]) == (buyer == ks[b])


def test_masked_fields_are_not_stored_anywhere(home, con):
    deliver(home, DOUDIAN, D)
    deliver(home, KUAISHOU, D2)
    extract_partition(con, home, "orders", D)
    extract_partition(con, home, "orders", D2)
    secrets = set()
    for name in (DOUDIAN, KUAISHOU):
        for x in rows_of(name):
            for h in ("收件人手机号", "收件人", "收货人电话", "收货人", "详细地址", "买家ID"):
                if x.get(h):
                    secrets.add(x[h])
    assert any("****" in s for s in secrets) and any(s.endswith("**") for s in secrets)
    cols = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where data_type = 'VARCHAR'"
    ).fetchall()
    assert len(cols) > 20
    found = []
    for schema, table, col in cols:
        q = f'select count(*) from "{schema}"."{table}" where contains("{col}", ?)'
        for s in secrets | {"****", "**"}:
            if con.execute(q, [s]).fetchone()[0]:
                found.append((schema, table, col, s))
    assert found == []


def test_a_file_name_off_the_pattern_is_one_clear_line(home, con):
    deliver(home, DOUDIAN, D, as_name="orders_export_20250301.csv")
    with pytest.raises(PartitionRefused) as exc:
        extract_partition(con, home, "orders", D)
    text = str(exc.value)
    assert "\n" not in text and "file name does not match mapping 'doudian'" in text
    assert con.execute(
        "select file, line, reason_code from meta.quarantine where source = 'orders'"
    ).fetchall() == [("orders_export_20250301.csv", 0, "file_error")]
    assert con.execute("select count(*) from raw.orders").fetchone()[0] == 0


def test_no_usable_identity_is_said_and_buyer_features_get_no_key(home, con, caplog):
    text = (LAYOUTS / KUAISHOU).read_bytes().decode("gbk")
    rows = list(csv.reader(io.StringIO(text)))
    col = rows[0].index("买家ID")
    for row in rows[1:]:
        row[col] = ""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    folder = home.landing / "orders" / f"dt={D2}"
    folder.mkdir(parents=True)
    (folder / KUAISHOU).write_bytes(out.getvalue().encode("gbk"))
    with caplog.at_level(logging.WARNING, logger="livefin_etl.extract.read"):
        r = extract_partition(con, home, "orders", D2)
    assert r["rows_loaded"] > 0
    assert "no usable buyer identity" in caplog.text
    assert con.execute(
        "select identity, identity_rows from meta.load_shape where dt = ?", [D2]
    ).fetchall() == [("platform_id", 0)]
    run_sql_file(con, SQL_DIR / "staging" / "stg_orders.sql", {"start_day": D2, "end_day": D2})
    keys = con.execute("select count(*), count(buyer_key) from stg_orders").fetchone()
    assert keys == (r["rows_loaded"], 0)  # no buyer grouping: ring features stay empty


def test_a_masked_phone_is_never_taken_for_a_phone(home, con):
    folder = home.landing / "orders" / f"dt={D}"
    folder.mkdir(parents=True)
    head = "order_id,merchant_id,buyer_phone,order_ts,item_amount,paid_amount,status,refund_amount,category"
    (folder / "part-0.csv").write_text(
        f"{head}\nA1,M1,13812345678,2025-03-01 10:00:00,10,10,paid,0,food\n"
        "A2,M1,138****5678,2025-03-01 11:00:00,10,10,paid,0,food\n",
        encoding="utf-8",
    )
    r = extract_partition(con, home, "orders", D)
    assert (r["rows_loaded"], r["rows_quarantined"]) == (1, 1)
    assert con.execute(
        "select line, reason_code, column_name from meta.quarantine where source = 'orders'"
    ).fetchall() == [(3, "not_allowed", "buyer_phone")]
    assert con.execute("select buyer_id_kind from raw.orders").fetchall() == [("phone",)]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"identity": {"kind": "masked_combined", "from": ["buyer_phone_masked"]}}, "at least two"),
        ({"identity": {"kind": "phone_ish"}}, "identity.kind"),
        ({"file_name": "^shop_(?P<shop>\\w+)\\.csv$"}, "named groups"),
        ({"file_name": "^shop_(?P<merchant_id>\\w+\\.csv$"}, "not a valid regex"),
        ({"combine": {"buyer_address": {"join": ["省"]}}}, "concat or coalesce"),
        ({"lines": {"key": "order_id", "rules": {"paid_amount": "avg"}}}, "not one of"),
        (
            {"lines": {"key": "order_id", "rules": {"item_amount": {"sum_product": ["a"]}}}},
            "sum_product",
        ),
        (
            {
                "values": {
                    "category": {"map": {"x": "food"}, "default": "other"},
                    "nope": {"a": "b"},
                }
            },
            "unknown columns",
        ),
    ],
)
def test_a_wrong_mapping_is_one_line_naming_the_problem(change, message):
    import yaml

    base = yaml.safe_load((CONFIG_DIR / "mappings" / "orders" / "doudian.yaml").read_text("utf-8"))
    with pytest.raises(LivefinError) as exc:
        parse_mapping(base | change, load_contract("orders"), "doudian.yaml")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_constants_and_no_identity_need_no_code(home, con, tmp_path, monkeypatch):
    """A shop constant instead of a column, and a platform that gives no buyer identity at all:
    rows load, no identity is stored and the shape records it."""
    import yaml

    from livefin_etl import config, contracts

    cfg = tmp_path / "config"
    shutil.copytree(config.CONFIG_DIR, cfg)
    spec = {
        "name": "oneshop",
        "source": "orders",
        "headers": {
            "单号": "order_id",
            "时间": "order_ts",
            "金额": "paid_amount",
            "状态": "status",
        },
        "constants": {"merchant_id": "M2", "category": "food", "refund_amount": "0"},
        "combine": {"item_amount": {"coalesce": ["原价", "金额"]}},
        "identity": {"kind": "none"},
        "ignore": ["备注"],
        "values": {"status": {"完成": "completed"}},
    }
    (cfg / "mappings" / "orders" / "oneshop.yaml").write_text(
        yaml.safe_dump(spec, allow_unicode=True)
    )
    monkeypatch.setattr(config, "CONFIG_DIR", cfg)
    monkeypatch.setattr(contracts, "CONFIG_DIR", cfg)
    contracts.load_contract.cache_clear()
    contracts.load_mappings.cache_clear()
    try:
        folder = home.landing / "orders" / f"dt={D}"
        folder.mkdir(parents=True)
        (folder / "a.csv").write_text(
            "单号,时间,金额,原价,状态,备注\nX1,2025-03-01 10:00:00,9.5,,完成,hi\n"
            "X2,2025-03-01 11:00:00,8,10,完成,\n",
            encoding="utf-8",
        )
        r = extract_partition(con, home, "orders", D)
    finally:
        contracts.load_contract.cache_clear()
        contracts.load_mappings.cache_clear()
    assert (r["rows_loaded"], r["rows_quarantined"]) == (2, 0)
    assert con.execute(
        "select order_id, merchant_id, category, item_amount, buyer_id_hash, buyer_phone_hash, "
        "buyer_id_kind from raw.orders order by 1"
    ).fetchall() == [
        ("X1", "M2", "food", 9.5, None, None, None),
        ("X2", "M2", "food", 10.0, None, None, None),
    ]
    assert con.execute("select identity, identity_rows from meta.load_shape").fetchall() == [
        ("none", 0)
    ]
