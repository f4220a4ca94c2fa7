"""Self-contained HTML model report (matplotlib PNGs embedded as base64), verdict first, and the
nightly monitoring page of the champion (from the ``monitor.*`` tables)."""

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
from livefin_etl.credit.gate import gate_checks  # noqa: E402
from livefin_etl.credit.scorecard import report_section as scorecard_section  # noqa: E402

SECTIONS = (
    "Verdict",
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
# Charts: 7 in at 110 dpi is 770 px wide, labels at 11 pt stay readable when the page is printed.
DPI = 110
plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "legend.fontsize": 10})
BAND_COLOURS = {
    "stable": "#d9f2d9",
    "watch": "#fff0b3",
    "major shift": "#f8c9c4",
    "act": "#f8c9c4",
    "n/a": "#eeeeee",
}
RAISES, LOWERS = "#c0392b", "#2e86c1"  # SHAP direction: higher value raises / lowers PD


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
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


def _cell(c: Any) -> str:
    if isinstance(c, str) and c in BAND_COLOURS:  # a PSI band or verdict: coloured
        return f"<td style='background:{BAND_COLOURS[c]}'><b>{html.escape(c)}</b></td>"
    return f"<td>{_f(c) if not isinstance(c, str) else html.escape(c)}</td>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _roc(ev) -> str:
    fig, ax = plt.subplots(figsize=(7, 6))
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
    ax.legend(loc="lower right")
    return _png(fig)


def _ks(ev) -> str:
    order = np.argsort(-ev.pd_eval, kind="stable")
    y = ev.y_eval[order]
    bad = np.cumsum(y) / max(y.sum(), 1)
    good = np.cumsum(1 - y) / max((1 - y).sum(), 1)
    x = np.arange(1, len(y) + 1) / len(y)
    i = int(np.argmax(np.abs(bad - good)))
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(x, bad, label="cumulative bads")
    ax.plot(x, good, label="cumulative goods")
    ax.vlines(x[i], good[i], bad[i], colors="r", label=f"KS {abs(bad[i] - good[i]):.3f}")
    ax.set(xlabel="share of loans, riskiest first", ylabel="cumulative share", title="KS")
    ax.legend()
    return _png(fig)


def _calibration(deciles: list[dict]) -> str:
    fig, ax = plt.subplots(figsize=(7, 5))
    p = [d["pd_mean"] for d in deciles]
    o = [d["default_rate"] for d in deciles]
    top = max([*p, *o, 0.01]) * 1.1
    ax.plot([0, top], [0, top], "k:", lw=0.8)
    ax.plot(p, o, "o-", label="decile")
    ax.set(
        xlabel="mean predicted PD", ylabel="observed default rate", title="Calibration by decile"
    )
    ax.legend()
    return _png(fig)


def _score_dist(ev, cfg: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    s_ref = M.pd_to_score(ev.pd_ref, cfg)
    s_ev = M.pd_to_score(ev.pd_eval, cfg)
    bins = np.linspace(min(s_ref.min(), s_ev.min()), max(s_ref.max(), s_ev.max()) + 1, 30)
    ax.hist(s_ref, bins=bins, alpha=0.5, density=True, label="train")
    ax.hist(s_ev, bins=bins, alpha=0.5, density=True, label=ev.eval_name)
    ax.set(xlabel="score", ylabel="density", title="Score distribution")
    ax.legend()
    return _png(fig)


def _bars(values: dict[str, float], title: str, xlabel: str, top: int = 20, colours=None) -> str:
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.38 * max(len(items), 3) + 1.2))
    if items:
        colour = [colours.get(k, "#888888") for k, _ in items] if colours else None
        ax.barh([k for k, _ in items], [v for _, v in items], color=colour)
    ax.set(xlabel=xlabel, title=title)
    ax.tick_params(axis="y", labelsize=10)
    return _png(fig)


