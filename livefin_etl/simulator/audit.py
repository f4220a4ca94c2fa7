"""The world's acceptance figures, measured from the landing files (and the truth for P&L):
pure functions, no pipeline. ``bench/bench_world.py`` prints them; docs/simulator.md explains.

Definitions (on loans whose 180-day window closed by the last landing date):

- 60+ dpd rate: loans whose dpd reached 60 within 180 days of origination (the credit label).
- cure share of 30+: loans that reached 30 dpd and later were back at 0 dpd or repaid.
- roll rates: P(reach 60 | reached 30) and P(reach 90 | reached 60), over the whole path.
- P&L (truth cash flows, closed loans): collected - principal - cost of funds.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

HORIZON = 180


def read_parquet_source(landing: Path, source: str) -> pl.DataFrame:
    """Every file of a Parquet source concatenated (loans, repayments)."""
    files = sorted(Path(landing).glob(f"{source}/dt=*/part-0.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical")


def _csv_files(landing: Path, source: str) -> list[Path]:
    return sorted(Path(landing).glob(f"{source}/dt=*/part-0.csv*"))


def read_csv_file(f: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """One delivered CSV file (UTF-8, UTF-8 with BOM or GBK; plain or gzip), every cell a string."""
    import gzip

    data = f.read_bytes()
    if f.name.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("gbk")
    return pl.read_csv(io.StringIO(text), columns=columns, infer_schema_length=0)


def read_csv_source(landing: Path, source: str, columns: list[str] | None = None) -> pl.DataFrame:
    """Every file of a CSV source concatenated, with its partition date as ``_dt``."""
    frames = [
        read_csv_file(f, columns).with_columns(pl.lit(f.parent.name[3:]).alias("_dt"))
        for f in _csv_files(landing, source)
    ]
    return pl.concat(frames, how="vertical")


def read_latest(
    landing: Path,
    source: str,
    prepare: Callable[[pl.DataFrame], pl.DataFrame],
    key: str,
    order_by: str | None = None,
    every: int = 30,
) -> pl.DataFrame:
    """Each key's latest delivered row, file by file: ``prepare`` shrinks a file to the columns
    and types kept, and superseded versions are dropped every ``every`` files, so a 500-day
    landing (~90 M delivered order rows at ``small``) fits in memory. Latest = the last file
    (delivery order), or the largest ``order_by`` when given."""

    def latest(frames: list[pl.DataFrame]) -> pl.DataFrame:
        df = pl.concat(frames, how="diagonal_relaxed")
        if order_by:
            df = df.sort(order_by, maintain_order=True)
        return df.unique(key, keep="last", maintain_order=True)

    kept: list[pl.DataFrame] = []
    for i, f in enumerate(_csv_files(landing, source), 1):
        kept.append(prepare(read_csv_file(f)))
        if i % every == 0:
            kept = [latest(kept)]
    return latest(kept)


def last_landing_date(landing: Path) -> date:
    dts = sorted(p.name[3:] for p in Path(landing).glob("repayments/dt=*"))
    return date.fromisoformat(dts[-1])


def loan_paths(loans: pl.DataFrame, reps: pl.DataFrame, last: date) -> pl.DataFrame:
    """One row per loan: its dpd path summarised (max dpd within 180 days, 30/60/90 reached,
    cured after 30+), and whether its 180-day window closed by ``last``."""
    r = reps.join(loans.select("loan_id", "origination_date"), on="loan_id").sort(
        "loan_id", "repay_date"
    )
    first30 = (
        r.filter(pl.col("dpd") >= 30)
        .group_by("loan_id")
        .agg(pl.col("repay_date").min().alias("d30"))
    )
    cured = (
        r.join(first30, on="loan_id")
        .filter(
            (pl.col("repay_date") > pl.col("d30"))
            & ((pl.col("dpd") == 0) | (pl.col("outstanding") == 0))
        )
        .select("loan_id")
        .unique()
        .with_columns(pl.lit(True).alias("cured30"))
    )
    within = pl.col("repay_date") <= pl.col("origination_date") + pl.duration(days=HORIZON)
    agg = r.group_by("loan_id").agg(
        pl.col("dpd").filter(within).max().fill_null(0).alias("max_dpd_180"),
        pl.col("dpd").max().alias("max_dpd"),
    )
    return (
        loans.select("loan_id", "merchant_id", "origination_date", "principal")
        .join(agg, on="loan_id", how="left")
        .join(cured, on="loan_id", how="left")
        .with_columns(
            pl.col("max_dpd_180").fill_null(0),
            pl.col("max_dpd").fill_null(0),
            pl.col("cured30").fill_null(False),
            (pl.col("origination_date") + pl.duration(days=HORIZON) <= pl.lit(last)).alias(
                "window_closed"
            ),
        )
    )


def delinquency(paths: pl.DataFrame) -> dict[str, Any]:
    """60+ dpd rate, cure share of 30+ and the 30->60->90 roll rates on closed windows."""
    c = paths.filter(pl.col("window_closed"))
    n = c.height
    r30 = c.filter(pl.col("max_dpd") >= 30)
    r60 = c.filter(pl.col("max_dpd") >= 60)
    r90 = c.filter(pl.col("max_dpd") >= 90)
    return {
        "loans_closed_window": n,
        "defaults_60_180": int((c["max_dpd_180"] >= 60).sum()),
        "dpd60_rate": _ratio(int((c["max_dpd_180"] >= 60).sum()), n),
        "dpd30_rate": _ratio(r30.height, n),
        "cure_share_30": _ratio(int(r30["cured30"].sum()), r30.height),
        "roll_30_60": _ratio(r60.height, r30.height),
        "roll_60_90": _ratio(r90.height, r60.height),
    }


def book_pnl(truth_loans: pl.DataFrame) -> dict[str, Any]:
    """P&L of the closed loans (repaid or charged off) from the truth's per-loan cash flows."""
    c = truth_loans.filter(pl.col("status") != "open")
    principal = float(c["principal"].sum())
    collected = float(c["collected"].sum())
    funding = float(c["funding_cost"].sum())
    lost = float(c["principal_lost"].sum())
    pnl = collected - principal - funding
    return {
        "closed_loans": c.height,
        "charged_off": int((c["status"] == "charged_off").sum()),
        "principal": round(principal),
        "collected": round(collected),
        "fees_collected": round(collected - principal + lost),
        "principal_lost": round(lost),
        "funding_cost": round(funding),
        "pnl": round(pnl),
        "pnl_pct_principal": _ratio(pnl, principal),
        "loss_rate": _ratio(lost, principal),
    }


