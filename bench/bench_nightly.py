"""The nightly job at scale: sample -> backfill (ingest + train + first night) -> one incremental
night, every stage timed in its own child process (peak RSS is the stage's own) next to its floor.

    .venv/bin/python bench/bench_nightly.py --scale demo --write              # 2,000 merchants, 1 year
    .venv/bin/python bench/bench_nightly.py --scale large --days 30 --write    # 100k merchants, 30 days
    .venv/bin/python bench/bench_nightly.py --growth --growth-merchants 10000,30000 --growth-days 60 --write

"One new day": the history is days 1..N; the backfill ingests days 1..N-1, trains as of N-1 and
runs the nightly stages for N-1 (what ``livefin run --start N-1 --end N-1 --ingest-from 1`` does,
so the daily feature blocks are current); then the nightly of day N is timed stage by stage.

Floors (same run, same data, DuckDB/xgboost alone): extract = read_csv/read_json/read_parquet of
day N's files into a table (GBK transcoded to UTF-8 before timing); value = one SQL formula over
the feature row; score = xgboost predict + pred_contribs of the champion model on the same matrix;
limits = one SQL limit formula; publish = COPY of the day's limits to Parquet + CSV and a copy of
the published DuckDB file.

validate and features have a *fair* floor (bench/_fair_floors.py, issue 19 item 3), the one their
ratio is taken against, because their bare floors compute far less than the stage:

* validate (fair) = per source, the grouped DuckDB query quality/sqlcheck.py issues for day N's
  row suite (row_batch_sql: reference and key-history lookups, every row-level expectation
  counted in one pass) plus the partition-profile query, warm (second of two passes); no GX,
  no dq.* writes.
* features (fair) = every column of features.merchant_features for N and the dq.merchant_quality
  rows behind quality_q (the bench's features step runs both stages), from the stage's own SQL
  files: the daily blocks of days N - late_days .. N - 1 (the days partition N can change),
  merchant_quality.sql, the spine and merchant_features.sql, in one transaction rolled back; no
  fingerprints, build log, schema checks, Arrow round trip or commit.

The old floors stay as the *bare floor* column, so earlier runs stay comparable: validate (bare)
= the contracts' required/range/allowed/key checks as one aggregate query per source over
raw.<source> of day N; features (bare) = one aggregate query (7/30/90/365-day net GMV + order
counts per merchant over raw.orders). For the other stages bare floor = floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pstats
import shutil
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CACHE,
    REPO,
    cached_sample,
    floor_input,
    floor_reader,
    machine_line,
    run_measured,
    sample_tag,
    write_section,
)

SOURCES = ["merchants", "orders", "traffic", "fulfillment", "loans", "repayments"]
NIGHTLY = ["features", "value", "score", "limits", "publish"]
FAIR = ("validate", "features")  # stages with a fair floor (bench/_fair_floors.py)
TARGET_NIGHTLY_S = 5 * 60
TARGET_BACKFILL_S = 60 * 60
TARGET_RSS_MB = 8 * 1024
TARGET_RATIO = 3.0
CHAMPION_CACHE = CACHE / "champion"

# Modules a stage needs, imported before its clock starts (import time is reported separately).
IMPORTS = {
    "ingest": [
        "livefin_etl.pipeline",
        "livefin_etl.extract",
        "livefin_etl.quality",
        "great_expectations",
        "great_expectations.data_context.types.base",
        "great_expectations.expectations.expectation_configuration",
    ],
    "train": [
        "livefin_etl.pipeline",
        "livefin_etl.quality",
        "livefin_etl.features",
        "livefin_etl.credit.training",
    ],
    "night": [
        "livefin_etl.pipeline",
        "livefin_etl.quality",
        "livefin_etl.features",
        "livefin_etl.valuation",
        "livefin_etl.credit.scoring",
        "livefin_etl.limits",
        "livefin_etl.publish",
    ],
    "features": ["livefin_etl.pipeline", "livefin_etl.quality", "livefin_etl.features"],
    "value": ["livefin_etl.pipeline", "livefin_etl.quality", "livefin_etl.valuation"],
    "score": ["livefin_etl.pipeline", "livefin_etl.quality", "livefin_etl.credit.scoring"],
    "limits": ["livefin_etl.pipeline", "livefin_etl.quality", "livefin_etl.limits"],
    "publish": ["livefin_etl.pipeline", "livefin_etl.quality", "livefin_etl.publish"],
    "champion": ["livefin_etl.pipeline", "livefin_etl.credit.registry"],
}

STEP = r"""
import json, os, time, importlib, logging
t_start = time.perf_counter()
for m in json.loads(os.environ['B_IMPORTS']):
    importlib.import_module(m)