def shap_direction(fitted, sample: int = 2000) -> list[dict[str, Any]]:
    """Per feature: mean |SHAP| and its direction, the sign of the correlation between the
    feature's value and its SHAP on an evaluation sample (+: higher value raises PD)."""
    import xgboost as xgb

    X, cols = fitted.ev.X_eval, fitted.spec.columns
    if len(X) == 0:
        return []
    idx = np.sort(np.random.default_rng(0).choice(len(X), min(len(X), sample), replace=False))
    # the booster knows the sanitised names; reports speak the user's own (cols)
    dm = xgb.DMatrix(X[idx], feature_names=fitted.spec.xgb_columns)
    contribs = fitted.booster.predict(dm, pred_contribs=True)[:, :-1]
    constraints = dict(zip(cols, fitted.spec.constraints(), strict=True))
    out = []
    for j, col in enumerate(cols):
        x, s = X[idx, j].astype(float), contribs[:, j].astype(float)
        ok = ~np.isnan(x)
        corr = 0.0
        if ok.sum() > 2 and np.std(x[ok]) > 0 and np.std(s[ok]) > 0:
            corr = float(np.corrcoef(x[ok], s[ok])[0, 1])
        direction = "raises PD" if corr > 0.05 else ("lowers PD" if corr < -0.05 else "mixed")
        out.append(
            {
                "feature": col,
                "mean_abs_shap": float(np.abs(s).mean()),
                "corr": corr,
                "direction": f"higher value {direction}" if direction != "mixed" else "mixed",
                "constraint": int(constraints[col]),
            }
        )
    return sorted(out, key=lambda r: -r["mean_abs_shap"])


def _shap_section(fitted) -> list[str]:
    rows = shap_direction(fitted)
    top = rows[:20]
    colours = {r["feature"]: RAISES if r["corr"] > 0 else LOWERS for r in top}
    chart = _bars(
        {r["feature"]: r["mean_abs_shap"] for r in top},
        "mean |SHAP| (log-odds); red: higher value raises PD, blue: lowers it",
        "mean |SHAP|",
        colours=colours,
    )
    table = _table(
        ["feature", "mean |SHAP|", "direction of effect", "corr(value, SHAP)", "monotone"],
        [
            [r["feature"], r["mean_abs_shap"], r["direction"], r["corr"], str(r["constraint"])]
            for r in top
        ],
    )
    return [chart, table]


def _metric_rows(m: dict[str, Any]) -> list[list[Any]]:
    """XGBoost against its comparators on the evaluation window, and on its own train window."""
    rows = []
    for key, name in (
        ("model", "XGBoost (calibrated)"),
        ("lr_baseline", "Logistic regression baseline"),
        ("legacy_rule", "Legacy rule"),
        ("oracle", "Oracle (simulator true PD)"),
    ):
        if key in m:
            r = m[key]
            rows.append(
                [name, r["auc"], _ci(r.get("auc_ci95")), r["gini"], r["ks"], _ci(r.get("ks_ci95"))]
                + [r.get("brier")]
            )
        else:
            rows.append([name, None, None, None, None, None, None])
    ref = m["model_ref"]
    rows.append(["XGBoost on train window", ref["auc"], None, ref["gini"], ref["ks"], None, None])
    return rows


def _ci(ci: list[float] | None) -> str | None:
    return None if not ci or any(not math.isfinite(v) for v in ci) else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _window_line(m: dict[str, Any]) -> str:
    """What the out-of-time window holds against its targets (config split.oot_days etc.)."""
    w = m.get("training_set", {}).get("oot_window")
    if not w:
        return ""
    target = f"target {w['oot_days_target']} days" if w.get("oot_days_target") else "by fraction"
    short = " (history too short: fell back to the oot fraction)" if w.get("shortened") else ""
    met = "meets" if w.get("meets_target") else "<b>misses</b>"
    return (
        f"<p>Out-of-time window {w['oot_from']} → {w['oot_to']}: {w['oot_days']} days "
        f"({target}){short}, {w['oot_loans']} loans, {w['oot_defaults']} defaults (target ≥ "
        f"{w['min_oot_defaults']}): {met} the validation target.</p>"
    )


def _oracle_line(m: dict[str, Any]) -> str:
    o = m.get("oracle") or {}
    if "model_share" not in o:
        return ""
    return (
        f"<p>Against the oracle on the same {o['n']} loans: model AUC {o['model_auc']:.3f} is "
        f"{o['model_share']:.1%} of the oracle's {o['auc']:.3f} (paired bootstrap 95% "
        f"{o['model_share_ci95'][0]:.1%}–{o['model_share_ci95'][1]:.1%}; target ≥ 95%).</p>"
    )


