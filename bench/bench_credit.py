"""Credit model benchmark: score() with exact TreeSHAP reasons vs the bare xgboost floor,
and train() vs a bare ``xgboost.train`` on the same matrix.

    .venv/bin/python bench/bench_credit.py [--merchants 100000] [--loans 60000] [--threads N]
                                           [--device cuda] [--write]
    LIVEFIN_HOME=<copy of a demo home> .venv/bin/python bench/bench_credit.py \
        --calibration-home --as-of 2025-12-29

``--calibration-home`` judges the PDs of the home's training run against the simulator's truth
(``_truth/loans.parquet``): the configured model and the model-v5 rule (min_child_weight 10), on
the out-of-time loans, on every loan originated after them and on the burn-in loans. It builds
missing origination-date features in that home's warehouse, so run it on a copy.

Synthetic data (known logistic signal, ~40 model columns); everything runs in a temp dir.
``--write`` replaces the section between <!-- bench:credit --> and <!-- /bench:credit -->
in BENCHMARKS.md (created if missing).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import xgboost as xgb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livefin_etl.config import load_config  # noqa: E402
from livefin_etl.credit import load_champion, score, train  # noqa: E402
from livefin_etl.credit.training import xgb_params  # noqa: E402
from livefin_etl.testing.credit_world import (  # noqa: E402
    make_features,
    make_settings,
    true_logit,
)

BENCH_MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- bench:credit -->", "<!-- /bench:credit -->"


def features(rng: np.random.Generator, n: int, names: list[str]) -> pd.DataFrame:
    """The credit tests' synthetic merchants (known signal, 5 % missing quality_q)."""
    f = make_features(rng, pd.DataFrame(index=range(n)), names)
    return f.drop(columns=["feature_version"])


def logit(f: pd.DataFrame) -> np.ndarray:
    # the tests' oracle plus one non-monotone term, so the trees have something to find
    return true_logit(f) + 0.6 * np.sin(3 * f["gmv_cv_90d"].to_numpy())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- against the truth


def truth_slope(pd_: np.ndarray, true_pd: np.ndarray) -> tuple[float, float]:
    """Calibration slope and intercept with the true PDs as soft labels (no label noise)."""
    from sklearn.linear_model import LogisticRegression

    x = np.log(pd_ / (1 - pd_)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6, max_iter=2000).fit(
        np.vstack([x, x]),
        np.r_[np.ones(len(x)), np.zeros(len(x))],
        sample_weight=np.r_[true_pd, 1 - true_pd],
    )
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def truth_expected_auc(rank: np.ndarray, true_pd: np.ndarray) -> float:
    """AUC the ranking realises on average when loan i defaults with probability true_pd[i]."""
    _, inv = np.unique(rank, return_inverse=True)
    neg = np.bincount(inv, weights=1 - true_pd)
    below = np.cumsum(neg) - neg
    num = np.sum(true_pd * (below[inv] + 0.5 * (neg[inv] - (1 - true_pd))))
    return float(num / np.sum(true_pd * (neg.sum() - (1 - true_pd))))


def _judge(name: str, g: pd.DataFrame) -> str:
    from livefin_etl.credit import metrics as M
    from livefin_etl.credit.monitor_outcomes import expected_auc_ks

    p, q = g["pd"].to_numpy(), g["true_pd"].to_numpy()
    order = np.array_split(np.argsort(p, kind="stable"), 10)
    gaps = [100 * (q[i].mean() - p[i].mean()) for i in order]
    mat = g["window_closed"].to_numpy(bool)
    y = g["defaulted_180d"].to_numpy(int)
    real = M.auc_ks(y[mat], p[mat])[0] if mat.sum() > 10 and 0 < y[mat].sum() else float("nan")
    return (
        f"| {name} | {len(g):,} | {int(mat.sum()):,} / {int(y[mat].sum())} | "
        f"{truth_slope(p, q)[0]:.2f} | {100 * p.mean():.2f} / {100 * q.mean():.2f} | "
        f"{min(gaps):+.2f} … {max(gaps):+.2f} | {expected_auc_ks(p)[0]:.3f} | "
        f"{truth_expected_auc(p, q):.3f} | {real:.3f} | {truth_expected_auc(q, q):.3f} |"
    )


