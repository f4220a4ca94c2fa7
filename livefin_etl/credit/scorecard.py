"""Scorecard challenger: monotone WoE binning + logistic regression + points, exportable as SQL.

Written here rather than taken from ``optbinning`` (Apache-2.0): it pulls ``ortools`` (a 30 MB
native wheel with its own protobuf pin) for a MIP solver that a few-hundred-to-100k-row
retail scorecard does not need. The binning is the classic greedy one: quantile pre-bins, then
adjacent bins merged until the bad rate is monotone in the chosen direction and every bin
holds >= ``min_bin_share`` of the rows; missing values and special codes get their own bins.

WoE = ln(share of bads / share of goods) (positive = riskier), so fitted coefficients are
positive; a variable whose coefficient comes out <= 0 is dropped and the model refitted.
score = offset + factor * ln(odds good) on the model's own scale (600 at 50:1, PDO 20).
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from livefin_etl.config import LivefinError
from livefin_etl.credit import metrics as M
from livefin_etl.warehouse import quote_column, quote_literal

DEFAULTS = {
    "prebins": 20,
    "min_bin_share": 0.05,
    "min_level_share": 0.02,
    "min_iv": 0.02,
    "special_codes": [-999, -9999, -99999, -999999],
}
OTHER = "__other__"


@dataclass
class VarBins:
    """One variable's bins and WoE. numeric: ``edges`` split the range, bin i = [e_{i-1}, e_i)."""

    name: str
    kind: str  # "numeric" | "categorical"
    edges: list[float] = field(default_factory=list)
    woe: list[float] = field(default_factory=list)  # per range bin (numeric)
    levels: dict[str, float] = field(default_factory=dict)  # level -> WoE (categorical)
    special: dict[str, float] = field(default_factory=dict)  # code (as str) -> WoE
    missing_woe: float = 0.0
    other_woe: float = 0.0
    iv: float = 0.0
    direction: int = 0

    def transform(self, s: pd.Series) -> np.ndarray:
        """WoE of every value (float64); unseen levels/codes take the neutral or 'other' WoE."""
        if self.kind == "categorical":
            v = s.astype("string")
            out = v.map(lambda x: self.levels.get(x, self.other_woe) if x is not pd.NA else None)
            res = out.to_numpy(dtype=float, na_value=np.nan)
            return np.where(v.isna().to_numpy(), self.missing_woe, res)
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out = np.asarray(self.woe, dtype=float)[np.searchsorted(self.edges, x, side="right")]
        for code, w in self.special.items():
            out = np.where(x == float(code), w, out)
        return np.where(np.isnan(x), self.missing_woe, out)


def _woe(bad: np.ndarray, good: np.ndarray, B: float, G: float) -> np.ndarray:
    # +0.5 smoothing keeps WoE finite for a bin with no bads or no goods
    return np.log(((bad + 0.5) / (B + 0.5)) / ((good + 0.5) / (G + 0.5)))


def _iv(bad: np.ndarray, good: np.ndarray, B: float, G: float) -> float:
    w = _woe(bad, good, B, G)
    return float(np.sum((bad / max(B, 1) - good / max(G, 1)) * w))


def _merge_monotone(cnt: list[float], bad: list[float], direction: int, min_n: float):
    """Merge adjacent bins (lists of [n, bads, right-edge index]) until monotone and big enough."""
    bins = [[n, b, i] for i, (n, b) in enumerate(zip(cnt, bad, strict=True)) if n > 0]
    changed = True
    while changed and len(bins) > 1:
        changed = False
        rates = [b / n for n, b, _ in bins]
        small = [i for i, (n, _, _) in enumerate(bins) if n < min_n]
        viol = [i for i in range(len(bins) - 1) if (rates[i + 1] - rates[i]) * direction < 0]
        if viol:
            i = viol[0]
        elif small:
            j = small[0]  # merge a small bin into its closer-rate neighbour
            i = (
                j - 1
                if j == len(bins) - 1
                or (j > 0 and abs(rates[j] - rates[j - 1]) <= abs(rates[j] - rates[j + 1]))
                else j
            )
        else:
            break
        n1, b1, _ = bins[i]
        n2, b2, e2 = bins[i + 1]
        bins[i : i + 2] = [[n1 + n2, b1 + b2, e2]]
        changed = True
    return bins


