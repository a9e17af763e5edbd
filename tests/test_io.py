"""latentrm.io: atomic writes with the user's umask, temp folders, output-folder checks."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from latentrm.errors import ConfigError
from latentrm.io import (
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
    check_writable_parent,
    make_temp_dir,
)


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for the test; put the old one back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize(
    ("mask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)],
)
def test_files_and_folders_get_the_users_umask(
    tmp_path: Path, umask: Callable[[int], int], mask: int, file_mode: int, dir_mode: int
) -> None:
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "hi")
    atomic_write_json(tmp_path / "sub" / "b.json", {"x": 1})
    assert _mode(tmp_path / "a.txt") == file_mode  # mkstemp alone gives 0o600
    assert _mode(tmp_path / "sub" / "b.json") == file_mode
    d = make_temp_dir(tmp_path / "p", ".run.tmp-")  # mkdtemp alone gives 0o700
    assert d.parent == tmp_path / "p" and d.name.startswith(".run.tmp-") and _mode(d) == dir_mode
    assert not list(tmp_path.glob(".a.txt.*"))  # no temp file left


def test_a_failed_write_leaves_neither_file_nor_temp(tmp_path: Path) -> None:
    from latentrm.io import atomic_write

    def boom(p: Path) -> None:
        p.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []


def test_output_dir_checks_name_the_path(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("a file\n")
    with pytest.raises(ConfigError, match=rf"^{taken}: exists and is not a folder"):
        check_output_dir(taken)
    with pytest.raises(
        ConfigError,
        match=rf"^{taken / 'out'}: cannot create .* {taken} is a "
        "file, not a folder",
    ):
        check_output_dir(taken / "out")
    with pytest.raises(ConfigError, match=rf"{taken} is a file"):
        check_writable_parent(taken / "a" / "b.jsonl")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert taken.read_text() == "a file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_parent_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="no permission to write"):
            check_output_dir(ro / "run")
    finally:
        ro.chmod(0o755)
