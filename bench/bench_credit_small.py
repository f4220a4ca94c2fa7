"""Credit validation on the `small` preset (issue 16 item 8 and acceptance 5; issue 17 CBPE).

    LIVEFIN_HOME=/tmp/s14/home LIVEFIN_THREADS=2 .venv/bin/python bench/bench_credit_small.py \
        --landing <a `livefin sample --scale small --compress gzip` landing>

Ingests (extract + GX gate) every source into a fresh home, orders / traffic / fulfillment only
up to the last matured origination date (a feature at date D reads partitions <= D, so later
ones cannot change the training set), trains as of the sample's last day, then prints the
training run's figures and CBPE on the out-of-time loans: the AUC expected from the calibrated
PDs alone against the realised AUC on the same matured loans. Figures: metrics.json of the model
and this script's output; written into docs/credit_model.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--landing", type=Path, required=True)
    args = ap.parse_args()
    os.environ["LIVEFIN_LANDING"] = str(args.landing)

    from livefin_etl import pipeline
    from livefin_etl.config import get_settings, load_config

    t0 = time.time()

    def say(msg: str) -> None:
        print(f"{time.time() - t0:8.0f}s {msg}", flush=True)

    params = json.loads((args.landing / "_truth" / "params.json").read_text())
    first = date.fromisoformat(str(params["start"]))
    last = first + timedelta(days=int(params["days"]) - 1)
    horizon = int(load_config("model")["target"]["horizon_days"])
    matured_to = last - timedelta(days=horizon)
    s = get_settings()
    pipeline.init_home(s)
    with pipeline.session(s) as (s2, con):
        daily = ["merchants", "loans", "repayments", "applications"]
        r1 = pipeline.ingest_range(con, s2, pipeline.daterange(first, last), daily, say)
        big = ["orders", "traffic", "fulfillment"]
        r2 = pipeline.ingest_range(con, s2, pipeline.daterange(first, matured_to), big, say)
    failed = [x for x in r1 + r2 if x.get("status") == "failed"]
    say(f"ingest done, failed partitions: {len(failed)}")
    trained = pipeline.train(last, s)
    say(f"train done: {trained['model_version']} {trained['status']}")
    print(json.dumps(trained, default=str, indent=1))
    cbpe(s, last)


def cbpe(settings, as_of_date: date) -> None:
    """CBPE vs realised on the champion's matured out-of-time loans."""
    from livefin_etl.credit import metrics as M
    from livefin_etl.credit import monitor as Mo
    from livefin_etl.credit import monitor_outcomes as O
    from livefin_etl.credit.registry import current_champion, load_champion
    from livefin_etl.warehouse import connect

    con = connect(settings)
    champ = current_champion(con)
    model = load_champion(con)
    window = json.loads((Path(champ["artifact_path"]) / "metrics.json").read_text())[
        "training_set"
    ]["oot_window"]
    night = Mo.Night(con, as_of_date, "bench-cbpe", model, champ, Mo.monitoring_config(), 1)
    loans = O.loan_frame(night, date.fromisoformat(window["oot_from"]))
    to = np.datetime64(window["oot_to"])
    w = loans[(loans["origination_date"] <= to) & loans["matured"] & loans["scored"]]
    p, y = w["pd"].to_numpy(), w["is_default"].to_numpy()
    auc_e, ks_e = O.expected_auc_ks(p)
    lo, hi = O.expected_auc_interval(p)
    auc_r, ks_r = M._fast_auc_ks(y, p)
    print(f"oot loans {len(w)}, defaults {int(y.sum())}")
    print(
        f"CBPE expected AUC {auc_e:.4f} (95 % {lo:.4f}-{hi:.4f}), KS {ks_e:.4f}; "
        f"realised AUC {auc_r:.4f}, KS {ks_r:.4f}; difference {auc_e - auc_r:+.4f}"
    )


if __name__ == "__main__":
    main()
