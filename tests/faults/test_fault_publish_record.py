"""One publication record: SIGKILL at every step of publish and rollback (real processes).

On a copy of ``after_l`` (L-1 and L published), the publish task (``pipeline.run_stage`` of
``publish``, what the Airflow task runs) is killed at each step of the sequence in turn, then
``livefin publish --rollback``'s function at each step of its sequence. After every kill:

* before the commit (``RECORD.json`` replaced) nothing visible changed, byte for byte;
* after it, the record names the new publication, and every visible file is still whole: the
  snapshot opens read-only, every export folder matches its manifest's checksums;
* once the next writer has repaired (``publish.repair``, the first thing every publish and
  rollback does under the writer lock), the snapshot, ``CURRENT.json``, history and every
  export folder describe exactly the recorded publication.

The rollbacks walk back through the publications the kills committed: the L export folder is
restored to each earlier run's set, and the last rollback (to L-1) withdraws it.
"""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path

KEEP = "10"  # every publication of this test stays a rollback target
PRE_COMMIT = ["publish.snapshot_building", "publish.archived", "publish.before_replace"]
# Shared by publish and rollback: the steps after the commit (record.apply, then prune).
POST_COMMIT = [
    "publish.after_commit",
    "publish.after_snapshot",
    "publish.after_exports",
    "publish.after_history",
    "publish.before_prune",
]
ROLLBACK = "from livefin_etl import pipeline; pipeline.rollback_publication()"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _export_ok(fl, folder: Path) -> dict:
    """A served folder is whole: every file its manifest lists, with that checksum."""
    manifest = _json(folder / "manifest.json")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*manifest["files"], "manifest.json"])
    for name, info in manifest["files"].items():
        assert fl.sha(folder / name) == info["sha256"], f"{folder.name}/{name} torn"
    return manifest


def assert_readable(fl, home: Path) -> None:
    """What an analyst or lender opens right after a kill: whole files, whichever version."""
    fl.read_publication(home / "published" / "livefin.duckdb")
    for folder in (home / "exports" / "limits").glob("as_of_date=*"):
        _export_ok(fl, folder)


