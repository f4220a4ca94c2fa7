"""Simulated live-commerce platform and legacy lender: writes the landing zone.

``generate(scale, seed, start, days, out)`` writes one folder per source and
business date (``out/<source>/dt=YYYY-MM-DD/part-0.<ext>``) plus the ground truth
in ``out/_truth/`` that the pipeline never reads. See ``docs/simulator.md``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from ..config import LivefinError
from .constants import NEVER
from .lender import REASONS
from .params import (
    CATEGORIES,
    DEFAULT_START,
    SCALES,
    SIM_VERSION,
    SOURCES,
    ScalePreset,
    WorldParams,
)
from .world import World
from .writer import COMPRESSIONS, Writer, application_ids, loan_ids, orders_encoding

__all__ = [
    "DEFAULT_START",
    "SCALES",
    "SIM_VERSION",
    "SOURCES",
    "ScalePreset",
    "WorldParams",
    "generate",
    "preset_params",
    "orders_encoding",
]


def _prepare_out(out: Path, force: bool) -> None:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LivefinError(f"output path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise LivefinError(f"output directory {out} is not empty; use --force to replace it")
        resolved = out.resolve()
        if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
            raise LivefinError(f"refusing to clear {resolved}")
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate(
    scale: str,
    seed: int,
    start: date | None = None,
    days: int | None = None,
    out: Path = Path("state/landing"),
    force: bool = False,
    progress: bool = True,
    merchants: int | None = None,
    params: WorldParams | None = None,
    compress: str | None = None,
) -> dict[str, Any]:
    """Write landing files; return a summary dict (counts per source, days, merchants, seconds, out).

    ``counts["orders"]`` is the rows of the orders files (each order is re-delivered when its
    state changes); ``orders_placed`` the orders themselves.

    ``days=None`` uses the preset's days; ``merchants`` overrides the preset's merchant count;
    ``compress="gzip"`` writes the CSV and JSON-lines exports as ``.gz`` (extract reads both).
    Output is a pure function of (scale, seed, start, days, merchants, params).
    """
    preset, days, n, start = _check_args(scale, start, days, merchants, compress)
    p = preset_params(preset, params)
    out = Path(out)
    _prepare_out(out, force)

    t0 = time.perf_counter()
    world = World(p, seed, start, days, n, preset.orders_per_merchant_day)
    writer = Writer(world, out, compress)
    marks = _run_days(world, writer, scale, progress, t0)
    truth = _write_truth(world, writer, out, scale, preset, seed, start, days, n, p)
    counts = dict(writer.counts)
    return {
        "scale": scale,
        "seed": seed,
        "start": start.isoformat(),
        "end": (start + timedelta(days=days - 1)).isoformat(),
        "days": days,
        "merchants": n,
        "counts": counts,
        **counts,
        **truth,
        "orders_placed": writer.placed,
        "bytes": writer.bytes,
        "seconds": round(time.perf_counter() - t0, 2),
        "seconds_warm_up": round(marks.get("burn_in", 0.0), 2),
        "seconds_days": round(marks["days"], 2),
        "out": str(out),
    }


def preset_params(preset: ScalePreset, params: WorldParams | None = None) -> WorldParams:
    """The parameters a preset runs with: the caller's (else the defaults plus the preset's
    overrides), with the preset's odds multiplier (tiny's stressed book) on top."""
    p = params or dataclasses.replace(WorldParams(), **dict(preset.overrides))
    return dataclasses.replace(p, pd_odds_mult=p.pd_odds_mult * preset.default_odds)


def _check_args(
    scale: str,
    start: date | None,
    days: int | None,
    merchants: int | None,
    compress: str | None,
) -> tuple[ScalePreset, int, int, date]:
    """Validate generate()'s arguments; return (preset, days, merchant count, start date)."""
    if scale not in SCALES:
        raise LivefinError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    preset = SCALES[scale]
    days = preset.days if days is None else int(days)
    if days < 1:
        raise LivefinError(f"days must be >= 1 (got {days})")
    n = preset.merchants if merchants is None else int(merchants)
    if n < 1:
        raise LivefinError(f"merchants must be >= 1 (got {n})")
    start = start or DEFAULT_START
    if isinstance(start, datetime):
        start = start.date()
    if compress not in COMPRESSIONS:
        raise LivefinError(f"unknown compression {compress!r}; choose gzip or leave it out")
    return preset, days, n, start


