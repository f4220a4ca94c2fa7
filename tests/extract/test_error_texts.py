"""Error texts: no row content, bounded, physical line numbers, config syntax errors as one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from livefin_etl import config, contracts
from livefin_etl.config import LivefinError
from livefin_etl.extract import extract_partition
from livefin_etl.privacy import MAX_ERROR_CHARS, scrub
from livefin_etl.quality import suites

D = date(2025, 3, 1)
HEADER = "订单号,商家ID,买家手机号,买家姓名,收货地址,下单时间,商品金额,实付金额,订单状态,退款金额,直播间ID,主播ID,类目"
REPO = Path(__file__).resolve().parents[2]


def row(oid: str, phone: str, name: str, addr: str, paid: str = "90.00") -> str:
    return (
        f"{oid},M1,{phone},{name},{addr},2025-03-01 10:00:00,100.00,{paid},已完成,0.00,S1,ST1,服装"
    )


def write_orders(s, text: str) -> Path:
    path = s.landing / "orders" / f"dt={D}" / "part-0.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- the scrubber


@pytest.mark.parametrize(
    "secret",
    [
        "13812345678",
        "+86 138 1234 5678",
        "86-139-1234-5678",
        "+8613912345678",
        "11010519491231002X",
        "110105491231002",
        "li.na+shop@example.com.cn",
        "浙江省杭州市西湖区文三路8号",
        "上海市浦东新区世纪大道100号2单元301室",
    ],
)
def test_scrub_masks_pii_shaped_text(secret):
    out = scrub(f"row 3 could not parse `{secret}` at column 2")
    assert secret not in out
    assert "row 3" in out and "column 2" in out  # the position survives


def test_scrub_bounds_and_folds_onto_one_line():
    out = scrub("x\n" * 2_000_000)
    assert len(out) <= MAX_ERROR_CHARS and "\n" not in out and out.endswith("(cut)")
    assert scrub("short message") == "short message"
    assert scrub(scrub("13812345678 " * 100)) == scrub("13812345678 " * 100)  # idempotent


# --------------------------------------------------------------------------- reader errors


def test_unterminated_quote_names_line_and_column_and_no_row_content(home, con):
    pii = [(f"1391234{i:04d}", f"欧阳娜{i}", f"四川省成都市武侯区天府大道{i}号") for i in range(50)]
    lines = [HEADER] + [row(f"O{i}", *p) for i, p in enumerate(pii)]
    lines[7] = lines[7].replace(",四川省", ',"四川省', 1)  # a quote that never closes
    write_orders(home, "\n".join(lines) + "\n")
    with pytest.raises(LivefinError) as info:
        extract_partition(con, home, "orders", D)
    msg = str(info.value)
    assert "line 8, column 5" in msg, msg  # physical line 8 (header is line 1), 收货地址 field
    stored = con.execute(
        "select m.message, q.reason from meta.load_manifest m join meta.quarantine q "
        "using (source, dt, file) where m.source = 'orders' and m.status = 'rejected'"
    ).fetchall()
    assert stored and all("line 8" in t for t in stored[0])
    for text in [msg, *stored[0]]:
        assert len(text) <= MAX_ERROR_CHARS
        for phone, name, addr in pii:
            assert phone not in text and name not in text and addr not in text


def test_too_many_fields_names_the_line(home, con):
    text = HEADER + "\n" + row("O1", "13912340001", "欧阳娜", "x") + "\n"
    text += row("O2", "13912340002", "欧阳娜", "x") + ",extra\n"
    write_orders(home, text)
    with pytest.raises(LivefinError, match=r"line 3, column 14: 14 fields, header has 13"):
        extract_partition(con, home, "orders", D)


def test_headerless_file_does_not_echo_its_first_row(home, con):
    write_orders(home, row("O1", "13912340001", "欧阳娜娜", "成都市武侯区天府大道1号") + "\n")
    with pytest.raises(LivefinError, match="missing required columns") as info:
        extract_partition(con, home, "orders", D)
    assert "欧阳娜娜" not in str(info.value) and "13912340001" not in str(info.value)


def test_malformed_json_line_keeps_position_not_content(home, con):
    folder = home.landing / "traffic" / f"dt={D}"
    folder.mkdir(parents=True)
    secret = "13987654321"
    good = {
        "session_id": "S1", "merchant_id": "M1", "streamer_id": "ST1",
        "start_ts": "2025-03-01 20:00:00", "end_ts": "2025-03-01 22:00:00", "peak_viewers": 10,
        "total_viewers": 50, "watch_minutes": 30.5, "new_followers": 3, "gmv_attributed": 10.0,
    }  # fmt: skip
    bad = '{"session_id": "S2", "phone": ' + secret
    (folder / "part-0.jsonl").write_text(json.dumps(good) + "\n" + bad + "\n")
    extract_partition(con, home, "traffic", D)
    (raw_values,) = con.execute(
        "select raw_values from meta.quarantine where source = 'traffic'"
    ).fetchone()
    assert secret not in raw_values and "line 2, column" in json.loads(raw_values)["_malformed"]


# --------------------------------------------------------------------------- line numbers


def test_quarantine_line_is_the_physical_line_after_quoted_newlines(home, con):
    body = [
        HEADER,
        row("O1", "13912340001", "甲", '"浙江省杭州市\n西湖区\n文三路8号"'),
        row("O2", "13912340002", "乙", '"多行\r\n地址"'),
        row("O3", "13912340003", "丙", "x", paid="bad"),
        row("O4", "13912340004", "丁", '"a\nb"', paid="bad"),
        row("O5", "13912340005", "戊", "y", paid="bad"),
    ]
    text = "\n".join(body) + "\n"
    write_orders(home, text)
    r = extract_partition(con, home, "orders", D)
    assert (r["rows_loaded"], r["rows_quarantined"]) == (2, 3)
    physical = {
        ln.split(",")[0]: i for i, ln in enumerate(text.split("\n"), start=1) if ln[:1] == "O"
    }
    got = dict(
        con.execute(
            "select json_extract_string(raw_values, '$.order_id'), line from meta.quarantine "
            "where source = 'orders'"
        ).fetchall()
    )
    assert got == {"O3": physical["O3"], "O4": physical["O4"], "O5": physical["O5"]}
    assert got == {"O3": 7, "O4": 8, "O5": 10}  # the file's real lines, counted by hand
    loaded = dict(con.execute("select order_id, _line from raw.orders").fetchall())
    assert loaded == {"O1": physical["O1"], "O2": physical["O2"]}


# --------------------------------------------------------------------------- config syntax


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    out = tmp_path / "config"
    shutil.copytree(config.CONFIG_DIR, out)
    monkeypatch.setattr(config, "CONFIG_DIR", out)
    monkeypatch.setattr(contracts, "CONFIG_DIR", out)
    clear = (config.load_config, contracts.load_contract, contracts.load_mappings)
    for fn in clear:
        fn.cache_clear()
    yield out
    for fn in clear:
        fn.cache_clear()


def _break(path: Path) -> int:
    """Append an unclosed flow sequence; the line the parser trips on (1-based)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.append("broken: [unclosed, list")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) + 1  # the parser reports the end of the stream, after the last line


