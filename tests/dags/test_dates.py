"""The business-date rule, checked against Airflow's own CronTriggerTimetable ticks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import livefin_dates as ld
import pytest


def _ticks(cron: str, start: datetime, end: datetime) -> list:
    """DagRunInfos Airflow's scheduler would create for ``cron`` (Shanghai) in [start, end]."""
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    tt = CronTriggerTimetable(cron, timezone="Asia/Shanghai")
    out, last = [], None
    restriction = TimeRestriction(earliest=start, latest=end, catchup=True)
    while (
        info := tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    ) is not None:
        out.append(info)
        last = info.data_interval
    return out


def test_ingest_tick_processes_previous_shanghai_day() -> None:
    infos = _ticks(
        ld.INGEST_CRON, datetime(2025, 3, 9, tzinfo=UTC), datetime(2025, 3, 12, tzinfo=UTC)
    )
    assert infos, "the timetable produced no runs"
    for info in infos:
        # Airflow 3 cron semantics: a point in time, not an interval.
        assert info.data_interval.start == info.data_interval.end == info.logical_date
    # 02:00 Shanghai on 03-10 is 18:00 UTC on 03-09: the UTC date would be off by one.
    first = infos[0]
    assert first.logical_date == datetime(2025, 3, 9, 18, 0, tzinfo=UTC)
    assert ld.business_date_for(first.logical_date) == date(2025, 3, 9)
    got = [ld.business_date_for(i.logical_date) for i in infos]
    assert got == [date(2025, 3, 9) + timedelta(days=k) for k in range(len(infos))]
    # The naive "interval start minus a day" reading of the old semantics gives the wrong date.
    assert first.data_interval.start.date() - timedelta(days=1) != got[0]


def test_weekly_training_runs_as_of_sunday() -> None:
    """livefin_train_weekly's timetable: Monday's run is keyed by the ISO week that ended on the
    Sunday before, and the key resolves to that Sunday (the date the old rule gave)."""
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronPartitionTimetable

    tt = CronPartitionTimetable(
        ld.TRAIN_CRON, timezone=ld.BUSINESS_TZ_NAME, run_offset=-1, key_format=ld.WEEK_KEY_FORMAT
    )
    restriction = TimeRestriction(
        earliest=datetime(2025, 3, 1, tzinfo=UTC), latest=None, catchup=True
    )
    last, keys, days = None, [], []
    for _ in range(3):
        info = tt.next_dagrun_info_v2(last_dagrun_info=last, restriction=restriction)
        day, rule = ld.resolve_business_date(
            partition_key=info.partition_key, run_after=info.run_after
        )
        assert rule == "partition_key" and day == ld.business_date_for(info.run_after)
        keys.append(info.partition_key)
        days.append(day)
        last = info
    assert keys == ["2025-W09", "2025-W10", "2025-W11"]
    assert days == [date(2025, 3, 2), date(2025, 3, 9), date(2025, 3, 16)]
    assert all(d.weekday() == 6 for d in days)
    with pytest.raises(ValueError, match="ISO week"):
        ld.date_from_partition_key("2025-W60")


def _ingest_timetable():
    """livefin_ingest's timetable, built as the DAG file builds it."""
    from airflow.timetables.trigger import CronPartitionTimetable

    return CronPartitionTimetable(
        ld.INGEST_CRON,
        timezone=ld.BUSINESS_TZ_NAME,
        run_offset=-1,
        key_format=ld.PARTITION_KEY_FORMAT,
    )


def test_scheduled_ingest_runs_are_keyed_and_named_by_business_date() -> None:
    """What the scheduler creates: the run at 02:00 Shanghai on D + 1 has partition key D and a
    run id containing D (Airflow's CronPartitionTimetable.generate_run_id)."""
    from airflow.timetables.base import TimeRestriction
    from airflow.utils.types import DagRunType

    tt = _ingest_timetable()
    restriction = TimeRestriction(
        earliest=datetime(2025, 3, 9, tzinfo=UTC), latest=None, catchup=True
    )
    last, keys = None, []
    for _ in range(3):
        info = tt.next_dagrun_info_v2(last_dagrun_info=last, restriction=restriction)
        # The key is the date the old rule derived from the run's moment.
        assert info.partition_key == ld.business_date_for(info.run_after).isoformat()
        run_id = tt.generate_run_id(
            run_type=DagRunType.SCHEDULED,
            run_after=info.run_after,
            data_interval=info.data_interval,
            partition_key=info.partition_key,
        )
        assert run_id.startswith(f"scheduled__{info.run_after.isoformat()}__{info.partition_key}__")
        keys.append(info.partition_key)
        last = info
    assert keys == ["2025-03-09", "2025-03-10", "2025-03-11"]


