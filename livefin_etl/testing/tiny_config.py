"""config/ sized for the tiny simulated world (the test suite's and the fuzz bench's)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


def tiny_config_dir() -> str:
    """A copy of config/ with the credit model sized for the tiny world, its stability limit opened.

    The tiny world has 300 days and 200 merchants: 303 loans have matured by its last night,
    183 of them in the training window. With the production ``min_child_weight: 10`` (a loan's
    hessian is ~0.11, so ~90 loans a leaf) no tree can split: the model is a constant, oot AUC
    0.500, which the champion gate's AUC floor refuses. With 3 it reaches oot AUC 0.77, so the
    min_child_weight grid (``tuning``, chosen on the valid window) is pinned to 3 here. Those
    loans were originated in the first ~120 days, while 90-day features are still censored by
    the data start, so the train -> oot score PSI is ~0.35 and a 90-day burn-in (production)
    would leave ~30 days of loans: here the PSI limit is opened instead. The gate's production
    thresholds are proven on the credit tests' own world (tests/credit).

    Set ``LIVEFIN_CONFIG_DIR`` to the result before ``livefin_etl.config`` is imported."""
    dst = Path(tempfile.mkdtemp(prefix="livefin-tiny-config-")) / "config"
    shutil.copytree(REPO_CONFIG, dst)
    model = yaml.safe_load((dst / "model.yaml").read_text(encoding="utf-8"))
    model["version"] = f"{model['version']}-ci"
    model["target"]["burn_in_days"] = 0
    model["champion_gate"]["psi_max"] = 5.0
    model["xgboost"]["min_child_weight"] = 3
    model["tuning"] = {"min_child_weight": [3]}
    (dst / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False), encoding="utf-8")
    return str(dst)
