"""``livefin``: a thin typer CLI over :mod:`livefin_etl.pipeline` and the stage modules."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from livefin_etl.config import LivefinError, get_settings
from livefin_etl.privacy import MAX_LOG_CHARS, scrub


class _LivefinGroup(TyperGroup):
    """Notes whether ``--help`` was asked for anywhere: help needs no home."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["livefin.help"] = any(a in ctx.help_option_names for a in args)
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_LivefinGroup,
    help="livefin: nightly financing limits for live-commerce merchants from their platform data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Model registry: train on your own features, promote, roll back.")
app.add_typer(model_app, name="model")
console = Console()
err = Console(stderr=True)


def _is_cli_error(exc: BaseException) -> bool:
    """Errors reported as one clear line (exit 1) rather than a traceback: livefin's own, the
    OS's (full disk, permissions) and DuckDB's (I/O, corruption, an analyst's bad SQL). Bugs
    still show their traceback. duckdb is imported here, not at start-up (a fast CLI)."""
    if isinstance(exc, (LivefinError, OSError)):
        return True
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.Error)


def _loading(what: str = "loading…"):
    """A spinner on stderr while the heavy imports (xgboost, pandas) load; silent off a tty."""
    return err.status(what, spinner="dots")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to ship to any log store."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage(), MAX_LOG_CHARS),
        }
        if record.exc_info:
            payload["exc"] = scrub(self.formatException(record.exc_info), MAX_LOG_CHARS)
        return json.dumps(payload, ensure_ascii=False, default=str)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("livefin_etl").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("great_expectations", "matplotlib", "numexpr", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


# Commands that may run before a home exists: they create it (init, demo) or only write files.
NO_HOME_NEEDED = frozenset({"init", "demo", "sample"})


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="JSON logs at INFO level on stderr")
    ] = False,
) -> None:
    _setup_logging(verbose or os.environ.get("LIVEFIN_VERBOSE") == "1")
    if ctx.invoked_subcommand not in NO_HOME_NEEDED and not ctx.meta.get("livefin.help"):
        _require_home()


def _require_home() -> None:
    """Every command but init/demo/sample needs an existing home: a missing one would otherwise
    be created empty (a fresh warehouse, a new PII key) where the user did not mean it."""
    home = get_settings().home
    if home.is_dir():
        return
    how = (
        "from LIVEFIN_HOME"
        if os.environ.get("LIVEFIN_HOME")
        else "LIVEFIN_HOME is unset, so ./state was looked for"
    )
    err.print(
        f"[bold red]error:[/] livefin home {home} does not exist ({how}). Create it with "
        "`livefin init` (or `livefin demo`), or point LIVEFIN_HOME at an existing home"
    )
    raise typer.Exit(code=1)


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a date (YYYY-MM-DD)") from None


DateArg = Annotated[str, typer.Option(help="Business date YYYY-MM-DD")]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        help="local (default, env LIVEFIN_ENGINE) or dask: features, score and limits by "
        "shard on LIVEFIN_DASK_SCHEDULER, else a LocalCluster of LIVEFIN_DASK_WORKERS"
    ),
]


def _settings(engine: str | None = None):
    from livefin_etl.engine import with_engine

    return _call(lambda: with_engine(get_settings(), engine))


def _call(fn: Callable[[], Any]) -> Any:
    """The one error wrapper: run a pipeline call, or print its error on one line and exit 1."""
    try:
        return fn()
    except Exception as exc:
        if not _is_cli_error(exc):
            raise
        err.print(f"[bold red]error:[/] {escape(scrub(exc))}")
        raise typer.Exit(code=1) from None


def _print_result(fn: Callable[[], Any]) -> Any:
    """Run one pipeline call and print its result as JSON."""
    result = _call(fn)
    console.print_json(json.dumps(result, default=str))
    return result


# --------------------------------------------------------------------------- init + sample


@app.command()
def init() -> None:
    """Create the home (LIVEFIN_HOME, default ./state) and its PII key, once; an existing key is
    kept and checked against the warehouse."""
    from livefin_etl import pipeline

    _print_result(pipeline.init_home)