def _run_days(
    world: World, writer: Writer, scale: str, progress: bool, t0: float
) -> dict[str, float]:
    """Step the world through burn-in and every written day; return the timing marks."""
    steps = range(-world.burn, world.days)
    marks: dict[str, float] = {}

    def run_day(t: int) -> None:
        if t == 0:
            marks["burn_in"] = time.perf_counter() - t0
        tables = world.step(t)
        if tables is not None:
            writer.write_day(tables)

    if progress:
        with _progress_bar() as bar:
            task = bar.add_task(f"{scale} (warm-up {world.burn} d)", total=len(steps), info="")
            for t in steps:
                run_day(t)
                bar.update(task, advance=1, info=f"{writer.counts['orders']:,} orders")
    else:
        for t in steps:
            run_day(t)
    marks["days"] = time.perf_counter() - t0 - marks.get("burn_in", 0.0)
    return marks


def _progress_bar() -> Any:
    # imported lazily: rich is only needed for the interactive CLI
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]sample {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )


def _dates(start: date, t: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """Day offsets -> Date series (null where not valid)."""
    base = (start - date(1970, 1, 1)).days
    days = pl.Series((base + np.clip(t, -(10**6), 10**6)).astype(np.int32)).cast(pl.Date)
    if valid is not None:
        days = pl.select(
            pl.when(pl.lit(pl.Series(valid))).then(pl.lit(days)).otherwise(None)
        ).to_series()
    return days


def _write_truth(
    world: World,
    writer: Writer,
    out: Path,
    scale: str,
    preset: ScalePreset,
    seed: int,
    start: date,
    days: int,
    n: int,
    p: WorldParams,
) -> dict[str, Any]:
    """Write ``out/_truth/`` (merchants, loans, params); return the closed-loan default counts."""
    tdir = out / "_truth"
    tdir.mkdir(parents=True, exist_ok=True)
    merchants = _merchant_truth(world, writer, start, days - 1)
    pq.write_table(merchants.to_arrow(), tdir / "merchants.parquet", compression="zstd")
    loans = _loan_truth(world, writer, start, days - 1, p)
    pq.write_table(loans.to_arrow(), tdir / "loans.parquet", compression="zstd")
    apps = _application_truth(world, writer, start, days - 1, p, loans)
    pq.write_table(apps.to_arrow(), tdir / "applications.parquet", compression="zstd")
    params = {
        "simulator_version": SIM_VERSION,
        "scale": scale,
        "seed": seed,
        "start": start.isoformat(),
        "days": days,
        "merchants": n,
        "preset": dataclasses.asdict(preset),
        "world": dataclasses.asdict(p),
    }
    (tdir / "params.json").write_text(
        json.dumps(params, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    n_closed = int(loans["window_closed"].sum())
    n_def = int((loans["defaulted_180d"] & loans["window_closed"]).sum())
    return {
        "loans_closed": n_closed,
        "defaults_closed": n_def,
        "default_rate_closed": round(n_def / n_closed, 4) if n_closed else None,
    }


def _merchant_truth(world: World, writer: Writer, start: date, last: int) -> pl.DataFrame:
    """Hidden merchant traits and event dates (dates outside the written days are null)."""
    w = world

    def in_window(sim_index: np.ndarray) -> np.ndarray:
        return (sim_index >= 0) & (sim_index <= last)

    return pl.DataFrame(
        {
            "merchant_id": writer.mids,
            "category": pl.Series(CATEGORIES).gather(w.cat),
            "quality": w.q,
            "brushing": w.brushing,
            "streamer_dependent": w.dependent,
            "streamer_exit_date": _dates(start, w.exit_day, w.dependent & in_window(w.exit_day)),
            "onboard_date": _dates(start, w.onboard),
            "base_daily_gmv": np.round(w.base_daily_gmv, 2),
            "refund_rate": np.round(w.refund, 4),
            "fake_share": np.where(w.brushing, np.round(w.fake_share, 4), 0.0),
            "n_streamers": w.roster.astype(np.int64),
            "volatility": np.round(w.volatility, 4),
            "trend": np.round(w.trend, 4),
            "penalty_date": _dates(start, w.pen_day, in_window(w.pen_day)),
            "churn_date": _dates(start, w.churn_day, in_window(w.churn_day)),
            "distress_date": _dates(start, w.distress_day, in_window(w.distress_day)),
        }
    )


def _loan_truth(
    world: World, writer: Writer, start: date, last: int, p: WorldParams
) -> pl.DataFrame:
    """Every loan with its true and realised PD, 180-day default flag and final status."""
    b = world.loans
    orig = b.view("orig")
    dday = b.view("default_day")
    closed_day = b.view("closed_day")
    return pl.DataFrame(
        {
            "loan_id": loan_ids(np.arange(b.n)),
            "merchant_id": writer.mids.gather(b.view("merchant")),
            "origination_date": _dates(start, orig),
            "true_pd": np.round(b.view("true_pd"), 6),
            "defaulted_180d": (dday < NEVER) & (dday - orig <= p.default_horizon_days),
            "window_closed": orig + p.default_horizon_days <= last,
            "legacy_limit": b.view("limit"),
            "principal": b.view("principal"),
            "term_days": b.view("term"),
            "gross_gmv_30d": np.round(b.view("gross30"), 2),
            "net_gmv_30d": np.round(b.view("net30"), 2),
            "pd_realised": np.round(b.view("pd_realised"), 6),
            "star_exit_in_window": b.view("s1"),
            "penalty_in_window": b.view("s2"),
            "default_date": _dates(start, dday, dday < NEVER),
            "max_dpd": b.view("max_dpd"),
            "status": pl.Series(["open", "repaid", "charged_off"]).gather(
                b.view("status").astype(np.int64)
            ),
            "closed_date": _dates(start, closed_day, closed_day < NEVER),
            **_cash_flows(b),
        }
    )


def _cash_flows(b: Any) -> dict[str, np.ndarray]:
    """The lender's per-loan cash flows: principal out, collections in, the funding cost of the
    outstanding principal; pnl = collected - principal - funding_cost (final once closed)."""
    principal, collected = b.view("principal"), b.view("repaid")
    funding = b.view("funding")
    return {
        "fee_amount": b.view("fee"),
        "collected": np.round(collected, 2),
        "funding_cost": np.round(funding, 2),
        "principal_lost": np.round(np.maximum(principal - collected, 0.0), 2),
        "pnl": np.round(collected - principal - funding, 2),
    }


def _application_truth(
    world: World, writer: Writer, start: date, last: int, p: WorldParams, loans: pl.DataFrame
) -> pl.DataFrame:
    """Every application with the outcome it had (approved: the loan's realised label) or would
    have had (refused: the same default model's draw), which the landing files never show."""
    a = world.apps
    day, loan = a.view("day"), a.view("loan")
    approved = loan >= 0
    realised = loans["defaulted_180d"].to_numpy()
    outcome = np.where(
        approved, realised[np.maximum(loan, 0)] if loan.size else False, a.view("default")
    )
    return pl.DataFrame(
        {
            "application_id": application_ids(np.arange(a.n)),
            "merchant_id": writer.mids.gather(a.view("merchant")),
            "applied_date": _dates(start, day),
            "approved": approved,
            "decision_reason": pl.Series(REASONS).gather(a.view("reason").astype(np.int64)),
            "loan_id": loan_ids(np.maximum(loan, 0)).zip_with(
                pl.Series(approved), pl.Series([None] * a.n, dtype=pl.String)
            )
            if a.n
            else pl.Series([], dtype=pl.String),
            "requested_amount": a.view("requested"),
            "legacy_score": a.view("legacy_score"),
            "gross_gmv_30d": np.round(a.view("gross30"), 2),
            "net_gmv_30d": np.round(a.view("net30"), 2),
            "true_pd": np.round(a.view("true_pd"), 6),
            "pd_realised": np.round(a.view("pd_realised"), 6),
            "defaulted_180d": outcome,
            "window_closed": day + p.default_horizon_days <= last,
        }
    )
