"""Point-in-time merchant features and the brushing score (see docs/features.md).

Two layers:

* **Daily building blocks**, filled incrementally: ``features.merchant_daily`` (one row per
  merchant and day), ``features.merchant_streamer_daily``, ``features.platform_daily``,
  ``features.buyer_daily`` (the buyer-shop graph) and ``features.suspect_orders``. ``features.merchant_daily_log`` records which days are built from
  which raw partitions; a day is rebuilt only when a partition that can hold its events changed
  (late rows, reloads) or the feature config version changed.
* **As-of features** ``features.merchant_features``: windows summed from the daily blocks for the
  pairs of a *spine* (merchant_id, as_of_date). The nightly run uses the active merchants at D;
  credit training passes its own spine. Both run ``sql/marts/merchant_features.sql``.

Point in time: features as of D use only events with timestamp < D (orders by order_ts, sessions
by start_ts, logistics events by event_ts, merchants onboarded before D), and of each order only
what was delivered before D: its first delivery counts on its order day, each later state change
(cancellation, refund) on the day it was delivered (stg_order_changes), and order-level windows
take the latest version delivered before D (stg_order_versions).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import yaml

from livefin_etl.config import SQL_DIR, LivefinError, load_config
from livefin_etl.warehouse import (
    quote_ident,
    quote_literal,
    replace_rows,
    run_ddl,
    run_sql_file,
    stage_memory,
    table_exists,
    transaction,
)

log = logging.getLogger(__name__)

STAGING = SQL_DIR / "staging"
MARTS = SQL_DIR / "marts"
RAW_SOURCES = ("merchants", "orders", "traffic", "fulfillment")
# raw table -> its event-time column (the day an event belongs to)
EVENT_SOURCES = {"orders": "order_ts", "traffic": "start_ts", "fulfillment": "event_ts"}
# built in this order: suspect_orders reads buyer_daily, merchant_daily reads suspect_orders
DAILY_TABLES = (
    "buyer_daily", "suspect_orders", "merchant_daily", "merchant_streamer_daily", "platform_daily",
)  # fmt: skip
FEATURES_TABLE = "features.merchant_features"
SPINE_TABLE = "features.spine_features"

# The required columns of docs/architecture.md (others may be added).
REQUIRED_COLUMNS = (
    "merchant_id", "as_of_date", "category", "tenure_days",
    "gmv_gross_7d", "gmv_gross_30d", "gmv_gross_90d", "gmv_gross_365d",
    "gmv_net_7d", "gmv_net_30d", "gmv_net_90d", "gmv_net_365d",
    "gmv_net_adj_30d", "gmv_net_adj_90d", "gmv_net_adj_365d",
    "gmv_growth_30d", "gmv_growth_90d", "gmv_cv_90d", "seasonal_trend_ratio",
    "orders_30d", "aov_30d", "refund_rate_30d", "return_rate_30d", "cancel_rate_30d",
    "on_time_ship_rate_30d", "mean_delivery_days_30d", "lost_rate_30d", "complaint_rate_30d",
    "sessions_30d", "viewers_30d", "conversion_rate_30d", "watch_minutes_30d",
    "streamer_hhi_90d", "top_streamer_share_90d", "days_since_top_streamer",
    "buyer_hhi_90d", "repeat_buyer_rate_90d", "quality_q",
    "brush_ring_density_30d", "no_track_share_30d", "odd_hour_share_30d", "gmv_spike_ratio",
    "brushing_score", "active_days_90d", "feature_version",
)  # fmt: skip

_SPINE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")


# --------------------------------------------------------------------------- table specs


@dataclass(frozen=True)
class TableSpec:
    """A table's schema and comments, read from the YAML beside its SQL model."""

    table: str
    description: str
    columns: tuple[tuple[str, str, str], ...]  # (name, type, description)
    unique: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]


