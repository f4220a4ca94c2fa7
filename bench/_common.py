"""Shared benchmark helpers: cached sample data, child-process timing with peak RSS, and
BENCHMARKS.md section updates."""

from __future__ import annotations

import gzip
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


def sample_compression(scale: str, days: int | None) -> str | None:
    """A month or more at ``large``, and ``small`` (14,000 x 500), are delivered gzipped: a year of
    large's plain text (~55 GB), or small's ~25 GB, next to a warehouse would not fit this disk."""
    if scale == "small":
        return "gzip"
    return "gzip" if scale == "large" and (days is None or days > 31) else None


def sample_tag(
    scale: str, seed: int = 42, days: int | None = None, merchants: int | None = None
) -> str:
    # keyed by the simulator's version: a cache from an older world is never reused
    from livefin_etl.simulator.params import SIM_VERSION

    gz = "-gz" if sample_compression(scale, days) else ""
    return f"{SIM_VERSION}-{scale}-s{seed}-d{days or 'default'}-m{merchants or 'default'}{gz}"


def cached_sample(
    scale: str, seed: int = 42, days: int | None = None, merchants: int | None = None
) -> Path:
    """Generate a sample once and reuse it across benchmark runs."""
    out = CACHE / sample_tag(scale, seed, days, merchants) / "landing"
    if not (out / "_truth" / "params.json").exists():
        from livefin_etl import simulator as sample

        out.parent.mkdir(parents=True, exist_ok=True)
        sample.generate(
            scale,
            seed,
            date(2025, 1, 1),
            days,
            out,
            force=True,
            progress=sys.stderr.isatty(),
            merchants=merchants,
            compress=sample_compression(scale, days),
        )
    return out


def floor_input(f: Path, tmp: Path) -> Path:
    """The file DuckDB's reader gets for an extract floor: the delivered file, or a UTF-8 copy of a
    GBK CSV (DuckDB cannot read GBK; transcoding happens outside any timing). Gzip stays: DuckDB
    reads it itself, as extract does."""
    if not f.name.endswith((".csv", ".csv.gz")):
        return f
    data = f.read_bytes()
    if f.name.endswith(".gz"):
        data = gzip.decompress(data)
    if data.startswith(b"\xef\xbb\xbf"):
        return f
    try:
        data.decode("utf-8")
        return f
    except UnicodeDecodeError:
        t = tmp / "utf8" / f.parent.parent.name / f.parent.name / f.name.removesuffix(".gz")
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_bytes(data.decode("gbk").encode("utf-8"))
        return t


def floor_reader(paths: list[str]) -> str:
    """DuckDB's own reader over one source's files, every column as delivered."""
    if paths[0].endswith((".csv", ".csv.gz")):
        return f"read_csv({paths!r}, header=true, all_varchar=true, union_by_name=true)"
    if paths[0].endswith((".jsonl", ".jsonl.gz")):
        return f"read_json({paths!r}, format='newline_delimited', union_by_name=true)"
    return f"read_parquet({paths!r}, union_by_name=true)"


def run_measured(code: str, env: dict[str, str] | None = None) -> dict:
    """Run Python ``code`` in a child process; return its JSON result plus wall time and peak RSS
    (the kernel's rusage of that one child via wait4, the number /usr/bin/time -v reports)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=err,
            text=True,
            cwd=REPO,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{stderr[-4000:]}")
    last = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    result = json.loads(last[-1]) if last else {}
    # ru_maxrss is in KiB on Linux; wait4 gives this child's own peak, not a max over all children.
    result.update(wall_s=round(wall, 3), peak_rss_mb=round(usage.ru_maxrss / 1024, 1))
    return result


def write_section(name: str, body: str) -> None:
    """Replace the ``<!-- bench:name -->`` section of BENCHMARKS.md (append if absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    BENCHMARKS.write_text(text)


def machine_line() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, measured {time.strftime('%Y-%m-%d')}"