def test_backfill_window_covers_exactly_the_business_dates() -> None:
    first, last = date(2025, 3, 1), date(2025, 3, 7)
    start, end = ld.backfill_window(first, last)
    infos = list(_ingest_timetable().iter_partition_dagrun_infos(earliest=start, latest=end))
    assert [i.partition_key for i in infos] == [
        (first + timedelta(days=k)).isoformat() for k in range(7)
    ]
    # A backfill run's run_after is its partition's own tick (D at 02:00), not D + 1: the
    # moment-based fallback would be a day early, which is why the key comes first.
    assert ld.business_date_for(infos[0].run_after) == first - timedelta(days=1)
    assert ld.resolve_business_date(
        partition_key=infos[0].partition_key, run_after=infos[0].run_after
    ) == (first, "partition_key")
    with pytest.raises(ValueError):
        ld.backfill_window(last, first)


def test_rule_precedence_key_then_conf_then_assets_then_logical_then_run_after() -> None:
    la = datetime(2025, 3, 9, 18, 0, tzinfo=UTC)  # 02:00 Shanghai on 03-10
    ra = datetime(2025, 3, 10, 23, 0, tzinfo=UTC)  # 07:00 Shanghai on 03-11
    events = {"livefin://raw/orders": [{"business_date": "2025-03-05"}]}
    # A partitioned run's key decides; a conf date may repeat it but not contradict it.
    assert ld.resolve_business_date(
        partition_key="2025-03-04", requested="2025-03-04", asset_events=events, logical_date=la
    ) == (date(2025, 3, 4), "partition_key")
    with pytest.raises(ValueError, match="disagrees with the run's partition key"):
        ld.resolve_business_date(partition_key="2025-03-04", requested="2025-02-01")
    assert ld.resolve_business_date(
        requested="2025-02-01", asset_events=events, logical_date=la
    ) == (date(2025, 2, 1), "conf")
    assert ld.resolve_business_date(asset_events=events, logical_date=la) == (
        date(2025, 3, 5),
        "asset_events",
    )
    assert ld.resolve_business_date(asset_events={"x": [{}]}, logical_date=la) == (
        date(2025, 3, 9),
        "logical_date",
    )
    # Asset-triggered and manual runs have no logical date in Airflow 3: run_after decides.
    assert ld.resolve_business_date(logical_date=None, run_after=ra) == (
        date(2025, 3, 10),
        "run_after",
    )
    with pytest.raises(ValueError):
        ld.resolve_business_date()


def test_asset_events_newest_per_source_then_oldest_across_sources() -> None:
    events = {
        # orders also re-delivered an old date; merchants is a day behind.
        "livefin://raw/orders": [{"business_date": "2025-03-01"}, {"business_date": "2025-03-09"}],
        "livefin://raw/traffic": [{"business_date": "2025-03-09"}],
        "livefin://raw/merchants": [{"business_date": "2025-03-08"}, {"status": "passed"}],
    }
    assert ld.date_from_asset_events(events) == date(2025, 3, 8)
    assert ld.date_from_asset_events({"a": [{"status": "x"}]}) is None


def test_bad_inputs_fail_loudly() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        ld.business_date_for(datetime(2025, 3, 10, 2, 0))
    with pytest.raises(ValueError, match="not a date"):
        ld.parse_date("yesterday")
    assert ld.parse_date("2025-03-10T02:00:00+08:00") == date(2025, 3, 10)
    assert ld.run_id_for(date(2025, 3, 9), "abcd1234") == "20250309-abcd1234"


def test_manual_trigger_run_id_names_the_business_date() -> None:
    """`tools.airflow_local trigger` names the run by business date, so the grid reads by it."""
    import json
    from datetime import UTC, date, datetime

    from tools.airflow_local import trigger_args

    args = trigger_args(
        "livefin_nightly", date(2025, 12, 31), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert args[:3] == ["dags", "trigger", "livefin_nightly"]
    assert json.loads(args[args.index("--conf") + 1]) == {"business_date": "2025-12-31"}
    assert args[args.index("--run-id") + 1] == "bd_2025-12-31__manual_20260102T030405"
