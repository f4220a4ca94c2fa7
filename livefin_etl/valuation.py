"""Data-asset valuation: cost, income and market approaches, reconciled (docs/valuation.md).

Follows the China Appraisal Society 《数据资产评估指导意见》 (2023): every approach is scaled by a
quality factor f(Q); all assumptions come from config/valuation.yaml and are written beside the
values in ``valuation.data_asset_values`` so a row can be re-derived by hand.

:func:`compute_values` is pure (numpy in, numpy out, scalars or arrays); :func:`build_values`
feeds it the features of D and the merchant's data volumes, :func:`explain_value` prints a row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from livefin_etl.config import SQL_DIR, LivefinError, load_config
from livefin_etl.features import ensure_table, table_spec
from livefin_etl.warehouse import replace_rows, run_ddl, run_sql_file, table_exists

log = logging.getLogger(__name__)

VALUES_TABLE = "valuation.data_asset_values"
SOURCES = ("merchants", "orders", "traffic", "fulfillment")
INPUTS = (
    "rows_merchants", "rows_orders", "rows_traffic", "rows_fulfillment", "history_days",
    "mean_record_age_days", "quality_q", "gmv_net_adj_365d", "tenure_days", "brushing_score",
    "margin", "comparable_price_per_1k", "scarcity_adj",
)  # fmt: skip
# GB/T 36344-2018 data-quality dimensions, each a measured share in [0, 1] (stg_valuation_inputs):
# conformity 规范性, completeness 完整性, accuracy 准确性, consistency 一致性, timeliness 时效性,
# accessibility 可访问性. Optional inputs: without them Q is the given quality_q.
DIMENSIONS = (
    "conformity", "completeness", "accuracy", "consistency", "timeliness", "accessibility",
)  # fmt: skip


@dataclass(frozen=True)
class Assumptions:
    """config/valuation.yaml, validated."""

    version: str
    currency: str
    quality_exponent: float
    obsolescence_per_year: float
    max_delta: float
    collect: dict[str, float]
    storage_per_1k_year: float
    processing_per_1k: float
    governance_per_source_year: float
    margin: dict[str, float]
    share: float
    discount_rate: float
    horizon_years: int
    decay: float
    brushing_haircut: float
    min_history_days: float
    price_per_1k: dict[str, float]
    comparable_q: float
    quality_adj_cap: float
    comparable_rows: float
    scale_exponent: float
    scarcity: dict[str, float]
    usage_rights: float
    w_cost: float
    w_income: float
    w_market: float
    dim_weights: dict[str, float]
    dim_floors: dict[str, float]
    inactive_grace_days: float
    inactive_half_life_days: float

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Assumptions:
        try:
            c, i, m, w = cfg["cost"], cfg["income"], cfg["market"], cfg["weights"]
            a = cls(
                version=str(cfg["version"]),
                currency=str(cfg.get("currency", "CNY")),
                quality_exponent=float(cfg["quality"]["exponent"]),
                obsolescence_per_year=float(cfg["obsolescence"]["per_year"]),
                max_delta=float(cfg["obsolescence"]["max_delta"]),
                collect={s: float(c["collect_per_1k_rows"][s]) for s in SOURCES},
                storage_per_1k_year=float(c["storage_per_1k_rows_year"]),
                processing_per_1k=float(c["processing_per_1k_rows"]),
                governance_per_source_year=float(c["governance_per_source_year"]),
                margin={k: float(v) for k, v in i["margin"].items()},
                share=float(i["share"]),
                discount_rate=float(i["discount_rate"]),
                horizon_years=int(i["horizon_years"]),
                decay=float(i["decay"]),
                brushing_haircut=float(i["brushing_haircut"]),
                min_history_days=float(i["min_history_days"]),
                price_per_1k={k: float(v) for k, v in m["price_per_1k_records"].items()},
                comparable_q=float(m["comparable_q"]),
                quality_adj_cap=float(m["quality_adj_cap"]),
                comparable_rows=float(m["comparable_rows"]),
                scale_exponent=float(m["scale_exponent"]),
                scarcity={k: float(v) for k, v in m["scarcity"].items()},
                usage_rights=float(m["usage_rights"]),
                w_cost=float(w["cost"]),
                w_income=float(w["income"]),
                w_market=float(w["market"]),
                dim_weights={d: float(cfg["quality"]["weights"][d]) for d in DIMENSIONS},
                dim_floors={d: float(cfg["quality"]["floors"][d]) for d in DIMENSIONS},
                inactive_grace_days=float(cfg["activity"]["grace_days"]),
                inactive_half_life_days=float(cfg["activity"]["half_life_days"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LivefinError(
                f"config/valuation.yaml is missing or has a bad value: {exc}"
            ) from exc
        a.validate()
        return a

    def validate(self) -> None:
        problems = []
        weights = (self.w_cost, self.w_income, self.w_market)
        if min(weights) < 0 or not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
            problems.append(f"weights must be >= 0 and sum to 1, got {weights}")
        if not 0 <= self.max_delta <= 1 or self.obsolescence_per_year < 0:
            problems.append("obsolescence: need 0 <= max_delta <= 1 and per_year >= 0")
        if self.discount_rate <= -1 or self.horizon_years < 0 or not 0 <= self.decay <= 1:
            problems.append("income: need discount_rate > -1, horizon_years >= 0, 0 <= decay <= 1")
        if not 0 <= self.share <= 1 or not 0 <= self.brushing_haircut <= 1:
            problems.append("income: share and brushing_haircut must be in [0, 1]")
        if not 0 < self.scale_exponent <= 1 or self.comparable_rows <= 0 or self.comparable_q <= 0:
            problems.append(
                "market: need 0 < scale_exponent <= 1, comparable_rows > 0, comparable_q > 0"
            )
        if self.min_history_days <= 0 or self.quality_exponent < 0:
            problems.append("need min_history_days > 0 and quality.exponent >= 0")
        for name in ("margin", "price_per_1k", "scarcity"):
            table = getattr(self, name)
            if "default" not in table or min(table.values()) < 0:
                problems.append(f"{name}: needs a 'default' entry and no negative values")
        amounts = [*self.collect.values(), self.storage_per_1k_year, self.processing_per_1k,
                   self.governance_per_source_year, self.usage_rights]  # fmt: skip
        if min(amounts) < 0:
            problems.append("unit costs and usage_rights must be >= 0")
        if min(self.dim_weights.values()) < 0 or sum(self.dim_weights.values()) <= 0:
            problems.append("quality.weights must be >= 0 with a positive sum")
        if any(not 0 <= f < 1 for f in self.dim_floors.values()):
            problems.append("quality.floors must be in [0, 1)")
        if self.inactive_grace_days < 0 or self.inactive_half_life_days <= 0:
            problems.append("activity: need grace_days >= 0 and half_life_days > 0")
        if problems:
            raise LivefinError("config/valuation.yaml: " + "; ".join(problems))

    def for_category(self, table: str, category: str | None) -> float:
        values: dict[str, float] = getattr(self, table)
        return values.get(category or "default", values["default"])


def assumptions() -> Assumptions:
    return Assumptions.from_config(load_config("valuation"))


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


def gbt_quality(dims: Mapping[str, Any], a: Assumptions) -> dict[str, np.ndarray]:
    """Q from the six GB/T 36344 dimensions (pure): each measured share x is scored
    (x - floor) / (1 - floor), clipped to [0, 1] (at or below its floor a dimension is worthless,
    a perfect share scores 1), then weighted; a missing dimension counts as its floor (0).
    Returns each dimension's score and ``quality_q``."""
    total = sum(a.dim_weights.values())
    out: dict[str, np.ndarray] = {}
    q = 0.0
    for d in DIMENSIONS:
        x = np.nan_to_num(_arr(dims[d]), nan=a.dim_floors[d])
        score = np.clip((x - a.dim_floors[d]) / (1.0 - a.dim_floors[d]), 0.0, 1.0)
        out[f"{d}_score"] = score
        q = q + a.dim_weights[d] * score
    out["quality_q"] = np.asarray(q / total, dtype=float)
    return out