def _bin_numeric(name: str, x: np.ndarray, y: np.ndarray, direction: int, opts: dict) -> VarBins:
    B, G = float(y.sum()), float(len(y) - y.sum())
    special_codes = [float(c) for c in opts["special_codes"]]
    is_sp = np.isin(x, special_codes)
    is_na = np.isnan(x)
    ok = ~is_sp & ~is_na
    xs, ys = x[ok], y[ok]
    vb = VarBins(name, "numeric")
    bad_parts, good_parts = [], []
    if ok.sum() > 0:
        qs = np.quantile(xs, np.linspace(0, 1, int(opts["prebins"]) + 1)[1:-1])
        edges = np.unique(qs)
        edges = edges[edges > xs.min()]  # no empty first bin
        idx = np.searchsorted(edges, xs, side="right")
        cnt = np.bincount(idx, minlength=len(edges) + 1).astype(float)
        bad = np.bincount(idx, weights=ys, minlength=len(edges) + 1)
        if direction == 0:  # the data's own trend: sign of the rank correlation over bins
            rate = bad[cnt > 0] / cnt[cnt > 0]
            c = np.corrcoef(np.arange(len(rate)), rate)[0, 1] if len(rate) > 1 else 1.0
            direction = 1 if not np.isfinite(c) or c >= 0 else -1
        merged = _merge_monotone(list(cnt), list(bad), direction, opts["min_bin_share"] * len(y))
        vb.edges = [float(edges[e]) for _, _, e in merged[:-1]]
        mb = np.array([b for _, b, _ in merged])
        mg = np.array([n - b for n, b, _ in merged])
        vb.woe = [float(w) for w in _woe(mb, mg, B, G)]
        bad_parts.append(mb)
        good_parts.append(mg)
    else:
        vb.woe = [0.0]
    vb.direction = direction
    for code in sorted(set(x[is_sp].tolist())):
        m = x == code
        b, g = float(y[m].sum()), float(m.sum() - y[m].sum())
        vb.special[repr(float(code))] = float(_woe(np.array(b), np.array(g), B, G))
        bad_parts.append(np.array([b]))
        good_parts.append(np.array([g]))
    if is_na.any():
        b, g = float(y[is_na].sum()), float(is_na.sum() - y[is_na].sum())
        vb.missing_woe = float(_woe(np.array(b), np.array(g), B, G))
        bad_parts.append(np.array([b]))
        good_parts.append(np.array([g]))
    vb.iv = _iv(np.concatenate(bad_parts), np.concatenate(good_parts), B, G)
    return vb


def _bin_categorical(name: str, s: pd.Series, y: np.ndarray, opts: dict) -> VarBins:
    B, G = float(y.sum()), float(len(y) - y.sum())
    v = s.astype("string")
    na = v.isna().to_numpy()
    counts = v[~na].value_counts()
    keep = set(counts.index[counts >= opts["min_level_share"] * len(y)])
    grp = np.where(na, "\x00na", np.where(v.isin(keep).to_numpy(), v.fillna(""), OTHER))
    vb = VarBins(name, "categorical")
    bads, goods = [], []
    for g in pd.unique(grp):
        m = grp == g
        b, gd = float(y[m].sum()), float(m.sum() - y[m].sum())
        w = float(_woe(np.array(b), np.array(gd), B, G))
        bads.append(b)
        goods.append(gd)
        if g == "\x00na":
            vb.missing_woe = w
        elif g == OTHER:
            vb.other_woe = w
        else:
            vb.levels[str(g)] = w
    vb.iv = _iv(np.array(bads), np.array(goods), B, G)
    return vb


