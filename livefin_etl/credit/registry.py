"""Model inventory (SR 11-7): credit.model_registry, the audit trail, champion/challenger."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from livefin_etl.config import LivefinError, Settings, fault_point
from livefin_etl.credit.artifacts import LoadedModel, jsonable, load_model, write_artifacts
from livefin_etl.credit.gate import gate
from livefin_etl.warehouse import run_ddl, table_exists, transaction

log = logging.getLogger(__name__)

TRAIN_HINT = "run `livefin train --as-of YYYY-MM-DD`"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    run_ddl(con, "credit")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def registry_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """All registry rows, oldest first; [] before the first training (works read-only)."""
    if not table_exists(con, "credit.model_registry"):
        return []
    cur = con.execute("select * from credit.model_registry order by trained_at, model_version")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def current_champion(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    rows = [r for r in registry_rows(con) if r["status"] == "champion"]
    if len(rows) > 1:
        raise LivefinError(f"registry has {len(rows)} champions; fix credit.model_registry")
    return rows[0] if rows else None


def champion(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The champion's registry row, or None before the first training (pipeline's check)."""
    return current_champion(con)


def no_champion_reason(con: duckdb.DuckDBPyConnection) -> str:
    """Why nothing scores: "" with a champion, else what to do about it (score's message)."""
    rows = registry_rows(con)
    if not rows:
        return f"no model trained yet: {TRAIN_HINT}"
    if current_champion(con) is not None:
        return ""
    last = rows[-1]
    return (
        f"no model passed the champion gate: {last['model_version']} ({last['reason']}); "
        f"fix the data and retrain ({TRAIN_HINT}) or promote a model by hand "
        "(`livefin model promote VERSION`)"
    )


def load_champion(con: duckdb.DuckDBPyConnection) -> LoadedModel:
    champ = current_champion(con)
    if champ is None:
        raise LivefinError(no_champion_reason(con))
    return load_model(champ["artifact_path"], champ["model_version"])


def _event(con, version: str, action: str, from_s: str | None, to_s: str, reason: str) -> None:
    # event_seq orders events that share a timestamp
    con.execute(
        "insert into credit.model_events select coalesce(max(event_seq), 0) + 1, "
        "?, ?, ?, ?, ?, ? from credit.model_events",
        [_now(), version, action, from_s, to_s, reason],
    )


def _set_status(con, version: str, status: str, reason: str, action: str) -> None:
    old = con.execute(
        "select status from credit.model_registry where model_version = ?", [version]
    ).fetchone()
    con.execute(
        "update credit.model_registry set status = ?, reason = ? where model_version = ?",
        [status, reason, version],
    )
    _event(con, version, action, old[0] if old else None, status, reason)


def _existing(con: duckdb.DuckDBPyConnection, version: str) -> dict[str, Any] | None:
    cur = con.execute("select * from credit.model_registry where model_version = ?", [version])
    found = cur.fetchone()
    return None if found is None else dict(zip([d[0] for d in cur.description], found, strict=True))


def _store_artifacts(
    settings: Settings, version: str, as_of_date: date, fitted, decision=None
) -> Path:
    """Artifacts + report into a temp folder, renamed into place; the report is copied to docs."""
    from livefin_etl.credit import report

    final = Path(settings.models) / version
    Path(settings.models).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=settings.models))
    try:
        write_artifacts(
            tmp, fitted, extra={"model_version": version, "as_of_date": str(as_of_date)}
        )
        report.write_report(
            tmp / "report.html",
            title=f"PD model {version}",
            fitted=fitted,
            version=version,
            decision=decision,
        )
        if final.exists():  # artifacts without a registry row: a crashed earlier run
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report_path = Path(settings.docs) / "models" / version / "report.html"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(final / "report.html", report_path)
    return final


def _registry_row(
    settings: Settings, version: str, as_of_date: date, fitted, status: str, reason: str
) -> dict[str, Any]:
    m = fitted.metrics
    return {
        "model_version": version,
        "trained_at": _now(),
        "as_of_date": as_of_date,
        "status": status,
        "reason": reason,
        "auc_oot": _num(m["model"]["auc"]),
        "ks_oot": _num(m["model"]["ks"]),
        "brier_oot": _num(m["model"]["brier"]),
        "psi_score": _num(m["psi_score"]),
        **fitted.counts,
        "data_fingerprint": fitted.fingerprint,
        "model_config_version": str(fitted.cfg["version"]),
        "artifact_path": str(Path(settings.models) / version),
        "report_path": str(Path(settings.docs) / "models" / version / "report.html"),
    }