def activity_factor(days_since_last_order: Any, a: Assumptions) -> np.ndarray:
    """A merchant that stopped selling loses data value: 1 within ``grace_days`` of its last
    order, then halving every ``half_life_days`` (stale history says less about the merchant,
    and a churned merchant's data earns nothing). Unknown (never sold) counts as fully stale."""
    days = np.nan_to_num(_arr(days_since_last_order), nan=np.inf)
    idle = np.maximum(days - a.inactive_grace_days, 0.0)
    return np.power(0.5, idle / a.inactive_half_life_days)


def _quality_and_activity(
    inputs: Mapping[str, Any], v: dict[str, np.ndarray], a: Assumptions
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """With the six measured dimensions present they decide Q (``v["quality_q"]`` replaced)."""
    gbt: dict[str, np.ndarray] = {}
    if all(d in inputs for d in DIMENSIONS):
        gbt = gbt_quality(inputs, a)
        v["quality_q"] = gbt["quality_q"]
    return gbt, activity_factor(inputs.get("days_since_last_order", 0.0), a)


def compute_values(inputs: Mapping[str, Any], a: Assumptions) -> dict[str, np.ndarray]:
    """The three approaches, reconciled (pure, vectorised): ``inputs`` holds :data:`INPUTS`
    (category lookups resolved), optionally :data:`DIMENSIONS` and ``days_since_last_order``;
    returns every intermediate quantity, so callers can store and explain it."""
    missing = [k for k in INPUTS if k not in inputs]
    if missing:
        raise LivefinError(f"valuation inputs missing: {missing}")
    v = {k: _arr(inputs[k]) for k in INPUTS}
    gbt, act = _quality_and_activity(inputs, v, a)
    rows = {s: np.maximum(v[f"rows_{s}"], 0.0) for s in SOURCES}
    rows_total = sum(rows.values())
    sources = sum((r > 0).astype(float) for r in rows.values())
    history_years = np.maximum(v["history_days"], 0.0) / 365.0
    q = np.clip(np.nan_to_num(v["quality_q"], nan=0.0), 0.0, 1.0)
    qf = q**a.quality_exponent

    # cost: replacement cost x (1 - obsolescence) x f(Q)
    delta = np.minimum(
        a.max_delta, a.obsolescence_per_year * np.maximum(v["mean_record_age_days"], 0.0) / 365.0
    )
    cost_collection = sum(rows[s] / 1000.0 * a.collect[s] for s in SOURCES)
    cost_storage = rows_total / 1000.0 * a.storage_per_1k_year * history_years
    cost_processing = rows_total / 1000.0 * a.processing_per_1k
    cost_governance = sources * a.governance_per_source_year * history_years
    replacement = cost_collection + cost_storage + cost_processing + cost_governance
    cost_value = replacement * (1.0 - delta) * qf * act

    # income: contribution share of the profit on clean (brushing-adjusted) net GMV
    tenure = np.nan_to_num(v["tenure_days"], nan=365.0)
    days_seen = np.maximum(a.min_history_days, np.clip(tenure, 0.0, 365.0))
    annual_gmv = np.maximum(np.nan_to_num(v["gmv_net_adj_365d"], nan=0.0), 0.0) * 365.0 / days_seen
    brush = np.clip(np.nan_to_num(v["brushing_score"], nan=0.0), 0.0, 1.0)
    brushing_factor = 1.0 - a.brushing_haircut * brush
    cf1 = annual_gmv * np.maximum(v["margin"], 0.0) * a.share * qf * brushing_factor
    annuity = sum(
        (1.0 - a.decay) ** (t - 1) / (1.0 + a.discount_rate) ** t
        for t in range(1, a.horizon_years + 1)
    )
    income_value = cf1 * annuity * act

    # market: comparable price per record, adjusted
    scale_adj = np.where(
        rows_total > 0,
        (np.maximum(rows_total, 1e-12) / a.comparable_rows) ** (a.scale_exponent - 1.0),
        0.0,
    )
    quality_adj = np.minimum(a.quality_adj_cap, qf / a.comparable_q**a.quality_exponent)
    recency_adj = 1.0 - delta
    market_value = (
        np.maximum(v["comparable_price_per_1k"], 0.0) * rows_total / 1000.0
        * scale_adj * quality_adj * recency_adj * np.maximum(v["scarcity_adj"], 0.0)
        * a.usage_rights * act
    )  # fmt: skip

    reconciled = a.w_cost * cost_value + a.w_income * income_value + a.w_market * market_value
    return {
        **{k: v for k, v in gbt.items() if k != "quality_q"},
        "quality_q": np.asarray(q, dtype=float),
        "activity_factor": act,
        "rows_total": rows_total,
        "sources_count": sources,
        "quality_factor": qf,
        "obsolescence_delta": delta,
        "cost_collection": cost_collection,
        "cost_storage": cost_storage,
        "cost_processing": cost_processing,
        "cost_governance": cost_governance,
        "replacement_cost": replacement,
        "cost_value": cost_value,
        "annualised_clean_gmv": annual_gmv,
        "brushing_factor": brushing_factor,
        "income_cf_year1": cf1,
        "income_annuity_factor": np.full_like(cf1, annuity),
        "income_value": income_value,
        "scale_adj": scale_adj,
        "quality_adj": quality_adj,
        "recency_adj": recency_adj,
        "market_value": market_value,
        "reconciled_value": reconciled,
    }


def partial_rank_correlation(x: Any, y: Any, control: Any) -> float:
    """Spearman partial correlation of x and y given ``control`` (pure): the Pearson correlation
    of the ranks of x and y after each is regressed (OLS) on the ranks of ``control``. Used to
    check that the value carries information on true data quality beyond net GMV."""
    from scipy.stats import rankdata

    ranks = [rankdata(np.asarray(v, dtype=float)) for v in (x, y, control)]
    design = np.column_stack([np.ones(len(ranks[2])), ranks[2]])
    resid = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in ranks[:2]]
    den = float(np.linalg.norm(resid[0]) * np.linalg.norm(resid[1]))
    return float(resid[0] @ resid[1] / den) if den > 0 else float("nan")