@pytest.mark.parametrize(
    ("rel", "load"),
    [
        ("quality.yaml", lambda: config.load_config("quality")),
        ("sources/orders.yaml", lambda: contracts.load_contract("orders")),
        ("mappings/orders/douyin.yaml", lambda: contracts.load_mappings("orders")),
        ("sources/loans.yaml", lambda: suites.load_suite("loans")),
    ],
    ids=["config", "contract", "mapping", "suite-contract"],
)
def test_yaml_syntax_error_is_one_line_naming_file_and_line(cfg, rel, load):
    line = _break(cfg / rel)
    with pytest.raises(LivefinError) as info:
        load()
    msg = str(info.value)
    assert "\n" not in msg and str(cfg / rel) in msg and f"line {line}," in msg, msg
    assert "YAML syntax error" in msg


def test_yaml_top_level_not_a_mapping(cfg):
    (cfg / "quality.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(LivefinError, match="expected a mapping"):
        config.load_config("quality")


def test_suite_json_syntax_error_names_line(tmp_path, monkeypatch):
    exp = tmp_path / "expectations"
    shutil.copytree(config.EXPECTATIONS_DIR, exp)
    (exp / "orders.json").write_text('{\n  "name": "orders",\n  "expectations": [\n', "utf-8")
    monkeypatch.setattr(suites, "EXPECTATIONS_DIR", exp)
    with pytest.raises(LivefinError, match=r"orders.json, line 4, column 1: JSON syntax error"):
        suites.load_suite("orders")


def test_cli_prints_a_yaml_error_as_one_line_without_traceback(cfg, home):
    line = _break(cfg / "sources" / "orders.yaml")
    env = dict(os.environ, LIVEFIN_CONFIG_DIR=str(cfg), PYTHONPATH=str(REPO), COLUMNS="300")
    cp = subprocess.run(
        [sys.executable, "-m", "livefin_etl.cli", "extract", "--source", "orders"]
        + ["--date", D.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cp.returncode == 1 and "Traceback" not in cp.stdout + cp.stderr, cp.stderr
    lines = [ln for ln in cp.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"line {line}," in lines[0] and "orders.yaml" in lines[0], lines


def test_a_parquet_file_that_makes_polars_panic_is_refused_cleanly():
    """bench/bench_fuzz.py found a corrupt page header on which polars' reader panics in Rust
    (PanicException, not an Exception): the file must be refused like any unreadable one."""
    import io
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from livefin_etl.contracts import load_contract
    from livefin_etl.extract.read import FileRejected, read_file

    t = pa.table(
        {"loan_id": [f"L{i}" for i in range(50)], "principal": [float(i) for i in range(50)]}
    )
    buf = io.BytesIO()
    pq.write_table(t, buf)
    data = buf.getvalue()
    rng = random.Random(1)
    for _ in range(84):  # the 84th of this seeded series of corruptions is the one found
        b = bytearray(data)
        at, span = rng.randrange(4, len(b) - 8), rng.randint(1, 16)
        b[at : at + span] = bytes(rng.getrandbits(8) for _ in range(span))
    with pytest.raises(FileRejected, match="not a readable Parquet file"):
        read_file("part-0.parquet", bytes(b), "", load_contract("loans"))
