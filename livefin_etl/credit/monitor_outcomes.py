"""Loan outcomes for monitoring: PD at origination, CBPE performance estimates, realised AUC/KS,
realised vs expected default and loss by grade, tier and vintage, vintage curves, roll rates.

The population is every loan originated on or after the champion's out-of-time start (it was
never fitted on them), scored with the champion on its origination-date features (point in
time, as the nightly score of that date would be)."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from livefin_etl.config import SQL_DIR, load_config
from livefin_etl.credit import metrics as M
from livefin_etl.warehouse import registered, render_sql, table_exists

Night = Any  # credit.monitor.Night (not imported: monitor imports this module)


def sql(name: str, **params: object) -> str:
    """``sql/monitor/<name>.sql`` with its ``{{ params }}`` rendered as literals."""
    return render_sql((SQL_DIR / "monitor" / f"{name}.sql").read_text(encoding="utf-8"), params)


def model_pd(model: Any, frame: pd.DataFrame, threads: int) -> np.ndarray:
    """Calibrated PD of the champion for a feature frame (no SHAP: monitoring needs no reasons)."""
    import xgboost as xgb

    if frame.empty:
        return np.array([], dtype=float)
    dm = xgb.DMatrix(
        model.spec.matrix(frame), feature_names=model.spec.xgb_columns, nthread=threads
    )
    model.booster.set_param({"nthread": int(threads)})
    margin = model.booster.predict(dm, output_margin=True).astype(np.float64)
    cal = model.cfg["calibration"]
    return M.apply_calibrator(
        model.calibrator, margin, cal.get("pd_floor", 3e-4), cal.get("pd_cap", 0.9997)
    )


# --------------------------------------------------------------------------- CBPE


def expected_auc_ks(pd_: np.ndarray) -> tuple[float, float]:
    """AUC and KS expected if each loan defaults with its (calibrated) PD: NannyML's CBPE.

    AUC = Σ_i Σ_{j≠i} p_i (1 − p_j) [s_i > s_j] / Σ_i Σ_{j≠i} p_i (1 − p_j), ties counting
    one half; KS = max |expected TPR − expected FPR| over thresholds. No labels needed."""
    p = np.asarray(pd_, dtype=float)
    p = p[~np.isnan(p)]
    if len(p) < 2:
        return float("nan"), float("nan")
    values, inverse = np.unique(p, return_inverse=True)  # ascending groups of equal PD
    pos_g = np.bincount(inverse, weights=p)
    neg_g = np.bincount(inverse, weights=1 - p)
    below = np.cumsum(neg_g) - neg_g  # expected goods strictly below each group
    neg_i = 1 - p
    same_other = neg_g[inverse] - neg_i  # expected goods tied with i, i itself excluded
    num = float(np.sum(p * (below[inverse] + 0.5 * same_other)))
    den = float(np.sum(p * (neg_g.sum() - neg_i)))
    auc = num / den if den > 0 else float("nan")
    tpr = np.cumsum(pos_g[::-1]) / pos_g.sum()  # thresholds from the riskiest group down
    fpr = np.cumsum(neg_g[::-1]) / neg_g.sum()
    return auc, float(np.max(np.abs(tpr - fpr)))


def expected_auc_interval(pd_: np.ndarray, draws: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% interval of the AUC the loans would realise if the PDs are right: labels drawn from
    the PDs (parametric bootstrap), ranked by the same PDs. A realised AUC outside it says the
    PDs' spread is wrong; inside it, the gap to the CBPE estimate is sampling noise."""
    p = np.asarray(pd_, dtype=float)
    p = p[~np.isnan(p)]
    if len(p) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    aucs = [M._fast_auc_ks((rng.random(len(p)) < p).astype(int), p)[0] for _ in range(draws)]
    lo, hi = np.nanquantile(np.asarray(aucs, dtype=float), [0.025, 0.975])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- the loan frame


