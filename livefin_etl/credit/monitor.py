"""Nightly model monitoring (SR 11-7 ongoing monitoring and outcomes analysis): the stage
``monitor`` after score and limits, its ``monitor.*`` tables and the ``livefin status`` view.

Stability is measured against the champion's own training window (rebuilt once per model from
the point-in-time training set and kept as bins in ``monitor.reference``); performance on the
loans the champion never fitted on (origination on or after its out-of-time start), estimated
from the calibrated PDs before labels mature (CBPE) and realised once they do. Loan outcomes,
vintages and roll rates come from ``raw.loans`` and ``raw.repayments`` (monitor_outcomes)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from livefin_etl.config import LivefinError, StageBlocked, load_config
from livefin_etl.credit import monitor_outcomes as O
from livefin_etl.credit.artifacts import LoadedModel
from livefin_etl.credit.monitor_outcomes import model_pd
from livefin_etl.credit.registry import current_champion, load_champion
from livefin_etl.warehouse import insert_frame, run_ddl, table_exists, transaction

log = logging.getLogger(__name__)

TABLES = ("stability", "performance", "loss", "vintage", "business", "reason_mix", "verdicts")
SCORE_VARIABLE = "pd"  # the score's PSI is computed on the calibrated PD (same ranking)
EPS = 1e-4  # as metrics.psi: empty bins would make ln(A/E) infinite


class MonitoringBreach(StageBlocked):
    """An ``act`` verdict with ``on_act: fail``: the night's rows are written, the date blocked."""


def monitoring_config(config: dict[str, Any] | None = None) -> dict[str, Any]:
    return config if config is not None else load_config("monitoring")


