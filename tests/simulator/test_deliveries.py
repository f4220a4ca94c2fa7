"""Time-true deliveries: no landing file written by ``livefin sample`` holds anything that
happened after its export was taken, proven against the simulator's own timeline.

The simulator is deterministic, so stepping a :class:`World` with the same arguments replays
the truth the files were written from (every order's cancel, ship, delivery, after-sales
request and refund time) without the pipeline ever seeing it.
"""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from livefin_etl.config import CONFIG_DIR
from livefin_etl.simulator import SCALES, preset_params
from livefin_etl.simulator.lifecycle import EXPORT_HOUR, ORDER_STATES, TIMELINE
from livefin_etl.simulator.world import World

SEED, START, DAYS, MERCHANTS = 11, date(2025, 3, 1), 45, 80
MAPPING = yaml.safe_load(
    (CONFIG_DIR / "mappings" / "orders" / "douyin.yaml").read_text(encoding="utf-8")
)
EPOCH = datetime.combine(START, datetime.min.time())


def export_time(as_of_date: date) -> datetime:
    """The export of a business date is taken at 06:00 the next morning."""
    return datetime.combine(as_of_date + timedelta(days=1), datetime.min.time()) + timedelta(
        hours=EXPORT_HOUR
    )


def _contract(source: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / "sources" / f"{source}.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deliveries")
    cmd = [sys.executable, "-m", "livefin_etl.cli", "sample", "--scale", "tiny"]
    cmd += ["--seed", str(SEED), "--start", START.isoformat(), "--days", str(DAYS)]
    cmd += ["--merchants", str(MERCHANTS), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def truth() -> pl.DataFrame:
    """Every order's true timeline, replayed from the world the files were written from."""
    preset = SCALES["tiny"]
    p = preset_params(preset)  # the parameters `livefin sample --scale tiny` runs with
    w = World(p, SEED, START, DAYS, MERCHANTS, preset.orders_per_merchant_day)
    frames = []
    for t in range(-w.burn, DAYS):
        tables = w.step(t)
        if tables is None:
            continue
        o = tables.orders
        day = (START + timedelta(days=t)).strftime("%Y%m%d")
        cols = {"order_id": [f"DY{day}{i:08d}" for i in range(o["ts"].size)]}
        cols["outcome"] = o["status"]
        for k in ("created", *TIMELINE):
            sec = t * 86_400 + o["ts"] if k == "created" else o[k]
            cols[k] = np.where(sec < 1 << 39, sec, -1)
        frames.append(pl.DataFrame(cols))
    secs = pl.concat(frames)
    # true_<change>: when it really happened (null: never, or after the window)
    return secs.select(
        "order_id",
        "outcome",
        *(
            pl.when(pl.col(k) >= 0)
            .then(pl.lit(EPOCH) + pl.duration(seconds=pl.col(k)))
            .alias(f"true_{k}")
            for k in ("created", *TIMELINE)
        ),
    )


def _read(landing: Path, source: str, as_of_date: date) -> pl.DataFrame:
    folder = landing / source / f"dt={as_of_date}"
    f = next(folder.iterdir())
    if f.suffix == ".parquet":
        return pl.read_parquet(f)
    if f.suffix == ".jsonl":
        return pl.read_ndjson(f, infer_schema_length=None)
    raw = f.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        text = raw[3:].decode()
    else:  # orders alternate GBK and UTF-8 with BOM; the other CSVs are plain UTF-8
        text = raw.decode("gbk" if source == "orders" else "utf-8")
    frame = pl.read_csv(io.StringIO(text), infer_schema=False)
    return frame.rename(MAPPING["headers"]) if source == "orders" else frame


def _times(frame: pl.DataFrame, source: str) -> list[pl.Series]:
    """Every date and timestamp column the contract declares, parsed."""
    out = []
    for name, spec in _contract(source)["columns"].items():
        if spec["type"] not in ("TIMESTAMP", "DATE") or name not in frame.columns:
            continue
        col = frame[name]
        if col.dtype == pl.String:
            fmt = "%Y-%m-%d %H:%M:%S" if spec["type"] == "TIMESTAMP" else "%Y-%m-%d"
            col = col.str.to_datetime(fmt, strict=True)
        out.append(col.cast(pl.Datetime("us")))
    return out


@pytest.mark.parametrize(
    "source",
    ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments", "applications"],
)
def test_no_file_holds_an_event_after_its_export(landing: Path, source: str) -> None:
    checked = 0
    for i in range(DAYS):
        d = START + timedelta(days=i)
        frame = _read(landing, source, d)
        for col in _times(frame, source):
            late = col.drop_nulls() > export_time(d)
            assert not late.any(), f"{source} {d}: {col.name} after the export at {export_time(d)}"
            checked += col.drop_nulls().len()
    assert checked > 0


def test_every_order_row_is_its_true_state_at_export(landing: Path, truth: pl.DataFrame) -> None:
    """Each orders row is the order's true state when the export was taken, and an order is
    re-delivered in exactly the exports whose window holds one of its true changes."""
    states = MAPPING["values"]["status"]
    rows = []
    for i in range(DAYS):
        d = START + timedelta(days=i)
        rows.append(
            _read(landing, "orders", d).with_columns(dt=pl.lit(d), at=pl.lit(export_time(d)))
        )
    o = pl.concat(rows).with_columns(pl.col("status").replace_strict(states))
    j = o.join(truth, on="order_id", how="left")
    assert j["true_created"].null_count() == 0
    done = {
        k: pl.col(f"true_{k}").is_not_null() & (pl.col(f"true_{k}") <= pl.col("at"))
        for k in TIMELINE
    }
    expected = (
        pl.when(done["refund_ts"] & (pl.col("outcome") == 3))
        .then(pl.lit("partially_refunded"))
        .when(done["refund_ts"])
        .then(pl.lit("refunded"))
        .when(done["cancel_ts"])
        .then(pl.lit("cancelled"))
        .when(done["deliver_ts"])
        .then(pl.lit("completed"))
        .when(done["ship_ts"])
        .then(pl.lit("shipped"))
        .otherwise(pl.lit("paid"))
    )
    j = j.with_columns(expected=expected)
    assert (j["status"] == j["expected"]).all()
    assert set(j["status"].unique()) == set(ORDER_STATES)
    # after-sales columns appear only once the request / refund has happened
    assert (j["after_sale_id"].is_not_null() == j.select(done["req_ts"]).to_series()).all()
    assert (j["refund_ts"].is_not_null() == j.select(done["refund_ts"]).to_series()).all()
    refunded = j.filter(pl.col("refund_ts").is_not_null())
    assert (refunded["refund_ts"].str.to_datetime() == refunded["true_refund_ts"]).all()
    # the first delivery is the order day's export; a re-delivery follows a true change
    first = j.group_by("order_id").agg(pl.col("dt").min(), pl.col("true_created").first())
    assert (first["dt"] == first["true_created"].dt.date()).all()
    prev = j.sort("dt").with_columns(prev_at=pl.col("at").shift(1).over("order_id"))
    later = prev.filter(pl.col("prev_at").is_not_null())
    changed = pl.any_horizontal(
        pl.col(f"true_{k}").is_between(pl.col("prev_at"), pl.col("at"), closed="right")
        for k in TIMELINE
    )
    assert later.height > 0 and later.select(changed.all()).item()
    # refunds arrive days after the order (docs/simulator.md: about 7-15 days)
    lag = (truth["true_refund_ts"] - truth["true_created"]).drop_nulls().dt.total_hours() / 24
    assert 7 <= lag.median() <= 15


def test_logistics_events_are_the_true_times(landing: Path, truth: pl.DataFrame) -> None:
    f = pl.concat(
        _read(landing, "fulfillment", START + timedelta(days=i)) for i in range(DAYS)
    ).with_columns(pl.col("event_ts").str.to_datetime("%Y-%m-%d %H:%M:%S"))
    j = f.join(truth, on="order_id", how="left")
    for event, col in (("shipped", "true_ship_ts"), ("delivered", "true_deliver_ts")):
        e = j.filter(pl.col("event_type") == event)
        assert e.height > 0 and (e["event_ts"] == e[col]).all()
    # a returned parcel reaches the merchant after the buyer asked and before the refund
    r = j.filter((pl.col("event_type") == "returned") & pl.col("true_refund_ts").is_not_null())
    assert r.height > 0
    assert ((r["event_ts"] > r["true_req_ts"]) & (r["event_ts"] < r["true_refund_ts"])).all()


def test_applications_are_filed_on_their_day_with_the_same_day_decision(landing: Path) -> None:
    """An application is delivered in its own day's file; an approved one names the loan funded
    that day, a refused one names none (its outcome is never delivered)."""
    n_refused = n_approved = 0
    for i in range(DAYS):
        d = START + timedelta(days=i)
        apps = _read(landing, "applications", d)
        loans = _read(landing, "loans", d)
        if apps.height:
            at = apps["applied_at"].str.to_datetime("%Y-%m-%d %H:%M:%S")
            assert (at.dt.date() == d).all()
        approved = apps.filter(pl.col("decision") == "approved")
        refused = apps.filter(pl.col("decision") == "refused")
        assert sorted(approved["loan_id"]) == sorted(loans["loan_id"])
        assert refused["loan_id"].null_count() == refused.height
        assert (refused["decision_reason"] != "approved").all()
        n_refused += refused.height
        n_approved += approved.height
    assert n_refused > 0 and n_approved > 0