def reject_section(m: dict[str, Any]) -> str:
    """Reject inference (credit/reject.py): the fuzzy-augmented challenger against the funded-
    loan (KGB) model on the through-the-door out-of-time population."""
    ri = m.get("reject_inference")
    if not ri:
        return ""
    if "skipped" in ri:
        return f"<h2>Reject inference</h2><p>Skipped: {html.escape(ri['skipped'])}</p>"
    rows = []
    for key, name in (("approved_oot", "approved oot loans"), ("ttd_oot", "through-the-door oot")):
        d = ri.get(key)
        if not d:
            continue
        for mod in ("kgb", "fuzzy"):
            r = d[mod]
            rows.append(
                [f"{name}: {mod.upper() if mod == 'kgb' else 'fuzzy'}", d["n"], d["defaults"]]
                + [r["auc"], _ci(r.get("auc_ci95")), r["ks"], r["brier"], r["mean_pd"]]
                + [d["default_rate"]]
            )
    ref = ri.get("refused_oot") or {}
    extra = (
        f" Refused oot applicants: {ref['n']}, true default rate {ref['default_rate_truth']:.1%}, "
        f"mean PD {ref['kgb_mean_pd']:.1%} (KGB) vs {ref['fuzzy_mean_pd']:.1%} (fuzzy)."
        if ref
        else ""
    )
    return "".join(
        [
            "<h2>Reject inference (fuzzy augmentation, report-only)</h2>",
            f"<p><b>{html.escape(ri['verdict'])}</b>.{extra} Refused applications added: "
            f"{ri['refused']}. Outcomes of refused applicants come from the simulator's truth "
            "and are used only here.</p>",
            _table(
                ["population: model", "n", "defaults", "AUC", "AUC 95% CI", "KS", "Brier"]
                + ["mean PD", "default rate"],
                rows,
            ),
        ]
    )


def _psi_rows(m: dict[str, Any]) -> list[list[Any]]:
    rows = [["score (PD)", m["psi_score"], M.psi_band(m["psi_score"])]]
    rows += [
        [k, v, M.psi_band(v)]
        for k, v in sorted(m["psi_features"].items(), key=lambda kv: -(kv[1] or 0))
    ]
    return rows


def _verdict(fitted, decision) -> list[str]:
    """Gate decision and reasons first: what a validator reads before any chart."""
    m = fitted.metrics
    if decision is not None:
        status, failed, reason = decision.status, list(decision.failed), decision.reason
    else:  # no registry (bring-your-own): the gate's absolute bars, no champion comparison
        failed = gate_checks(None, m, fitted.cfg) if "champion_gate" in fitted.cfg else []
        status = "would pass the gate" if not failed else "would fail the gate"
        reason = "standalone check (no registry, no champion to compare with)"
    ok = not failed
    colour = BAND_COLOURS["stable"] if ok else BAND_COLOURS["act"]
    bands = [M.psi_band(v) for v in m.get("psi_features", {}).values()]
    shifts = sum(b == "major shift" for b in bands)
    items = "".join(f"<li>{html.escape(f)}</li>" for f in failed) or "<li>every check passed</li>"
    return [
        "<h2>Verdict</h2>",
        f"<div style='background:{colour};padding:8px 12px;border-radius:4px'>"
        f"<p style='font-size:18px;margin:4px 0'><b>{html.escape(status.upper())}</b></p>"
        f"<p>{html.escape(reason)}</p><ul>{items}</ul>"
        f"<p>oot AUC {_f(m['model']['auc'], '{:.3f}')} · KS {_f(m['model']['ks'], '{:.3f}')} · "
        f"score PSI {_f(m.get('psi_score'), '{:.3f}')} ({M.psi_band(m.get('psi_score', math.nan))})"
        f" · {shifts} of {len(bands)} features in major shift</p></div>",
    ]


