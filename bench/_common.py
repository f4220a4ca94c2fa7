"""Shared benchmark helpers: cached sample data, child-process timing with peak RSS, and
BENCHMARKS.md section updates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
BENCHMARKS = REPO / "BENCHMARKS.md"


def cached_sample(scale: str, seed: int = 42, days: int | None = None, merchants: int | None = None) -> Path:
    """Generate a sample once and reuse it across benchmark runs."""
    tag = f"{scale}-s{seed}-d{days or 'default'}-m{merchants or 'default'}"
    out = CACHE / tag / "landing"
    if not (out / "_truth" / "params.json").exists():
        from livefin_etl import sample

        out.parent.mkdir(parents=True, exist_ok=True)
        sample.generate(scale, seed, date(2025, 1, 1), days, out, force=True, progress=sys.stderr.isatty(), merchants=merchants)
    return out


def run_measured(code: str, env: dict[str, str] | None = None) -> dict:
    """Run Python ``code`` in a child process; return its JSON result plus wall time and peak RSS
    (from the kernel's rusage of the child, the same number /usr/bin/time -v reports)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(last[-1]) if last else {}
    # ru_maxrss of children is a max over all children so far: only trust it when it grew.
    result.update(wall_s=round(wall, 3), peak_rss_mb=round(max(after, before) / 1024, 1) if after > before else None)
    return result


def write_section(name: str, body: str) -> None:
    """Replace the ``<!-- bench:name -->`` section of BENCHMARKS.md (append if absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def machine_line() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, measured {time.strftime('%Y-%m-%d')}"