def value_one(
    a: Assumptions | None = None, category: str | None = None, **inputs: float
) -> dict[str, float]:
    """Scalar convenience around :func:`compute_values` (category lookups done here)."""
    a = a or assumptions()
    full = {
        "margin": a.for_category("margin", category),
        "comparable_price_per_1k": a.for_category("price_per_1k", category),
        "scarcity_adj": a.for_category("scarcity", category),
        **inputs,
    }
    return {k: float(np.asarray(x).item()) for k, x in compute_values(full, a).items()}


def _require_features(con: duckdb.DuckDBPyConnection, as_of_date: date) -> None:
    if not table_exists(con, "features.merchant_features"):
        raise LivefinError(
            "features.merchant_features does not exist: run the features stage first"
        )
    n_feat = con.execute(
        "select count(*) from features.merchant_features where as_of_date = ?", [as_of_date]
    ).fetchone()[0]
    if n_feat == 0:
        raise LivefinError(
            f"no features for {as_of_date}: run `livefin run --start {as_of_date}` "
            "(the features stage runs before value)"
        )


def _assumption_columns(a: Assumptions) -> dict[str, Any]:
    """The assumptions stored beside every value, so a row can be re-derived by hand."""
    return {
        "currency": a.currency,
        "quality_exponent": a.quality_exponent,
        "obsolescence_per_year": a.obsolescence_per_year,
        "unit_cost_collect_orders": a.collect["orders"],
        "unit_cost_collect_traffic": a.collect["traffic"],
        "unit_cost_collect_fulfillment": a.collect["fulfillment"],
        "unit_cost_collect_merchants": a.collect["merchants"],
        "unit_cost_storage": a.storage_per_1k_year,
        "unit_cost_processing": a.processing_per_1k,
        "unit_cost_governance": a.governance_per_source_year,
        "share": a.share,
        "discount_rate": a.discount_rate,
        "horizon_years": a.horizon_years,
        "decay": a.decay,
        "brushing_haircut": a.brushing_haircut,
        "comparable_q": a.comparable_q,
        "comparable_rows": a.comparable_rows,
        "scale_exponent": a.scale_exponent,
        "rights_adj": a.usage_rights,
        "weight_cost": a.w_cost,
        "weight_income": a.w_income,
        "weight_market": a.w_market,
        "activity_half_life_days": a.inactive_half_life_days,
        "assumptions_version": a.version,
    }