import_s = time.perf_counter() - t_start
from datetime import date
from livefin_etl import pipeline
from livefin_etl.config import get_settings
step = os.environ['B_STEP']
day = date.fromisoformat(os.environ['B_DAY'])
run_id = os.environ.get('B_RUN') or pipeline.new_run_id(day)
out = {'import_s': import_s}
# peak VmRSS per phase (ingest: per extract/validate of each source), sampled every 0.1 s
import threading
phase = ['start']; phase_rss = {}
def _sample():
    while True:
        try:
            kb = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
        except Exception:
            kb = 0
        phase_rss[phase[0]] = max(phase_rss.get(phase[0], 0), kb // 1024)
        time.sleep(0.1)
threading.Thread(target=_sample, daemon=True).start()
prof = None
if os.environ.get('B_PROFILE'):
    import cProfile
    prof = cProfile.Profile()
# 'features' keeps its historic scope: the merchant-quality stage plus the feature marts.
BENCH_STAGES = {'features': ['merchant_quality', 'features']}
def run_bench_stage(name):
    out = {}
    for stage in BENCH_STAGES.get(name, [name]):
        out.update(pipeline.STAGES[stage](con, s, day, run_id) or {})
    return out
with pipeline.session(get_settings()) as (s, con):
    t0 = time.perf_counter()
    if prof: prof.enable()
    if step == 'ingest':
        days = [date.fromisoformat(d) for d in json.loads(os.environ['B_DAYS'])]
        marks = []
        def _mark(m):
            marks.append((m, time.perf_counter())); phase[0] = ':'.join(m.split()[:2])
        res = pipeline.ingest_range(con, s, days, progress=_mark)
        marks.append(('end -', time.perf_counter()))
        phases = {}
        for (m, t1), (_, t2) in zip(marks, marks[1:]):
            kind, src = m.split()[:2]
            phases[kind] = phases.get(kind, 0.0) + t2 - t1
            phases[kind + ':' + src] = t2 - t1
        out['phases'] = phases
        out['failed'] = [r for r in res if r.get('status') == 'failed']
        out['rows'] = {}
        for r in res:
            if 'rows_loaded' in r:
                out['rows'][r['source']] = out['rows'].get(r['source'], 0) + int(r['rows_loaded'] or 0)
    elif step == 'train':
        from livefin_etl import credit
        r = credit.train(con, s, day)
        out['train'] = {k: r.get(k) for k in ('model_version', 'status', 'auc_oot', 'n_train', 'n_valid', 'n_oot')}
    elif step == 'champion':
        from livefin_etl.credit import registry
        import shutil
        from pathlib import Path
        src = Path(os.environ['B_CHAMPION'])
        row = json.loads((src / 'registry.json').read_text())
        dst = s.models / row['model_version']
        if not dst.exists():
            shutil.copytree(src / 'artifacts', dst)
        row['artifact_path'] = str(dst)
        registry.ensure_tables(con)
        cols = list(row)
        con.execute(f"insert into credit.model_registry ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                    [row[c] for c in cols])
        out['train'] = {'model_version': row['model_version'], 'imported_from': str(src)}
    elif step == 'night':
        out['stages'] = {}
        for st in json.loads(os.environ['B_STAGES']):
            t1 = time.perf_counter(); phase[0] = st
            run_bench_stage(st)
            out['stages'][st] = time.perf_counter() - t1
    else:
        r = run_bench_stage(step)
        out['result'] = {k: v for k, v in (r or {}).items() if isinstance(v, (int, float, str))}
    if prof: prof.disable()
    out['s'] = time.perf_counter() - t0
out['phase_rss_mb'] = phase_rss
if prof:
    prof.dump_stats(os.environ['B_PROFILE'])
print(json.dumps(out, default=str))
"""

FLOOR = r"""
import json, os, time, shutil, duckdb, yaml
import numpy as np
from datetime import date
from pathlib import Path
day = date.fromisoformat(os.environ['B_DAY'])
readers = json.loads(os.environ['B_READERS'])
tmp = Path(os.environ['B_TMP'])
con = duckdb.connect(str(tmp / 'floor.duckdb'))
con.execute("set threads = " + os.environ.get('LIVEFIN_THREADS', '2'))
con.execute(f"attach '{os.environ['B_WH']}' as wh (read_only)")
out = {}
def timed(name, fn):
    t0 = time.perf_counter(); fn(); out[name] = out.get(name, 0.0) + time.perf_counter() - t0

# extract: DuckDB readers, same files
for src, rel in readers.items():
    timed('extract', lambda: con.execute(f"create or replace table x_{src} as select * from {rel}"))

# validate: the contracts' checks, one aggregate query per source over raw.<source> of day N
raw_cols = {(t, c) for t, c in con.execute(
    "select table_name, column_name from duckdb_columns() where database_name='wh' and schema_name='raw'").fetchall()}
checks_n = 0
for src in readers:
    c = yaml.safe_load(Path(os.environ['B_REPO'], 'config', 'sources', src + '.yaml').read_text())
    exprs = ['count(*)']
    for col, spec in (c.get('columns') or {}).items():
        name = col + '_hash' if spec.get('pii') else col
        if (src, name) not in raw_cols:
            continue
        if spec.get('required'):
            exprs.append(f'count(*) filter (where "{name}" is null)')
        if 'min' in spec:
            exprs.append(f'count(*) filter (where "{name}" < {spec["min"]})')
        if 'max' in spec:
            exprs.append(f'count(*) filter (where "{name}" > {spec["max"]})')
        if spec.get('allowed'):
            vals = ', '.join("'" + str(v) + "'" for v in spec['allowed'])
            exprs.append(f'count(*) filter (where "{name}" not in ({vals}))')
    pk = c.get('primary_key') or []
    if pk:
        exprs.append('count(*) - count(distinct (' + ', '.join(f'"{k}"' for k in pk) + '))')
    for rc in c.get('row_checks') or []:
        exprs.append(f"count(*) filter (where not ({rc['sql']}))")
    checks_n += len(exprs)
    timed('validate', lambda: con.execute(f"select {', '.join(exprs)} from wh.raw.{src} where _dt = ?", [day]).fetchall())
out['validate_checks'] = checks_n

# features: one aggregate over raw.orders, events strictly before day N
def feats():
    con.execute('''create or replace table f as
    select merchant_id,
      sum(case when status <> 'cancelled' then paid_amount - refund_amount else 0 end)
          filter (where order_ts >= $d::date - 7) as gmv_net_7d,
      sum(case when status <> 'cancelled' then paid_amount - refund_amount else 0 end)
          filter (where order_ts >= $d::date - 30) as gmv_net_30d,
      sum(case when status <> 'cancelled' then paid_amount - refund_amount else 0 end)
          filter (where order_ts >= $d::date - 90) as gmv_net_90d,
      sum(case when status <> 'cancelled' then paid_amount - refund_amount else 0 end) as gmv_net_365d,
      count(*) filter (where order_ts >= $d::date - 7) as orders_7d,
      count(*) filter (where order_ts >= $d::date - 30) as orders_30d,
      count(*) filter (where order_ts >= $d::date - 90) as orders_90d,
      count(*) as orders_365d
    from wh.raw.orders where order_ts >= $d::date - 365 and order_ts < $d::date
    group by merchant_id''', {'d': day})
timed('features', feats)

# value: one formula over the feature rows
timed('value', lambda: con.execute('''create or replace table v as
    select merchant_id,
      0.3 * ((coalesce(orders_30d, 0) * 12) / 1000.0 * (20 + 2 + 15) + 300 * 4)
    + 0.5 * (coalesce(gmv_net_adj_365d, 0) * 0.07 * 0.15 * (1 / 1.12 + 0.7 / 1.12^2 + 0.49 / 1.12^3)
             * coalesce(quality_q, 1) * (1 - 0.5 * coalesce(brushing_score, 0)))
    + 0.2 * (50.0 * power(greatest(coalesce(orders_30d, 0) * 12, 1) / 10000.0, 0.9) * 10
             * least(coalesce(quality_q, 0) / 0.9, 1.2) * 0.8) as reconciled_value
    from wh.features.merchant_features where as_of_date = ?''', [day]))

# score: bare xgboost predict + pred_contribs on the same matrix
import xgboost as xgb
from livefin_etl.credit.spec import FeatureSpec
art = Path(con.execute("select artifact_path from wh.credit.model_registry where status = 'champion'").fetchone()[0])
df = con.execute('select * from wh.features.merchant_features where as_of_date = ? order by merchant_id', [day]).df()
spec = FeatureSpec.from_json(json.loads((art / 'features.json').read_text()))
X = spec.matrix(df)
th = int(os.environ.get('LIVEFIN_THREADS', '2'))
def score():
    b = xgb.Booster(model_file=str(art / 'model.json'))
    b.set_param({'nthread': th})
    dm = xgb.DMatrix(X, feature_names=spec.columns, nthread=th)
    b.predict(dm, pred_contribs=True)
    b.predict(dm, output_margin=True)
timed('score', score)

# limits: one SQL formula
timed('limits', lambda: con.execute('''create or replace table l as
    select s.merchant_id, s.pd, s.grade,
      case when s.pd > 0.2 then 0 else floor(least(
        case s.grade when 'A' then 3000000 when 'B' then 1500000 when 'C' then 600000
                     when 'D' then 200000 else 50000 end,
        0.08 * coalesce(f.gmv_net_adj_365d, 0),
        0.10 * 90 * coalesce(f.gmv_net_adj_90d, 0) / 90 / 1.08 * (1 - s.pd)
          + 0.10 * coalesce(v.reconciled_value, 0)) / 100) * 100 end as limit_amount,
      s.pd * 0.75 * limit_amount as expected_loss
    from wh.credit.merchant_scores s
    join wh.features.merchant_features f on f.merchant_id = s.merchant_id and f.as_of_date = s.as_of_date
    left join wh.valuation.data_asset_values v on v.merchant_id = s.merchant_id and v.as_of_date = s.as_of_date
    where s.as_of_date = ?''', [day]))

# publish: COPY the day's limits to Parquet + CSV, copy the published DB file
def publish():
    con.execute(f"copy (select * from wh.limits.financing_limits where as_of_date = '{day}') to '{tmp / 'limits.parquet'}' (format parquet)")
    con.execute(f"copy (select * from wh.limits.financing_limits where as_of_date = '{day}') to '{tmp / 'limits.csv'}' (header)")
    shutil.copyfile(os.environ['B_PUBLISHED'], tmp / 'copy.duckdb')
timed('publish', publish)
print(json.dumps(out))
"""


# --------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measured_sample(
    scale: str, days: int | None, merchants: int | None, seed: int = 42
) -> tuple[Path, dict]:
    """cached_sample in a child process; the generation's time and peak RSS are kept next to the
    cache (gen.json) so later runs can still report them."""
    tag = sample_tag(scale, seed, days, merchants)
    meta = CACHE / tag / "gen.json"
    landing = CACHE / tag / "landing"
    if not (landing / "_truth" / "params.json").exists():
        _log(f"generating sample {tag}")
        r = run_measured(
            "import sys, json; sys.path.insert(0, 'bench'); from _common import cached_sample; "
            f"cached_sample({scale!r}, {seed}, {days!r}, {merchants!r}); print(json.dumps({{}}))"
        )
        meta.write_text(
            json.dumps({"s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "cached": False})
        )
    gen = json.loads(meta.read_text()) if meta.exists() else {"s": None, "peak_rss_mb": None}
    return cached_sample(scale, seed, days, merchants), gen


def day_files(landing: Path, day: str, tmp: Path) -> dict[str, list[str]]:
    """Day N's landing files per source, as the extract floor reads them."""
    files: dict[str, list[str]] = {}
    for src in SOURCES:
        folder = landing / src / f"dt={day}"
        paths = (
            [str(floor_input(f, tmp)) for f in sorted(folder.iterdir())] if folder.exists() else []
        )
        if paths:
            files[src] = paths
    return files


class Bench:
    def __init__(self, landing: Path, home: Path, profile_dir: Path | None = None):
        self.landing, self.home, self.profile_dir = landing, home, profile_dir
        self.env = {
            "LIVEFIN_HOME": str(home),
            "LIVEFIN_LANDING": str(landing),
            "LIVEFIN_PII_KEY": "bench",
            "LIVEFIN_THREADS": os.environ.get("LIVEFIN_THREADS", "2"),
            "PYTHONWARNINGS": "ignore",
            # This sandbox sets PYTHONDONTWRITEBYTECODE=1, so every child would compile pandas and
            # Great Expectations from source (10-20 s); a deployment has .pyc files. Cache the
            # bytecode outside the venv instead.
            "PYTHONDONTWRITEBYTECODE": "",
            "PYTHONPYCACHEPREFIX": str(CACHE / "pycache"),
        }

    def step(self, step: str, day: date, **extra: str) -> dict:
        env = {
            **self.env,
            "B_STEP": step,
            "B_DAY": day.isoformat(),
            "B_IMPORTS": json.dumps(IMPORTS[step]),
            **extra,
        }
        if self.profile_dir and step in NIGHTLY + ["ingest"]:
            env["B_PROFILE"] = str(self.profile_dir / f"{step}-{day}.prof")
        _log(f"{step} {day} ...")
        r = run_measured(STEP, env)
        _log(
            f"{step} {day}: {r['s']:.1f} s (process {r['wall_s']:.1f} s, import {r['import_s']:.1f} s, peak RSS {r['peak_rss_mb']} MB)"
        )
        return r


def run_once(
    landing: Path, keep: bool, profile: bool, save_champion: bool, champion_from: Path | None
) -> dict:
    """Backfill days 1..N-1, then the nightly of day N, then the floors of day N."""
    params = json.loads((landing / "_truth" / "params.json").read_text())
    days = sorted(
        date.fromisoformat(p.name.removeprefix("dt=")) for p in (landing / "orders").iterdir()
    )
    n_day, hist = days[-1], days[:-1]
    home = landing.parent / "nightly-home"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    prof_dir = home / "profiles" if profile else None
    if prof_dir:
        prof_dir.mkdir()
    b = Bench(landing, home, prof_dir)
    res: dict = {
        "merchants": params.get("merchants"),
        "days": len(days),
        "first": days[0],
        "n_day": n_day,
    }

    # backfill: ingest 1..N-1, train as of N-1 (or import a champion), first night N-1
    res["ingest_hist"] = b.step(
        "ingest", hist[-1], B_DAYS=json.dumps([d.isoformat() for d in hist])
    )
    if res["ingest_hist"]["failed"]:
        _log(f"refused partitions in the backfill: {res['ingest_hist']['failed'][:3]}")
    min_train_days = 200
    if champion_from is None and len(hist) < min_train_days and CHAMPION_CACHE.exists():
        champion_from = CHAMPION_CACHE
    if champion_from is None and len(hist) < min_train_days:
        raise SystemExit(
            f"{len(hist)} days of history are too few to train (loans must mature 180 days); run "
            "`bench/bench_nightly.py --scale demo` first (it keeps its champion in "
            f"{CHAMPION_CACHE}) or pass --champion-from"
        )
    if champion_from is not None:
        res["train"] = b.step("champion", hist[-1], B_CHAMPION=str(champion_from))
    else:
        res["train"] = b.step("train", hist[-1])
        if save_champion:
            _save_champion(home)
    res["night_prev"] = b.step("night", hist[-1], B_STAGES=json.dumps(NIGHTLY))

    # the incremental night of day N
    run_id = f"{n_day:%Y%m%d}-bench"
    res["ingest_day"] = b.step("ingest", n_day, B_DAYS=json.dumps([n_day.isoformat()]))
    res["stages"] = {st: b.step(st, n_day, B_RUN=run_id) for st in NIGHTLY}

    # floors of day N
    tmp = home / "floor"
    tmp.mkdir()
    files = day_files(landing, n_day.isoformat(), tmp)
    _log("floors ...")
    res["floor"] = run_measured(
        FLOOR,
        {
            **b.env,
            "B_DAY": n_day.isoformat(),
            "B_READERS": json.dumps({src: floor_reader(p) for src, p in files.items()}),
            "B_TMP": str(tmp),
            "B_WH": str(home / "warehouse" / "livefin.duckdb"),
            "B_PUBLISHED": str(home / "published" / "livefin.duckdb"),
            "B_REPO": str(REPO),
        },
    )
    # fair floors (validate, features): the stage's own queries without its bookkeeping
    _log("fair floors ...")
    res["floor_fair"] = run_measured(
        "import sys; sys.path.insert(0, 'bench'); import _fair_floors; _fair_floors.main()",
        {**b.env, "B_DAY": n_day.isoformat()},
    )
    res["wh_mb"] = (home / "warehouse" / "livefin.duckdb").stat().st_size / 1e6
    res["raw_rows"] = res["ingest_hist"].get("rows", {})
    if prof_dir:
        res["profiles"] = {p.stem: _top(p) for p in sorted(prof_dir.glob("*.prof"))}
    if not keep:
        shutil.rmtree(home / "warehouse", ignore_errors=True)
        shutil.rmtree(home / "published", ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _save_champion(home: Path) -> None:
    """Keep the champion of a full-history run so short-history runs (growth) can score with it."""
    import duckdb

    con = duckdb.connect(str(home / "warehouse" / "livefin.duckdb"), read_only=True)
    try:
        cur = con.execute("select * from credit.model_registry where status = 'champion'")
        cols = [d[0] for d in cur.description]
        row = dict(zip(cols, cur.fetchone(), strict=True))
    finally:
        con.close()
    if CHAMPION_CACHE.exists():
        shutil.rmtree(CHAMPION_CACHE)
    shutil.copytree(row["artifact_path"], CHAMPION_CACHE / "artifacts")
    (CHAMPION_CACHE / "registry.json").write_text(json.dumps(row, default=str))


def _top(path: Path, n: int = 12) -> list[str]:
    st = pstats.Stats(str(path))
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{Path(file).name}:{line}:{fn}" if line else fn))
    rows.sort(reverse=True)
    return [
        f"{tt:8.2f} s self {ct:8.2f} s cum {nc:>9} calls  {name}" for tt, ct, nc, name in rows[:n]
    ]


# --------------------------------------------------------------------------- report


def _rss(r: dict, phase: str) -> str:
    mb = (r.get("phase_rss_mb") or {}).get(phase)
    return f" ({mb:,} MB)" if mb else ""


def _memory_limits() -> str:
    """The limits the children ran under (config/resources.yaml or LIVEFIN_DUCKDB_MEMORY)."""
    from livefin_etl.warehouse import memory_limit

    if os.environ.get("LIVEFIN_DUCKDB_MEMORY"):
        return f"LIVEFIN_DUCKDB_MEMORY={os.environ['LIVEFIN_DUCKDB_MEMORY']} for every stage"
    stages = ("extract", "validate", "features", "train", "default")
    return ", ".join(f"{st} {memory_limit(st)}" for st in stages) + " (config/resources.yaml)"


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "" if x is None else fmt.format(x)


def nightly_rows(res: dict) -> list[tuple]:
    """(stage, seconds, process s, peak RSS MB, floor s, ratio, imports s, bare floor s) for the
    night of day N. The floor is the fair one where measured (validate, features), else the bare
    one-statement floor; runs before the fair floors existed have only the bare ones."""
    bare, ing = res["floor"], res["ingest_day"]
    fl = {**bare, **{k: v for k, v in (res.get("floor_fair") or {}).items() if k in FAIR}}
    out = [
        ("extract (6 sources)", ing["phases"]["extract"], None, ing["peak_rss_mb"], fl["extract"]),
        (
            "validate (6 sources, GX)",
            ing["phases"]["validate"],
            None,
            ing["peak_rss_mb"],
            fl["validate"],
        ),
    ]
    out[0] = (*out[0][:2], ing["wall_s"], *out[0][3:])
    for st in NIGHTLY:
        r = res["stages"][st]
        out.append((st, r["s"], r["wall_s"], r["peak_rss_mb"], fl[st]))
    imp = [ing["import_s"], None] + [res["stages"][st]["import_s"] for st in NIGHTLY]
    bare_s = [bare["extract"], bare["validate"]] + [bare[st] for st in NIGHTLY]
    return [
        (n, s, w, rss, f, s / f if f else float("nan"), i, fb)
        for (n, s, w, rss, f), i, fb in zip(out, imp, bare_s, strict=True)
    ]


def render_nightly(res: dict, gen: dict, cmd: str, note: str = "") -> tuple[str, dict]:
    rows = nightly_rows(res)
    ih, tr, npv = res["ingest_hist"], res["train"], res["night_prev"]
    total = sum(r[1] for r in rows)
    total_proc = res["ingest_day"]["wall_s"] + sum(res["stages"][st]["wall_s"] for st in NIGHTLY)
    floor_total = sum(r[4] for r in rows)
    backfill = ih["wall_s"] + tr["wall_s"] + npv["wall_s"]
    rss_all = [
        r["peak_rss_mb"] or 0 for r in (ih, tr, npv, res["ingest_day"], *res["stages"].values())
    ]
    peak = max(rss_all + [gen.get("peak_rss_mb") or 0])
    worst = max(rows, key=lambda r: r[5])
    scale_year = 365 / max(len(res.get("hist_days", [])) or (res["days"] - 1), 1)
    trained = tr.get("train", {})
    lines = [
        f"## Nightly job ({res['merchants']:,} merchants, {res['days']} days of history "
        f"{res['first']}..{res['n_day']}; night of {res['n_day']})",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {machine_line()}, LIVEFIN_THREADS={os.environ.get('LIVEFIN_THREADS', '2')}; "
        f"1-min load average at the end {os.getloadavg()[0]:.1f} (machine shared with other jobs: "
        "absolute times drift, ratios are measured in the same run).",
        "",
        f"DuckDB memory_limit per stage: {_memory_limits()}.",
        "",
        "Every step below ran in its own child process. *seconds* is the stage's own work (modules "
        "imported before the clock starts); *process s* is the child's whole wall time "
        "(interpreter, imports incl. Great Expectations, lock, connection), what an Airflow task pays.",
        "",
        "**Sample and backfill** (history days 1..N-1):",
        "",
        "| step | seconds | process s | peak RSS MB | notes |",
        "|---|---:|---:|---:|---|",
        f"| sample generation | {_f(gen.get('s'), '{:.1f}')} | | {_f(gen.get('peak_rss_mb'), '{:.0f}')} | "
        f"{'cached, measured when generated' if gen.get('s') else 'cached by another run, not timed'} |",
        f"| backfill: extract, all sources, {res['days'] - 1} days | {ih['phases']['extract']:.1f} | "
        f"{ih['wall_s']:.1f} | {ih['peak_rss_mb']} | "
        + ", ".join(
            f"{s} {ih['phases'].get('extract:' + s, 0):.0f} s{_rss(ih, 'extract:' + s)}"
            for s in SOURCES
        )
        + " |",
        f"| backfill: validate, all sources, {res['days'] - 1} days | {ih['phases']['validate']:.1f} | | (same process) | "
        + ", ".join(
            f"{s} {ih['phases'].get('validate:' + s, 0):.0f} s{_rss(ih, 'validate:' + s)}"
            for s in SOURCES
        )
        + " |",
        f"| backfill: train as of N-1 | {tr['s']:.1f} | {tr['wall_s']:.1f} | {tr['peak_rss_mb']} | "
        + (", ".join(f"{k} {v}" for k, v in trained.items() if v is not None))
        + " |",
        f"| backfill: first night N-1 (features cold: all daily blocks) | {npv['s']:.1f} | {npv['wall_s']:.1f} | "
        f"{npv['peak_rss_mb']} | "
        + ", ".join(f"{k} {v:.1f} s" for k, v in npv["stages"].items())
        + " |",
        f"| **backfill total** | | **{backfill:.1f}** | | {len(res.get('raw_rows', {})) and ', '.join(f'{k} {v:,}' for k, v in res['raw_rows'].items())} rows |",
        "",
        f"**Incremental night of day N = {res['n_day']}** (floors in the same run, on the same day's data):",
        "",
        "| stage | seconds | process s | of which imports s | peak RSS MB | floor s | ratio | bare floor s | ratio to bare |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s, w, rss, f, ratio, imp, fb in rows:
        flag = " ⚠" if ratio > TARGET_RATIO else ""
        lines.append(
            f"| {n} | {s:.2f} | {_f(w, '{:.1f}')} | {_f(imp, '{:.1f}')} | {_f(rss, '{:.0f}')} | {f:.3f} | {ratio:.1f}×{flag} | {fb:.3f} | {s / fb:.1f}× |"
        )
    bare_total = sum(r[7] for r in rows)
    lines.append(
        f"| **total** | **{total:.1f}** | **{total_proc:.1f}** | | **{max(r[3] or 0 for r in rows):.0f}** | **{floor_total:.2f}** | **{total / floor_total:.0f}×** | **{bare_total:.2f}** | **{total / bare_total:.0f}×** |"
    )
    lines.append("")
    lines.append(
        "(extract and validate share one process: `ingest_range` of day N; its process time is on the extract row.)"
    )
    lines.append("")
    over = [r for r in rows if r[5] > TARGET_RATIO]
    # extrapolate only the per-day part (extract + validate) by days; start-up, train, first night stay
    per_day = ih["phases"]["extract"] + ih["phases"]["validate"]
    proj = backfill + per_day * (scale_year - 1) if res["days"] - 1 < 360 else backfill
    met = {
        "nightly": total_proc <= TARGET_NIGHTLY_S,
        "backfill": proj <= TARGET_BACKFILL_S,
        "rss": peak <= TARGET_RSS_MB,
        "ratio": not over,
    }
    mm = {True: "**met**", False: "**missed**"}
    lines += [
        "Targets:",
        "",
        f"- incremental nightly ≤ 5 min: {total_proc:.0f} s including process start-up ({total:.0f} s of stage work) → {mm[met['nightly']]} at {res['merchants']:,} merchants",
        f"- full one-year backfill ≤ 60 min: {backfill / 60:.1f} min for {res['days'] - 1} days"
        + (
            f" (extract + validate × {scale_year:.1f} for a year ≈ {proj / 60:.0f} min by "
            "linear extrapolation, which ignores festival volume and history-dependent costs) → "
            "**not measured**"
            if res["days"] - 1 < 360
            else f" → {mm[met['backfill']]}"
        )
        + f" at {res['merchants']:,} merchants",
        f"- peak RSS ≤ 8 GB: {peak:,.0f} MB (largest of all steps incl. generation) → {mm[met['rss']]}",
        f"- no stage > 3× its floor: worst {worst[0]} {worst[5]:.1f}×; "
        + (
            f"{len(over)} stages over 3×: " + ", ".join(f"{r[0]} {r[5]:.0f}×" for r in over)
            if over
            else "none over"
        )
        + f" → {mm[met['ratio']]}",
    ]
    if note:
        lines += ["", note]
    summary = {
        "total": total,
        "total_proc": total_proc,
        "backfill": backfill,
        "peak": peak,
        "met": met,
        "rows": rows,
    }
    return "\n".join(lines), summary


def render_profiles(res: dict) -> str:
    if not res.get("profiles"):
        return ""
    out = ["", "cProfile of the night's stages (top functions by self time):", ""]
    for name, top in res["profiles"].items():
        out.append(f"`{name}`:")
        out.append("```")
        out += top
        out.append("```")
    return "\n".join(out)


def fit(xs: list[float], ys: list[float]) -> dict:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else float("nan")
    icpt = my - slope * mx
    ss_res = sum((y - (icpt + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1 - ss_res / ss_tot if ss_tot else float("nan")
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mlx, mly = sum(lx) / n, sum(ly) / n
    slx = sum((a - mlx) ** 2 for a in lx)
    b = (
        sum((a - mlx) * (c - mly) for a, c in zip(lx, ly, strict=True)) / slx
        if slx
        else float("nan")
    )
    return {"slope": slope, "intercept": icpt, "r2": r2, "exponent": b, "per_doubling": 2**b}


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", default="demo", help="sample preset: tiny, demo, small, large")
    ap.add_argument(
        "--merchants", type=int, default=None, help="override the preset's merchant count"
    )
    ap.add_argument("--days", type=int, default=None, help="days of history (default: preset, 365)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--growth", action="store_true", help="nightly at several merchant counts")
    ap.add_argument("--growth-merchants", default="10000,30000,100000")
    ap.add_argument(
        "--growth-days", type=int, default=None, help="history for --growth (default --days)"
    )
    ap.add_argument(
        "--growth-scale", default="large", help="preset for --growth (merchant count overridden)"
    )
    ap.add_argument(
        "--champion-from",
        type=Path,
        default=None,
        help="folder with registry.json + artifacts/ to score with instead of training "
        "(default for histories < 200 days: the champion kept by the last full-year run)",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile every nightly stage")
    ap.add_argument("--keep", action="store_true", help="keep the bench warehouse")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("LIVEFIN_THREADS", "2")
    cmd = ".venv/bin/python bench/bench_nightly.py " + " ".join(sys.argv[1:])

    if args.growth:
        counts = [int(x) for x in args.growth_merchants.split(",")]
        gdays = args.growth_days or args.days
        points = []
        for m in counts:
            landing, gen = measured_sample(args.growth_scale, gdays, m, args.seed)
            res = run_once(landing, args.keep, args.profile, False, args.champion_from)
            _, summ = render_nightly(res, gen, cmd)
            points.append((m, res, summ))
            (landing.parent / "nightly-result.json").write_text(
                json.dumps(res, default=str, indent=1)
            )
            _log(f"growth {m}: nightly {summ['total']:.1f} s (process {summ['total_proc']:.1f} s)")
        body = render_growth(points, gdays, cmd, args.growth_scale)
        print(body)
        if args.write:
            write_section("growth", body)
        return

    landing, gen = measured_sample(args.scale, args.days, args.merchants, args.seed)
    full = (args.days or 365) >= 300
    res = run_once(landing, args.keep, args.profile, full, args.champion_from)
    (landing.parent / "nightly-result.json").write_text(json.dumps(res, default=str, indent=1))
    note = ""
    if res["train"].get("train", {}).get("imported_from"):
        note = (
            "History too short to train (matured loans need origination ≤ as-of − 180 days): the "
            "champion of the last full-year run was registered instead; its train time is not in the backfill."
        )
    body, summ = render_nightly(res, gen, cmd, note)
    body += render_profiles(res)
    print(body)
    if args.write:
        # one section per preset and history: the demo year, the large year and a short large
        # history are all kept
        name = "nightly" if args.scale == "demo" else f"nightly-{args.scale}"
        write_section(name if args.days is None else f"{name}-d{args.days}", body)


def render_growth(points: list, gdays: int | None, cmd: str, scale: str) -> str:
    xs = [float(m) for m, _, _ in points]
    lines = [
        f"## Nightly growth with merchants ({scale} preset, merchant count overridden, "
        f"{points[0][1]['days']} days of history each; night of the last day)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {machine_line()}, LIVEFIN_THREADS={os.environ.get('LIVEFIN_THREADS', '2')}; "
        f"1-min load average at the end {os.getloadavg()[0]:.1f} (shared machine).",
        "",
        "| merchants | orders in history | "
        + " | ".join(r[0].split(" (")[0] for r in points[0][2]["rows"])
        + " | night s (stage work) | night s (processes) | night peak RSS MB | floor s | worst ratio"
        " | backfill s | backfill peak RSS MB |",
        "|---:|---:|" + "---:|" * (len(points[0][2]["rows"]) + 7),
    ]
    for m, res, summ in points:
        lines.append(
            f"| {m:,} | {res['raw_rows'].get('orders', 0):,} | "
            + " | ".join(f"{r[1]:.1f}" for r in summ["rows"])
            + f" | {summ['total']:.1f} | {summ['total_proc']:.1f} | {max(r[3] or 0 for r in summ['rows']):.0f} | "
            f"{sum(r[4] for r in summ['rows']):.2f} | {max(r[5] for r in summ['rows']):.0f}× | "
            f"{summ['backfill']:.0f} | {res['ingest_hist']['peak_rss_mb']:,.0f} |"
        )
    lines.append("")
    if len(points) >= 2:
        tot = fit(xs, [s["total"] for _, _, s in points])
        proc = fit(xs, [s["total_proc"] for _, _, s in points])
        lines += [
            "Fit of the night's seconds vs merchants (least squares, and log-log exponent b: t ∝ merchants^b, "
            "b = 1 is linear; per doubling = 2^b):",
            "",
            "| series | slope s per 1k merchants | intercept s | R² | exponent b | × per doubling |",
            "|---|---:|---:|---:|---:|---:|",
            f"| stage work | {tot['slope'] * 1000:.3f} | {tot['intercept']:.1f} | {tot['r2']:.3f} | {tot['exponent']:.2f} | {tot['per_doubling']:.2f} |",
            f"| processes (incl. start-up) | {proc['slope'] * 1000:.3f} | {proc['intercept']:.1f} | {proc['r2']:.3f} | {proc['exponent']:.2f} | {proc['per_doubling']:.2f} |",
        ]
        for i, r in enumerate(points[0][2]["rows"]):
            f1 = fit(xs, [s["rows"][i][1] for _, _, s in points])
            lines.append(
                f"| {r[0]} | {f1['slope'] * 1000:.3f} | {f1['intercept']:.2f} | {f1['r2']:.3f} | {f1['exponent']:.2f} | {f1['per_doubling']:.2f} |"
            )
        lines.append("")
        b = tot["exponent"]
        verdict = (
            "sub-linear (fixed costs still dominate at these sizes)"
            if b < 0.85
            else "about linear"
            if b <= 1.15
            else "super-linear"
        )
        pred = tot["intercept"] + tot["slope"] * 100_000
        lines.append(
            f"Verdict: the night's cost grows {verdict} in merchants (b = {b:.2f}, R² of the linear fit {tot['r2']:.3f}); "
            f"the linear fit predicts {pred:.0f} s of stage work at 100,000 merchants"
            + (" (extrapolated)." if max(xs) < 100_000 else ".")
        )
        orders = [p[1]["raw_rows"].get("orders", 0) / 1e6 for p in points]
        rss = fit(orders, [p[1]["ingest_hist"]["peak_rss_mb"] for p in points])
        lines += [
            "",
            f"Backfill memory: the one-process ingest of the history peaks at {rss['slope']:,.0f} MB per "
            f"million orders ingested (+ {rss['intercept']:,.0f} MB, R² {rss['r2']:.3f}). The peak is in "
            "extract (orders, fulfillment) and validate (fulfillment): `extract_partitions` reads up to "
            "`chunk_days=31` days of files into memory per transaction and `validate_range` runs GX on "
            "31-day chunks (`quality.yaml` profile.validate_chunk_days), so it grows with rows per day × "
            "31, i.e. with merchants; these histories are shorter than one chunk. Per-phase peaks "
            "(sampled VmRSS) are in bench/.cache/<sample>/nightly-result.json.",
        ]
    lines += [
        "",
        f"Caveat: with {points[0][1]['days']} days of history the 30/90/365-day windows are only partly "
        "filled, so features (and the merchant-quality scan over the history) do less work than after a "
        "full year; the nightly section (full year) shows the stage mix at steady state.",
    ]
    imported = {p[1]["train"].get("train", {}).get("model_version") for p in points}
    if any(p[1]["train"].get("train", {}).get("imported_from") for p in points):
        lines.append(
            "Too short a history to train: the champion kept by the last full-year run "
            f"({', '.join(sorted(v for v in imported if v))}) was registered and scores every night."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