def _html_document(title: str, parts: list[str]) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;font-size:13px}pre{background:#f6f6f6;padding:8px;overflow:auto;"
        "font-size:12px}img{max-width:100%;min-width:600px}summary{cursor:pointer;font-weight:bold}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_report(path: Path, *, title: str, fitted, version: str, decision=None) -> Path:
    """The model report; ``decision`` is the registry's gate decision (None: standalone)."""
    m, ev, cfg = fitted.metrics, fitted.ev, fitted.cfg
    counts = fitted.counts
    dec_rows = [
        [str(d["decile"]), d["n"], d["pd_mean"], d["default_rate"], d["defaults"]]
        + [d.get("gap"), _ci(d.get("gap_ci95"))]
        for d in m["deciles"]
    ]
    grade_rows = [[g["grade"], g["n"], g["default_rate"]] for g in m["grades"]]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        *_verdict(fitted, decision),
        f"<p>Version <b>{html.escape(version)}</b> · model sha256 <code>{fitted.hash}</code> · "
        f"device {html.escape(fitted.device)} · rounds {m.get('best_iteration')} · "
        f"min_child_weight {fitted.cfg['xgboost'].get('min_child_weight')}"
        f"{' (chosen on valid log-loss)' if m.get('tuning') else ''} · "
        f"train {counts['n_train']} / valid {counts['n_valid']} / {html.escape(ev.eval_name)} "
        f"{counts['n_oot']} rows · eval default rate {m['default_rate_eval']:.3%} · "
        "<a href='monitoring.html'>nightly monitoring page</a> (once it has scored)</p>",
        "<h2>Metrics</h2>",
        _window_line(m),
        _table(["model", "AUC", "AUC 95% CI", "Gini", "KS", "KS 95% CI", "Brier"], _metric_rows(m)),
        "<p>Gini = 2·AUC − 1. KS ≥ 0.2 usable, ≥ 0.3 strong; a suspiciously high KS suggests "
        "leakage. Legacy rule ranks by −legacy limit (or −gross GMV 30d). 95% intervals: "
        f"stratified percentile bootstrap ({m['model'].get('n_boot', 0)} resamples of the "
        "evaluation loans, defaults and non-defaults resampled separately).</p>",
        _oracle_line(m),
        scorecard_section(m, getattr(fitted, "scorecard", None)),  # byo/issue 17: challenger
        reject_section(m),
        "<h2>ROC curve</h2>",
        _roc(ev),
        "<h2>KS curve</h2>",
        _ks(ev),
        "<h2>Calibration</h2>",
        _calibration(m["deciles"]),
        _table(
            ["decile", "n", "mean PD", "default rate", "defaults", "gap", "gap 95% CI"], dec_rows
        ),
        "<p>gap = observed default rate − mean PD; its interval is the observed rate's Wilson "
        f"95% interval less the mean PD. Largest |gap| {_f(m.get('calibration_max_gap'))}; "
        "calibration slope (logistic of outcome on logit PD; 1 = right spread, > 1 = PDs too "
        f"compressed) {_f(m.get('calibration_slope', {}).get('slope'), '{:.2f}')}.</p>",
        "<h3>Master scale on the evaluation window</h3>",
        _table(["grade", "n", "default rate"], grade_rows),
        "<h2>Score distribution</h2>",
        _score_dist(ev, cfg),
        "<h2>Feature importance</h2>",
        _bars(m["gain"], "Gain", "total gain per split"),
        "<h2>SHAP summary</h2>",
        "<p>Mean |SHAP| on an evaluation sample, coloured by the direction of effect: the sign "
        "of the correlation between a feature's value and its SHAP contribution.</p>",
        *_shap_section(fitted),
        "<h2>Stability (PSI)</h2>",
        "<p>PSI = Σ (A − E)·ln(A/E), train → evaluation window; &lt; 0.1 stable, 0.1–0.25 watch, "
        "&gt; 0.25 major shift (blocks promotion).</p>",
        _table(["variable", "PSI", "band"], _psi_rows(m)),
        "<h2>Data fingerprint</h2>",
        f"<p>sha256 of the modelling frame (features, label, split): <code>{fitted.fingerprint}</code></p>",
        f"<pre>{html.escape(json.dumps(m.get('training_set', {}), indent=2, default=str))}</pre>",
        "<h2>Configuration</h2>",
        "<details><summary>config/model.yaml snapshot (click to open)</summary>"
        f"<pre>{html.escape(json.dumps(cfg, indent=2, ensure_ascii=False, default=str))}</pre>"
        "</details>",
        "<details><summary>Monotone constraints</summary>",
        _table(
            ["feature", "direction"],
            [
                [c, str(d)]
                for c, d in zip(fitted.spec.columns, fitted.spec.constraints(), strict=True)
            ],
        ),
        "</details>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html_document(title, parts), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- monitoring page


def _rows(con, sql: str, params: list[Any]) -> tuple[list[str], list[list[Any]]]:
    cur = con.execute(sql, params)
    return [d[0] for d in cur.description], [list(r) for r in cur.fetchall()]


def _vintage_chart(con, as_of_date) -> str:
    cols, rows = _rows(
        con,
        "select vintage, months_on_book, cum_default_rate from monitor.vintage "
        "where as_of_date = ? order by vintage, months_on_book",
        [as_of_date],
    )
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for vintage in sorted({r[0] for r in rows}):
        pts = [(r[1], r[2]) for r in rows if r[0] == vintage]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=vintage)
    ax.set(
        xlabel="months on book",
        ylabel="cumulative default rate",
        title="Vintage curves (origination month)",
    )
    if rows:
        ax.legend(ncol=2)
    return _png(fig)


