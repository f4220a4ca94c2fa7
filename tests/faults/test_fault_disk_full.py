"""Full disk while publishing: a clear error (no traceback, exit 1) and nothing published.

The published/ or exports/ folder of a copied state is put on a tmpfs just big enough for what
is already there (plus a little, or plus one snapshot), then ``livefin publish --date L`` runs
in a real process. Where mounting is not permitted, the published case falls back to a real
RLIMIT_FSIZE limit (writes past it fail with EFBIG).
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

PAGE = 4096


def _used(root: Path) -> int:
    return sum(-(-p.stat().st_size // PAGE) * PAGE for p in root.rglob("*") if p.is_file())


def _mount_tmpfs(folder: Path, size: int) -> bool:
    """Move ``folder``'s content onto a tmpfs of ``size`` bytes mounted at ``folder``."""
    aside = folder.with_name(folder.name + ".orig")
    folder.rename(aside)
    folder.mkdir()
    cp = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if cp.returncode != 0:
        folder.rmdir()
        aside.rename(folder)
        return False
    subprocess.run(["cp", "-a", f"{aside}/.", str(folder)], check=True)
    return True


def _umount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize("full", ["snapshot", "published_copy", "exports"])
def test_publish_on_a_full_disk_fails_cleanly_and_publishes_nothing(fl, after_l, tmp_path, full):
    ref = after_l["state"]
    L = ref.last
    home = fl.copy_home(ref.home, tmp_path / "home")
    # A second publication of L (a rerun): what a lender could see must stay exactly as is.
    before = fl.published_digest(home)
    pub_before = fl.read_publication(home / "published" / "livefin.duckdb")
    snap_size = (home / "published" / "livefin.duckdb").stat().st_size
    target = home / ("exports" if full == "exports" else "published")
    extra = {"snapshot": 64 * 1024, "published_copy": snap_size + 64 * 1024, "exports": 16 * 1024}
    mounted = _mount_tmpfs(target, _used(target) + extra[full])
    try:
        if mounted:
            cp = fl.run_cli(["publish", "--date", str(L)], home, ref.landing)
        elif full == "snapshot":
            cp = fl.run_cli(
                ["publish", "--date", str(L)],
                home,
                ref.landing,
                preexec_fn=_limit_file_size(snap_size // 2),
            )
        else:
            pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
        fl.assert_clean_failure(cp, codes=(1,))
        err = " ".join(cp.stderr.split())
        assert f"publishing {L} failed" in err, err
        assert "No space left" in err or "File too large" in err or "too large" in err, err
        # Nothing visible changed, and the published snapshot is still a readable database.
        assert fl.published_digest(home) == before
        assert fl.read_publication(home / "published" / "livefin.duckdb") == pub_before
        if mounted:
            # The failed run cleaned up after itself (the disk is not left fuller).
            left = [p for p in target.rglob(".*") if p.is_file()]
            assert not left, f"temp files left on the full disk: {left}"
    finally:
        if mounted:
            _umount(target)
            target.rmdir()
            target.with_name(target.name + ".orig").rename(target)
    shutil.rmtree(home, ignore_errors=True)
