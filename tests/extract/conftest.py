"""A home with a small merchants partition loaded: what every extract test starts from."""

from __future__ import annotations

from datetime import date

import pytest

D = date(2025, 3, 1)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Settings of a fresh home (test PII key, one thread) with two merchants delivered for D."""
    from livefin_etl.config import get_settings

    monkeypatch.setenv("LIVEFIN_HOME", str(tmp_path))
    monkeypatch.setenv("LIVEFIN_PII_KEY", "unit-test-key")
    monkeypatch.setenv("LIVEFIN_THREADS", "1")
    s = get_settings()
    folder = s.landing / "merchants" / f"dt={D}"
    folder.mkdir(parents=True)
    (folder / "part-0.csv").write_text(
        "merchant_id,merchant_name,category,region,onboard_date\n"
        "M1,杭州一号服饰店,apparel,浙江,2024-01-01\nM2,广州二号食品店,food,广东,2024-06-01\n",
        encoding="utf-8",
    )
    return s


@pytest.fixture
def con(home):
    """The home's warehouse with the merchants of D loaded."""
    from livefin_etl.extract import extract_partition
    from livefin_etl.warehouse import connect

    c = connect(home)
    extract_partition(c, home, "merchants", D)
    yield c
    c.close()
