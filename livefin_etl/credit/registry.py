"""Model inventory (SR 11-7): artifacts on disk, credit.model_registry, champion/challenger gate."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import xgboost as xgb

from livefin_etl.config import LivefinError, Settings, config_fingerprint, fault_point
from livefin_etl.credit.spec import FeatureSpec
from livefin_etl.warehouse import table_exists, transaction

log = logging.getLogger(__name__)

REGISTRY_DDL = """
create table if not exists credit.model_registry (
    model_version VARCHAR, trained_at TIMESTAMP, as_of_date DATE, status VARCHAR, reason VARCHAR,
    auc_oot DOUBLE, ks_oot DOUBLE, brier_oot DOUBLE, psi_score DOUBLE,
    n_train BIGINT, n_valid BIGINT, n_oot BIGINT, data_fingerprint VARCHAR,
    model_config_version VARCHAR, artifact_path VARCHAR, report_path VARCHAR
);
create table if not exists credit.model_events (
    event_seq BIGINT, event_at TIMESTAMP, model_version VARCHAR, action VARCHAR, from_status VARCHAR,
    to_status VARCHAR, reason VARCHAR
);
COMMENT ON TABLE credit.model_registry IS 'Model inventory: one row per trained PD model version; exactly one champion scores';
COMMENT ON COLUMN credit.model_registry.model_version IS 'm-<as_of YYYYMMDD>-<first 8 hex of sha256(model.json)>';
COMMENT ON COLUMN credit.model_registry.trained_at IS 'UTC time the model was registered';
COMMENT ON COLUMN credit.model_registry.as_of_date IS 'Training cut-off: loans whose default window closed by this date';
COMMENT ON COLUMN credit.model_registry.status IS 'champion (scores nightly) | challenger (kept, not used) | retired';
COMMENT ON COLUMN credit.model_registry.reason IS 'Why the gate (or a person) gave this status';
COMMENT ON COLUMN credit.model_registry.auc_oot IS 'AUC of calibrated PD on the out-of-time window';
COMMENT ON COLUMN credit.model_registry.ks_oot IS 'Kolmogorov-Smirnov statistic on the out-of-time window';
COMMENT ON COLUMN credit.model_registry.brier_oot IS 'Brier score of calibrated PD on the out-of-time window';
COMMENT ON COLUMN credit.model_registry.psi_score IS 'PSI of PD, train window -> out-of-time window';
COMMENT ON COLUMN credit.model_registry.n_train IS 'Loans in the train window';
COMMENT ON COLUMN credit.model_registry.n_valid IS 'Loans in the valid window (early stopping, calibration)';
COMMENT ON COLUMN credit.model_registry.n_oot IS 'Loans in the out-of-time window (evaluation only)';
COMMENT ON COLUMN credit.model_registry.data_fingerprint IS 'sha256 of the modelling frame (features, label, split)';
COMMENT ON COLUMN credit.model_registry.model_config_version IS 'version of config/model.yaml used';
COMMENT ON COLUMN credit.model_registry.artifact_path IS 'Folder with model.json, calibrator.json, features.json, metrics.json';
COMMENT ON COLUMN credit.model_registry.report_path IS 'Self-contained HTML model report';
COMMENT ON TABLE credit.model_events IS 'Audit trail of registry status changes (register, gate, promote, rollback)';
COMMENT ON COLUMN credit.model_events.event_seq IS 'Monotone event number (audit order)';
COMMENT ON COLUMN credit.model_events.action IS 'register | promote | supersede | rollback | reinstate';
"""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists credit")
    con.execute(REGISTRY_DDL)


@dataclass
class LoadedModel:
    version: str
    booster: xgb.Booster
    calibrator: dict[str, Any]
    spec: FeatureSpec
    cfg: dict[str, Any]
    path: Path


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):  # numpy scalars
        return _jsonable(obj.item())
    return obj


def write_artifacts(folder: Path, fitted, extra: dict[str, Any] | None = None) -> None:
    """model.json (XGBoost JSON, not pickle), calibrator, features + constraints, config, metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    from livefin_etl.credit.training import model_bytes

    (folder / "model.json").write_bytes(model_bytes(fitted.booster))
    files = {
        "calibrator.json": fitted.calibrator,
        "features.json": fitted.spec.to_json(),
        "constraints.json": dict(zip(fitted.spec.columns, fitted.spec.constraints(), strict=True)),
        "config.json": fitted.cfg,
        "metrics.json": {
            **fitted.metrics,
            **fitted.counts,
            "model_hash": fitted.hash,
            "data_fingerprint": fitted.fingerprint,
            "device": fitted.device,
            "config_fingerprint": config_fingerprint(fitted.cfg),
            **(extra or {}),
        },
    }
    for name, data in files.items():
        (folder / name).write_text(
            json.dumps(_jsonable(data), indent=2, ensure_ascii=False), encoding="utf-8"
        )
    (folder / "data_fingerprint.txt").write_text(fitted.fingerprint + "\n")