def assert_in_line(fl, home: Path) -> dict:
    """Snapshot, CURRENT.json, history and exports all describe the recorded publication."""
    pub = home / "published"
    rec = _json(pub / "RECORD.json")
    cur = rec["current"]
    assert _json(pub / "CURRENT.json") == cur
    lines = (pub / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == rec["history"]
    d, run_id, _n = fl.read_publication(pub / "livefin.duckdb")
    assert (d.isoformat(), run_id) == (cur["as_of_date"], cur["run_id"])
    assert fl.sha(pub / "livefin.duckdb") == fl.sha(pub / "snapshots" / cur["snapshot"])
    archive = home / "publications"
    assert _json(archive / cur["version"] / "publication.json")["exports"] == rec["exports"]
    served = {
        p.name.split("=", 1)[1]: p for p in (home / "exports" / "limits").glob("as_of_date=*")
    }
    assert sorted(served) == sorted(rec["exports"])
    for iso, version in rec["exports"].items():
        _export_ok(fl, served[iso])
        want = archive / version / "exports" / "manifest.json"
        assert (served[iso] / "manifest.json").read_bytes() == want.read_bytes(), iso
    return rec


def _repair(fl, home: Path, landing: Path) -> None:
    from livefin_etl import publish
    from livefin_etl.config import get_settings
    from livefin_etl.warehouse import writer_lock

    with fl.env(home, LIVEFIN_LANDING=str(landing), LIVEFIN_KEEP_SNAPSHOTS=KEEP):
        s = get_settings()
        with writer_lock(s):
            publish.repair(s)


def _kill_at(fl, argv: list[str], home: Path, landing: Path, point: str, marker: Path) -> None:
    proc = fl.spawn(argv, home, landing, point, marker, LIVEFIN_KEEP_SNAPSHOTS=KEEP)
    fl.wait_paused(proc, marker, point)
    fl.kill9(proc)


def _step(fl, home, landing, argv, point, marker) -> tuple[dict, dict]:
    """Kill at ``point``; check what is visible; repair; return (record before, record after)."""
    before_rec = _json(home / "published" / "RECORD.json")
    before = fl.published_digest(home)
    _kill_at(fl, argv, home, landing, point, marker)
    rec = _json(home / "published" / "RECORD.json")
    if point in PRE_COMMIT or point == "rollback.before_commit":
        assert rec == before_rec, f"{point}: the record changed before the commit"
        assert fl.published_digest(home) == before, f"{point}: visible files changed"
    else:
        assert rec["seq"] == before_rec["seq"] + 1, f"{point}: the commit is not recorded"
    assert_readable(fl, home)
    # Each visible file is the old or the new publication's, never anything else.
    runs = {before_rec["current"]["run_id"], rec["current"]["run_id"]}
    assert fl.read_publication(home / "published" / "livefin.duckdb")[1] in runs, point
    for folder in (home / "exports" / "limits").glob("as_of_date=*"):
        iso = folder.name.split("=", 1)[1]
        versions = {r["exports"].get(iso) for r in (before_rec, rec)} - {None}
        sets = [home / "publications" / v / "exports" / "manifest.json" for v in versions]
        assert (folder / "manifest.json").read_bytes() in [p.read_bytes() for p in sets], point
    _repair(fl, home, landing)
    assert assert_in_line(fl, home) == rec, f"{point}: repair changed the record"
    return before_rec, rec


def test_kill_at_every_publish_and_rollback_step_converges(fl, after_l, tmp_path):
    ref = after_l["state"]
    L: date = ref.last
    home = fl.copy_home(ref.home, tmp_path / "home", docs=False)
    lim = home / "exports" / "limits"
    original = {p.name: fl.tree_digest(p) for p in lim.glob("as_of_date=*")}
    assert sorted(original) == [f"as_of_date={L - timedelta(days=1)}", f"as_of_date={L}"]
    start = assert_in_line(fl, home)

    committed = [start["current"]]
    for i, point in enumerate(PRE_COMMIT + POST_COMMIT):
        old, rec = _step(
            fl, home, ref.landing, fl.task_argv("publish", L), point, tmp_path / f"p{i}"
        )
        if rec != old:
            committed.append(rec["current"])
            assert rec["current"]["as_of_date"] == L.isoformat()
            assert (
                _json(lim / f"as_of_date={L}" / "manifest.json")["run_id"]
                == rec["current"]["run_id"]
            )
    assert len(committed) == 1 + len(POST_COMMIT)
    # The killed runs left no debris once a writer has been by: no temp names, no snapshot or
    # archive that the record does not name.
    assert not [p for root in (home / "published", home / "exports") for p in root.rglob(".*")]
    rec = _json(home / "published" / "RECORD.json")
    named = {e["snapshot"] for e in rec["history"]}
    assert {p.name for p in (home / "published" / "snapshots").iterdir()} <= named
    versions = {e.get("version") for e in rec["history"]}
    assert {p.name for p in (home / "publications").iterdir()} <= versions

    # Rollback: each step back serves the export set of the publication it returns to.
    points = ["rollback.before_commit", *POST_COMMIT]
    argv = [sys.executable, "-c", ROLLBACK]
    for i, point in enumerate(points):
        old, rec = _step(fl, home, ref.landing, argv, point, tmp_path / f"r{i}")
        if point == "rollback.before_commit":
            continue
        assert rec["current"]["action"] == "rollback"
        assert rec["current"]["version"] == committed[-2]["version"]
        committed.pop()
        served = _json(lim / f"as_of_date={L}" / "manifest.json")
        assert served["run_id"] == committed[-1]["run_id"]
    # Back at after_l's publication of L: the L folder is its export set, byte for byte.
    assert committed[-1]["version"] == start["current"]["version"]
    assert {p.name: fl.tree_digest(p) for p in lim.glob("as_of_date=*")} == original

    # The last step back, uninterrupted, to L-1: lenders no longer see L.
    cp = fl.run_cli(["publish", "--rollback"], home, ref.landing)
    fl.assert_clean_failure(cp, codes=(0,))
    rec = assert_in_line(fl, home)
    assert rec["current"]["as_of_date"] == (L - timedelta(days=1)).isoformat()
    assert [p.name for p in lim.glob("as_of_date=*")] == [f"as_of_date={L - timedelta(days=1)}"]
    assert (
        fl.tree_digest(lim / f"as_of_date={L - timedelta(days=1)}")
        == original[f"as_of_date={L - timedelta(days=1)}"]
    )


def test_next_publish_rolls_forward_a_killed_commit(fl, after_l, tmp_path):
    """No explicit repair: the next publish (the CLI) finishes the killed one, then its own."""
    ref = after_l["state"]
    L = ref.last
    home = fl.copy_home(ref.home, tmp_path / "home", docs=False)
    point = "publish.after_exports"
    _kill_at(fl, fl.task_argv("publish", L), home, ref.landing, point, tmp_path / "m")
    killed = _json(home / "published" / "RECORD.json")["current"]
    # Exports are in place, history and CURRENT.json are not yet: the mix the record resolves.
    assert _json(home / "published" / "CURRENT.json")["run_id"] != killed["run_id"]
    cp = fl.run_cli(["publish", "--date", str(L)], home, ref.landing)
    fl.assert_clean_failure(cp, codes=(0,))
    rec = assert_in_line(fl, home)
    assert rec["history"][-2] == killed  # the killed publication stays recorded, then the new
    assert rec["current"]["run_id"] != killed["run_id"] and rec["seq"] == killed["seq"] + 1


def test_any_writer_finishes_a_killed_commit(fl, after_l, tmp_path):
    """Not only the next publish: any command that takes the writer lock (here an extract)
    brings the visible files in line with the committed record first."""
    ref = after_l["state"]
    L = ref.last
    home = fl.copy_home(ref.home, tmp_path / "home", docs=False)
    _kill_at(
        fl, fl.task_argv("publish", L), home, ref.landing, "publish.after_snapshot", tmp_path / "m"
    )
    killed = _json(home / "published" / "RECORD.json")["current"]
    assert _json(home / "published" / "CURRENT.json")["run_id"] != killed["run_id"]
    cp = fl.run_cli(["extract", "--source", "merchants", "--date", str(L)], home, ref.landing)
    fl.assert_clean_failure(cp, codes=(0,))
    rec = assert_in_line(fl, home)
    assert rec["current"] == killed