def refusals(apps: pl.DataFrame) -> dict[str, Any]:
    """Refused share of applications and the refusals by reason."""
    n = apps.height
    refused = apps.filter(pl.col("decision") == "refused")
    by_reason = refused.group_by("decision_reason").len().sort("decision_reason")
    return {
        "applications": n,
        "refused": refused.height,
        "refusal_share": _ratio(refused.height, n),
        "refused_by_reason": dict(zip(by_reason["decision_reason"], by_reason["len"], strict=True)),
    }


def merchant_net_sales(landing: Path) -> pl.DataFrame:
    """Per merchant: net sales (paid - refunded, cancelled = 0) per day from its first to its
    last order, from each order's latest delivered state."""
    paid = pl.col("实付金额").cast(pl.Float64)
    refund = pl.col("退款金额").cast(pl.Float64).fill_null(0.0)

    def prepare(df: pl.DataFrame) -> pl.DataFrame:
        return df.select(
            "订单号",
            "商家ID",
            pl.when(pl.col("订单状态") == "已取消").then(0.0).otherwise(paid - refund).alias("net"),
            pl.col("下单时间").str.slice(0, 10).str.to_date().alias("day"),
        )

    o = read_latest(landing, "orders", prepare, key="订单号")
    return (
        o.group_by("商家ID")
        .agg(
            pl.col("net").sum().alias("net_sales"),
            ((pl.col("day").max() - pl.col("day").min()).dt.total_days() + 1).alias("days"),
            pl.len().alias("orders"),
        )
        .with_columns((pl.col("net_sales") / pl.col("days")).alias("net_per_day"))
    )


def sizes(per_merchant: pl.DataFrame, loans: pl.DataFrame, orders_per_day: float) -> dict[str, Any]:
    """Medians and tails of merchant net sales per day and of loan principal."""
    s, p = per_merchant["net_per_day"], loans["principal"]
    return {
        "merchants_with_orders": per_merchant.height,
        "net_sales_day_median": round(float(s.median()), 1),
        "net_sales_day_p90": round(float(s.quantile(0.9)), 1),
        "net_sales_day_p99": round(float(s.quantile(0.99)), 1),
        "loan_median": round(float(p.median()), 1),
        "loan_p90": round(float(p.quantile(0.9)), 1),
        "loan_p99": round(float(p.quantile(0.99)), 1),
        "orders_per_day": round(orders_per_day),
    }


def monthly(paths: pl.DataFrame) -> pl.DataFrame:
    """Loans originated and 60+ dpd defaults (closed windows) per origination month."""
    return (
        paths.with_columns(pl.col("origination_date").dt.strftime("%Y-%m").alias("month"))
        .group_by("month")
        .agg(
            pl.len().alias("loans"),
            pl.col("window_closed").sum().alias("closed"),
            ((pl.col("max_dpd_180") >= 60) & pl.col("window_closed")).sum().alias("defaults"),
        )
        .sort("month")
    )


def audit(landing: Path, with_sales: bool = True) -> dict[str, Any]:
    """Every acceptance figure of the world (issue 16 items 1-4) for one landing folder."""
    landing = Path(landing)
    last = last_landing_date(landing)
    loans = read_parquet_source(landing, "loans")
    reps = read_parquet_source(landing, "repayments")
    paths = loan_paths(loans, reps, last)
    truth = pl.read_parquet(landing / "_truth" / "loans.parquet")
    apps = read_csv_source(landing, "applications")
    out: dict[str, Any] = {"last_date": last.isoformat()}
    out["pnl"] = book_pnl(truth)
    out["delinquency"] = delinquency(paths)
    out["applications"] = refusals(apps)
    if with_sales:
        per_m = merchant_net_sales(landing)
        days = (last - paths["origination_date"].min()).days + 1 if paths.height else 1
        out["sizes"] = sizes(per_m, loans, float(per_m["orders"].sum()) / max(days, 1))
    out["monthly"] = monthly(paths).to_dicts()
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None