def load_model(path: Path | str, version: str | None = None) -> LoadedModel:
    path = Path(path)
    if not (path / "model.json").exists():
        raise LivefinError(f"model artifacts missing in {path} (model.json not found)")
    booster = xgb.Booster()
    booster.load_model(str(path / "model.json"))
    cal = json.loads((path / "calibrator.json").read_text())
    spec = FeatureSpec.from_json(json.loads((path / "features.json").read_text()))
    cfg = json.loads((path / "config.json").read_text())
    return LoadedModel(version or path.name, booster, cal, spec, cfg, path)


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


def load_champion(con: duckdb.DuckDBPyConnection) -> LoadedModel:
    champ = current_champion(con)
    if champ is None:
        raise LivefinError("no champion model in credit.model_registry; run `livefin train` first")
    return load_model(champ["artifact_path"], champ["model_version"])


def gate(
    champion: dict[str, Any] | None, auc: float, psi: float, cfg: dict[str, Any]
) -> tuple[str, str]:
    """Champion/challenger decision for a new model, with the reason recorded in the registry."""
    tol = float(cfg["champion_gate"]["auc_tolerance"])
    psi_max = float(cfg["champion_gate"]["psi_max"])
    psi_txt = f"score PSI {psi:.3f}" if math.isfinite(psi) else "score PSI n/a"
    if champion is None:
        return "champion", f"first model (oot AUC {auc:.4f}, {psi_txt})"
    if not math.isfinite(auc):
        return "challenger", "oot AUC could not be computed"
    if not math.isfinite(psi) or psi >= psi_max:
        return "challenger", f"{psi_txt} not below {psi_max} (unstable train -> oot)"
    champ_auc = champion["auc_oot"] if champion["auc_oot"] is not None else float("-inf")
    if auc < champ_auc - tol:
        return "challenger", (
            f"oot AUC {auc:.4f} < champion {champion['model_version']} {champ_auc:.4f} - {tol}"
        )
    return "champion", (
        f"oot AUC {auc:.4f} >= champion {champion['model_version']} "
        f"{champ_auc:.4f} - {tol} and {psi_txt} < {psi_max}"
    )


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


def register(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date, fitted) -> dict:
    """Write artifacts + report, apply the gate, insert the registry row (one transaction)."""
    from livefin_etl.credit import report

    ensure_tables(con)
    h = fitted.hash
    version = f"m-{as_of:%Y%m%d}-{h[:8]}"
    existing = con.execute(
        "select * from credit.model_registry where model_version = ?", [version]
    ).fetchone()
    m = fitted.metrics
    auc, ks, br = m["model"]["auc"], m["model"]["ks"], m["model"]["brier"]
    psi = m["psi_score"]
    result_extra = {"model_hash": h, "metrics": m, "device": fitted.device}
    if existing is not None:  # same data + seed -> same model: registering again is a no-op
        log.info("model %s already registered; nothing to do", version)
        row = {d[0]: v for d, v in zip(con.description, existing, strict=True)}
        return _jsonable({**row, **result_extra, "already_registered": True})

    final = Path(settings.models) / version
    Path(settings.models).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=settings.models))
    report_path = Path(settings.docs) / "models" / version / "report.html"
    try:
        write_artifacts(tmp, fitted, extra={"model_version": version, "as_of_date": str(as_of)})
        report.write_report(
            tmp / "report.html", title=f"PD model {version}", fitted=fitted, version=version
        )
        if final.exists():  # artifacts without a registry row: a crashed earlier run
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(final / "report.html", report_path)

    champion = current_champion(con)
    status, reason = gate(champion, auc, psi, fitted.cfg)
    row = {
        "model_version": version,
        "trained_at": _now(),
        "as_of_date": as_of,
        "status": status,
        "reason": reason,
        "auc_oot": _num(auc),
        "ks_oot": _num(ks),
        "brier_oot": _num(br),
        "psi_score": _num(psi),
        **fitted.counts,
        "data_fingerprint": fitted.fingerprint,
        "model_config_version": str(fitted.cfg["version"]),
        "artifact_path": str(final),
        "report_path": str(report_path),
    }
    with transaction(con):
        if status == "champion" and champion is not None:
            _set_status(
                con, champion["model_version"], "retired", f"superseded by {version}", "supersede"
            )
        con.execute(
            "insert into credit.model_registry ("
            + ", ".join(row)
            + ") values ("
            + ", ".join("?" for _ in row)
            + ")",
            list(row.values()),
        )
        _event(con, version, "register", None, status, reason)
        fault_point("registry.before_commit")
    log.info("registered %s as %s: %s", version, status, reason)
    return _jsonable({**row, **result_extra, "already_registered": False})


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
