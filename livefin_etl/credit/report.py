"""Self-contained HTML model report (matplotlib PNGs embedded as base64)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # batch runs have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from livefin_etl.credit import metrics as M  # noqa: E402
from livefin_etl.credit.scorecard import report_section as scorecard_section  # noqa: E402

SECTIONS = (
    "Metrics",
    "ROC curve",
    "KS curve",
    "Calibration",
    "Score distribution",
    "Feature importance",
    "SHAP summary",
    "Stability (PSI)",
    "Data fingerprint",
    "Configuration",
)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return (
        '<img alt="chart" src="data:image/png;base64,'
        + base64.b64encode(buf.getvalue()).decode()
        + '">'
    )


def _f(v: Any, fmt: str = "{:.4f}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return fmt.format(v) if isinstance(v, (int, float)) else html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{_f(c) if not isinstance(c, str) else html.escape(c)}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _roc(ev) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    curves = [
        ("XGBoost", ev.pd_eval),
        ("Logistic baseline", ev.lr_eval),
        ("Legacy rule", ev.legacy_eval),
        ("Oracle (true PD)", ev.oracle_eval),
    ]
    for name, risk in curves:
        if risk is None:
            continue
        ok = ~np.isnan(risk)
        if len(np.unique(ev.y_eval[ok])) < 2:
            continue
        fpr, tpr, _ = roc_curve(ev.y_eval[ok], risk[ok])
        auc, _ = M.auc_ks(ev.y_eval[ok], risk[ok])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({ev.eval_name})")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _ks(ev) -> str:
    order = np.argsort(-ev.pd_eval, kind="stable")
    y = ev.y_eval[order]
    bad = np.cumsum(y) / max(y.sum(), 1)
    good = np.cumsum(1 - y) / max((1 - y).sum(), 1)
    x = np.arange(1, len(y) + 1) / len(y)
    i = int(np.argmax(np.abs(bad - good)))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(x, bad, label="cumulative bads")
    ax.plot(x, good, label="cumulative goods")
    ax.vlines(x[i], good[i], bad[i], colors="r", label=f"KS {abs(bad[i] - good[i]):.3f}")
    ax.set(xlabel="share of loans, riskiest first", ylabel="cumulative share", title="KS")
    ax.legend(fontsize=8)
    return _png(fig)


def _calibration(deciles: list[dict]) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    p = [d["pd_mean"] for d in deciles]
    o = [d["default_rate"] for d in deciles]
    top = max([*p, *o, 0.01]) * 1.1
    ax.plot([0, top], [0, top], "k:", lw=0.8)
    ax.plot(p, o, "o-", label="decile")
    ax.set(
        xlabel="mean predicted PD", ylabel="observed default rate", title="Calibration by decile"
    )
    ax.legend(fontsize=8)
    return _png(fig)


def _score_dist(ev, cfg: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    s_ref = M.pd_to_score(ev.pd_ref, cfg)
    s_ev = M.pd_to_score(ev.pd_eval, cfg)
    bins = np.linspace(min(s_ref.min(), s_ev.min()), max(s_ref.max(), s_ev.max()) + 1, 30)
    ax.hist(s_ref, bins=bins, alpha=0.5, density=True, label="train")
    ax.hist(s_ev, bins=bins, alpha=0.5, density=True, label=ev.eval_name)
    ax.set(xlabel="score", ylabel="density", title="Score distribution")
    ax.legend(fontsize=8)
    return _png(fig)


def _bars(values: dict[str, float], title: str, xlabel: str, top: int = 20) -> str:
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * max(len(items), 3) + 1))
    if items:
        ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel=xlabel, title=title)
    ax.tick_params(axis="y", labelsize=7)
    return _png(fig)


def _metric_rows(m: dict[str, Any]) -> list[list[Any]]:
    """XGBoost against its comparators on the evaluation window, and on its own train window."""
    rows = [
        [
            "XGBoost (calibrated)",
            m["model"]["auc"],
            m["model"]["gini"],
            m["model"]["ks"],
            m["model"]["brier"],
        ]
    ]
    for key, name in (
        ("lr_baseline", "Logistic regression baseline"),
        ("legacy_rule", "Legacy rule"),
        ("oracle", "Oracle (simulator true PD)"),
    ):
        if key in m:
            rows.append([name, m[key]["auc"], m[key]["gini"], m[key]["ks"], m[key].get("brier")])
        else:
            rows.append([name, None, None, None, None])
    ref = m["model_ref"]
    rows.append(["XGBoost on train window", ref["auc"], ref["gini"], ref["ks"], None])
    return rows


def _psi_rows(m: dict[str, Any]) -> list[list[Any]]:
    rows = [["score (PD)", m["psi_score"], M.psi_band(m["psi_score"])]]
    rows += [
        [k, v, M.psi_band(v)]
        for k, v in sorted(m["psi_features"].items(), key=lambda kv: -(kv[1] or 0))
    ]
    return rows


def _html_document(title: str, parts: list[str]) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;font-size:13px}pre{background:#f6f6f6;padding:8px;overflow:auto;"
        "font-size:12px}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_report(path: Path, *, title: str, fitted, version: str) -> Path:
    m, ev, cfg = fitted.metrics, fitted.ev, fitted.cfg
    counts = fitted.counts
    dec_rows = [
        [str(d["decile"]), d["n"], d["pd_mean"], d["default_rate"], d["defaults"]]
        for d in m["deciles"]
    ]
    grade_rows = [[g["grade"], g["n"], g["default_rate"]] for g in m["grades"]]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Version <b>{html.escape(version)}</b> · model sha256 <code>{fitted.hash}</code> · "
        f"device {html.escape(fitted.device)} · rounds {m.get('best_iteration')} · "
        f"train {counts['n_train']} / valid {counts['n_valid']} / {html.escape(ev.eval_name)} "
        f"{counts['n_oot']} rows · eval default rate {m['default_rate_eval']:.3%}</p>",
        "<h2>Metrics</h2>",
        _table(["model", "AUC", "Gini", "KS", "Brier"], _metric_rows(m)),
        "<p>Gini = 2·AUC − 1. KS ≥ 0.2 usable, ≥ 0.3 strong; a suspiciously high KS suggests "
        "leakage. Legacy rule ranks by −legacy limit (or −gross GMV 30d).</p>",
        scorecard_section(m, getattr(fitted, "scorecard", None)),  # byo/issue 17: challenger
        "<h2>ROC curve</h2>",
        _roc(ev),
        "<h2>KS curve</h2>",
        _ks(ev),
        "<h2>Calibration</h2>",
        _calibration(m["deciles"]),
        _table(["decile", "n", "mean PD", "default rate", "defaults"], dec_rows),
        "<h3>Master scale on the evaluation window</h3>",
        _table(["grade", "n", "default rate"], grade_rows),
        "<h2>Score distribution</h2>",
        _score_dist(ev, cfg),
        "<h2>Feature importance</h2>",
        _bars(m["gain"], "Gain", "total gain per split"),
        "<h2>SHAP summary</h2>",
        _bars(m["shap_mean_abs"], "mean |SHAP| (log-odds), evaluation sample", "mean |SHAP|"),
        "<h2>Stability (PSI)</h2>",
        "<p>PSI = Σ (A − E)·ln(A/E), train → evaluation window; &lt; 0.1 stable, 0.1–0.25 watch, "
        "&gt; 0.25 major shift (blocks promotion).</p>",
        _table(["variable", "PSI", "band"], _psi_rows(m)),
        "<h2>Data fingerprint</h2>",
        f"<p>sha256 of the modelling frame (features, label, split): <code>{fitted.fingerprint}</code></p>",
        f"<pre>{html.escape(json.dumps(m.get('training_set', {}), indent=2, default=str))}</pre>",
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(json.dumps(cfg, indent=2, ensure_ascii=False, default=str))}</pre>",
        "<h3>Monotone constraints</h3>",
        _table(
            ["feature", "direction"],
            [
                [c, str(d)]
                for c, d in zip(fitted.spec.columns, fitted.spec.constraints(), strict=True)
            ],
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html_document(title, parts), encoding="utf-8")
    return path
