"""The Dask cluster of the ``dask`` engine: one client per process, mapped shard tasks.

``LIVEFIN_DASK_SCHEDULER=tcp://host:8786`` connects to a running scheduler (workers need the
package, the config folder and the lake root at the same paths); without it a LocalCluster of
``LIVEFIN_DASK_WORKERS`` worker processes (default 2, one thread each) starts on first use and
stops when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from livefin_etl.config import LivefinError

log = logging.getLogger(__name__)

# Retries for a task that raised; a task whose worker died is rescheduled by the scheduler
# anyway (up to distributed.scheduler.allowed-failures).
TASK_RETRIES = 2
_CLIENTS: dict[str, Any] = {}


def _local_workers() -> int:
    n = int(os.environ.get("LIVEFIN_DASK_WORKERS") or 2)
    if n < 1:
        raise LivefinError(f"LIVEFIN_DASK_WORKERS must be >= 1, got {n}")
    return n


def client() -> Any:
    """The process's Dask client (made once per scheduler address or LocalCluster size)."""
    address = os.environ.get("LIVEFIN_DASK_SCHEDULER") or None
    key = address or f"local:{_local_workers()}"
    cached = _CLIENTS.get(key)
    if cached is not None and cached.status == "running":
        return cached
    from distributed import Client, LocalCluster

    # Dask logs every connection at INFO: keep the run's own log readable.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        if address:
            made = Client(address, timeout=os.environ.get("LIVEFIN_DASK_CONNECT_TIMEOUT", "20s"))
        else:
            cluster = LocalCluster(
                n_workers=_local_workers(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            made = Client(cluster)
            atexit.register(_close, made, cluster)
    except (OSError, TimeoutError) as exc:
        raise LivefinError(f"cannot reach the dask scheduler {address or key}: {exc}") from None
    _CLIENTS[key] = made
    log.info("dask engine on %s (%s workers)", key, len(made.scheduler_info()["workers"]))
    return made


def _close(made: Any, cluster: Any) -> None:
    made.close()
    cluster.close()


def shard_count(made: Any) -> int:
    """Shards per mapped stage: env LIVEFIN_SHARDS, else two per worker thread (so a slow or
    retried shard does not hold up a whole worker's share)."""
    if os.environ.get("LIVEFIN_SHARDS"):
        return max(1, int(os.environ["LIVEFIN_SHARDS"]))
    threads = sum(w.get("nthreads", 1) for w in made.scheduler_info()["workers"].values())
    return max(1, 2 * threads)


def map_shards(fn: Callable[[Any], Any], jobs: Sequence[Any], name: str) -> list[Any]:
    """``fn(job)`` for every job on the cluster, results in job order. A task error is raised
    as itself; a lost scheduler or workers killed too often is one clear LivefinError."""
    from distributed import KilledWorker

    made = client()
    token = uuid.uuid4().hex[:8]
    keys = [f"livefin-{name}-{i}-{token}" for i in range(len(jobs))]
    futures = made.map(fn, list(jobs), key=keys, pure=False, retries=TASK_RETRIES)
    try:
        return made.gather(futures)
    except KilledWorker as exc:
        raise LivefinError(
            f"dask {name}: workers kept dying on {exc.task}; see their logs"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise LivefinError(f"dask {name}: lost the scheduler ({exc}); rerun the stage") from None
    finally:
        for f in futures:
            f.release()


def worker_threads(default: int) -> int:
    """Threads of the worker running this task (``default`` outside a worker)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return default
