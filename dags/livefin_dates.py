"""The business-date rule shared by every livefin DAG task (stdlib only, so DAG files stay light).

Rule, applied in this order by :func:`resolve_business_date`:

1. the run's **partition key** (``YYYY-MM-DD``): scheduled and backfill runs of
   ``livefin_ingest`` (``CronPartitionTimetable``, key = the previous Shanghai day) and the
   ``livefin_nightly`` runs their asset events trigger (``PartitionedAssetTimetable``) carry the
   business date as their partition key (``livefin_train_weekly``: the ISO week ``YYYY-Www``,
   trained as of its Sunday), so the UI and API show D on every run and scheduled /
   backfill run ids contain it (``scheduled__<run_after>__<D>__<random>``). A conf / params
   ``business_date`` that disagrees with the key is an error, not a silent override;
2. an explicit ``business_date`` in the run's conf / params (manual trigger, UI form, reruns);
3. asset-triggered runs without a key: the ``business_date`` extras of the triggering asset
   events; per asset the newest date, then the oldest of those (the newest date that *every*
   source delivered);
4. otherwise the run's moment, ``logical_date`` or, when that is None (asset-triggered or
   manual runs in Airflow 3), ``dag_run.run_after``, converted to Asia/Shanghai, minus one day.
   Not for partitioned runs: a backfill run's ``run_after`` is its partition's own tick (D at
   02:00), which is why the key comes first.

Why (4) does not use the data interval: with ``CronTriggerTimetable`` (what a cron string or
``@daily`` becomes in Airflow 3) ``data_interval_start == data_interval_end == logical_date``,
so "interval start" is *not* yesterday. The 02:00 Asia/Shanghai ingest run of 2025-03-10
(``logical_date`` 2025-03-09T18:00Z) processes business date 2025-03-09: the platform delivers
the previous Shanghai day's files after midnight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

BUSINESS_TZ_NAME = "Asia/Shanghai"
BUSINESS_TZ = ZoneInfo(BUSINESS_TZ_NAME)
# The platform delivers D's files overnight; the ingest DAG runs at 02:00 local time on D + 1.
INGEST_CRON = "0 2 * * *"
# Weekly training, Monday 03:00 local time: trains as of the Sunday just ended.
TRAIN_CRON = "0 3 * * 1"
LAG_DAYS = 1
# Partition keys of the ingest timetable (run_offset=-1: the tick before the run, i.e. D at
# 02:00, formatted in Asia/Shanghai) and of the nightly runs its asset events trigger.
PARTITION_KEY_FORMAT = "%Y-%m-%d"
# Weekly training is keyed by the ISO week it trains through: the run on Monday 2025-03-10 takes
# the previous tick (Monday 03-03) as its partition, "2025-W10", i.e. as of Sunday 2025-03-09.
WEEK_KEY_FORMAT = "%G-W%V"


def parse_date(value: str | date | datetime) -> date:
    """``YYYY-MM-DD`` (or a date) -> date; a clear error for anything else."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ValueError(f"business_date '{value}' is not a date (YYYY-MM-DD)") from None


def date_from_partition_key(key: str) -> date:
    """Business date of a partition key: ``YYYY-MM-DD``, or ``YYYY-Www`` (its Sunday)."""
    text = str(key).strip()
    if len(text) == 8 and text[4:6] == "-W" and text[:4].isdigit() and text[6:].isdigit():
        try:
            return date.fromisocalendar(int(text[:4]), int(text[6:]), 7)
        except ValueError:
            raise ValueError(f"partition key '{key}' is not an ISO week (YYYY-Www)") from None
    return parse_date(text)


def business_date_for(moment: datetime) -> date:
    """Business date processed by a run triggered at ``moment``: Shanghai calendar day - 1."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive datetime is ambiguous; Airflow always hands out aware ones.
        raise ValueError(f"moment {moment!r} has no timezone")
    return moment.astimezone(BUSINESS_TZ).date() - timedelta(days=LAG_DAYS)


def date_from_asset_events(events: Mapping[str, Iterable[Mapping]]) -> date | None:
    """Newest ``business_date`` per asset, then the oldest across assets (None if no extras).

    ``events`` maps an asset URI to its triggering events' ``extra`` dicts.
    """
    newest: list[date] = []
    for extras in events.values():
        dates = [parse_date(e["business_date"]) for e in extras if e and e.get("business_date")]
        if dates:
            newest.append(max(dates))
    return min(newest) if newest else None


def resolve_business_date(
    *,
    partition_key: str | None = None,
    requested: str | date | None = None,
    asset_events: Mapping[str, Iterable[Mapping]] | None = None,
    logical_date: datetime | None = None,
    run_after: datetime | None = None,
) -> tuple[date, str]:
    """Apply the rule; returns the date and which branch decided it (for the task log)."""
    if partition_key:
        keyed = date_from_partition_key(partition_key)
        if requested and parse_date(requested) != keyed:
            raise ValueError(
                f"business_date {parse_date(requested)} disagrees with the run's partition key "
                f"{partition_key}: trigger without a partition key to override the date"
            )
        return keyed, "partition_key"
    if requested:
        return parse_date(requested), "conf"
    if asset_events:
        found = date_from_asset_events(asset_events)
        if found is not None:
            return found, "asset_events"
    if logical_date is not None:
        return business_date_for(logical_date), "logical_date"
    if run_after is not None:
        return business_date_for(run_after), "run_after"
    raise ValueError("cannot derive a business date: no conf, asset events or run time")


def backfill_window(first: date, last: date) -> tuple[datetime, datetime]:
    """``airflow backfill create`` window whose partitions are business dates first..last.

    For a partitioned DAG the window bounds the *partition dates* (D at 02:00 Shanghai for
    business date D), read as Shanghai wall-clock time: [D_first 00:00, D_last 23:59:59].
    """
    if last < first:
        raise ValueError(f"last date {last} is before first date {first}")
    start = datetime.combine(first, datetime.min.time(), BUSINESS_TZ)
    end = datetime.combine(last, datetime.max.time(), BUSINESS_TZ)
    return start.replace(microsecond=0), end.replace(microsecond=0)


def run_id_for(day: date, token: str) -> str:
    """Pipeline run id for a DAG run: ``YYYYMMDD-<token>`` like ``pipeline.new_run_id``."""
    return f"{day:%Y%m%d}-{token}"
