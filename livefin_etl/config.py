"""Settings and versioned config files, selected in one place.

Every path can be overridden by an environment variable; the CLI and the DAGs
both call :func:`get_settings`, so they always agree.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(os.environ.get("LIVEFIN_CONFIG_DIR", REPO_ROOT / "config"))
SQL_DIR = REPO_ROOT / "sql"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"


class LivefinError(RuntimeError):
    """An error with a message meant for the user: printed without a traceback."""


class StageBlocked(LivefinError):
    """A stage refused to run because a gate for its date failed."""


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    home: Path
    landing: Path
    warehouse: Path
    published: Path
    exports: Path
    models: Path
    docs: Path
    airflow_home: Path
    threads: int
    keep_snapshots: int = 7
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lock_path(self) -> Path:
        return self.warehouse.with_suffix(".lock")

    def ensure_dirs(self) -> None:
        for p in (
            self.landing,
            self.warehouse.parent,
            self.published,
            self.exports,
            self.models,
            self.docs,
        ):
            p.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    """Resolve settings from the environment (LIVEFIN_*), with the embedded defaults."""
    home = _env_path("LIVEFIN_HOME", (Path.cwd() / "state").resolve())
    threads = int(os.environ.get("LIVEFIN_THREADS", "0")) or max(1, os.cpu_count() or 1)
    return Settings(
        home=home,
        landing=_env_path("LIVEFIN_LANDING", home / "landing"),
        warehouse=_env_path("LIVEFIN_WAREHOUSE", home / "warehouse" / "livefin.duckdb"),
        published=_env_path("LIVEFIN_PUBLISHED", home / "published"),
        exports=_env_path("LIVEFIN_EXPORTS", home / "exports"),
        models=_env_path("LIVEFIN_MODELS", home / "models"),
        docs=_env_path("LIVEFIN_DOCS", home / "docs"),
        airflow_home=_env_path("AIRFLOW_HOME", home / "airflow"),
        threads=threads,
        keep_snapshots=int(os.environ.get("LIVEFIN_KEEP_SNAPSHOTS", "7")),
    )


def _pii_key_path(settings: Settings) -> Path:
    return _env_path("LIVEFIN_PII_KEY_FILE", settings.home / "pii.key")


def pii_key_location(settings: Settings) -> str:
    """Where :func:`pii_key` reads the key from, for messages (never the key itself)."""
    return "LIVEFIN_PII_KEY" if os.environ.get("LIVEFIN_PII_KEY") else str(_pii_key_path(settings))


def pii_key(settings: Settings | None = None) -> bytes:
    """The keyed-hash secret for PII. Never written to DuckDB or logs.

    Order: LIVEFIN_PII_KEY env var, then LIVEFIN_PII_KEY_FILE, then ``<home>/pii.key``. It is
    never created here: a new random key would silently unlink every earlier day's hashed ids,
    so only :func:`create_pii_key` (``livefin init``) makes one.
    """
    env = os.environ.get("LIVEFIN_PII_KEY")
    if env:
        return env.encode()
    settings = settings or get_settings()
    path = _pii_key_path(settings)
    if not path.exists():
        raise LivefinError(
            f"PII key {path} not found: create it once with `livefin init` (a new home), or put "
            "the original key back (a new key would no longer link buyers to earlier days)"
        )
    key = path.read_text().strip()
    if not key:
        raise LivefinError(f"PII key {path} is empty: put the original key back")
    return key.encode()


def create_pii_key(settings: Settings) -> str:
    """Create ``<home>/pii.key`` (mode 0600) unless a key exists; says where the key lives."""
    if os.environ.get("LIVEFIN_PII_KEY"):
        return "LIVEFIN_PII_KEY"
    path = _pii_key_path(settings)
    if path.exists():
        return f"{path} (kept)"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return f"{path} (created)"


def key_fingerprint(key: bytes) -> str:
    """HMAC of a constant under the key: identifies the key without revealing it."""
    return hmac.new(key, b"livefin pii key fingerprint v1", hashlib.sha256).hexdigest()[:16]


@cache
def load_config(name: str) -> dict[str, Any]:
    """Load ``config/<name>.yaml``. Each file carries a ``version`` stamped on its rows."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        raise LivefinError(f"config file not found: {path}")
    data = read_yaml(path)
    if "version" not in data:
        raise LivefinError(f"config file {path} has no 'version'")
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """A config YAML file as a mapping (empty file: ``{}``); a syntax error is one line that
    names the file, line and column, not a parser traceback."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise LivefinError(f"{where}: YAML syntax error ({problem})") from None
    except UnicodeDecodeError:
        raise LivefinError(f"{path}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LivefinError(f"{path}: expected a mapping of settings, got a {type(data).__name__}")
    return data


def config_fingerprint(data: dict[str, Any]) -> str:
    """Short content hash, so a config edited without a version bump is still detectable."""
    return hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:12]


def fault_point(point: str) -> None:
    """Fault-injection hook for tests: ``LIVEFIN_TEST_PAUSE_AT=<point>`` pauses the process here
    (writing ``LIVEFIN_TEST_PAUSE_MARKER``) so a test can ``kill -9`` it at a known moment;
    ``LIVEFIN_TEST_KILL_AT=<point>`` SIGKILLs the first process to get here (a Dask worker),
    once: it creates ``LIVEFIN_TEST_KILL_MARKER`` (holding its pid) before it dies."""
    if os.environ.get("LIVEFIN_TEST_KILL_AT") == point:
        _kill_once(Path(os.environ["LIVEFIN_TEST_KILL_MARKER"]))
    if os.environ.get("LIVEFIN_TEST_PAUSE_AT") != point:
        return
    import time

    marker = os.environ.get("LIVEFIN_TEST_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(point)
    time.sleep(float(os.environ.get("LIVEFIN_TEST_PAUSE_SECONDS", "60")))


def _kill_once(marker: Path) -> None:
    import signal

    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # already killed one process: this attempt runs through
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def livefin_env(home: Path, **extra: str) -> Generator[None, None, None]:
    """Point every LIVEFIN_* setting at ``home`` (plus ``extra`` variables) inside the block."""
    keys = {"LIVEFIN_HOME": str(home), **extra}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