@dataclass
class Scorecard:
    variables: list[VarBins]
    coefs: list[float]
    intercept: float
    offset: float
    factor: float
    C: float = 1.0
    dropped: dict[str, str] = field(default_factory=dict)  # variable -> why it is not used

    def woe_matrix(self, df: pd.DataFrame) -> np.ndarray:
        if not self.variables:
            return np.zeros((len(df), 0))
        return np.column_stack([v.transform(df[v.name]) for v in self.variables])

    def points(self, df: pd.DataFrame) -> np.ndarray:
        """Unrounded score, summed in the same order as the SQL export."""
        W = self.woe_matrix(df)
        total = np.full(len(df), self.offset - self.factor * self.intercept)
        for j, c in enumerate(self.coefs):
            total = total + (-self.factor * c) * W[:, j]
        return total

    def predict_pd(self, df: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp((self.points(df) - self.offset) / self.factor))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scorecard:
        d = dict(data)
        d["variables"] = [VarBins(**v) for v in d["variables"]]
        return cls(**d)


def _lit(x: float) -> str:
    # scientific notation: DuckDB reads it as DOUBLE (a plain 3.5 would be DECIMAL first)
    return f"{float(x):.17e}"


def _case_sql(v: VarBins, coef: float, factor: float) -> str:
    pts = [-factor * coef * w for w in v.woe]
    col = quote_column(v.name)
    if v.kind == "categorical":
        s = f"CAST({col} AS VARCHAR)"
        arms = [f"WHEN {col} IS NULL THEN {_lit(-factor * coef * v.missing_woe)}"]
        arms += [
            f"WHEN {s} = {quote_literal(lv)} THEN {_lit(-factor * coef * w)}"
            for lv, w in v.levels.items()
        ]
        return f"CASE {' '.join(arms)} ELSE {_lit(-factor * coef * v.other_woe)} END"
    x = f"TRY_CAST({col} AS DOUBLE)"
    arms = [f"WHEN {x} IS NULL OR isnan({x}) THEN {_lit(-factor * coef * v.missing_woe)}"]
    arms += [
        f"WHEN {x} = {_lit(float(code))} THEN {_lit(-factor * coef * w)}"
        for code, w in v.special.items()
    ]
    arms += [f"WHEN {x} < {_lit(e)} THEN {_lit(p)}" for e, p in zip(v.edges, pts, strict=False)]
    return f"CASE {' '.join(arms)} ELSE {_lit(pts[-1])} END"


def to_sql(sc: Scorecard, table: str, keys: list[str] | None = None) -> str:
    """A SELECT that scores every row of ``table`` (a name or a parenthesised query): the
    ``keys`` columns (all columns when None), ``scorecard_score`` (unrounded points) and
    ``scorecard_pd``; equal to :meth:`Scorecard.points` / ``predict_pd`` within 1e-6."""
    terms = [_lit(sc.offset - sc.factor * sc.intercept)]
    terms += [
        f"({_case_sql(v, c, sc.factor)})" for v, c in zip(sc.variables, sc.coefs, strict=True)
    ]
    cols = (
        "*" if keys is None else "".join(f"{quote_column(k)}, " for k in keys) + "scorecard_score"
    )
    pd_sql = f"1.0 / (1.0 + exp((scorecard_score - {_lit(sc.offset)}) / {_lit(sc.factor)}))"
    score_sql = "\n  + ".join(terms)
    return (
        f"SELECT {cols}, {pd_sql} AS scorecard_pd\n"
        f"FROM (SELECT *,\n  {score_sql} AS scorecard_score\nFROM {table}) AS s"
    )


def _fit_lr(W: np.ndarray, y: np.ndarray, seed: int) -> tuple[LogisticRegression, float]:
    """L2 logistic on WoE; C by 3-fold CV AUC on the training rows only."""
    best_c, best = 1.0, -1.0
    if len(np.unique(y)) == 2 and np.bincount(y).min() >= 3:
        folds = StratifiedKFold(3, shuffle=True, random_state=seed)
        for c in (0.03, 0.1, 0.3, 1.0):
            lr = LogisticRegression(C=c, max_iter=2000)
            s = cross_val_score(lr, W, y, cv=folds, scoring="roc_auc").mean()
            if s > best + 1e-9:
                best_c, best = c, s
    return LogisticRegression(C=best_c, max_iter=2000).fit(W, y), best_c