def loan_frame(night: Night, oot_from: date) -> pd.DataFrame:
    """Loans since ``oot_from`` with outcome so far, PD / grade at origination and tier;
    ``scored`` is False (PD NaN) where the origination date has no features row."""
    target = night.model.cfg["target"]
    con = night.con
    loans = con.execute(
        sql(
            "loan_outcomes",
            from_date=oot_from,
            as_of_date=night.as_of_date,
            horizon=int(target["horizon_days"]),
            dpd_threshold=int(target["dpd_threshold"]),
        )
    ).df()
    tier = "l.tier" if table_exists(con, "limits.financing_limits") else "null"
    join = (
        "left join limits.financing_limits l on l.merchant_id = o.merchant_id "
        "and l.as_of_date = o.origination_date"
        if tier != "null"
        else ""
    )
    with registered(con, "_monitor_loans", loans):
        frame = con.execute(
            f"select o.*, {tier} as tier, f.merchant_id is not null as scored, "
            "f.* exclude (merchant_id, as_of_date) "
            "from _monitor_loans o left join features.merchant_features f "
            "on f.merchant_id = o.merchant_id and f.as_of_date = o.origination_date "
            f"{join} order by o.origination_date, o.loan_id"
        ).df()
    # PD at origination only where the origination date has features (a nightly date, or a
    # training spine); the other loans still count in the vintage curves
    scored = frame["scored"].astype(bool).to_numpy()
    frame["pd"] = np.nan
    frame.loc[scored, "pd"] = model_pd(night.model, frame[scored], night.threads)
    frame["grade"] = "unscored"
    if scored.any():
        frame.loc[scored, "grade"] = M.pd_to_grade(
            frame.loc[scored, "pd"].to_numpy(), night.model.cfg
        )
    frame["scored"] = scored
    frame["tier"] = frame["tier"].fillna("none")
    frame["is_default"] = frame["first_default"].notna().astype(int)
    frame["matured"] = frame["matured"].astype(bool)
    frame["vintage"] = pd.to_datetime(frame["origination_date"]).dt.strftime("%Y-%m")
    keep = ["loan_id", "origination_date", "principal", "matured", "max_dpd", "first_dpd30"]
    keep += ["first_default", "ever60", "ever90", "last_outstanding", "tier", "pd", "grade"]
    return frame[[*keep, "scored", "is_default", "vintage"]]


# --------------------------------------------------------------------------- performance


def _perf(group: pd.DataFrame) -> dict[str, Any]:
    mat = group[group["matured"]]
    y, p = mat["is_default"].to_numpy(), mat["pd"].to_numpy()
    auc, ks = M.auc_ks(y, p) if len(mat) else (float("nan"), float("nan"))
    e_auc, e_ks = expected_auc_ks(group["pd"].to_numpy())
    lo, hi = expected_auc_interval(group["pd"].to_numpy())
    return {
        "n_loans": len(group),
        "n_matured": len(mat),
        "n_defaults": int(y.sum()),
        "expected_default_rate": float(group["pd"].mean()) if len(group) else None,
        "expected_auc": e_auc,
        "expected_auc_lo": lo,
        "expected_auc_hi": hi,
        "expected_ks": e_ks,
        "realised_default_rate": float(y.mean()) if len(mat) else None,
        "realised_auc": auc,
        "realised_ks": ks,
        "matured_expected_auc": expected_auc_ks(p)[0],
        "backfilled_on": None,
    }


def performance_rows(night: Night, loans: pd.DataFrame) -> pd.DataFrame:
    """CBPE estimate and realised AUC/KS: all, matured and immature loans, then per vintage."""
    rows = [
        {"population": name, "vintage": "all", **_perf(part)}
        for name, part in (
            ("all", loans),
            ("matured", loans[loans["matured"]]),
            ("immature", loans[~loans["matured"]]),
        )
    ]
    rows += [{"population": "all", "vintage": v, **_perf(g)} for v, g in loans.groupby("vintage")]
    out = pd.DataFrame(rows)
    cols = ("expected_auc", "expected_auc_lo", "expected_auc_hi", "expected_ks")
    for col in (*cols, "realised_auc", "realised_ks"):
        out[col] = out[col].astype(float).where(np.isfinite(out[col].astype(float)))
    out["matured_expected_auc"] = out["matured_expected_auc"].astype(float)
    out["matured_expected_auc"] = out["matured_expected_auc"].where(
        np.isfinite(out["matured_expected_auc"])
    )
    return night.stamp(out)


