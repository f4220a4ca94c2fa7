"""Regenerate BENCHMARKS.md: run every bench/bench_*.py with its default-size arguments and --write.

    .venv/bin/python bench/run_all.py                 # everything, in sequence (what `make bench` runs)
    .venv/bin/python bench/run_all.py --only nightly,extract
    .venv/bin/python bench/run_all.py --quick         # smaller sizes, for a smoke run
    .venv/bin/python bench/run_all.py --dry-run       # print the commands only

Each script writes its own section of BENCHMARKS.md. A failing script is reported and the others
still run; the exit status is non-zero if any failed. Scripts found in bench/ but not listed here
run with no arguments besides --write.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# (name, full-size args, quick args), in run order: cheap and independent first.
PLAN: list[tuple[str, list[str], list[str]]] = [
    ("sample", ["--scales", "demo,large", "--large-days", "3"], ["--scales", "demo"]),
    ("extract", ["--scale", "demo", "--days", "30"], ["--scale", "demo", "--days", "5"]),
    ("quality", ["--rows", "500000"], ["--rows", "100000"]),
    ("features", [], ["--merchants", "2000"]),
    (
        "credit",
        ["--merchants", "100000", "--loans", "60000"],
        ["--merchants", "10000", "--loans", "10000"],
    ),
    ("limits", ["--merchants", "100000"], ["--merchants", "10000"]),
    ("nightly", ["--scale", "demo"], ["--scale", "demo"]),
    (
        "nightly-growth",
        ["--growth", "--growth-merchants", "10000,30000,100000", "--growth-days", "14"],
        ["--growth", "--growth-merchants", "2000,5000", "--growth-days", "30"],
    ),
]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--only", default=None, help="comma-separated names (sample, extract, ..., nightly-growth)"
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()

    plan = list(PLAN)
    listed = {name.split("-")[0] for name, _, _ in plan}
    for path in sorted(BENCH.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if name not in listed:
            plan.append((name, [], []))
    if args.only:
        wanted = set(args.only.split(","))
        plan = [p for p in plan if p[0] in wanted]

    env = {
        **os.environ,
        "LIVEFIN_THREADS": os.environ.get("LIVEFIN_THREADS", str(os.cpu_count() or 2)),
    }
    failed = []
    for name, full, quick in plan:
        script = BENCH / f"bench_{name.split('-')[0]}.py"
        cmd = [
            sys.executable,
            str(script.relative_to(REPO)),
            *(quick if args.quick else full),
            "--write",
        ]
        print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
        if args.dry_run:
            continue
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=REPO, env=env)
        print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