@cache
def table_spec(model: str) -> TableSpec:
    """Schema of ``sql/marts/<model>.yml``."""
    path = MARTS / f"{model}.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    cols = tuple((c["name"], c["type"], str(c["description"])) for c in data["columns"])
    return TableSpec(data["table"], data["description"], cols, tuple(data.get("unique", ())))


def ensure_table(con: duckdb.DuckDBPyConnection, spec: TableSpec, name: str | None = None) -> None:
    """CREATE TABLE IF NOT EXISTS with explicit types and comments; refuse a drifted schema."""
    name = name or spec.table
    if table_exists(con, name):
        schema, tbl = name.split(".")
        have = [
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, tbl],
            ).fetchall()
        ]
        if have != spec.names:
            missing = sorted(set(spec.names) - set(have))
            extra = sorted(set(have) - set(spec.names))
            raise LivefinError(
                f"{name} has an older schema (missing {missing}, unexpected {extra}); "
                f"drop it (and features.merchant_daily_log for daily tables) to rebuild"
            )
        return
    _create_from_spec(con, spec, name)


def _create_from_spec(con: duckdb.DuckDBPyConnection, spec: TableSpec, name: str) -> None:
    # The mart .yml is the schema's home; this renders it (types, table and column comments).
    table = quote_ident(name)
    cols = ",\n    ".join(f"{quote_ident(c)} {t}" for c, t, _ in spec.columns)
    con.execute(f"create table if not exists {table} (\n    {cols}\n)")
    con.execute(f"comment on table {table} is {quote_literal(spec.description)}")
    for c, _, text in spec.columns:
        con.execute(f"comment on column {table}.{quote_ident(c)} is {quote_literal(text)}")


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The daily blocks, their build log and features.merchant_features (idempotent)."""
    run_ddl(con, "features")
    for model in (*DAILY_TABLES, "merchant_daily_log", "merchant_features"):
        ensure_table(con, table_spec(model))


# --------------------------------------------------------------------------- config/params


def _cfg() -> dict[str, Any]:
    return load_config("features")


def _params(**extra: object) -> dict[str, object]:
    cfg = _cfg()
    b, d = cfg["brushing"], cfg["daily"]
    w = b["score"]
    params: dict[str, object] = {
        "feature_version": str(cfg["version"]),
        "ring_min_orders": int(b["ring_min_orders"]),
        "ring_window_lag_days": ring_window_days() - 1,
        "ring_repeat_min": int(b["ring_repeat_min"]),
        "ring_elsewhere_repeat_days": int(b["ring_elsewhere_repeat_days"]),
        "ring_same_category_repeat_days": int(b["ring_same_category_repeat_days"]),
        "ring_account_scale": float(b["ring_account_scale"]),
        "odd_hour_start": int(b["odd_hour_start"]),
        "odd_hour_end": int(b["odd_hour_end"]),
        "burst_min_orders": int(b["burst_min_orders"]),
        "empty_parcel_max_g": float(b["empty_parcel_max_g"]),
        "spike_recent_days": int(b["spike_recent_days"]),
        "spike_baseline_days": int(b["spike_baseline_days"]),
        "spike_cap": float(b["spike_cap"]),
        "w_intercept": float(w["intercept"]),
        "w_ring_density": float(w["ring_density"]),
        "w_ring_account": float(w["ring_account"]),
        "w_non_live_share": float(w["non_live_share"]),
        "w_no_track_share": float(w["no_track_share"]),
        "w_odd_hour_share": float(w["odd_hour_share"]),
        "w_log_spike": float(w["log_spike"]),
        "on_time_hours": int(cfg["fulfillment"]["on_time_hours"]),
        "order_lookback_days": int(d["order_lookback_days"]),
        "default_q": float(cfg["quality"]["default_q"]),
        "quality_max_age_days": int(cfg["quality"]["max_age_days"]),
    }
    params.update({k: (v.isoformat() if isinstance(v, date) else v) for k, v in extra.items()})
    return params


def ring_window_days() -> int:
    """Days of buyer history a ring flag looks at (the order day and the days before it)."""
    return int(_cfg()["brushing"]["ring_window_days"])


def _run(con: duckdb.DuckDBPyConnection, path: Path, **params: object) -> None:
    run_sql_file(con, path, _params(**params))


def _require_raw(con: duckdb.DuckDBPyConnection) -> None:
    missing = [s for s in RAW_SOURCES if not table_exists(con, f"raw.{s}")]
    if missing:
        raise LivefinError(
            f"features need raw.{', raw.'.join(missing)}: run extract for those sources first"
        )


# --------------------------------------------------------------------------- daily blocks


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _partition_stats(con: duckdb.DuckDBPyConnection, lo: date, hi: date) -> dict[date, list[str]]:
    """(source, max _loaded_at, rows) per raw partition dt in [lo, hi]: what a day was built from."""
    out: dict[date, list[str]] = {}
    for source in EVENT_SOURCES:
        rows = con.execute(
            f"select _dt, max(_loaded_at), count(*) from {quote_ident(f'raw.{source}')} "
            "where _dt between ? and ? group by _dt",
            [lo, hi],
        ).fetchall()
        for dt, loaded, n in rows:
            out.setdefault(dt, []).append(f"{source}:{loaded}:{n}")
    return out


def _first_event_day(con: duckdb.DuckDBPyConnection) -> date | None:
    firsts = [
        con.execute(
            f"select min(cast({quote_ident(col)} as date)) from {quote_ident(f'raw.{src}')}"
        ).fetchone()[0]
        for src, col in EVENT_SOURCES.items()
    ]
    firsts = [f for f in firsts if f is not None]
    return min(firsts) if firsts else None


def ensure_daily(con: duckdb.DuckDBPyConnection, start: date, end: date) -> list[tuple[date, date]]:
    """Make the daily blocks current for days [start, end]; return the day ranges (re)built.

    A day is built when it is missing, when its raw partitions changed since it was built, or
    when config/features.yaml has a new version. Days before the first raw event are skipped.
    """
    _require_raw(con)
    ensure_tables(con)
    first = _first_event_day(con)
    if first is None or end < start:
        return []
    start = max(start, first)
    if end < start:
        return []
    cfg = _cfg()
    late = int(cfg["daily"]["late_days"])
    version = str(cfg["version"])
    stats = _partition_stats(con, start, end + timedelta(days=late))
    stamps: dict[date, str] = {}
    for day in _days(start, end):
        parts = [
            f"{day + timedelta(days=k)}|{p}"
            for k in range(late + 1)
            for p in sorted(stats.get(day + timedelta(days=k), []))
        ]
        stamps[day] = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    built = {
        d: (s, v)
        for d, s, v in con.execute(
            "select day, source_stamp, feature_version from features.merchant_daily_log "
            "where day between ? and ?",
            [start, end],
        ).fetchall()
    }
    todo = [d for d in _days(start, end) if built.get(d) != (stamps[d], version)]
    ranges = _ranges(todo, int(cfg["daily"].get("chunk_days", 120)))
    for a, b in ranges:
        _build_daily_range(con, a, b, stamps)
    return ranges


def _ranges(days: list[date], chunk: int) -> list[tuple[date, date]]:
    """Contiguous runs of days, each at most ``chunk`` days long."""
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and d - out[-1][1] == timedelta(days=1) and (d - out[-1][0]).days < chunk:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def _build_daily_range(
    con: duckdb.DuckDBPyConnection, a: date, b: date, stamps: dict[date, str]
) -> None:
    log.info("building daily feature blocks %s..%s", a, b)
    # ring flags look back over features.buyer_daily, not over raw orders
    _run(con, STAGING / "stg_orders.sql", start_day=a, end_day=b)
    _run(con, STAGING / "stg_order_changes.sql", start_day=a, end_day=b)
    _run(con, STAGING / "stg_fulfillment.sql", start_day=a, end_day=b)
    _run(con, STAGING / "stg_traffic.sql", start_day=a, end_day=b)
    days = _days(a, b)
    with transaction(con):
        for model in DAILY_TABLES:
            spec = table_spec(model)
            day_col = "order_day" if model == "suspect_orders" else "day"
            con.execute(
                f"DELETE FROM {quote_ident(spec.table)} WHERE {quote_ident(day_col)} "
                "BETWEEN ? AND ?",
                [a, b],
            )
            _run(con, MARTS / f"{model}.sql", start_day=a, end_day=b)
        con.execute("DELETE FROM features.merchant_daily_log WHERE day BETWEEN ? AND ?", [a, b])
        con.execute(
            """
            insert into features.merchant_daily_log
            select l.day, cast(current_timestamp as timestamp), coalesce(c.n, 0), l.stamp, ?
            from (select unnest(?::DATE[]) as day, unnest(?::VARCHAR[]) as stamp) as l
            left join (
                select day, count(*) as n from features.merchant_daily
                where day between ? and ? group by day
            ) as c on c.day = l.day
            """,
            [str(_cfg()["version"]), days, [stamps[d] for d in days], a, b],
        )


# --------------------------------------------------------------------------- as-of features


def _prepare_common(con: duckdb.DuckDBPyConnection) -> None:
    _run(con, STAGING / "stg_merchants.sql")
    if table_exists(con, "dq.merchant_quality"):
        _run(con, STAGING / "stg_merchant_quality.sql")
    else:
        _run(con, STAGING / "stg_merchant_quality_empty.sql")


def _compute_batch(con: duckdb.DuckDBPyConnection, min_date: date, max_date: date) -> None:
    """merchant_features.sql over temp table _feature_spine -> temp table merchant_features_batch."""
    _run(
        con,
        STAGING / "stg_order_versions.sql",
        start_day=min_date - timedelta(days=90),
        end_day=max_date - timedelta(days=1),
    )
    _run(con, MARTS / "merchant_features.sql", min_day=min_date, max_day=max_date)
    have = [r[0] for r in con.execute("describe merchant_features_batch").fetchall()]
    want = table_spec("merchant_features").names
    if sorted(have) != sorted(want):
        raise LivefinError(
            f"merchant_features.sql and merchant_features.yml disagree: "
            f"{sorted(set(have) ^ set(want))}"
        )


def _batch_rows(con: duckdb.DuckDBPyConnection) -> Any:
    """The computed batch as Arrow, the frame the table writes take."""
    return con.table("merchant_features_batch").to_arrow_table()


def prepare_night(con: duckdb.DuckDBPyConnection, as_of_date: date) -> None:
    """The daily blocks up to D - 1, then the night's temp views/tables stg_merchants,
    stg_merchant_quality and stg_active_merchants (the spine): all but the as-of step."""
    lookback = int(_cfg()["daily"]["lookback_days"])
    ensure_daily(
        con, as_of_date - timedelta(days=max(lookback, 365)), as_of_date - timedelta(days=1)
    )
    _prepare_common(con)
    _run(con, STAGING / "stg_active_merchants.sql", as_of_date=as_of_date)


def compute_night(con: duckdb.DuckDBPyConnection, as_of_date: date) -> Any:
    """The as-of step for the spine in ``_feature_spine`` as Arrow (a dask shard task runs it
    on its shard's exported inputs)."""
    _compute_batch(con, as_of_date, as_of_date)
    return _batch_rows(con)


def build_features(con: duckdb.DuckDBPyConnection, as_of_date: date) -> int:
    """Materialise features.merchant_features for ``as_of_date``; return the row count.

    Rows are for merchants onboarded before ``as_of_date`` with any activity in the 365 days
    before. Only ``as_of_date`` is written (delete + insert in one transaction); history is
    never recomputed.
    """
    as_of_date = _as_date(as_of_date)
    with stage_memory(con, "features"):
        prepare_night(con, as_of_date)
        _run(con, STAGING / "stg_feature_spine.sql")
        _compute_batch(con, as_of_date, as_of_date)
    n = replace_rows(
        con,
        FEATURES_TABLE,
        _batch_rows(con),
        where="as_of_date = ?",
        params=[as_of_date],
        fault="features.before_commit",
    )
    log.info("features for %s: %d merchants", as_of_date, n)
    return int(n)


def build_features_for_spine(
    con: duckdb.DuckDBPyConnection, spine: str, target: str = FEATURES_TABLE
) -> int:
    """Features for every (merchant_id, as_of_date) of table/view ``spine`` into ``target``.

    Same SQL as :func:`build_features`, so a pair gets identical values either way (credit
    training reads loan-origination pairs from features.merchant_features). Pairs already in
    ``target`` are replaced; other rows are untouched. Pass ``target=SPINE_TABLE``
    (features.spine_features) to keep spine rows apart. Returns the number of distinct pairs.
    """
    if not _SPINE_NAME.match(spine) or not _SPINE_NAME.match(target):
        raise LivefinError(f"spine/target must be a table or view name, got {spine!r} / {target!r}")
    try:
        con.execute(
            "create or replace temp table _feature_spine as "
            "select distinct cast(merchant_id as varchar) as merchant_id, "
            f"cast(as_of_date as date) as as_of_date from {quote_ident(spine)}"
        )
    except duckdb.Error as exc:
        raise LivefinError(
            f"spine {spine} must be a table/view with columns merchant_id, as_of_date: {exc}"
        ) from exc
    nulls, n, lo, hi = con.execute(
        "select count(*) filter (where merchant_id is null or as_of_date is null), count(*), "
        "min(as_of_date), max(as_of_date) from _feature_spine"
    ).fetchone()
    if nulls:
        raise LivefinError(f"spine {spine} has {nulls} rows with a null merchant_id or as_of_date")
    ensure_tables(con)
    ensure_table(con, table_spec("merchant_features"), target)
    if n == 0:
        return 0
    lookback = int(_cfg()["daily"]["lookback_days"])
    ensure_daily(con, lo - timedelta(days=max(lookback, 365)), hi - timedelta(days=1))
    _prepare_common(con)
    _compute_batch(con, lo, hi)
    replace_rows(
        con,
        target,
        _batch_rows(con),
        where="(merchant_id, as_of_date) in (select merchant_id, as_of_date from _feature_spine)",
    )
    return int(n)


def _as_date(value: date | str) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise LivefinError(f"not a date (YYYY-MM-DD): {value!r}") from exc
    return value


# --------------------------------------------------------------------------- brushing check


def brushing_auc(con: duckdb.DuckDBPyConnection, truth_path: str | Path, as_of_date: date) -> float:
    """AUC of ``brushing_score`` on D against simulator truth (parquet: merchant_id, brushing).

    Uses the Mann-Whitney statistic with tied scores counted half.
    """
    truth_path = Path(truth_path)
    if not truth_path.exists():
        raise LivefinError(f"truth file not found: {truth_path}")
    rows = con.execute(
        "select f.brushing_score, cast(t.brushing as boolean) "
        f"from {FEATURES_TABLE} as f join read_parquet(?) as t "
        "on cast(t.merchant_id as varchar) = f.merchant_id where f.as_of_date = ?",
        [str(truth_path), _as_date(as_of_date)],
    ).fetchall()
    pos = [s for s, y in rows if y]
    neg = [s for s, y in rows if not y]
    if not pos or not neg:
        raise LivefinError(
            f"brushing AUC needs both brushing and clean merchants with features on {as_of_date} "
            f"(got {len(pos)} brushing, {len(neg)} clean)"
        )
    return auc(pos, neg)


def auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    import numpy as np

    p = np.asarray(pos, dtype=float)
    q = np.sort(np.asarray(neg, dtype=float))
    below = np.searchsorted(q, p, side="left")
    not_above = np.searchsorted(q, p, side="right")
    return float((below + 0.5 * (not_above - below)).sum() / (len(p) * len(q)))
