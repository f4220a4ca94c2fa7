"""Extract: contracts, encodings, mappings, quarantine, manifest, idempotency, kill safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from livefin_etl.config import LivefinError
from livefin_etl.extract import extract_partition
from livefin_etl.warehouse import connect

D = date(2025, 3, 1)
ORDER_HEADER = "订单号,商家ID,买家手机号,买家姓名,收货地址,下单时间,商品金额,实付金额,订单状态,退款金额,直播间ID,主播ID,类目"


def order_line(
    oid: str,
    mid: str = "M1",
    ts: str = "2025-03-01 10:00:00",
    paid: str = "90.00",
    refund: str = "0.00",
    status: str = "已完成",
    phone: str = "13812345678",
) -> str:
    return f"{oid},{mid},{phone},张三,浙江省杭州市西湖区文三路8号,{ts},100.00,{paid},{status},{refund},S1,ST1,服装"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    if encoding == "utf-8-sig":
        data = text.encode("utf-8-sig")
    path.write_bytes(data)
    return path


def orders_dir(s) -> Path:
    return s.landing / "orders" / f"dt={D}"


def quarantine(con) -> list[tuple]:
    return con.execute(
        "select line, reason_code, column_name from meta.quarantine where source='orders' order by line"
    ).fetchall()


def test_gbk_file_with_chinese_headers_loads_and_maps_values(home, con):
    write(
        orders_dir(home) / "part-0.csv",
        "\n".join(
            [ORDER_HEADER, order_line("O1"), order_line("O2", status="已退款", refund="90.00")]
        )
        + "\n",
        "gbk",
    )
    r = extract_partition(con, home, "orders", D)
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (2, 2, 0)
    rows = con.execute(
        "select order_id, status, category, _mapping from raw.orders order by 1"
    ).fetchall()
    assert rows == [
        ("O1", "completed", "apparel", "douyin"),
        ("O2", "refunded", "apparel", "douyin"),
    ]
    enc = con.execute("select encoding from meta.load_manifest where source='orders'").fetchall()
    assert enc == [("gbk",)]


def test_utf8_bom_detected(home, con):
    write(
        orders_dir(home) / "part-0.csv", ORDER_HEADER + "\n" + order_line("O1") + "\n", "utf-8-sig"
    )
    extract_partition(con, home, "orders", D)
    assert con.execute(
        "select encoding from meta.load_manifest where source='orders'"
    ).fetchall() == [("utf-8-sig",)]
    assert con.execute("select count(*) from raw.orders").fetchall()[0][0] == 1


def test_gzipped_gbk_delivery_loads_like_plain_and_bad_gzip_is_rejected(home, con):
    import gzip

    text = "\n".join([ORDER_HEADER, order_line("O1"), order_line("O2", mid="M9")]) + "\n"
    f = orders_dir(home) / "part-0.csv.gz"
    f.parent.mkdir(parents=True)
    # two gzip members, as the simulator writes chunked days
    half = len(text) // 2
    f.write_bytes(
        gzip.compress(text[:half].encode("gbk")) + gzip.compress(text[half:].encode("gbk"))
    )
    r = extract_partition(con, home, "orders", D)
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (2, 1, 1)
    man = con.execute(
        "select file, bytes, encoding from meta.load_manifest where source='orders'"
    ).fetchall()
    assert man == [("part-0.csv.gz", f.stat().st_size, "gbk")]  # bytes as delivered (compressed)
    assert con.execute("select order_id, status from raw.orders").fetchall() == [
        ("O1", "completed")
    ]
    # a truncated gzip is a clear file-level rejection; the loaded partition stays as it was
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(LivefinError, match="not a readable gzip file"):
        extract_partition(con, home, "orders", D)
    assert con.execute("select order_id from raw.orders").fetchall() == [("O1",)]


def test_chunks_are_cut_on_gunzipped_bytes(home, con, monkeypatch):
    import gzip

    from livefin_etl import extract
    from livefin_etl.extract import load

    days = [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
    lines = [order_line(f"O{d.day}-{i}", ts=f"{d} 10:00:00") for d in days for i in range(200)]
    for d in days:
        rows = [ln for ln in lines if f",{d} " in ln]
        f = home.landing / "orders" / f"dt={d}" / "part-0.csv.gz"
        f.parent.mkdir(parents=True)
        f.write_bytes(gzip.compress(("\n".join([ORDER_HEADER, *rows]) + "\n").encode()))
    plain = len(("\n".join([ORDER_HEADER, *lines[:200]]) + "\n").encode())
    packed = (home.landing / "orders" / f"dt={days[0]}" / "part-0.csv.gz").stat().st_size
    assert packed * 3 < plain  # so a bound between the two tells them apart
    chunks = []
    real = load._load_chunk
    monkeypatch.setattr(
        load,
        "_load_chunk",
        lambda c, k, pending, key: chunks.append(len(pending)) or real(c, k, pending, key),
    )
    out = extract.extract_partitions(con, home, "orders", days, chunk_bytes=plain - 1)
    assert chunks == [1, 1, 1]  # one day's gunzipped bytes fill a chunk; the gzip size would not
    assert sum(r["rows_loaded"] for r in out) == 600


def test_idempotent_reload_and_changed_file(home, con):
    f = write(
        orders_dir(home) / "part-0.csv",
        "\n".join([ORDER_HEADER, order_line("O1"), order_line("O2")]) + "\n",
    )
    first = extract_partition(con, home, "orders", D)
    again = extract_partition(con, home, "orders", D)
    assert first["rows_loaded"] == 2 and again["skipped"] is True
    assert con.execute("select count(*) from raw.orders").fetchall()[0][0] == 2
    # A corrected delivery (changed checksum) replaces the partition, no duplicates.
    write(f, "\n".join([ORDER_HEADER, order_line("O1"), order_line("O3")]) + "\n")
    r = extract_partition(con, home, "orders", D)
    assert r["skipped"] is False
    assert [x[0] for x in con.execute("select order_id from raw.orders order by 1").fetchall()] == [
        "O1",
        "O3",
    ]
    assert (
        con.execute("select count(*) from meta.load_manifest where source='orders'").fetchall()[0][
            0
        ]
        == 1
    )


def test_every_bad_row_is_quarantined_with_reason_and_nothing_lost(home, con):
    lines = [
        ORDER_HEADER,
        order_line("O1"),  # 2 good
        order_line("O1"),  # 3 duplicate within partition
        order_line("O3", mid="M404"),  # 4 unknown merchant
        order_line("O4", paid="abc"),  # 5 non-numeric amount
        order_line("O5", paid="-5.00"),  # 6 negative amount
        order_line("O6", ts="2025-03-05 10:00:00"),  # 7 after the partition day
        order_line("O7", ts="2025-02-20 10:00:00"),  # 8 before the allowed lag
        order_line("O8", phone=""),  # 9 missing required
        order_line("O9", refund="95.00"),  # 10 refund > paid
        order_line("O10", status="未知状态"),  # 11 value not allowed
        order_line("O11", ts="2025-02-28 22:00:00"),  # 12 late but within 48 h: loaded
    ]
    write(orders_dir(home) / "part-0.csv", "\n".join(lines) + "\n", "gbk")
    r = extract_partition(con, home, "orders", D)
    assert r["rows_read"] == 11
    assert r["rows_loaded"] + r["rows_quarantined"] == r["rows_read"]
    assert sorted(x[0] for x in con.execute("select order_id from raw.orders").fetchall()) == [
        "O1",
        "O11",
    ]
    assert quarantine(con) == [
        (3, "duplicate_key", "order_id"),
        (4, "unknown_reference", "merchant_id"),
        (5, "type_error", "paid_amount"),
        (6, "below_min", "paid_amount"),
        (7, "outside_partition", "order_ts"),
        (8, "outside_partition", "order_ts"),
        (9, "missing_required", "buyer_phone"),
        (10, "row_check", None),
        (11, "not_allowed", "status"),
    ]
    m = con.execute(
        "select rows_read, rows_loaded, rows_quarantined from meta.load_manifest where source='orders'"
    ).fetchall()
    assert m == [(11, 2, 9)]


def test_duplicate_key_across_files_and_partitions(home, con):
    write(orders_dir(home) / "part-0.csv", ORDER_HEADER + "\n" + order_line("O1") + "\n")
    write(
        orders_dir(home) / "part-1.csv",
        ORDER_HEADER + "\n" + order_line("O1") + "\n" + order_line("O2") + "\n",
    )
    r = extract_partition(con, home, "orders", D)
    assert (r["rows_loaded"], r["rows_quarantined"]) == (2, 1)
    q = con.execute(
        "select file, reason_code from meta.quarantine where source='orders'"
    ).fetchall()
    assert q == [("part-1.csv", "duplicate_key")]
    # The same order re-delivered in the next day's partition without a later version
    # (update_ts) is the same version again: a duplicate, not an update.
    d2 = date(2025, 3, 2)
    write(
        home.landing / "orders" / f"dt={d2}" / "part-0.csv",
        ORDER_HEADER
        + "\n"
        + order_line("O2", ts="2025-03-02 09:00:00")
        + "\n"
        + order_line("O9", ts="2025-03-02 09:00:00")
        + "\n",
    )
    r2 = extract_partition(con, home, "orders", d2)
    assert (r2["rows_loaded"], r2["rows_quarantined"]) == (1, 1)
    assert con.execute("select reason from meta.quarantine where dt=?", [d2]).fetchall() == [
        ("primary key already loaded in another partition with the same or a later update_ts",)
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\xff\xfe\x00\xd8\x00\x00garbage\x81\xff", "cannot decode"),
        ("订单号,商家ID\nO1,M1\n".encode(), "missing required columns"),
        ((ORDER_HEADER + ",神秘列\n" + order_line("O1") + ",x\n").encode(), "unknown columns"),
    ],
    ids=["empty", "undecodable", "missing-columns", "extra-column"],
)
def test_file_level_errors_reject_and_leave_partition_intact(home, con, content, message):
    write(orders_dir(home) / "part-0.csv", ORDER_HEADER + "\n" + order_line("O1") + "\n")
    extract_partition(con, home, "orders", D)
    (orders_dir(home) / "part-0.csv").write_bytes(content)
    with pytest.raises(LivefinError, match=message):
        extract_partition(con, home, "orders", D)
    # Previous partition is intact, and the rejection is recorded.
    assert con.execute("select order_id from raw.orders").fetchall() == [("O1",)]
    rej = con.execute(
        "select status from meta.load_manifest where source='orders' and status='rejected'"
    ).fetchall()
    assert rej == [("rejected",)]
    q = con.execute(
        "select reason_code, line from meta.quarantine where source='orders' and line=0"
    ).fetchall()
    assert q == [("file_error", 0)]


def test_missing_landing_folder_is_a_clear_error(home, con):
    with pytest.raises(LivefinError, match="landing folder does not exist"):
        extract_partition(con, home, "orders", date(2030, 1, 1))


def test_new_mapping_without_code(home, con, tmp_path, monkeypatch):
    """A data engineer onboards another platform's export by writing one YAML file."""
    import shutil

    from livefin_etl import config, contracts

    cfg = tmp_path / "config"
    shutil.copytree(config.CONFIG_DIR, cfg)
    (cfg / "mappings" / "orders" / "kuaishou.yaml").write_text(
        """name: kuaishou
source: orders
headers:
  订单编号: order_id
  店铺ID: merchant_id
  收货人电话: buyer_phone
  下单时间: order_ts
  货品金额: item_amount
  买家实付: paid_amount
  订单状态: status
  退款金额: refund_amount
  商品类目: category
values:
  status: {交易成功: completed, 交易关闭: cancelled}
  category: {女装: apparel, 零食: food}
timestamp_format: "%Y/%m/%d %H:%M"
""",
        encoding="utf-8",
    )
    monkeypatch.setattr(config, "CONFIG_DIR", cfg)
    monkeypatch.setattr(contracts, "CONFIG_DIR", cfg)
    contracts.load_contract.cache_clear()
    contracts.load_mappings.cache_clear()
    try:
        write(
            orders_dir(home) / "part-0.csv",
            "订单编号,店铺ID,收货人电话,下单时间,货品金额,买家实付,订单状态,退款金额,商品类目\n"
            "K1,M2,13912345678,2025/03/01 08:30,50,45,交易成功,0,零食\n",
            "gbk",
        )
        r = extract_partition(con, home, "orders", D)
    finally:
        contracts.load_contract.cache_clear()
        contracts.load_mappings.cache_clear()
    assert r["rows_loaded"] == 1
    row = con.execute(
        "select order_id, merchant_id, status, category, order_ts::varchar, _mapping from raw.orders"
    ).fetchall()
    assert row == [("K1", "M2", "completed", "food", "2025-03-01 08:30:00", "kuaishou")]


