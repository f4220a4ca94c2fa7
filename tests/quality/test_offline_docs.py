"""Data Docs and the status page read in a real headless browser with the network cut off.

Chromium is installed by `make test` (Makefile target .chromium.stamp); a machine without it
fails here rather than skipping, since the pages' offline rendering is what is under test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import D, day_rows, insert_raw, manifest

from livefin_etl.quality import build_data_docs, validate_partition

# No proxy that answers and no name that resolves: anything fetched from outside fails.
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran, from headless Chromium, offline."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: run `make test` (it installs it with apt-get)")
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *OFFLINE,
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_data_docs_and_status_page_render_offline(con, settings, tmp_path):
    # D-1 is clean history; D delivers half the usual orders: row_count_ratio fails (critical)
    assert validate_partition(con, settings, "orders", D - timedelta(days=1))["status"] == "passed"
    rows = day_rows(D, n_orders=15)["orders"]
    insert_raw(con, "orders", D, rows)
    manifest(con, "orders", D, len(rows), len(rows))
    assert validate_partition(con, settings, "orders", D)["status"] == "failed"
    index = build_data_docs(settings, con)
    site = index.parent

    # nothing on any page is fetched from outside (links to web pages may stay)
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"<(script|img)\b[^>]*\bsrc=\"https?:", text), page
        assert not re.search(r"<link\b[^>]*\bhref=\"https?:", text), page

    dom = dump_dom(index, tmp_path / "chromium")
    # the results table was rendered by the local scripts: one row per stored validation result
    # (two runs x the orders and orders.profile suites), each linking to an existing page
    links = re.findall(r'data-href="(validations/[^"]+)"', dom)
    assert len(links) == 4, links
    assert all((site / unquote(h)).is_file() for h in links)
    assert "table table-hover" in dom  # the class livefin-table.js adds: the scripts ran
    assert '<a href="status.html">' in dom

    status = dump_dom(site / "status.html", tmp_path / "chromium")
    dated = re.findall(r'<tr data-date="([0-9-]+)">', status)
    assert dated == [D.isoformat(), (D - timedelta(days=1)).isoformat()]
    failed = re.search(r'<tr data-date="' + D.isoformat() + r'">(.*?)</tr>', status, re.S)[1]
    assert 'data-status="failed"' in failed and "critical" in failed
    assert "expect_column_values_to_be_between(row_count_ratio)" in failed
    observed = con.execute(
        """select observed_value from dq.expectation_results where dt = ? and not success
           and column_name = 'row_count_ratio'""",
        [D],
    ).fetchone()[0]
    assert float(observed) == pytest.approx(0.5, abs=0.01)  # half a day
    assert f"observed {observed}; expected min_value=" in failed
    target = re.search(r'href="([^"]+)">orders\.profile\.expect_column_values', failed)[1]
    assert (site / unquote(target)).is_file()
    clean = re.search(
        r'<tr data-date="' + (D - timedelta(days=1)).isoformat() + r'">(.*?)</tr>', status, re.S
    )[1]
    assert 'data-status="passed"' in clean and "<li" not in clean