@dataclass
class Night:
    con: duckdb.DuckDBPyConnection
    as_of_date: date
    run_id: str
    model: LoadedModel
    champion: dict[str, Any]
    cfg: dict[str, Any]
    threads: int

    def stamp(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every monitor row says which night, model, run and thresholds produced it."""
        frame.insert(0, "as_of_date", self.as_of_date)
        frame.insert(1, "model_version", self.model.version)
        frame.insert(2, "run_id", self.run_id)
        frame.insert(3, "monitoring_version", str(self.cfg["version"]))
        return frame


# --------------------------------------------------------------------------- PSI on stored bins


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior quantile edges of the reference values (as ``metrics.psi``)."""
    ok = values[~np.isnan(values)]
    return (
        np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(ok) else np.array([])
    )


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (``len(edges) + 1`` numeric bins), the missing values' count last."""
    ok = values[~np.isnan(values)]
    numeric = np.bincount(np.searchsorted(edges, ok, side="right"), minlength=len(edges) + 1)
    return np.append(numeric, np.isnan(values).sum())


def psi_from_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = Σ (A − E)·ln(A/E) over shared bins; equals ``metrics.psi`` on the raw values."""
    n_e, n_a = expected.sum(), actual.sum()
    if n_e == 0 or n_a == 0:
        return float("nan")
    ep = np.maximum(expected / n_e, EPS)
    ap = np.maximum(actual / n_a, EPS)
    keep = (expected + actual) > 0
    return float(np.sum((ap[keep] - ep[keep]) * np.log(ap[keep] / ep[keep])))


def band(value: float | None, watch: float, act: float) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return "stable" if value < watch else ("watch" if value < act else "act")


# --------------------------------------------------------------------------- reference


def _build_reference(night: Night) -> pd.DataFrame:
    """Bins of PD and every numeric feature on the champion's train window (once per model)."""
    from livefin_etl.credit.dataset import build_training_set

    champ, model = night.champion, night.model
    df = build_training_set(night.con, champ["as_of_date"], model.cfg, ensure_features=None)
    train = df[df["split"] == "train"]
    oot = df.loc[df["split"] == "oot", "origination_date"]
    variables = {SCORE_VARIABLE: model_pd(model, train, night.threads)}
    # a feature blanked in training (lookback before the data start) has no reference: the
    # model never split on it, so its drift cannot move the score
    variables.update(
        {
            c: train[c].to_numpy(dtype=float, na_value=np.nan)
            for c in model.spec.numeric
            if train[c].notna().any()
        }
    )
    bins = int(night.cfg["stability"].get("bins", 10))
    rows = []
    for name, values in variables.items():
        edges = bin_edges(values, bins)
        counts = bin_counts(values, edges)
        for i, n in enumerate(counts):
            missing = i == len(counts) - 1
            upper = None if missing or i >= len(edges) else float(edges[i])
            rows.append((name, -1 if missing else i, upper, int(n)))
    out = pd.DataFrame(rows, columns=["variable", "bin", "upper_edge", "expected_count"])
    out.insert(0, "model_version", model.version)
    out["n_reference"] = len(train)
    out["train_from"] = pd.Timestamp(train["origination_date"].min()).date()
    out["train_to"] = pd.Timestamp(train["origination_date"].max()).date()
    out["oot_from"] = pd.Timestamp(oot.min()).date() if len(oot) else out["train_to"][0]
    out["built_at"] = datetime.now(UTC).replace(tzinfo=None)
    out["monitoring_version"] = str(night.cfg["version"])
    with transaction(night.con):
        night.con.execute("delete from monitor.reference where model_version = ?", [model.version])
        insert_frame(night.con, "monitor.reference", out)
    log.info("monitoring reference for %s: %s train loans", model.version, len(train))
    return out


def reference(night: Night) -> pd.DataFrame:
    ref = night.con.execute(
        "select * from monitor.reference where model_version = ? order by variable, bin",
        [night.model.version],
    ).df()
    return ref if len(ref) else _build_reference(night)


def _ref_bins(ref: pd.DataFrame, variable: str) -> tuple[np.ndarray, np.ndarray]:
    r = ref[ref["variable"] == variable]
    numeric = r[r["bin"] >= 0].sort_values("bin")
    edges = numeric["upper_edge"].dropna().to_numpy(dtype=float)
    counts = np.append(numeric["expected_count"].to_numpy(), r.loc[r["bin"] < 0, "expected_count"])
    return edges, counts.astype(float)


def stability_rows(night: Night, ref: pd.DataFrame) -> pd.DataFrame:
    """Score PSI and per-feature CSI of tonight's scored merchants against the train window."""
    scored = night.con.execute(
        "select f.*, s.pd from credit.merchant_scores s join features.merchant_features f "
        "on f.merchant_id = s.merchant_id and f.as_of_date = s.as_of_date "
        "where s.as_of_date = ? and s.model_version = ?",
        [night.as_of_date, night.model.version],
    ).df()
    st = night.cfg["stability"]
    active = st.get("active_column")
    if active and active in scored.columns:
        # like with like: the reference (funded loans) is all active merchants
        scored = scored[scored[active].fillna(0) > 0]
    rows = []
    for variable in [SCORE_VARIABLE, *night.model.spec.numeric]:
        if variable not in set(ref["variable"]) or variable not in scored.columns:
            continue
        edges, expected = _ref_bins(ref, variable)
        values = scored[variable].to_numpy(dtype=float, na_value=np.nan)
        value = psi_from_counts(expected, bin_counts(values, edges).astype(float))
        rows.append(
            {
                "kind": "score" if variable == SCORE_VARIABLE else "feature",
                "variable": variable,
                "psi": value,
                "band": band(value, float(st["watch"]), float(st["act"])),
                "n_reference": int(expected.sum()),
                "n_actual": len(values),
            }
        )
    return night.stamp(pd.DataFrame(rows))


# --------------------------------------------------------------------------- business + reasons


def business_rows(night: Night) -> pd.DataFrame:
    if not table_exists(night.con, "limits.financing_limits"):
        return night.stamp(pd.DataFrame(columns=["metric", "value", "numerator", "denominator"]))
    df = night.con.execute(O.sql("business", as_of_date=night.as_of_date)).df()
    den = df["denominator"].astype(float)
    df["value"] = np.where(den > 0, df["numerator"].astype(float) / den.where(den > 0, 1), np.nan)
    return night.stamp(df[["metric", "value", "numerator", "denominator"]])


def reason_rows(night: Night) -> pd.DataFrame:
    """Share of scored merchants citing each reason code (any slot) and as their first reason."""
    top_n = int(night.cfg["reasons"].get("top_n", 10))
    df = night.con.execute(
        """
        with s as (
            select * from credit.merchant_scores where as_of_date = ? and model_version = ?
        ), cited as (
            select merchant_id, unnest([reason_code_1, reason_code_2, reason_code_3,
                                        reason_code_4]) as reason_code, reason_code_1
            from s
        )
        select reason_code, count(distinct merchant_id) as merchants,
               count(distinct merchant_id) filter (where reason_code = reason_code_1) as firsts,
               (select count(*) from s) as total
        from cited where reason_code is not null
        group by reason_code order by merchants desc, reason_code
        """,
        [night.as_of_date, night.model.version],
    ).df()
    if len(df) > top_n:
        rest = df.iloc[top_n:]
        other = {"reason_code": "OTHER", "merchants": rest["merchants"].sum(), "firsts": 0}
        other.update(firsts=rest["firsts"].sum(), total=df["total"].iloc[0])
        df = pd.concat([df.iloc[:top_n], pd.DataFrame([other])], ignore_index=True)
    total = df["total"].astype(float).where(df["total"] > 0, np.nan) if len(df) else df["total"]
    out = pd.DataFrame(
        {
            "reason_code": df["reason_code"],
            "rank": np.arange(1, len(df) + 1),
            "merchants": df["merchants"],
            "share": df["merchants"] / total,
            "first_reason_share": df["firsts"] / total,
        }
    )
    return night.stamp(out)


# --------------------------------------------------------------------------- verdicts


def _verdict(name: str, value: float | None, watch: float, act: float, message: str) -> dict:
    return {
        "check_name": name,
        "value": value,
        "watch": watch,
        "act": act,
        "verdict": band(value, watch, act),
        "message": message,
    }


def verdict_rows(night: Night, stab: pd.DataFrame, perf: pd.DataFrame, loss: pd.DataFrame):
    cfg, champ = night.cfg, night.champion
    st, pf, ls = cfg["stability"], cfg["performance"], cfg["loss"]
    out = []
    for r in stab.itertuples():
        name = "score_psi" if r.kind == "score" else f"csi:{r.variable}"
        what = "score PSI" if r.kind == "score" else f"CSI of {r.variable}"
        msg = f"{what} {r.psi:.3f} vs the champion's training window ({r.band})"
        out.append(_verdict(name, r.psi, float(st["watch"]), float(st["act"]), msg))
    oot_auc = champ.get("auc_oot")
    pops = {
        p: perf[(perf["population"] == p) & (perf["vintage"] == "all")]
        for p in ("immature", "matured")
    }
    for name, pop, col, n_col, n_min in (
        ("expected_auc_drop", "immature", "expected_auc", "n_loans", int(pf["min_loans"])),
        ("realised_auc_drop", "matured", "realised_auc", "n_defaults", int(pf["min_defaults"])),
    ):
        row = pops[pop]
        auc = float(row[col].iloc[0]) if len(row) and pd.notna(row[col].iloc[0]) else None
        n = int(row[n_col].iloc[0]) if len(row) and n_col in row else 0
        drop = None if auc is None or oot_auc is None or n < n_min else float(oot_auc) - auc
        unit = "loans" if n_col == "n_loans" else "defaults"
        msg = (
            f"{col.replace('_', ' ')} {auc:.3f} on {pop} loans ({n} {unit}) vs champion oot AUC "
            f"{oot_auc:.3f}"
            if drop is not None
            else f"{col.replace('_', ' ')}: too few {pop} {unit} ({n} < {n_min}) for a verdict"
        )
        out.append(
            _verdict(name, drop, float(pf["auc_drop_watch"]), float(pf["auc_drop_act"]), msg)
        )
    out.append(_default_ratio_verdict(loss, pf, ls))
    return night.stamp(pd.DataFrame(out))


def _default_ratio_verdict(loss: pd.DataFrame, pf: dict, ls: dict) -> dict:
    """Realised / expected default rate on matured loans, symmetric bands (over- or under-)."""
    watch, act = float(ls["ratio_watch"]), float(ls["ratio_act"])
    total = loss[(loss["dimension"] == "vintage")]
    n = int(total["n_matured"].sum()) if len(total) else 0
    exp = float((total["expected_default_rate"] * total["n_matured"]).sum()) if n else 0.0
    real = float((total["realised_default_rate"] * total["n_matured"]).sum()) if n else 0.0
    if n < int(pf["min_loans"]) or exp <= 0:
        return _verdict(
            "default_ratio", None, watch, act, f"too few matured loans ({n}) for a verdict"
        )
    ratio = real / exp
    # a model that overstates risk by the same factor is as miscalibrated: fold to >= 1
    folded = max(ratio, 1 / ratio) if ratio > 0 else float("inf")
    msg = f"realised / expected defaults {ratio:.2f} on {n} matured loans ({real:.0f} vs {exp:.1f})"
    return _verdict("default_ratio", folded, watch, act, msg)


def _act_on(night: Night, verdicts: pd.DataFrame) -> list[str]:
    """Log watch verdicts, warn or fail on act ones (config ``on_act``); returns act messages."""
    on_act = str(night.cfg.get("on_act", "warn"))
    if on_act not in ("warn", "fail"):
        raise LivefinError(f"config/monitoring.yaml on_act must be warn or fail, not {on_act!r}")
    action = np.select(
        [verdicts["verdict"] == "act", verdicts["verdict"] == "watch"],
        ["failed" if on_act == "fail" else "warned", "logged"],
        "none",
    )
    verdicts["action"] = action
    for r in verdicts[verdicts["verdict"] == "watch"].itertuples():
        log.info("monitoring watch %s %s: %s", night.as_of_date, r.check_name, r.message)
    acts = [
        f"{r.check_name}: {r.message}" for r in verdicts[verdicts["verdict"] == "act"].itertuples()
    ]
    for msg in acts:
        log.warning("monitoring ACT %s model %s: %s", night.as_of_date, night.model.version, msg)
    return acts


# --------------------------------------------------------------------------- the stage


def _write(night: Night, frames: dict[str, pd.DataFrame]) -> None:
    """Replace the night's rows of every monitor table in one transaction."""
    with transaction(night.con):
        for name, frame in frames.items():
            table = f"monitor.{name}"
            night.con.execute(f"delete from {table} where as_of_date = ?", [night.as_of_date])
            insert_frame(night.con, table, frame)


def _monitoring_page(night: Night, settings: Any) -> Path:
    """The champion's monitoring page next to its model report (docs/models/<version>/)."""
    from livefin_etl.credit import report

    page = Path(settings.docs) / "models" / night.model.version / "monitoring.html"
    return report.write_monitoring_page(night.con, page, night.as_of_date, night.model.version)


def monitor(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    as_of_date: date,
    run_id: str,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fill the ``monitor.*`` tables for one night; returns counts and the act verdicts.

    Raises :class:`MonitoringBreach` after writing when a verdict is ``act`` and the config
    says ``on_act: fail``."""
    run_ddl(con, "monitor")
    champ = current_champion(con)
    if champ is None:
        raise StageBlocked(f"monitor {as_of_date}: no champion to monitor")
    cfg = monitoring_config(config)
    night = Night(con, as_of_date, run_id, load_champion(con), champ, cfg, settings.threads)
    ref = reference(night)
    loans = O.loan_frame(night, pd.Timestamp(ref["oot_from"].iloc[0]).date())
    scored = loans[loans["scored"]]
    frames = {
        "stability": stability_rows(night, ref),
        "performance": O.performance_rows(night, scored),
        "loss": O.loss_rows(night, scored),
        "vintage": O.vintage_rows(night, loans),  # the whole book: no PD needed
        "business": business_rows(night),
        "reason_mix": reason_rows(night),
    }
    verdicts = verdict_rows(night, frames["stability"], frames["performance"], frames["loss"])
    acts = _act_on(night, verdicts)
    frames["verdicts"] = verdicts.drop(columns=["n_defaults"], errors="ignore")
    frames["performance"] = frames["performance"].drop(columns=["n_defaults"])
    _write(night, frames)
    O.backfill(night)
    page = _monitoring_page(night, settings)
    counts = {f"monitor_{k}_rows": len(v) for k, v in frames.items()}
    worst = "act" if acts else ("watch" if (verdicts["verdict"] == "watch").any() else "stable")
    result = {
        **counts,
        "verdict": worst,
        "act_checks": [a.split(": ", 1)[0] for a in acts],  # check names, for XCom and logs
        "loans_monitored": len(loans),
        "loans_scored": len(scored),
        "monitoring_page": str(page),
    }
    if acts and cfg.get("on_act") == "fail":
        raise MonitoringBreach(
            f"monitoring {as_of_date}: {len(acts)} act verdict(s), e.g. {acts[0]}"
        )
    return result


# --------------------------------------------------------------------------- livefin status

# Each nightly stage and the table whose rows for a date say it ran.
STAGE_TABLES = (
    ("merchant_quality", "dq.merchant_quality"),
    ("features", "features.merchant_features"),
    ("value", "valuation.data_asset_values"),
    ("score", "credit.merchant_scores"),
    ("limits", "limits.financing_limits"),
    ("monitor", "monitor.verdicts"),
)


def latest_date(con: duckdb.DuckDBPyConnection) -> date | None:
    dates = [
        con.execute(f"select max(as_of_date) from {t}").fetchone()[0]
        for _, t in STAGE_TABLES
        if table_exists(con, t)
    ]
    dates = [d for d in dates if d is not None]
    return max(dates) if dates else None


def status(
    con: duckdb.DuckDBPyConnection, as_of_date: date | None, published: dict[str, Any] | None
) -> dict[str, Any]:
    """A date's stages (rows written or not), publication, and its watch / act verdicts."""
    as_of_date = as_of_date or latest_date(con)
    if as_of_date is None:
        raise LivefinError("nothing has run yet: no nightly stage wrote rows")
    stages = []
    for stage, table in STAGE_TABLES:
        n = (
            con.execute(
                f"select count(*) from {table} where as_of_date = ?", [as_of_date]
            ).fetchone()[0]
            if table_exists(con, table)
            else 0
        )
        stages.append({"stage": stage, "status": "done" if n else "not run", "rows": int(n)})
    done = bool(published) and published.get("as_of_date") == as_of_date.isoformat()
    stages.append(
        {"stage": "publish", "status": "published" if done else "not published", "rows": None}
    )
    verdicts: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    if table_exists(con, "monitor.verdicts"):
        cur = con.execute(
            "select check_name, verdict, value, action, message, model_version "
            "from monitor.verdicts where as_of_date = ? "
            "order by verdict = 'act' desc, verdict = 'watch' desc, value desc nulls last, "
            "check_name",
            [as_of_date],
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        for r in rows:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        verdicts = [r for r in rows if r["verdict"] in ("act", "watch")]
    overall = "act" if counts.get("act") else ("watch" if counts.get("watch") else "stable")
    return {
        "as_of_date": as_of_date.isoformat(),
        "stages": stages,
        "monitoring": overall if counts else "not run",
        "verdict_counts": counts,
        "verdicts": verdicts,
    }


def read_status(settings: Any, as_of_date: date | None = None) -> dict[str, Any]:
    """:func:`status` on a read-only connection (no writer lock: it may run beside a night)."""
    from livefin_etl import publish as pub
    from livefin_etl.warehouse import connect

    if not settings.warehouse.exists():
        raise LivefinError(f"no warehouse at {settings.warehouse}: run `livefin run` first")
    con = connect(settings, read_only=True)
    try:
        return status(con, as_of_date, pub.current(settings))
    finally:
        con.close()