@app.command()
def sample(
    scale: Annotated[str, typer.Option(help="tiny | demo | small | large")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed; same seed, byte-identical files")] = 42,
    start: Annotated[str, typer.Option(help="First business date")] = "2025-01-01",
    days: Annotated[int | None, typer.Option(help="Number of days (default: the preset's)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output landing folder (default: $LIVEFIN_HOME/landing)")
    ] = None,
    merchants: Annotated[
        int | None, typer.Option(help="Override the preset's merchant count")
    ] = None,
    force: Annotated[bool, typer.Option(help="Empty a non-empty output folder first")] = False,
    compress: Annotated[
        str | None, typer.Option(help="gzip: write CSV/JSON-lines exports as .gz files")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON")] = False,
) -> None:
    """Generate the simulated platform + lender as landing files (and ground truth in _truth/)."""
    from livefin_etl import pipeline

    if days is not None and days < 1:
        raise typer.BadParameter("--days must be at least 1")
    result = _call(
        lambda: pipeline.simulate(
            scale,
            seed,
            _date(start),
            days,
            out,
            force=force,
            progress=sys.stderr.isatty(),
            merchants=merchants,
            compress=compress,
        )
    )
    if as_json:
        counts = result.get("counts") or {}
        console.print_json(json.dumps({k: v for k, v in result.items() if k not in counts}))
        return
    _print_sample_summary(result)


def _print_sample_summary(r: dict[str, Any]) -> None:
    """What `livefin sample` wrote, in a few readable lines (``--json`` for the full dict)."""
    console.print(
        f"[bold]sampled[/] the '{r['scale']}' platform, seed {r['seed']}: {r['start']} .. "
        f"{r['end']} ({r['days']} days), {r['merchants']:,} merchants -> {escape(r['out'])}"
    )
    rows = ", ".join(f"{k} {v:,}" for k, v in (r.get("counts") or {}).items())
    console.print(f"  rows: {rows}")
    rate = r.get("default_rate_closed")
    console.print(
        f"  orders placed {r.get('orders_placed', 0):,}; {r.get('bytes', 0) / 1e6:,.1f} MB; "
        f"loans closed {r.get('loans_closed', 0):,}, defaulted {r.get('defaults_closed', 0):,}"
        + (f" ({rate:.1%})" if rate is not None else "")
    )
    console.print(f"  took {r.get('seconds', 0):.1f} s; ground truth in {escape(r['out'])}/_truth/")


# --------------------------------------------------------------------------- ingest


@app.command()
def extract(
    source: Annotated[str, typer.Option(help="Contract name from config/sources, e.g. orders")],
    date_: Annotated[str, typer.Option("--date", help="Business date YYYY-MM-DD")],
    force: Annotated[bool, typer.Option(help="Reload even if the files are unchanged")] = False,
) -> None:
    """Load landing/<source>/dt=<date>/ into raw.<source> (quarantine + manifest)."""
    from livefin_etl import pipeline

    _print_result(lambda: pipeline.extract(source, _date(date_), force=force))


@app.command()
def validate(
    source: Annotated[str, typer.Option(help="Contract name from config/sources, e.g. orders")],
    date_: Annotated[str, typer.Option("--date", help="Business date YYYY-MM-DD")],
) -> None:
    """Run the source's GX suite on one partition; a critical failure blocks that date."""
    from livefin_etl import pipeline

    result = _print_result(lambda: pipeline.validate(source, _date(date_)))
    if result.get("status") == "failed":
        raise typer.Exit(code=1)


@app.command()
def ingest(
    start: DateArg,
    end: DateArg,
    source: Annotated[list[str] | None, typer.Option(help="Limit to these sources")] = None,
) -> None:
    """Extract + validate every source for a date range (history backfill)."""
    from livefin_etl import pipeline

    out = _call(lambda: pipeline.ingest(_date(start), _date(end), source or None))
    failed = out["failed"]
    console.print(
        f"ingested {out['results']} results, {len(failed)} failed partitions; "
        f"Data Docs: {out['data_docs']}"
    )
    for r in failed:
        err.print(
            f"[red]blocked[/] {r.get('source')} {r.get('dt')}: {r.get('failed_expectations')}"
        )
    if failed:
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- run


@app.command()
def run(
    start: DateArg,
    end: Annotated[str | None, typer.Option(help="Last business date (default: start)")] = None,
    ingest_from: Annotated[
        str | None, typer.Option(help="Also ingest history from this date (backfill)")
    ] = None,
    retrain: Annotated[bool, typer.Option(help="Train a challenger before the first date")] = False,
    allow_gap: Annotated[
        str | None,
        typer.Option(
            help="Skip these earlier dates on purpose (YYYY-MM-DD or A..B, comma-separated; all "
            "before --start), recorded in meta.calendar_skips; needs --reason"
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why the --allow-gap dates are skipped")
    ] = None,
    engine: EngineOpt = None,
) -> None:
    """Run every stage, date by date: extract, validate, quality, features, value, score, limits,
    publish."""
    from livefin_etl import calendar, pipeline

    if reason and not allow_gap:
        raise typer.BadParameter("--reason goes with --allow-gap")
    gap = _call(lambda: calendar.parse_ranges(allow_gap)) if allow_gap else None
    s = _settings(engine)
    with console.status("running") as status:
        report = _call(
            lambda: pipeline.run_range(
                _date(start),
                _date(end or start),
                s,
                ingest_from=_date(ingest_from) if ingest_from else None,
                retrain=retrain,
                progress=lambda msg: status.update(msg),
                allow_gap=gap,
                gap_reason=reason,
            )
        )
    _print_run_summary(s, report)


def _print_run_summary(s, report) -> None:
    console.print(f"[bold]warehouse[/]  {s.warehouse}")
    console.print(f"[bold]data docs[/]  {report.data_docs}")
    if report.trained:
        console.print(
            f"[bold]model[/]      {report.trained.get('model_version')} "
            f"{report.trained.get('status')}: {report.trained.get('reason')}"
        )
    if report.published:
        console.print(f"[bold]published[/]  {report.published.get('snapshot_path')}")
        console.print(f"[bold]exports[/]    {report.published.get('export_dir')}")
    _print_tiers(s)
    console.print(f"finished in {report.seconds:.1f} s")
    if report.blocked:
        for as_of_date, why in report.blocked.items():
            err.print(f"[bold red]blocked {as_of_date}:[/] {why}")
        err.print("Limits published before the blocked date stay in force.")
        raise typer.Exit(code=2)


def _print_tiers(s) -> None:
    """Limits by tier for the latest date, read from the warehouse (read-only)."""
    import duckdb

    from livefin_etl.warehouse import table_exists

    try:
        con = duckdb.connect(str(s.warehouse), read_only=True)
    except duckdb.Error:
        return
    try:
        if not table_exists(con, "limits.financing_limits"):
            return
        rows = con.execute("""
            select tier, count(*) as merchants,
                   count(*) filter (where decision in ('approve','reduce','review')) as offered,
                   round(sum(limit_amount), 0) as total_limit,
                   round(sum(expected_loss), 0) as expected_loss
            from limits.financing_limits
            where as_of_date = (select max(as_of_date) from limits.financing_limits)
            group by tier order by tier""").fetchall()
    finally:
        con.close()
    table = Table(title="Limits by tier (latest date)")
    for col in ("tier", "merchants", "offered", "total limit (CNY)", "expected loss (CNY)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*[f"{v:,.0f}" if isinstance(v, float) else str(v) for v in r])
    console.print(table)


@app.command()
def demo(
    scale: Annotated[
        str, typer.Option(help="Sample scale: demo (2,000 x 1 year) or small (credit validation)")
    ] = "demo",
    seed: Annotated[int, typer.Option(help="Sample seed")] = 42,
    nightly_days: Annotated[int, typer.Option(help="Nightly runs at the end of the history")] = 3,
    engine: EngineOpt = None,
) -> None:
    """The embedded default end to end: simulate a platform, ingest a year, train, run the last
    nights, stress-test the latest limits."""
    from livefin_etl import pipeline

    s = _settings(engine)
    with console.status("running") as status:
        report, stressed = _call(
            lambda: pipeline.demo(scale, seed, nightly_days, s, progress=status.update)
        )
    _print_run_summary(s, report)
    console.print(stressed["text"])
    last = stressed["as_of_date"]
    console.print(
        f'\nAnalysts: livefin sql "select * from limits.current limit 10"  (or `livefin sql` '
        f"for a shell on {s.published / 'livefin.duckdb'})\n"
        f"Try: `livefin explain <merchant_id> --date {last}`   |   "
        f"`livefin explain-value <merchant_id> --date {last}`"
    )


# --------------------------------------------------------------------------- model


@app.command()
def train(
    as_of_date: Annotated[
        str, typer.Option("--as-of", help="Train on loans whose window closed by this date")
    ],
    device: Annotated[str | None, typer.Option(help="cpu | cuda (GPU only if present)")] = None,
) -> None:
    """Train a credit model point-in-time; becomes champion only if it passes the gate."""
    from livefin_etl import pipeline

    _print_result(lambda: pipeline.train(_date(as_of_date), device=device))


@app.command()
def score(
    date_: Annotated[str, typer.Option("--date", help="Business date")],
    engine: EngineOpt = None,
) -> None:
    """Score all active merchants with the champion model (PD, score, grade, reasons)."""
    from livefin_etl import pipeline

    s = _settings(engine)
    _print_result(lambda: pipeline.run_stage(pipeline.score, _date(date_), s))


@app.command()
def explain(
    merchant: Annotated[str, typer.Argument(help="Merchant id")],
    date_: Annotated[str, typer.Option("--date", help="Business date")],
) -> None:
    """Print a merchant's PD, score, grade and reasons with their SHAP values."""
    with _loading():
        from livefin_etl import pipeline

        text = _call(lambda: pipeline.explain(merchant, _date(date_)))
    console.print(text)


@app.command("explain-value")
def explain_value(
    merchant: Annotated[str, typer.Argument(help="Merchant id")],
    date_: Annotated[str, typer.Option("--date", help="Business date")],
) -> None:
    """Print the three valuation approaches for a merchant's data, their inputs and reconciliation."""
    with _loading():
        from livefin_etl import pipeline

        text = _call(lambda: pipeline.explain_value(merchant, _date(date_)))
    console.print(text)


@model_app.command("train")
def model_train(
    features: Annotated[Path, typer.Option(help="Feature table: parquet or CSV/TSV")],
    label: Annotated[str, typer.Option(help="Binary label column (0/1, bool, or e.g. good/bad)")],
    time: Annotated[
        str | None, typer.Option(help="Date/month column for an out-of-time split (else 5-fold CV)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder for the model + report")] = None,
) -> None:
    """Train and evaluate on your own table: tuned XGBoost, logistic baseline, WoE scorecard."""
    from livefin_etl import pipeline

    _print_result(lambda: pipeline.train_from_file(features, label, time_col=time, out_dir=out))


@model_app.command("promote")
def model_promote(version: Annotated[str, typer.Argument(help="Model version")]) -> None:
    """Make VERSION the champion (recorded in credit.model_registry)."""
    from livefin_etl import pipeline

    console.print(f"{_call(lambda: pipeline.promote_model(version))} is now champion")


@model_app.command("rollback")
def model_rollback() -> None:
    """Re-instate the previous champion."""
    from livefin_etl import pipeline

    console.print(f"champion is now {_call(pipeline.rollback_model)}")


# --------------------------------------------------------------------------- limits


@app.command()
def stress(
    date_: Annotated[
        str | None, typer.Option("--date", help="Business date (default: the latest limits)")
    ] = None,
    gmv_shock: Annotated[float, typer.Option(help="Relative GMV shock, e.g. -0.3")] = -0.3,
    streamer_exit: Annotated[
        bool, typer.Option(help="Top streamers of dependent merchants leave")
    ] = False,
) -> None:
    """Recompute limits under a market shock and report the change in exposure and EL."""
    from livefin_etl import pipeline

    result = _call(
        lambda: pipeline.stress(
            _date(date_) if date_ else None, gmv_shock=gmv_shock, streamer_exit=streamer_exit
        )
    )
    console.print(result["text"])


@app.command()
def publish(
    date_: Annotated[str | None, typer.Option("--date", help="Business date to publish")] = None,
    rollback: Annotated[
        bool, typer.Option(help="Point the published snapshot back one version")
    ] = False,
) -> None:
    """Publish the snapshot + exports for a date (only when every gate passed), or roll back."""
    from livefin_etl import pipeline

    if rollback:
        path = _call(pipeline.rollback_publication)
        console.print(f"published snapshot rolled back to {path}")
        return
    if not date_:
        raise typer.BadParameter("--date is required unless --rollback")
    _print_result(lambda: pipeline.run_stage(pipeline.publish, _date(date_)))


@app.command()
def sql(
    query: Annotated[
        str | None, typer.Argument(help="SQL to run; none: an interactive shell (end with ';')")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Query the published snapshot (published/livefin.duckdb) read-only; never waits for a run."""
    from livefin_etl import reads, sql_shell

    if fmt not in sql_shell.FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(sql_shell.FORMATS)}")
    if query is None:
        con = _call(reads.connect_snapshot)
        try:
            sql_shell.shell(con, fmt, console, err)
        finally:
            con.close()
        return
    cols, rows = _call(lambda: reads.query(query))
    sql_shell.render(cols, rows, fmt, sys.stdout, console)


@app.command()
def status(
    date_: Annotated[
        str | None, typer.Option("--date", help="Business date (default: latest)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON")] = False,
) -> None:
    """A date's stages, publication and monitoring verdicts (watch / act), read-only."""
    with _loading():
        from livefin_etl import pipeline

        st = _call(lambda: pipeline.status(_date(date_) if date_ else None))
    if as_json:
        console.print_json(json.dumps(st, default=str))
        return
    console.print(f"[bold]date[/] {st['as_of_date']}   [bold]monitoring[/] {st['monitoring']}")
    console.print(f"[bold]read from[/] {escape(st['source'])}")
    table = Table("stage", "status", "rows")
    for row in st["stages"]:
        table.add_row(row["stage"], row["status"], "" if row["rows"] is None else str(row["rows"]))
    console.print(table)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(st["verdict_counts"].items()))
    console.print(f"verdicts: {counts or 'none'}")
    for v in st["verdicts"]:
        colour = "red" if v["verdict"] == "act" else "yellow"
        console.print(
            f"[{colour}]{v['verdict']:5}[/] {escape(v['check_name'])}: {escape(v['message'])}"
        )


if __name__ == "__main__":  # pragma: no cover
    app()
