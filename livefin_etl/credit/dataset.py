"""Point-in-time training set: one row per matured loan, features as of its origination date."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from livefin_etl.config import LivefinError
from livefin_etl.credit.spec import model_config
from livefin_etl.warehouse import registered, table_exists

log = logging.getLogger(__name__)

LABEL = "is_default"
TIME_COL = "origination_date"
SPINE_TABLE = "credit_training_spine"

EnsureFeatures = Callable[[duckdb.DuckDBPyConnection, str], int]


def _default_ensure_features() -> EnsureFeatures | None:
    try:
        from livefin_etl.features import build_features_for_spine
    except ImportError as exc:  # features module not installed yet: train on what exists
        log.warning(
            "cannot import features.build_features_for_spine (%s); "
            "loans without origination-date features are dropped",
            exc,
        )
        return None
    return build_features_for_spine


def _labelled_loans(
    con: duckdb.DuckDBPyConnection, as_of_date: date, threshold: int, horizon: int
) -> pd.DataFrame:
    # Observation window closed: origination + horizon <= as_of_date. Only repayment rows inside
    # [origination, origination + horizon] and strictly before as_of_date can set the label.
    return con.execute(
        """
        with loans as (
            select loan_id, merchant_id, origination_date, principal, legacy_limit
            from raw.loans
            where origination_date + ?::INTEGER <= ?::DATE
            qualify row_number() over (partition by loan_id order by origination_date) = 1
        )
        select l.loan_id, l.merchant_id, l.origination_date, l.principal, l.legacy_limit,
               coalesce(max(r.dpd), 0)::INTEGER as max_dpd,
               count(r.loan_id)::INTEGER as repayment_rows
        from loans l
        left join raw.repayments r
          on r.loan_id = l.loan_id
         and r.repay_date >= l.origination_date
         and r.repay_date <= l.origination_date + ?::INTEGER
         and r.repay_date < ?::DATE
        group by all
        order by l.origination_date, l.loan_id
        """,
        [horizon, as_of_date, horizon, as_of_date],
    ).df()


def _data_start(con: duckdb.DuckDBPyConnection) -> date | None:
    """First order day in the warehouse: every lookback window before it is censored."""
    if not table_exists(con, "raw.orders"):
        return None
    return con.execute("select min(order_ts)::DATE from raw.orders").fetchone()[0]


def _drop_burn_in(
    con: duckdb.DuckDBPyConnection, loans: pd.DataFrame, burn_in_days: int
) -> tuple[pd.DataFrame, int]:
    """Drop loans originated within ``burn_in_days`` of the first order in the warehouse.

    Their 90/365-day features are censored by the start of the data, not by the merchant's
    history, and would teach the model (and the PSI) an artefact.
    """
    if burn_in_days <= 0:
        return loans, 0
    start = _data_start(con)
    if start is None:
        return loans, 0
    cutoff = pd.Timestamp(start) + pd.Timedelta(days=burn_in_days)
    keep = pd.to_datetime(loans["origination_date"]) >= cutoff
    if (~keep).any():
        log.info(
            "dropping %s loans originated before %s (burn-in of %s days after data start %s)",
            int((~keep).sum()),
            cutoff.date(),
            burn_in_days,
            start,
        )
    out = loans.loc[keep].reset_index(drop=True)
    if out.empty:
        raise LivefinError(
            f"empty training set: every matured loan was originated within the {burn_in_days}-day "
            f"burn-in after the data start {start} (target.burn_in_days in config/model.yaml)"
        )
    return out, int((~keep).sum())


def mask_censored_features(
    frame: pd.DataFrame, start: date | None, lookback: dict[str, int]
) -> dict[str, str]:
    """Blank (NaN) every feature whose lookback window reaches before the data start for some
    loan of the set, in place; returns {feature: why}.

    A 180-day growth ratio computed 120 days after the data start divides by a window that is
    two-thirds empty: its value is an artefact of the data start that falls as the history
    grows, so train and out-of-time windows would differ for no reason a merchant caused (on
    the demo: ``gmv_growth_90d`` PSI 3.9, score PSI 0.56). Whole columns are blanked, never
    single loans, so missing-because-censored is never confused with missing-in-the-data;
    a longer history brings the feature back by itself."""
    if start is None or frame.empty or not lookback:
        return {}
    first = pd.Timestamp(frame[TIME_COL].min())
    history = int((first - pd.Timestamp(start)).days)
    out: dict[str, str] = {}
    for col, days in lookback.items():
        if col in frame.columns and int(days) > history:
            frame[col] = np.nan
            out[col] = (
                f"{int(days)}-day lookback, but the first loan ({first.date()}) has only "
                f"{history} days of data (from {start})"
            )
    if out:
        log.warning("features blanked (lookback before the data start): %s", ", ".join(out))
    return out


def _missing_feature_pairs(con: duckdb.DuckDBPyConnection, loans: pd.DataFrame) -> pd.DataFrame:
    pairs = loans[["merchant_id", "origination_date"]].drop_duplicates()
    if not table_exists(con, "features.merchant_features"):
        return pairs.rename(columns={"origination_date": "as_of_date"})
    with registered(con, "_credit_pairs", pairs):
        return con.execute(
            """
            select p.merchant_id, p.origination_date as as_of_date
            from _credit_pairs p
            anti join features.merchant_features f
              on f.merchant_id = p.merchant_id and f.as_of_date = p.origination_date
            """
        ).df()


def _ensure_origination_features(
    con: duckdb.DuckDBPyConnection,
    loans: pd.DataFrame,
    ensure_features: EnsureFeatures | None | Literal["auto"],
) -> None:
    """Materialise features for (merchant, origination date) pairs that have none yet."""
    missing = _missing_feature_pairs(con, loans)
    if not len(missing):
        return
    builder = _default_ensure_features() if ensure_features == "auto" else ensure_features
    if builder is None:
        return
    with registered(con, "_credit_missing", missing):
        con.execute(
            f"create or replace temp table {SPINE_TABLE} as "
            "select merchant_id, as_of_date::DATE as as_of_date from _credit_missing"
        )
    try:
        built = builder(con, SPINE_TABLE)
        log.info("built features for %s of %s missing loan origination pairs", built, len(missing))
    finally:
        con.execute(f"drop table if exists {SPINE_TABLE}")


def _join_origination_features(con: duckdb.DuckDBPyConnection, loans: pd.DataFrame) -> pd.DataFrame:
    """Each loan with the features row of its origination date (point in time)."""
    if not table_exists(con, "features.merchant_features"):
        raise LivefinError("features.merchant_features does not exist; run features first")
    with registered(con, "_credit_loans", loans):
        frame = con.execute(
            """
            select l.*, f.* exclude (merchant_id, as_of_date)
            from _credit_loans l
            join features.merchant_features f
              on f.merchant_id = l.merchant_id and f.as_of_date = l.origination_date
            order by l.origination_date, l.loan_id
            """
        ).df()
    dup = frame["loan_id"].duplicated()
    if dup.any():  # one row per (merchant_id, as_of_date) is the features contract
        raise LivefinError(
            f"features.merchant_features has duplicate (merchant_id, as_of_date) rows, e.g. "
            f"{frame.loc[dup, 'merchant_id'].iloc[0]} on {frame.loc[dup, 'origination_date'].iloc[0]}"
        )
    dropped = len(loans) - len(frame)
    if dropped:
        log.warning(
            "%s of %s matured loans have no origination-date features and are dropped",
            dropped,
            len(loans),
        )
    if frame.empty:
        raise LivefinError(
            f"empty training set: none of the {len(loans)} matured loans has features as of its "
            "origination date in features.merchant_features"
        )
    return frame


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    as_of_date: date,
    config: dict[str, Any] | None = None,
    ensure_features: EnsureFeatures | None | Literal["auto"] = "auto",
) -> pd.DataFrame:
    """Every loan whose default window closed by ``as_of_date``, labelled, with origination
    features.

    ``ensure_features(con, spine_table)`` materialises features for (merchant_id, as_of_date)
    pairs that are missing; ``"auto"`` uses ``features.build_features_for_spine``, ``None``
    builds nothing (loans without features are dropped with a warning). Columns: loan_id,
    merchant_id, origination_date, principal, legacy_limit, max_dpd, repayment_rows,
    is_default, every features.merchant_features column except the keys, and ``split``
    (train/valid/oot by origination date).
    """
    cfg = model_config(config)
    threshold = int(cfg["target"]["dpd_threshold"])
    horizon = int(cfg["target"]["horizon_days"])
    for t in ("raw.loans", "raw.repayments"):
        if not table_exists(con, t):
            raise LivefinError(f"{t} does not exist; extract loans and repayments first")
    loans = _labelled_loans(con, as_of_date, threshold, horizon)
    if loans.empty:
        raise LivefinError(
            f"empty training set: no loan in raw.loans originated on or before "
            f"{as_of_date} minus {horizon} days (the default window must have closed)"
        )
    loans[LABEL] = (loans["max_dpd"] >= threshold).astype(np.int8)
    loans, burned = _drop_burn_in(con, loans, int(cfg["target"].get("burn_in_days", 0) or 0))
    _ensure_origination_features(con, loans, ensure_features)
    frame = _join_origination_features(con, loans)
    censored = mask_censored_features(
        frame, _data_start(con), dict(cfg.get("feature_lookback_days") or {})
    )
    frame["split"], window = window_split(frame[TIME_COL], frame[LABEL], cfg["split"])
    frame.attrs.update(
        {
            "oot_window": window,
            "censored_features": censored,
            "as_of": str(as_of_date),
            "loans_matured": int(len(loans) + burned),
            "loans_in_burn_in": int(burned),
            "loans_without_features": int(len(loans) - len(frame)),
            "loans_without_repayments": int((loans["repayment_rows"] == 0).sum()),
        }
    )
    return frame.reset_index(drop=True)


def time_split(times: pd.Series, fractions: dict[str, float]) -> np.ndarray:
    """train/valid/oot by time; all rows of one timestamp fall in the same window."""
    t = pd.Series(pd.to_datetime(times)).reset_index(drop=True)
    if t.isna().any():
        raise LivefinError("time column has missing values; cannot split by time")
    n = len(t)
    order = np.argsort(t.to_numpy(), kind="stable")
    # share of rows strictly before each row's timestamp = where its timestamp starts
    first_pos = pd.Series(np.arange(n), index=t.iloc[order].to_numpy()).groupby(level=0).min()
    start = t.map(first_pos).to_numpy() / n
    f_train = float(fractions["train"])
    f_valid = f_train + float(fractions["valid"])
    out = np.where(start < f_train, "train", np.where(start < f_valid, "valid", "oot"))
    return out.astype(object)


def window_split(
    times: pd.Series, y: pd.Series, split_cfg: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """train/valid/oot with an out-of-time window of the last ``oot_days`` origination days.

    Without ``oot_days`` (or when those days would hold more than ``max_oot_share`` of the
    loans, i.e. the history is too short for the window asked) the ``oot`` fraction is used and
    the window is reported as shortened. The rest is cut into train/valid by their fractions.
    Returns the split and what the window holds (days, loans, defaults, targets)."""
    t = pd.Series(pd.to_datetime(times)).reset_index(drop=True)
    yv = np.asarray(y, dtype=int)
    days = split_cfg.get("oot_days")
    max_share = float(split_cfg.get("max_oot_share", 0.5))
    split, shortened = None, False
    if days:
        is_oot = (t > t.max() - pd.Timedelta(days=int(days))).to_numpy()
        if is_oot.mean() <= max_share:
            head = np.flatnonzero(~is_oot)
            f_tr = float(split_cfg["train"]) / (
                float(split_cfg["train"]) + float(split_cfg["valid"])
            )
            split = np.full(len(t), "oot", dtype=object)
            split[head] = time_split(t.iloc[head], {"train": f_tr, "valid": 1.0 - f_tr})
        else:
            shortened = True
            log.warning(
                "the %s-day out-of-time window would hold %.0f%% of the matured loans (more than "
                "max_oot_share %.0f%%): the history is too short, using the oot fraction %s",
                days, 100 * is_oot.mean(), 100 * max_share, split_cfg["oot"],
            )  # fmt: skip
    if split is None:
        split = time_split(t, split_cfg)
    oot = split == "oot"
    span = (t[oot].max() - t[oot].min()).days + 1 if oot.any() else 0
    info = {
        "oot_days_target": int(days) if days else None,
        "oot_days": int(span),
        "oot_from": str(t[oot].min().date()) if oot.any() else None,
        "oot_to": str(t[oot].max().date()) if oot.any() else None,
        "oot_loans": int(oot.sum()),
        "oot_defaults": int(yv[oot].sum()),
        "min_oot_defaults": int(split_cfg.get("min_oot_defaults", 0)),
        "shortened": shortened,
    }
    info["meets_target"] = bool(
        not shortened
        and (not days or span >= int(days) - 7)
        and info["oot_defaults"] >= info["min_oot_defaults"]
    )
    return split, info
