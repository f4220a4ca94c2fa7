"""The whole nightly job on the tiny simulated platform, checked against the simulator's truth.

Uses the session fixture ``tiny_run`` (tests/conftest.py): one full `run_range` over the tiny
history, shared by every test here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from livefin_etl.contracts import list_sources
from livefin_etl.warehouse import quote_ident


def ro(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=True)


def test_warehouse_holds_every_source_with_nothing_lost(tiny_run):
    s = tiny_run["settings"]
    con = ro(s.warehouse)
    try:
        for source in list_sources():
            n = con.execute(f"select count(*) from raw.{source}").fetchall()[0][0]
            assert n > 0, source
        # Rows read = rows loaded + rows quarantined, for every file ever loaded.
        bad = con.execute(
            "select count(*) from meta.load_manifest where status='loaded' "
            "and rows_read <> rows_loaded + rows_quarantined"
        ).fetchall()[0][0]
        assert bad == 0
        loaded = dict(
            con.execute(
                "select source, sum(rows_loaded) from meta.load_manifest where status='loaded' group by 1"
            ).fetchall()
        )
        for source in list_sources():
            assert (
                con.execute(f"select count(*) from raw.{source}").fetchall()[0][0] == loaded[source]
            )
    finally:
        con.close()


def _landing_pii(landing: Path, limit_files: int = 5) -> set[str]:
    """Raw phones, names and addresses from a few orders files, decoded as the platform wrote them."""
    secrets: set[str] = set()
    for f in sorted((landing / "orders").glob("dt=*/part-0.csv"))[-limit_files:]:
        data = f.read_bytes()
        text = data[3:].decode("utf-8") if data.startswith(b"\xef\xbb\xbf") else data.decode("gbk")
        frame = pl.read_csv(text.encode(), infer_schema=False)
        for col in ("买家手机号", "买家姓名", "收货地址"):
            secrets.update(v for v in frame[col].drop_nulls().head(40).to_list() if len(v) >= 2)
    return secrets


def _occurring(blob: bytes, needles: set[bytes]) -> set[bytes]:
    """The needles (each at least 8 bytes) that occur in ``blob``; the same answer as
    ``needle in blob`` for each, but one vectorised pass over blob's 8-byte windows matched
    against the needles' first 8 bytes (then checked in full) instead of one scan per needle."""
    import numpy as np

    by_head: dict[int, list[bytes]] = {}
    for n in needles:
        by_head.setdefault(int.from_bytes(n[:8], "little"), []).append(n)
    heads = np.sort(np.fromiter(by_head, dtype=np.uint64, count=len(by_head)))
    found: set[bytes] = set()
    for k in range(8):  # windows starting at k, k+8, k+16, ...: all 8 offsets cover every start
        words = np.frombuffer(blob, dtype="<u8", count=(len(blob) - k) // 8, offset=k)
        at = np.searchsorted(heads, words) % len(heads)  # past the end: any head, never equal
        for i in np.flatnonzero(heads[at] == words):
            pos = k + 8 * int(i)
            found.update(n for n in by_head[int(words[i])] if blob.startswith(n, pos))
    return found


@pytest.mark.parametrize("which", ["warehouse", "published"])
def test_no_raw_pii_anywhere_in_duckdb(tiny_run, which):
    s = tiny_run["settings"]
    path = s.warehouse if which == "warehouse" else s.published / "livefin.duckdb"
    secrets = _landing_pii(tiny_run["landing"])
    phones = {x for x in secrets if x.isdigit()}
    assert len(phones) >= 20 and all(len(p) == 11 for p in phones)
    blob = path.read_bytes()
    # Byte-level scan for secrets long enough not to occur by chance in megabytes of compressed
    # pages (a 2-character name is 4 bytes in GBK); every secret is checked in the columns below.
    needles = {
        raw
        for secret in secrets
        for raw in (secret.encode("utf-8"), secret.encode("gbk"))
        if len(raw) >= 8
    }
    probe = max(needles)  # the scan itself finds a needle at an odd offset
    assert _occurring(b"\x00" * 13 + probe + b"\x00" * 5, needles) == {probe}
    leaked = _occurring(blob, needles)
    assert not leaked, sorted(leaked)[0]
    con = ro(path)
    try:
        tables = con.execute(
            "select table_schema, table_name, list(column_name order by ordinal_position) "
            "from information_schema.columns where data_type = 'VARCHAR' group by 1, 2"
        ).fetchall()
        names = sorted(x for x in secrets if not x.isdigit() and len(x) >= 3)
        sample = sorted(phones)[:5] + names[:3] + names[-2:]
        likes = [f"%{p}%" for p in sample]
        for schema, table, columns in tables:
            # One scan per table (not one per column and secret): per VARCHAR column, the rows
            # holding any of the sampled secrets.
            any_secret = " or ".join(["{} like ?"] * len(likes))
            counts = ", ".join(
                f"count(*) filter (where {any_secret.format(*[quote_ident(c)] * len(likes))})"
                for c in columns
            )
            found = con.execute(
                f"select {counts} from {quote_ident(f'{schema}.{table}')}", likes * len(columns)
            ).fetchone()
            for column, n in zip(columns, found, strict=True):
                assert n == 0, f"raw phone found in {schema}.{table}.{column}"
    finally:
        con.close()


def test_limits_published_and_traceable(tiny_run):
    s, last = tiny_run["settings"], tiny_run["last"]
    con = ro(s.warehouse)
    try:
        rows = con.execute(
            "select count(*), count(distinct model_version), count(distinct policy_version), "
            "count(*) filter (where decision='decline' and limit_amount <> 0) "
            "from limits.financing_limits where as_of_date = ?",
            [last],
        ).fetchall()[0]
        n_features = con.execute(
            "select count(*) from features.merchant_features where as_of_date = ?", [last]
        ).fetchall()[0][0]
        warehouse_limits = con.execute(
            "select merchant_id, limit_amount, decision from limits.financing_limits "
            "where as_of_date = ? order by 1",
            [last],
        ).fetchall()
    finally:
        con.close()
    assert rows[0] == n_features > 0
    assert rows[1] == 1 and rows[2] == 1 and rows[3] == 0
    pub = ro(s.published / "livefin.duckdb")
    try:
        published = pub.execute(
            "select merchant_id, limit_amount, decision from limits.current order by 1"
        ).fetchall()
    finally:
        pub.close()
    assert published == warehouse_limits
    export = s.exports / "limits" / f"as_of_date={last}"
    manifest = json.loads((export / "manifest.json").read_text())
    assert pl.read_parquet(export / "limits.parquet").height == len(warehouse_limits)
    assert "model_version" in json.dumps(manifest) and "policy_version" in json.dumps(manifest)


def test_data_docs_and_model_report_exist(tiny_run):
    s = tiny_run["settings"]
    index = Path(tiny_run["report"].data_docs)
    assert index.exists() and "orders" in index.read_text(errors="replace")
    con = ro(s.warehouse)
    try:
        report = con.execute(
            "select report_path from credit.model_registry where status='champion'"
        ).fetchall()[0][0]
    finally:
        con.close()
    html = Path(report).read_text()
    for section in ("ROC", "KS", "alibration", "PSI", "fingerprint"):
        assert section in html, section


def _night_auc(con, last, min_orders: int) -> tuple[float, int, int]:
    from livefin_etl import features

    rows = con.execute(
        """select f.brushing_score, t.brushing from features.merchant_features f
           join truth t using (merchant_id) where f.as_of_date = ? and f.orders_30d >= ?""",
        [last, min_orders],
    ).fetchall()
    pos = [x for x, y in rows if y]
    return features.auc(pos, [x for x, y in rows if not y]), len(pos), len(rows)


def test_brushing_score_separates_true_brushers(tiny_run):
    """The brushing score must recover the simulator's hidden brushing flag (issue 16: rings
    buy real tracking numbers, ship like real orders and share account pools across shops).

    On `small` seed 42 (bench/bench_brushing.py) the score reaches 0.96 on an ordinary night
    (merchants with >= 30 orders in 30 days) and 0.97 at applications. On tiny (seed 7) it
    measures 0.952 at its 289 loan originations (19 by brushers): floor 0.95. On tiny's last
    night only 3 of its 21 brushers have >= 30 orders in 30 days (tiny brushers sell a median 7),
    so one brusher moves that AUC by a third: it measures 0.829 (floor 0.80), and the >= 20-order
    set (7 brushers) 0.908 (floor 0.90). 0.5 is chance."""
    from livefin_etl import features

    s, last = tiny_run["settings"], tiny_run["last"]
    truth = tiny_run["landing"] / "_truth" / "merchants.parquet"
    con = ro(s.warehouse)
    try:
        con.execute(f"create temp table truth as select * from read_parquet('{truth}')")
        rows = con.execute(
            """select f.brushing_score, t.brushing from raw.loans l
               join features.merchant_features f
                 on f.merchant_id = l.merchant_id and f.as_of_date = l.origination_date
               join truth t on t.merchant_id = l.merchant_id"""
        ).fetchall()
        night30, pos30, n30 = _night_auc(con, last, 30)
        night20, pos20, n20 = _night_auc(con, last, 20)
    finally:
        con.close()
    at_application = features.auc([x for x, y in rows if y], [x for x, y in rows if not y])
    assert sum(1 for _, y in rows if y) >= 10 and len(rows) >= 200
    assert pos30 >= 3 and n30 >= 50 and pos20 >= 5
    assert at_application >= 0.95, at_application
    assert night30 >= 0.80, (night30, pos30, n30)
    assert night20 >= 0.90, (night20, pos20, n20)


def test_model_beats_legacy_rule_and_oracle_is_ceiling(tiny_run):
    s = tiny_run["settings"]
    con = ro(s.warehouse)
    try:
        path = con.execute(
            "select artifact_path from credit.model_registry where status='champion'"
        ).fetchall()[0][0]
    finally:
        con.close()
    metrics = json.loads((Path(path) / "metrics.json").read_text())
    assert metrics["eval_window"] == "oot"
    model_auc = metrics["model"]["auc"]
    legacy_auc = metrics["legacy_rule"]["auc"]
    oracle_auc = metrics["oracle"]["auc"]
    # On tiny the out-of-time window holds only ~60 loans, so compare with a margin of noise:
    # the model must clearly beat the legacy rule; the oracle (true PD) must beat it as well.
    assert model_auc > legacy_auc + 0.05, (model_auc, legacy_auc)
    assert oracle_auc > legacy_auc, (oracle_auc, legacy_auc)


def test_cli_explain_and_explain_value(tiny_run):
    s, last = tiny_run["settings"], tiny_run["last"]
    con = ro(s.warehouse)
    try:
        merchant = con.execute(
            "select merchant_id from credit.merchant_scores where as_of_date=? order by pd desc limit 1",
            [last],
        ).fetchall()[0][0]
    finally:
        con.close()
    env = dict(os.environ, LIVEFIN_HOME=str(s.home), LIVEFIN_LANDING=str(s.landing))
    for cmd, needle in (("explain", "PD"), ("explain-value", "income")):
        out = subprocess.run(
            [sys.executable, "-m", "livefin_etl.cli", cmd, merchant, "--date", str(last)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert merchant in out.stdout and needle.lower() in out.stdout.lower()