def test_jsonl_malformed_line_quarantined(home, con):
    d = home.landing / "traffic" / f"dt={D}"
    good = '{"session_id":"S1","merchant_id":"M1","streamer_id":"ST1","start_ts":"2025-03-01 20:00:00","end_ts":"2025-03-01 22:00:00","peak_viewers":10,"total_viewers":50,"watch_minutes":300.5,"new_followers":3,"gmv_attributed":1000.0}'
    write(d / "part-0.jsonl", good + "\n{not json\n")
    r = extract_partition(con, home, "traffic", D)
    assert (r["rows_loaded"], r["rows_quarantined"]) == (1, 1)
    assert con.execute(
        "select line, reason_code from meta.quarantine where source='traffic'"
    ).fetchall() == [(2, "type_error")]


def test_pii_never_reaches_duckdb(home, con):
    phone, name, addr = "13987654321", "欧阳娜娜", "四川省成都市武侯区天府大道99号"
    write(
        orders_dir(home) / "part-0.csv",
        ORDER_HEADER
        + "\n"
        + order_line("O1", phone=phone)
        .replace("张三", name)
        .replace("浙江省杭州市西湖区文三路8号", addr)
        + "\n"
        + order_line("O2", phone=phone, paid="bad").replace("张三", name)
        + "\n",
        "gbk",
    )
    extract_partition(con, home, "orders", D)
    con.execute("checkpoint")
    con.close()
    blob = Path(home.warehouse).read_bytes()
    for secret in (phone, name, addr):
        assert secret.encode() not in blob and secret.encode("gbk") not in blob
    c = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        for schema, table, column in c.execute(
            "select table_schema, table_name, column_name from information_schema.columns where data_type='VARCHAR'"
        ).fetchall():
            n = c.execute(
                f'select count(*) from {schema}.{table} where "{column}" like ? or "{column}" like ?',
                [f"%{phone}%", f"%{name}%"],
            ).fetchall()[0][0]
            assert n == 0, f"PII found in {schema}.{table}.{column}"
        # pii: drop -> not even a hash column; the quarantined row keeps no name either
        cols = [
            r[0]
            for r in c.execute(
                "select column_name from information_schema.columns where table_name = 'orders'"
            ).fetchall()
        ]
        assert "buyer_phone_hash" in cols and not [x for x in cols if "name" in x]
        raw_values = c.execute("select raw_values from meta.quarantine").fetchall()
        assert len(raw_values) == 1 and "buyer_name" not in raw_values[0][0]
        assert "buyer_phone" in raw_values[0][0]  # hashed, see the LIKE check above
    finally:
        c.close()