def _value_frame(df: pd.DataFrame, a: Assumptions) -> pd.DataFrame:
    """stg_valuation_inputs rows plus category lookups, the computed values and assumptions."""
    cats = df["category"].where(df["category"].notna(), None)
    df["margin"] = [a.for_category("margin", c) for c in cats]
    df["comparable_price_per_1k"] = [a.for_category("price_per_1k", c) for c in cats]
    df["scarcity_adj"] = [a.for_category("scarcity", c) for c in cats]
    cols = [*INPUTS, *DIMENSIONS, "days_since_last_order"]
    out = compute_values({k: df[k].to_numpy(dtype=float, na_value=np.nan) for k in cols}, a)
    for k, v in out.items():
        df[k] = v
    for k, v in _assumption_columns(a).items():
        df[k] = v
    df["built_at"] = pd.Timestamp.now()
    return df[table_spec("data_asset_values").names]


def build_values(con: duckdb.DuckDBPyConnection, as_of_date: date) -> int:
    """Value every merchant with features on ``as_of_date``; replace that date's rows; return
    the count."""
    a = assumptions()
    _require_features(con, as_of_date)
    run_ddl(con, "valuation")
    ensure_table(con, table_spec("data_asset_values"))
    dq = (
        "stg_merchant_quality"
        if table_exists(con, "dq.merchant_quality")
        else "stg_merchant_quality_empty"
    )
    run_sql_file(con, SQL_DIR / "staging" / f"{dq}.sql", {})
    run_sql_file(
        con,
        SQL_DIR / "staging" / "stg_valuation_inputs.sql",
        {"as_of_date": as_of_date.isoformat()},
    )
    batch = _value_frame(con.execute("select * from stg_valuation_inputs").df(), a)
    replace_rows(con, VALUES_TABLE, batch, where="as_of_date = ?", params=[as_of_date])
    log.info("data-asset values for %s: %d merchants", as_of_date, len(batch))
    return len(batch)


