"""User-facing wording: docs that quote config values agree with the config; CLI messages use
CLI words (flags, not Python keyword arguments); `sample` ends with a readable summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BAND = re.compile(
    r"^\| (row_count_ratio|volume_ratio) \(([a-z, ]+)\) \| \[([\d.]+), ([\d.]+)\] \| (\w+) \|$",
    re.M,
)


def _param(value, thresholds: dict) -> float:
    return float(thresholds[value["$PARAMETER"]] if isinstance(value, dict) else value)


def test_quality_doc_row_count_ratio_bands_match_config_and_suites():
    doc = (REPO / "docs" / "quality.md").read_text(encoding="utf-8")
    cfg = yaml.safe_load((REPO / "config" / "quality.yaml").read_text(encoding="utf-8"))
    thresholds = cfg["thresholds"]
    rows = BAND.findall(doc)
    assert rows, "docs/quality.md lists no row_count_ratio band"
    documented = {}
    for column, sources, lo, hi, severity in rows:
        for source in (x.strip() for x in sources.split(",")):
            documented[(column, source, severity)] = (float(lo), float(hi))
    actual = {}
    for path in sorted((REPO / "expectations").glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for e in suite.get("profile_expectations", []):
            column = e["kwargs"].get("column")
            if column in ("row_count_ratio", "volume_ratio"):
                band = (
                    _param(e["kwargs"]["min_value"], thresholds),
                    _param(e["kwargs"]["max_value"], thresholds),
                )
                actual[(column, path.stem, e["meta"]["severity"])] = band
    assert actual, "no suite checks row_count_ratio"
    assert documented == actual


def test_sample_refuses_a_full_folder_in_cli_words_and_summarises(tmp_path):
    out = tmp_path / "landing"
    cmd = [sys.executable, "-m", "livefin_etl.cli", "sample", "--days", "2", "--out", str(out)]
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    cp = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert cp.returncode == 0, cp.stderr
    assert not cp.stdout.lstrip().startswith("{"), "a raw JSON dump, not a summary"
    params = json.loads((out / "_truth" / "params.json").read_text())
    assert f"seed {params['seed']}" in cp.stdout and "2 days" in cp.stdout, cp.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 1
    msg = " ".join(again.stderr.split())
    assert "--force" in msg and "force=True" not in msg, msg