def test_kill_during_load_leaves_previous_partition(home, con, tmp_path):
    write(orders_dir(home) / "part-0.csv", ORDER_HEADER + "\n" + order_line("O1") + "\n")
    extract_partition(con, home, "orders", D)
    con.close()
    write(
        orders_dir(home) / "part-0.csv",
        ORDER_HEADER + "\n" + order_line("O7") + "\n" + order_line("O8") + "\n",
    )
    marker = tmp_path / "paused"
    env = dict(
        os.environ,
        LIVEFIN_TEST_PAUSE_AT="extract.before_commit",
        LIVEFIN_TEST_PAUSE_MARKER=str(marker),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "livefin_etl.cli",
            "extract",
            "--source",
            "orders",
            "--date",
            str(D),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no pause"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    c = connect(home)
    try:
        assert c.execute("select order_id from raw.orders").fetchall() == [("O1",)]
        # And a rerun then loads the new delivery cleanly.
        r = extract_partition(c, home, "orders", D)
        assert r["rows_loaded"] == 2
    finally:
        c.close()


def test_pii_modes_in_contracts():
    from livefin_etl.contracts import load_contract, pii_mode

    assert [pii_mode(v, "x") for v in (None, False, True, "hash", "drop")] == [
        None,
        None,
        "hash",
        "hash",
        "drop",
    ]
    with pytest.raises(LivefinError, match="pii must be"):
        pii_mode("encrypt", "orders.yaml: column buyer_name")
    orders = load_contract("orders")
    assert orders.pii == ["buyer_phone", "buyer_id", "buyer_address"]
    assert orders.dropped == ["buyer_phone_masked", "buyer_name"]
    assert "buyer_name" not in [c.name for c in orders.stored_columns]