def register(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of_date: date, fitted
) -> dict[str, Any]:
    """Write artifacts + report, apply the champion gate, insert the registry row (one
    transaction). Returns the registry row plus ``model_hash``, ``metrics``, ``device``,
    ``gate_failed`` (every failed gate check, [] for a champion; for a model registered before,
    its recorded reason unless it is champion) and ``already_registered``."""
    ensure_tables(con)
    version = f"m-{as_of_date:%Y%m%d}-{fitted.hash[:8]}"
    extra = {"model_hash": fitted.hash, "metrics": fitted.metrics, "device": fitted.device}
    # the intervals and the window travel in the printed result (`livefin train`), not only the file
    mm = fitted.metrics["model"]
    extra.update(auc_oot_ci95=mm.get("auc_ci95"), ks_oot_ci95=mm.get("ks_ci95"))
    extra["oot_defaults"] = (
        fitted.metrics.get("training_set", {}).get("oot_window", {}).get("oot_defaults")
    )
    existing = _existing(con, version)
    if existing is not None:  # same data + seed -> same model: registering again is a no-op
        log.info("model %s already registered; nothing to do", version)
        failed = [] if existing["status"] == "champion" else [existing["reason"]]
        return jsonable({**existing, **extra, "gate_failed": failed, "already_registered": True})

    champ = current_champion(con)
    decision = gate(champ, fitted.metrics, fitted.cfg)  # first: the report opens with it
    _store_artifacts(settings, version, as_of_date, fitted, decision)
    row = _registry_row(settings, version, as_of_date, fitted, decision.status, decision.reason)
    with transaction(con):
        if decision.status == "champion" and champ is not None:
            _set_status(
                con, champ["model_version"], "retired", f"superseded by {version}", "supersede"
            )
        con.execute(
            f"insert into credit.model_registry ({', '.join(row)}) "
            f"values ({', '.join('?' for _ in row)})",
            list(row.values()),
        )
        _event(con, version, "register", None, decision.status, decision.reason)
        fault_point("registry.before_commit")
    log.info("registered %s as %s: %s", version, decision.status, decision.reason)
    return jsonable({**row, **extra, "gate_failed": decision.failed, "already_registered": False})


def promote(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    version: str,
    reason: str = "manual promotion",
) -> str:
    """Make ``version`` the champion (a person's decision, overriding the gate); returns it."""
    rows = {r["model_version"]: r for r in registry_rows(con)}
    if version not in rows:
        raise LivefinError(
            f"model {version} is not in credit.model_registry (known: {', '.join(rows) or 'none'})"
        )
    load_model(rows[version]["artifact_path"], version)  # refuse to promote broken artifacts
    champ = current_champion(con)
    if champ and champ["model_version"] == version:
        return version
    with transaction(con):
        if champ:
            _set_status(
                con, champ["model_version"], "retired", f"superseded by {version}", "supersede"
            )
        _set_status(con, version, "champion", reason, "promote")
    return version


def rollback(con: duckdb.DuckDBPyConnection, settings: Settings) -> str:
    """Retire the champion and reinstate the one before it (skipping rolled-back ones).

    Returns the reinstated version."""
    champ = current_champion(con)
    if champ is None:
        raise LivefinError("no champion to roll back")
    events = con.execute(
        "select model_version, action, to_status from credit.model_events order by event_seq desc"
    ).fetchall()
    rolled_back = {v for v, a, _ in events if a == "rollback"}
    rows = {r["model_version"]: r for r in registry_rows(con)}
    previous = next(
        (
            v
            for v, _, to in events
            if to == "champion"
            and v != champ["model_version"]
            and v not in rolled_back
            and v in rows
        ),
        None,
    )
    if previous is None:
        raise LivefinError(f"no earlier champion to roll back to from {champ['model_version']}")
    load_model(rows[previous]["artifact_path"], previous)
    with transaction(con):
        _set_status(
            con, champ["model_version"], "retired", f"rolled back to {previous}", "rollback"
        )
        _set_status(
            con,
            previous,
            "champion",
            f"reinstated by rollback of {champ['model_version']}",
            "reinstate",
        )
    return previous