def _money(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.2f}"


def explain_value(con: duckdb.DuckDBPyConnection, merchant_id: str, as_of_date: date) -> str:
    """Readable account of one merchant's data-asset value: approaches, inputs, reconciliation."""
    if not table_exists(con, VALUES_TABLE):
        raise LivefinError(f"{VALUES_TABLE} does not exist: run the value stage first")
    cur = con.execute(
        f"select * from {VALUES_TABLE} where merchant_id = ? and as_of_date = ?",
        [merchant_id, as_of_date],
    )
    row = cur.fetchone()
    if row is None:
        raise LivefinError(f"no data-asset value for merchant {merchant_id} on {as_of_date}")
    r = dict(zip([d[0] for d in cur.description], row, strict=True))
    c = r["currency"]
    rows_line = (
        f"orders {r['rows_orders']:,}, sessions {r['rows_traffic']:,}, logistics events "
        f"{r['rows_fulfillment']:,}, registry {r['rows_merchants']:,} = {r['rows_total']:,} rows "
        f"from {r['sources_count']} sources over {r['history_days']} days"
    )
    lines = [
        f"Data-asset value of merchant {r['merchant_id']} ({r['category']}) as of {r['as_of_date']}",
        f"  assumptions {r['assumptions_version']}, features {r['feature_version']}, currency {c}",
        "",
        f"Reconciled value: {_money(r['reconciled_value'])} {c}",
        f"  = {r['weight_cost']:.2f} x cost {_money(r['cost_value'])}"
        f" + {r['weight_income']:.2f} x income {_money(r['income_value'])}"
        f" + {r['weight_market']:.2f} x market {_money(r['market_value'])}",
        "",
        "Inputs",
        f"  data: {rows_line}",
        f"  mean record age {r['mean_record_age_days']:.1f} days -> obsolescence delta "
        f"{r['obsolescence_delta']:.3f} (min(max_delta, {r['obsolescence_per_year']} per year x age))",
        f"  quality Q {r['quality_q']:.3f} ({r['quality_source']}) -> quality factor "
        f"{r['quality_factor']:.3f} (Q^{r['quality_exponent']})",
        "",
        "Cost approach (replacement cost x (1 - delta) x f(Q))",
        f"  collection {_money(r['cost_collection'])} (per 1k rows: orders {r['unit_cost_collect_orders']}, "
        f"sessions {r['unit_cost_collect_traffic']}, logistics {r['unit_cost_collect_fulfillment']}, "
        f"registry {r['unit_cost_collect_merchants']})",
        f"  storage {_money(r['cost_storage'])} ({r['unit_cost_storage']} per 1k rows per year)",
        f"  processing {_money(r['cost_processing'])} ({r['unit_cost_processing']} per 1k rows)",
        f"  governance {_money(r['cost_governance'])} ({r['unit_cost_governance']} per source per year)",
        f"  replacement cost {_money(r['replacement_cost'])} -> cost value {_money(r['cost_value'])}",
        "",
        "Income approach (contribution share, discounted)",
        f"  brushing-adjusted net GMV 365d {_money(r['gmv_net_adj_365d'])}, tenure {r['tenure_days']} days"
        f" -> annualised {_money(r['annualised_clean_gmv'])}",
        f"  x margin {r['margin']:.3f} x share {r['share']:.3f} x f(Q) {r['quality_factor']:.3f}"
        f" x brushing factor {r['brushing_factor']:.3f} (score {r['brushing_score']:.3f},"
        f" haircut {r['brushing_haircut']}) = CF year 1 {_money(r['income_cf_year1'])}",
        f"  sum over {r['horizon_years']} years of CF1 x (1 - {r['decay']})^(t-1) / "
        f"(1 + {r['discount_rate']})^t = income value {_money(r['income_value'])}",
        "",
        "Market approach (comparable data products)",
        f"  {r['comparable_price_per_1k']} per 1k records x {r['rows_total']:,} rows / 1000",
        f"  x scale {r['scale_adj']:.3f} ((rows / {r['comparable_rows']:,.0f})^({r['scale_exponent']} - 1))"
        f" x quality {r['quality_adj']:.3f} (f(Q) / f({r['comparable_q']}))"
        f" x recency {r['recency_adj']:.3f} x scarcity {r['scarcity_adj']:.2f}"
        f" x usage rights {r['rights_adj']:.2f}",
        f"  = market value {_money(r['market_value'])}",
    ]
    return "\n".join(lines)