def backfill(night: Night) -> int:
    """Fill realised figures on earlier nights' vintage rows whose loans have all matured now:
    each night's estimate stays as it was made, the outcome arrives beside it."""
    con = night.con
    before = con.execute(
        "select count(*) from monitor.performance where backfilled_on = ?", [night.as_of_date]
    ).fetchone()[0]
    con.execute(
        """
        update monitor.performance p
        set realised_default_rate = t.realised_default_rate, realised_auc = t.realised_auc,
            realised_ks = t.realised_ks, matured_expected_auc = p.expected_auc,
            backfilled_on = t.as_of_date
        from monitor.performance t
        where t.as_of_date = ? and t.run_id = ? and t.vintage <> 'all'
          and t.n_matured = t.n_loans and p.vintage = t.vintage
          and p.population = t.population and p.model_version = t.model_version
          and p.as_of_date < t.as_of_date and p.n_matured < p.n_loans
          and p.backfilled_on is null
        """,
        [night.as_of_date, night.run_id],
    )
    after = con.execute(
        "select count(*) from monitor.performance where backfilled_on = ?", [night.as_of_date]
    ).fetchone()[0]
    return int(after - before)


# --------------------------------------------------------------------------- loss and vintages


def _share(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _loss(group: pd.DataFrame, lgd: float) -> dict[str, Any]:
    mat = group[group["matured"]]
    exp_dr = float(mat["pd"].mean()) if len(mat) else None
    real_dr = float(mat["is_default"].mean()) if len(mat) else None
    exp_loss = float((mat["pd"] * lgd * mat["principal"]).sum())
    real_loss = float(mat.loc[mat["is_default"] == 1, "last_outstanding"].fillna(0).sum())
    d30 = int(group["first_dpd30"].notna().sum())
    d60, d90 = int(group["ever60"].fillna(False).sum()), int(group["ever90"].fillna(False).sum())
    return {
        "n_loans": len(group),
        "n_matured": len(mat),
        "principal": float(mat["principal"].sum()),
        "expected_default_rate": exp_dr,
        "realised_default_rate": real_dr,
        "default_ratio": _share(real_dr or 0.0, exp_dr) if exp_dr else None,
        "expected_loss": exp_loss,
        "realised_loss": real_loss,
        "loss_ratio": _share(real_loss, exp_loss) if exp_loss else None,
        "dpd30_rate": _share(d30, len(group)),
        "dpd60_rate": _share(d60, len(group)),
        "dpd90_rate": _share(d90, len(group)),
        "roll_30_60": _share(d60, d30),
        "roll_60_90": _share(d90, d60),
    }


def loss_rows(night: Night, loans: pd.DataFrame) -> pd.DataFrame:
    """Realised vs expected default and loss by grade, tier and origination month."""
    lgd = float(load_config("policy").get("lgd", 0.75))
    rows = [
        {"dimension": dim, "bucket": str(key), **_loss(g, lgd)}
        for dim in ("grade", "tier", "vintage")
        for key, g in loans.groupby(dim)
    ]
    cols = ["dimension", "bucket", *_loss(loans.iloc[:0], lgd)]
    return night.stamp(pd.DataFrame(rows, columns=cols))


def vintage_rows(night: Night, loans: pd.DataFrame) -> pd.DataFrame:
    """Cumulative default and 30+ dpd rates by origination month and months on book (30 days)."""
    months = int(night.cfg["loss"].get("vintage_months", 6))
    as_of = pd.Timestamp(night.as_of_date)
    orig = pd.to_datetime(loans["origination_date"])
    first_bad = pd.to_datetime(loans["first_default"])
    first_30 = pd.to_datetime(loans["first_dpd30"])
    rows = []
    for mob in range(1, months + 1):
        end = orig + pd.Timedelta(days=30 * mob)
        seen = end <= as_of  # only loans observed for the whole of this month on book
        for vintage, idx in loans[seen].groupby("vintage").groups.items():
            rows.append(
                {
                    "vintage": vintage,
                    "months_on_book": mob,
                    "n_loans": len(idx),
                    "cum_default_rate": float((first_bad[idx] < end[idx]).mean()),
                    "cum_dpd30_rate": float((first_30[idx] < end[idx]).mean()),
                }
            )
    cols = ["vintage", "months_on_book", "n_loans", "cum_default_rate", "cum_dpd30_rate"]
    return night.stamp(pd.DataFrame(rows, columns=cols))