def fit_scorecard(
    df: pd.DataFrame,
    y: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    cfg: dict[str, Any],
    monotone: dict[str, int] | None = None,
    seed: int = 0,
) -> Scorecard:
    """Bin every feature, keep those with IV >= min_iv, fit the logistic on WoE, drop any
    variable with a non-positive coefficient (it would reverse its own WoE trend) and refit."""
    opts = {**DEFAULTS, **(cfg.get("scorecard_challenger") or {})}
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        raise LivefinError("scorecard: the training rows have a single class")
    monotone = monotone or {}
    bins: list[VarBins] = []
    dropped: dict[str, str] = {}
    for c in numeric:
        x = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bins.append(_bin_numeric(c, x, y, int(monotone.get(c, 0)), opts))
    bins += [_bin_categorical(c, df[c], y, opts) for c in categorical]
    for v in bins:
        if v.iv < opts["min_iv"]:
            dropped[v.name] = f"IV {v.iv:.4f} < {opts['min_iv']}"
    bins = [v for v in bins if v.name not in dropped]
    offset, factor = M.scorecard_params(cfg)
    while True:
        W = np.column_stack([v.transform(df[v.name]) for v in bins]) if bins else None
        if W is None:
            raise LivefinError("scorecard: no variable has information value >= min_iv")
        lr, C = _fit_lr(W, y, seed)
        coefs = lr.coef_[0]
        bad = [i for i, c in enumerate(coefs) if c <= 0]
        if not bad:
            break
        worst = min(bad, key=lambda i: coefs[i])
        dropped[bins[worst].name] = f"coefficient {coefs[worst]:.4f} <= 0 with the others in"
        bins.pop(worst)
    return Scorecard(
        bins, [float(c) for c in coefs], float(lr.intercept_[0]), offset, factor, C, dropped
    )


def evaluate_scorecard(
    sc: Scorecard, df_ref: pd.DataFrame, y_ref: np.ndarray, df_eval: pd.DataFrame, y_eval
) -> dict[str, Any]:
    """Same metrics as the XGBoost model: AUC/Gini/KS/Brier on eval, score PSI ref -> eval."""
    p_ref, p_ev = sc.predict_pd(df_ref), sc.predict_pd(df_eval)
    psi = M.psi(p_ref, p_ev)
    return {
        **M.discrimination(np.asarray(y_eval), p_ev),
        "brier": M.brier(np.asarray(y_eval), p_ev),
        "psi_score": psi,
        "psi_band": M.psi_band(psi),
        "train": M.discrimination(np.asarray(y_ref), p_ref),
        "variables": [v.name for v in sc.variables],
        "dropped": sc.dropped,
    }


def report_section(metrics: dict[str, Any], sc: Scorecard | None) -> str:
    """HTML for the model report: the challenger's metrics beside XGBoost's, and its points."""
    s = metrics.get("scorecard")
    if not s or sc is None:
        return ""
    x = metrics["model"]
    row = "<tr><td>{}</td>" + "<td>{:.4f}</td>" * 4 + "<td>{}</td></tr>"
    psi = metrics.get("psi_score", float("nan"))
    head = "<tr><th>model</th><th>AUC</th><th>KS</th><th>Brier</th><th>PSI</th><th>band</th></tr>"
    rows = row.format("XGBoost", x["auc"], x["ks"], x["brier"], psi, M.psi_band(psi))
    rows += row.format(
        "WoE scorecard", s["auc"], s["ks"], s["brier"], s["psi_score"], s["psi_band"]
    )
    pts = []
    for v, c in zip(sc.variables, sc.coefs, strict=True):
        pts.append(f"<tr><td>{html.escape(v.name)}</td><td>{v.iv:.3f}</td><td>{c:.3f}</td></tr>")
    dropped = "".join(
        f"<li>{html.escape(k)}: {html.escape(why)}</li>" for k, why in sc.dropped.items()
    )
    return (
        "<h2>Scorecard challenger (WoE + logistic)</h2>"
        f"<table>{head}{rows}</table>"
        "<p>Same evaluation window as XGBoost. The scorecard ships as plain SQL "
        "(<code>scorecard.sql</code>) next to the model.</p>"
        "<table><tr><th>variable</th><th>IV</th><th>coefficient</th></tr>"
        f"{''.join(pts)}</table>" + (f"<p>Not used:</p><ul>{dropped}</ul>" if dropped else "")
    )
