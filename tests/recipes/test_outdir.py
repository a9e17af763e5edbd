"""latentrm.recipes.outdir: what killed runs leave next to out_dir, and the swap of out_dir."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from latentrm.errors import ConfigError
from latentrm.recipes import outdir
from latentrm.recipes.outdir import exchange, remove_leftovers, staged_run_dir, swap_in

ROOT = Path(__file__).resolve().parents[2]
KILLED_RUN = """
import os, signal, sys
from latentrm.recipes.outdir import staged_run_dir
with staged_run_dir(sys.argv[1]) as tmp:
    (tmp / "config.yaml").write_text("half a run")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _host() -> str:
    return outdir._owner().split("@", 1)[1]


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _earlier_run(out: Path) -> None:
    out.mkdir()
    (out / "config.yaml").write_text("earlier run\n")


@pytest.mark.skipif(os.name != "posix", reason="kill -9")
def test_kill_9_leaves_a_temporary_folder_that_the_next_run_removes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    _earlier_run(out)
    killed = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(out)], cwd=ROOT)
    assert killed.wait() == -9
    (left,) = _siblings(out)  # reproduced: the killed run's folder, named after its process
    assert left.startswith(f".run.tmp-{killed.pid}@{_host()}-")
    assert (out / "config.yaml").read_text() == "earlier run\n"  # out_dir untouched
    with caplog.at_level(logging.INFO, logger="latentrm.recipes.outdir"):
        with staged_run_dir(out) as tmp:
            (tmp / "config.yaml").write_text("this run\n")
    assert _siblings(out) == []
    assert (out / "config.yaml").read_text() == "this run\n"
    assert f"{tmp_path / left}: removed, left by a killed run of run" in caplog.text


def test_only_leftovers_of_dead_processes_of_this_out_dir_on_this_machine_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out, host, dead = tmp_path / "run", _host(), _dead_pid()
    _earlier_run(out)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            f".run.tmp-{dead}@{host}-abc_12": True,  # killed run
            f".run.old-{dead}@{host}-0a1b2c3d": True,  # killed while removing the earlier run
            f".run.tmp-{live.pid}@{host}-xyz": False,  # a run going on now
            f".run.tmp-{os.getpid()}@{host}-own": False,
            f".run.tmp-{dead}@elsewhere-abc": False,  # the process may run on that machine
            ".run.tmp-k2j4h5g6": False,  # no owner recorded (earlier latentrm)
            f".run2.tmp-{dead}@{host}-abc": False,  # another out_dir's
            ".run.partial": False,  # a resumable experiment
        }
        for name in names:
            (tmp_path / name).mkdir()
            (tmp_path / name / "results.csv").write_text("x\n")
        (tmp_path / f".run.tmp-{dead}@{host}-file").write_text("a file, not our folder")
        with caplog.at_level(logging.INFO, logger="latentrm.recipes.outdir"):
            removed = remove_leftovers(out)
        assert sorted(p.name for p in removed) == sorted(n for n, gone in names.items() if gone)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [n for n, gone in names.items() if not gone] + ["run", f".run.tmp-{dead}@{host}-file"]
        )
        assert caplog.text.count("removed, left by a killed run") == 2
        assert (
            f".run.tmp-{dead}@elsewhere-abc: left by an earlier run of run on another "
            "machine" in caplog.text
        )
        assert (
            ".run.tmp-k2j4h5g6: left by an earlier run of run (owner not recorded)" in caplog.text
        )
    finally:
        live.kill()
        live.wait()


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("in a")
    (b / "y").write_text("in b")
    if not exchange(a, b):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here")
    assert _tree(a) == {"y": "in b"} and _tree(b) == {"x": "in a"}
    with pytest.raises(FileNotFoundError):
        exchange(a, tmp_path / "missing")


def _watch_renames(monkeypatch: pytest.MonkeyPatch, out: Path) -> list[bool]:
    """Records, at every rename swap_in makes, whether `out` exists at that moment."""
    seen, real = [], os.rename

    def rename(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        real(src, dst)
        seen.append(out.exists())

    monkeypatch.setattr(outdir.os, "rename", rename)
    return seen


def _staged(tmp_path: Path, out: Path) -> Path:
    _earlier_run(out)
    (out / "heads").mkdir()
    (out / "notes.txt").write_text("mine\n")
    new = tmp_path / ".run.tmp-1@h-x"
    new.mkdir()
    (new / "config.yaml").write_text("new run\n")
    return new


def test_swap_never_leaves_out_dir_absent_where_it_can_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p1").mkdir(), (tmp_path / "p2").mkdir()
    if not exchange(tmp_path / "p1", tmp_path / "p2"):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here")
    out = tmp_path / "run"
    new = _staged(tmp_path, out)
    seen = _watch_renames(monkeypatch, out)
    swap_in(new, out)
    assert seen and all(seen)
    assert _tree(out) == {"config.yaml": "new run\n", "notes.txt": "mine\n"}
    assert _siblings(out) == []


def test_swap_falls_back_to_two_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an exchange (macOS, a file system without it): out_dir is absent for the instant
    between the two renames (documented), and the result is the same."""
    out = tmp_path / "run"
    new = _staged(tmp_path, out)
    monkeypatch.setattr(outdir, "exchange", lambda a, b: False)
    seen = _watch_renames(monkeypatch, out)
    swap_in(new, out)
    assert seen[-2:] == [False, True]  # the window, then out_dir again
    assert _tree(out) == {"config.yaml": "new run\n", "notes.txt": "mine\n"}
    assert _siblings(out) == []


@pytest.mark.parametrize("name", ["../victim-r4", "/tmp/victim-r4", "a/b-r4", "..", "", ".x"])
def test_a_folder_made_from_a_name_stays_inside_its_parent(tmp_path: Path, name: str) -> None:
    """Belt and braces under the config's name check: where a run joins a name into a path (the
    heads folder), a name that would leave the folder is refused."""
    heads = tmp_path / "heads"
    assert outdir.child_dir(heads, "lens-cross-r4") == heads / "lens-cross-r4"
    with pytest.raises(ConfigError, match=rf"^{re.escape(repr(name))} cannot name a folder"):
        outdir.child_dir(heads, name)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_symlinked_out_dir_is_written_where_it_points(tmp_path: Path) -> None:
    """runs/latest -> runs/2026-12-05: the run replaces the folder the link points to and the
    link stays a link (it was replaced by a real folder, and left a stray link beside it)."""
    target = tmp_path / "store" / "run-1"
    target.parent.mkdir()
    _earlier_run(target)
    (target / "notes.txt").write_text("mine\n")
    link = tmp_path / "latest"
    link.symlink_to(target, target_is_directory=True)
    with staged_run_dir(link) as tmp:
        (tmp / "config.yaml").write_text("new run\n")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert _tree(target) == {"config.yaml": "new run\n", "notes.txt": "mine\n"}
    assert sorted(os.listdir(tmp_path)) == ["latest", "store"]
    assert os.listdir(target.parent) == ["run-1"]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(
        ConfigError,
        match=rf"^out_dir={dangling} is a symbolic link to "
        rf"{tmp_path / 'gone'}, which does not exist",
    ):
        with staged_run_dir(dangling):
            pass