# (heading, query over one night's rows, note)
MONITOR_TABLES = (
    (
        "Verdicts",
        "select check_name, verdict, value, watch, act, action, message from monitor.verdicts "
        "where as_of_date = ? order by verdict = 'act' desc, verdict = 'watch' desc, check_name",
        "Thresholds in config/monitoring.yaml; `livefin status` lists watch and act.",
    ),
    (
        "Performance: expected (CBPE) vs realised",
        "select population, vintage, n_loans, n_matured, expected_default_rate, expected_auc, "
        "expected_auc_lo, expected_auc_hi, "
        "matured_expected_auc, realised_default_rate, realised_auc, realised_ks, backfilled_on "
        "from monitor.performance where as_of_date = ? order by vintage = 'all' desc, "
        "population, vintage",
        "Loans originated since the champion's out-of-time start, PD at origination.",
    ),
    (
        "Realised vs expected loss by tier",
        "select bucket as tier, n_loans, n_matured, expected_default_rate, realised_default_rate,"
        " expected_loss, realised_loss, loss_ratio from monitor.loss "
        "where as_of_date = ? and dimension = 'tier' order by bucket",
        "Tier at origination from limits.financing_limits ('none': no limit row that day).",
    ),
    (
        "Realised vs expected loss by grade",
        "select bucket as grade, n_loans, n_matured, expected_default_rate, "
        "realised_default_rate, expected_loss, realised_loss, loss_ratio from monitor.loss "
        "where as_of_date = ? and dimension = 'grade' order by bucket",
        "",
    ),
    (
        "Realised vs expected loss by vintage, roll rates",
        "select bucket as vintage, n_loans, n_matured, expected_default_rate, "
        "realised_default_rate, expected_loss, realised_loss, dpd30_rate, roll_30_60, roll_60_90 "
        "from monitor.loss where as_of_date = ? and dimension = 'vintage' order by bucket",
        "Query: select * from monitor.loss where dimension in ('tier', 'vintage').",
    ),
    (
        "Stability against the training window",
        "select kind, variable, psi, band from monitor.stability where as_of_date = ? "
        "order by kind = 'score' desc, psi desc",
        "",
    ),
    (
        "Approval, take-up and utilisation",
        "select metric, value, numerator, denominator from monitor.business "
        "where as_of_date = ? order by metric",
        "",
    ),
    (
        "Reason-code mix",
        "select rank, reason_code, merchants, share, first_reason_share from monitor.reason_mix "
        "where as_of_date = ? order by rank",
        "",
    ),
)


def write_monitoring_page(con, path: Path, as_of_date, model_version: str) -> Path:
    """The champion's monitoring page for one night, from the monitor.* tables."""
    parts = [
        f"<h1>Monitoring: {html.escape(model_version)} on {as_of_date}</h1>",
        "<p>SR 11-7 ongoing monitoring and outcomes analysis; every figure below is a row of "
        "<code>monitor.*</code> in the warehouse and the published snapshot.</p>",
    ]
    for heading, sql, note in MONITOR_TABLES:
        cols, rows = _rows(con, sql, [as_of_date])
        parts += [f"<h2>{html.escape(heading)}</h2>", _table(cols, rows)]
        if note:
            parts.append(f"<p>{html.escape(note)}</p>")
        if heading.endswith("roll rates"):
            parts.append(_vintage_chart(con, as_of_date))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html_document(f"Monitoring {model_version}", parts), encoding="utf-8")
    return path