def calibration_home(as_of: date) -> None:
    import copy

    from livefin_etl.config import get_settings
    from livefin_etl.credit import metrics as M
    from livefin_etl.credit.training import fit, margins
    from livefin_etl.features import build_features_for_spine
    from livefin_etl.warehouse import connect

    s = get_settings()
    con = connect(s)
    con.execute(
        "create or replace temp table _cal_spine as select distinct merchant_id, "
        "origination_date as as_of_date from raw.loans l where not exists (select 1 from "
        "features.merchant_features f where f.merchant_id = l.merchant_id "
        "and f.as_of_date = l.origination_date)"
    )
    print(f"origination-date features built: {build_features_for_spine(con, '_cal_spine')}")
    truth = pd.read_parquet(s.landing / "_truth" / "loans.parquet")
    loans = con.execute(
        "select l.loan_id, f.* exclude (merchant_id) from raw.loans l join "
        "features.merchant_features f on f.merchant_id = l.merchant_id "
        "and f.as_of_date = l.origination_date"
    ).df()
    loans = loans.merge(truth[["loan_id", "true_pd", "defaulted_180d", "window_closed"]])
    v5 = copy.deepcopy(load_config("model"))
    v5["tuning"] = {"min_child_weight": []}
    v5["xgboost"]["min_child_weight"] = 10
    head = "| loans | n | matured / defaults | slope vs truth | mean PD / true % | decile gap pp | CBPE | truly expected AUC | realised AUC | oracle expected |"
    for label, cfg in (("configured", None), ("model-v5 rule (min_child_weight 10)", v5)):
        f = fit(con, s, as_of, config=cfg, ensure_features=None)
        oot = f.frame[f.frame["split"] == "oot"]
        c = f.cfg["calibration"]
        m = margins(f.booster, f.spec.matrix(loans), f.spec, s.threads)
        g = loans.assign(pd=M.apply_calibrator(f.calibrator, m, c["pd_floor"], c["pd_cap"]))
        t = pd.to_datetime(g["as_of_date"])
        first, last = pd.to_datetime(oot["origination_date"]).agg(["min", "max"])
        met = f.metrics
        print(
            f"\n{label}: tuning {met.get('tuning')}, oot AUC {met['model']['auc']:.3f} "
            f"{met['model']['auc_ci95']}, oracle share {met['oracle']['model_share']:.3f} "
            f"{met['oracle']['model_share_ci95']}, calibration slope (labels) "
            f"{met['calibration_slope']['slope']:.2f}\n\n{head}\n|---|" + "---:|" * 9
        )
        for name, part in (
            ("out-of-time", g[g["loan_id"].isin(oot["loan_id"])]),
            ("after the out-of-time window", g[t > last]),
            ("out-of-time and after", g[t >= first]),
            (
                "burn-in (censored features)",
                g[t < pd.to_datetime(f.frame["origination_date"]).min()],
            ),
        ):
            print(_judge(name, part))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merchants", type=int, default=100_000)
    ap.add_argument("--loans", type=int, default=60_000)
    ap.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("LIVEFIN_THREADS", "0")) or (os.cpu_count() or 1),
    )
    ap.add_argument("--device", default=None)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--calibration-home", action="store_true")
    ap.add_argument("--as-of", type=date.fromisoformat, default=date(2025, 12, 29))
    args = ap.parse_args()
    if args.calibration_home:
        return calibration_home(args.as_of)

    cfg = load_config("model")
    names = list(cfg["features"])
    rng = np.random.default_rng(11)
    tmp = Path(tempfile.mkdtemp(prefix="bench_credit_"))
    s = replace(make_settings(tmp), threads=args.threads)
    con = duckdb.connect(str(s.warehouse))
    con.execute(f"SET threads = {args.threads}")

    # --- training set: loans with a known signal ------------------------------------------
    loans = features(rng, args.loans, names)
    loans["origination_date"] = [
        date(2023, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 540, args.loans)
    ]
    loans["merchant_id"] = [f"M{i:06d}" for i in rng.integers(0, args.merchants, args.loans)]
    loans["is_default"] = (rng.random(args.loans) < 1 / (1 + np.exp(-logit(loans)))).astype(int)

    t0, c0 = time.perf_counter(), time.process_time()
    res = train(
        con,
        s,
        date(2025, 1, 15),
        features_df=loans,
        label="is_default",
        time_col="origination_date",
        device=args.device,
    )
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    if res["status"] != "champion":  # scoring below needs a champion: say why there is none
        raise SystemExit(f"model {res['model_version']} refused by the gate: {res['reason']}")
    model = load_champion(con)
    rounds = model.booster.num_boosted_rounds()

    # floor: bare xgboost.train on the same matrix, same params, same early stopping
    from livefin_etl.credit.dataset import time_split

    sp = time_split(loans["origination_date"], cfg["split"])
    X = model.spec.matrix(loans)
    y = loans["is_default"].to_numpy()
    t0, c0 = time.perf_counter(), time.process_time()
    dtr = xgb.DMatrix(X[sp == "train"], label=y[sp == "train"], feature_names=model.spec.columns)
    dva = xgb.DMatrix(X[sp == "valid"], label=y[sp == "valid"], feature_names=model.spec.columns)
    params = xgb_params(cfg, model.spec, args.threads, res["device"])
    bare = xgb.train(
        params,
        dtr,
        int(cfg["xgboost"]["n_estimators"]),
        evals=[(dva, "valid")],
        early_stopping_rounds=int(cfg["xgboost"]["early_stopping_rounds"]),
        verbose_eval=False,
    )
    t_bare_train, c_bare_train = time.perf_counter() - t0, time.process_time() - c0
    assert bare.best_iteration + 1 == rounds, "bare floor must match the pipeline's model"

    # --- scoring: 100k merchants for one date ----------------------------------------------
    D = date(2025, 1, 15)
    merch = features(rng, args.merchants, names)
    merch.insert(0, "merchant_id", [f"M{i:06d}" for i in range(args.merchants)])
    merch.insert(1, "as_of_date", D)
    con.execute("create schema if not exists features")
    con.register("_m", merch)
    con.execute("create table features.merchant_features as select * from _m")
    con.unregister("_m")

    t0, c0 = time.perf_counter(), time.process_time()
    n = score(con, s, D, device=args.device)
    t_score, c_score = time.perf_counter() - t0, time.process_time() - c0

    Xs = model.spec.matrix(merch)
    booster = model.booster
    booster.set_param({"nthread": args.threads, **({"device": args.device} if args.device else {})})
    t0, c0 = time.perf_counter(), time.process_time()
    dm = xgb.DMatrix(Xs, feature_names=model.spec.columns, nthread=args.threads)
    booster.predict(dm, output_margin=True)
    booster.predict(dm, pred_contribs=True)
    t_floor, c_floor = time.perf_counter() - t0, time.process_time() - c0
    load = os.getloadavg()[0]
    rss = peak_rss_mb()

    m = res["metrics"]
    cpu = platform.processor() or platform.machine()
    lines = [
        f"Command: `.venv/bin/python bench/bench_credit.py --merchants {args.merchants} "
        f"--loans {args.loans} --threads {args.threads}"
        + (f" --device {args.device}" if args.device else "")
        + " --write`",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), threads={args.threads}, device={res['device']}, "
        f"xgboost {xgb.__version__}. Model: depth {cfg['xgboost']['max_depth']}, {rounds} trees "
        f"(early stopping of max {cfg['xgboost']['n_estimators']}), {len(model.spec.columns)} columns.",
        "",
        "| step | livefin wall (CPU) | bare xgboost floor wall (CPU) | ratio wall (CPU) |",
        "|---|---|---|---|",
        f"| score {n:,} merchants incl. exact TreeSHAP reasons, strings, DuckDB write "
        f"| {t_score:.1f} s ({c_score:.1f} s) | {t_floor:.1f} s ({c_floor:.1f} s) predict + "
        f"pred_contribs | {t_score / t_floor:.2f}x ({c_score / c_floor:.2f}x) |",
        f"| train on {args.loans:,} loans incl. calibration, LR baseline, PSI, SHAP summary, report, "
        f"registry | {t_train:.1f} s ({c_train:.1f} s) | {t_bare_train:.1f} s ({c_bare_train:.1f} s) "
        f"xgboost.train, same params | {t_train / t_bare_train:.2f}x "
        f"({c_train / c_bare_train:.2f}x) |",
        "",
        f"CPU = process CPU seconds summed over threads; with {args.threads} threads an "
        f"uncontended run's wall time is about CPU / {args.threads}. 1-min load average at the "
        f"end: {load:.1f} on {os.cpu_count()} cores (shared machine).",
        "",
        f"Peak RSS {rss:,.0f} MB. OOT AUC {m['model']['auc']:.3f} (LR baseline "
        f"{m['lr_baseline']['auc']:.3f}), KS {m['model']['ks']:.3f}. Budget: scoring 100k with "
        f"reasons ≤ 60 s.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        body = BENCH_MD.read_text() if BENCH_MD.exists() else "# Benchmarks\n"
        section = f"{START}\n## Credit model\n\n{text}\n{END}"
        if START in body and END in body:
            body = re.sub(
                re.escape(START) + ".*?" + re.escape(END), lambda _: section, body, flags=re.S
            )
        else:
            body = body.rstrip() + "\n\n" + section + "\n"
        BENCH_MD.write_text(body)
        print(f"updated {BENCH_MD}")


if __name__ == "__main__":
    main()
