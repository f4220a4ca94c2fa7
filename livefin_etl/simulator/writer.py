"""Turn a day's arrays into landing files: ``out/<source>/dt=YYYY-MM-DD/part-0.<ext>``.

Each file is assembled in one polars ``select`` (vectorised string building, one
query per file: per-call overhead dominates small days). Parquet goes through
polars -> arrow -> pyarrow with a fixed schema and no pandas metadata, so the
same seed gives byte-identical files.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from . import names
from .constants import DAY, U64
from .lender import REASONS
from .lifecycle import (
    AFTER_SALE_REASONS_ZH,
    AFTER_SALE_STATES_ZH,
    AFTER_SALE_TYPES_ZH,
    ORDER_STATES_ZH,
)
from .names import _num, _pick
from .params import CATEGORIES, CATEGORIES_ZH, EVENT_TYPES, SOURCES
from .world import DayTables, World

TS_CAP = 1 << 32  # "never" times are masked out, but are still formatted: keep them in range
CHUNK_ROWS = 200_000  # rows per CSV chunk: bounds the memory of peak days
ORDER_HEADERS = (
    "订单号",
    "商家ID",
    "买家手机号",
    "买家姓名",
    "收货地址",
    "下单时间",
    "商品金额",
    "实付金额",
    "订单状态",
    "退款金额",
    "直播间ID",
    "主播ID",
    "类目",
    "更新时间",
    "售后单号",
    "售后类型",
    "售后状态",
    "售后原因",
    "售后申请时间",
    "退款时间",
    "流量来源",
)
CHANNELS_ZH = ("直播", "商品卡", "短视频", "搜索")  # live, shelf, short video, search
MERCHANT_HEADERS = ("merchant_id", "merchant_name", "category", "region", "onboard_date")
FULFILLMENT_HEADERS = (
    "event_id",
    "order_id",
    "merchant_id",
    "event_type",
    "event_ts",
    "carrier",
    "tracking_no",
    "parcel_weight_g",
)
APPLICATION_HEADERS = (
    "application_id",
    "merchant_id",
    "applied_at",
    "requested_amount",
    "decision",
    "decision_reason",
    "loan_id",
)
LOAN_SCHEMA = pa.schema(
    [
        ("loan_id", pa.string()),
        ("merchant_id", pa.string()),
        ("origination_date", pa.date32()),
        ("principal", pa.float64()),
        ("fee_amount", pa.float64()),
        ("withhold_rate", pa.float64()),
        ("term_days", pa.int64()),
        ("legacy_limit", pa.float64()),
    ]
)
REPAY_SCHEMA = pa.schema(
    [
        ("loan_id", pa.string()),
        ("merchant_id", pa.string()),
        ("repay_date", pa.date32()),
        ("amount_repaid", pa.float64()),
        ("outstanding", pa.float64()),
        ("dpd", pa.int64()),
    ]
)


def orders_encoding(as_of_date: date) -> str:
    """Platform exports alternate: GBK on odd day-of-year, UTF-8 with BOM otherwise."""
    return "gbk" if as_of_date.timetuple().tm_yday % 2 == 1 else "utf-8-sig"


def _ids(prefix: str, nums: np.ndarray, width: int) -> pl.Expr:
    return pl.lit(prefix) + _num(nums, width)


def _ts(epoch_s: np.ndarray) -> pl.Expr:
    return pl.from_epoch(pl.lit(pl.Series(epoch_s.astype(np.int64))), time_unit="s").dt.strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def _ts_or_null(epoch_s: np.ndarray, valid: np.ndarray) -> pl.Expr:
    """Timestamps as text where ``valid``, else null (nulls are not formatted)."""
    secs = pl.when(pl.lit(pl.Series(valid))).then(pl.lit(pl.Series(epoch_s.astype(np.int64))))
    return pl.from_epoch(secs, time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")


def _f64(x: np.ndarray) -> pl.Expr:
    return pl.lit(pl.Series(x.astype(np.float64)))


def _i64(x: np.ndarray) -> pl.Expr:
    return pl.lit(pl.Series(x.astype(np.int64)))


def loan_ids(idx: np.ndarray) -> pl.Series:
    if not len(idx):
        return pl.Series([], dtype=pl.String)
    return pl.select(_ids("LN", np.asarray(idx) + 1, 7)).to_series()


def application_ids(idx: np.ndarray) -> pl.Series:
    if not len(idx):
        return pl.Series([], dtype=pl.String)
    return pl.select(_ids("AP", np.asarray(idx) + 1, 8)).to_series()


def _empty_table(schema: pa.Schema) -> pa.Table:
    """Zero-row table with the full schema (``schema.empty_table()`` would import pandas)."""
    pl_types = {
        pa.string(): pl.String,
        pa.date32(): pl.Date,
        pa.float64(): pl.Float64,
        pa.int64(): pl.Int64,
    }
    return pl.DataFrame(schema={f.name: pl_types[f.type] for f in schema}).to_arrow().cast(schema)


def _gzip(data: bytes) -> bytes:
    # level 1: a year at 100k merchants is ~50 GB of text; speed matters more than ratio; mtime=0
    # keeps the files byte-identical per seed
    return gzip.compress(data, compresslevel=1, mtime=0)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


COMPRESSIONS = (None, "gzip")


class Writer:
    def __init__(self, world: World, out: Path, compress: str | None = None) -> None:
        self.w = world
        self.out = out
        # Text exports (CSV, JSON lines) can be delivered gzipped, as platforms do for big days;
        # Parquet is compressed inside the file already.
        self.gz = compress == "gzip"
        self.mids = pl.select(_ids("M", np.arange(world.N), 6)).to_series()
        self.epoch0 = (world.start - date(1970, 1, 1)).days * DAY
        self.date8 = tuple(
            (world.start + timedelta(days=t)).strftime("%Y%m%d") for t in range(world.days)
        )
        self.counts = dict.fromkeys(SOURCES, 0)
        self.bytes = 0
        self.placed = 0  # orders placed; counts["orders"] is rows delivered (with re-deliveries)
        self._empty_loans = _parquet_bytes(_empty_table(LOAN_SCHEMA))
        self._empty_reps = _parquet_bytes(_empty_table(REPAY_SCHEMA))

    def _mid(self, idx: np.ndarray) -> pl.Expr:
        return pl.lit(self.mids).gather(pl.lit(pl.Series(idx.astype(np.int64))))

    def _partition(self, source: str, as_of_date: date) -> Path:
        folder = self.out / source / f"dt={as_of_date.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _put(self, source: str, as_of_date: date, ext: str, data: bytes) -> None:
        folder = self._partition(source, as_of_date)
        if self.gz and ext != "parquet":
            ext, data = f"{ext}.gz", _gzip(data)
        (folder / f"part-0.{ext}").write_bytes(data)
        self.bytes += len(data)

    @staticmethod
    def _csv(headers: tuple[str, ...], exprs: list[pl.Expr] | None, precision: int) -> str:
        if not exprs:  # header-only file for an empty day
            return ",".join(headers) + "\n"
        return pl.select([e.alias(h) for h, e in zip(headers, exprs, strict=True)]).write_csv(
            float_precision=precision
        )

    def write_day(self, tables: DayTables) -> None:
        as_of_date = self.w.start + timedelta(days=tables.t)
        self._merchants(as_of_date, tables.merchants)
        self._orders(as_of_date, tables)
        self._traffic(as_of_date, tables)
        self._fulfillment(as_of_date, tables)
        self._loans(as_of_date, tables)
        self._repayments(as_of_date, tables)
        self._applications(as_of_date, tables)

    # -------------------------------------------------------------- sources
    def _merchants(self, as_of_date: date, idx: np.ndarray) -> None:
        w = self.w
        exprs = None
        if idx.size:
            h = w.name_hash[idx]
            onboard = w.onboard[idx] + (w.start - date(1970, 1, 1)).days
            exprs = [
                self._mid(idx),
                names.shop_names(w.prov[idx], h >> U64(5), w.cat[idx], names.mix64(h)),
                _pick(CATEGORIES, w.cat[idx]),
                _pick(names.PROVINCE_NAMES, w.prov[idx]),
                pl.lit(pl.Series(onboard.astype(np.int32))).cast(pl.Date).dt.strftime("%Y-%m-%d"),
            ]
        self._put(
            "merchants", as_of_date, "csv", self._csv(MERCHANT_HEADERS, exprs, 2).encode("utf-8")
        )
        self.counts["merchants"] += idx.size

    def _orders(self, as_of_date: date, tables: DayTables) -> None:
        """The orders export: today's orders as known at export time, then the state changes of
        older orders since the previous export (see simulator/lifecycle.py)."""
        w, v = self.w, tables.versions
        n = v["merchant"].size
        enc = orders_encoding(as_of_date)

        def chunk(lo: int, hi: int) -> list[pl.Expr]:
            sess, day = v["session"][lo:hi], v["order_day"][lo:hi]
            has = pl.lit(pl.Series(sess >= 0))
            date8, seq = _pick(self.date8, day), _num(v["seq"][lo:hi], 8)
            m, buyer = v["merchant"][lo:hi], v["buyer"][lo:hi]
            status = v["as_status"][lo:hi]
            # null outside an after-sales case: concat_str and from_epoch keep nulls null, so
            # only the few rows with a case are formatted (a when/then would format them all)
            after = pl.when(pl.lit(pl.Series(status > 0))).then(pl.lit(""))
            return [
                pl.concat_str([pl.lit("DY"), date8, seq]),
                self._mid(m),
                names.phones(buyer),
                names.person_names(buyer),
                names.addresses(buyer),
                _ts(self.epoch0 + day.astype(np.int64) * DAY + v["ts"][lo:hi]),
                _f64(v["item"][lo:hi]),
                _f64(v["paid"][lo:hi]),
                _pick(ORDER_STATES_ZH, v["status"][lo:hi]),
                _f64(v["refund"][lo:hi]),
                pl.when(has).then(pl.concat_str([pl.lit("LS"), date8, _num(sess, 7)])),
                pl.when(has).then(_ids("ST", np.maximum(v["streamer"][lo:hi], 0), 7)),
                _pick(CATEGORIES_ZH, w.cat[m]),
                _ts(self.epoch0 + v["update_ts"][lo:hi]),
                pl.concat_str([pl.lit("AS"), date8, seq, after]),
                pl.concat_str([_pick(AFTER_SALE_TYPES_ZH, v["as_type"][lo:hi]), after]),
                pl.concat_str(
                    [_pick(AFTER_SALE_STATES_ZH, np.maximum(status - 1, 0)).cast(pl.String), after]
                ),
                pl.concat_str([_pick(AFTER_SALE_REASONS_ZH, v["reason"][lo:hi]), after]),
                _ts_or_null(self.epoch0 + np.minimum(v["req_ts"][lo:hi], TS_CAP), status > 0),
                _ts_or_null(self.epoch0 + np.minimum(v["refund_ts"][lo:hi], TS_CAP), status == 2),
                _pick(CHANNELS_ZH, v["channel"][lo:hi]),
            ]

        # BOM (if any) only once, at the start of the file
        self._put_chunks(
            "orders",
            as_of_date,
            ORDER_HEADERS,
            n,
            chunk,
            2,
            lambda text, first: text.encode(enc if first else enc.replace("-sig", "")),
        )
        self.counts["orders"] += n
        self.placed += tables.orders["merchant"].size

    def _put_chunks(
        self,
        source: str,
        as_of_date: date,
        headers: tuple[str, ...],
        n: int,
        chunk: Callable[[int, int], list[pl.Expr]],
        precision: int,
        encode: Callable[[str, bool], bytes],
    ) -> None:
        """Write a CSV in row chunks so that a Double 11 day never needs its whole text in memory."""
        folder = self._partition(source, as_of_date)
        # gzip: one member per chunk; concatenated members are one valid gzip stream (RFC 1952)
        pack = _gzip if self.gz else bytes
        with open(folder / ("part-0.csv.gz" if self.gz else "part-0.csv"), "wb") as f:
            if n == 0:
                self.bytes += f.write(pack(encode(",".join(headers) + "\n", True)))
            for lo in range(0, n, CHUNK_ROWS):
                hi = min(n, lo + CHUNK_ROWS)
                df = pl.select([e.alias(h) for h, e in zip(headers, chunk(lo, hi), strict=True)])
                text = df.write_csv(include_header=lo == 0, float_precision=precision)
                del df
                self.bytes += f.write(pack(encode(text, lo == 0)))

    def _traffic(self, as_of_date: date, tables: DayTables) -> None:
        s = tables.sessions
        ns = s["merchant"].size
        base = self.epoch0 + tables.t * DAY
        df = pl.select(
            session_id=_ids(f"LS{as_of_date.strftime('%Y%m%d')}", np.arange(ns), 7),
            merchant_id=self._mid(s["merchant"]),
            streamer_id=_ids("ST", self.w.streamer_id[s["merchant"], s["slot"]], 7),
            start_ts=_ts(base + s["start"]),
            end_ts=_ts(base + s["end"]),
            peak_viewers=_i64(s["peak"]),
            total_viewers=_i64(s["viewers"]),
            watch_minutes=_f64(s["watch"]),
            new_followers=_i64(s["followers"]),
            gmv_attributed=_f64(s["gmv"]),
        )
        buf = io.BytesIO()
        df.write_ndjson(buf)
        self._put("traffic", as_of_date, "jsonl", buf.getvalue())
        self.counts["traffic"] += ns

    def _fulfillment(self, as_of_date: date, tables: DayTables) -> None:
        e = tables.events
        k = e["seq"].size

        def chunk(lo: int, hi: int) -> list[pl.Expr]:
            order_day, seq_n = e["order_day"][lo:hi], e["seq"][lo:hi]
            date8 = _pick(self.date8, order_day)
            seq = _num(seq_n, 8)
            key = (order_day.astype(U64) << U64(32)) | seq_n.astype(U64)
            carrier = e["carrier"][lo:hi].astype(np.int64)
            tracked = pl.lit(pl.Series(carrier >= 0))
            return [
                pl.concat_str([pl.lit("EV"), date8, seq, _num(e["type"][lo:hi])]),
                pl.concat_str([pl.lit("DY"), date8, seq]),
                self._mid(e["merchant"][lo:hi]),
                _pick(EVENT_TYPES, e["type"][lo:hi]),
                _ts(self.epoch0 + e["ts"][lo:hi]),
                pl.when(tracked)
                .then(_pick(names.CARRIERS, np.maximum(carrier, 0)))
                .otherwise(None),
                names.tracking_numbers(carrier, names.mix64(key ^ U64(self.w.seed))),
                pl.lit(pl.Series(e["weight"][lo:hi].astype(np.float64), nan_to_null=True)),
            ]

        self._put_chunks(
            "fulfillment",
            as_of_date,
            FULFILLMENT_HEADERS,
            k,
            chunk,
            1,
            lambda text, first: text.encode("utf-8"),
        )
        self.counts["fulfillment"] += k

    @staticmethod
    def _arrow(schema: pa.Schema, as_of_date: date, cols: dict[str, pl.Expr]) -> pa.Table:
        as_of = pl.lit(as_of_date, dtype=pl.Date)
        df = pl.select(
            **{f.name: (as_of if f.type == pa.date32() else cols[f.name]) for f in schema}
        )
        return df.to_arrow().cast(schema)

    def _loans(self, as_of_date: date, tables: DayTables) -> None:
        x = tables.loans
        k = x["loan"].size
        if not k:
            self._put("loans", as_of_date, "parquet", self._empty_loans)
            return
        table = self._arrow(
            LOAN_SCHEMA,
            as_of_date,
            {
                "loan_id": _ids("LN", x["loan"] + 1, 7),
                "merchant_id": self._mid(x["merchant"]),
                "principal": _f64(x["principal"]),
                "fee_amount": _f64(x["fee"]),
                "withhold_rate": _f64(x["w"]),
                "term_days": _i64(x["term"]),
                "legacy_limit": _f64(x["limit"]),
            },
        )
        self._put("loans", as_of_date, "parquet", _parquet_bytes(table))
        self.counts["loans"] += k

    def _repayments(self, as_of_date: date, tables: DayTables) -> None:
        x = tables.repayments
        k = x["loan"].size
        if not k:
            self._put("repayments", as_of_date, "parquet", self._empty_reps)
            return
        table = self._arrow(
            REPAY_SCHEMA,
            as_of_date,
            {
                "loan_id": _ids("LN", x["loan"] + 1, 7),
                "merchant_id": self._mid(x["merchant"]),
                "amount_repaid": _f64(x["amount"]),
                "outstanding": _f64(x["outstanding"]),
                "dpd": _i64(x["dpd"]),
            },
        )
        self._put("repayments", as_of_date, "parquet", _parquet_bytes(table))
        self.counts["repayments"] += k

    def _applications(self, as_of_date: date, tables: DayTables) -> None:
        """Applications filed on the day, refused ones included, each with its same-day decision."""
        x = tables.applications
        k = x["app"].size
        exprs = None
        if k:
            secs = self.epoch0 + tables.t * DAY + x["sec"]
            approved = x["loan"] >= 0
            exprs = [
                _ids("AP", x["app"] + 1, 8),
                self._mid(x["merchant"]),
                _ts(secs),
                _f64(x["requested"]),
                pl.when(pl.lit(pl.Series(approved)))
                .then(pl.lit("approved"))
                .otherwise(pl.lit("refused")),
                _pick(REASONS, x["reason"]),
                pl.when(pl.lit(pl.Series(approved))).then(
                    _ids("LN", np.maximum(x["loan"], 0) + 1, 7)
                ),
            ]
        data = self._csv(APPLICATION_HEADERS, exprs, 2).encode("utf-8")
        self._put("applications", as_of_date, "csv", data)
        self.counts["applications"] += k
