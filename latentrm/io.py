"""Small I/O helpers: atomic writes (temp file + rename), output folders, content hashes.

Files and folders latentrm creates get the permissions any other program of the user would give
them (``0o666`` / ``0o777`` less the umask): the temp files behind atomic writes are created
``0o600`` by :func:`tempfile.mkstemp`, which would make caches and models unreadable to a
shared group, a Ray worker running as another user, or a web server.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latentrm.errors import ConfigError


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then rename tmp over `path`, so readers never see a partial file.

    The file ends with mode ``0o666 & ~umask``, like a file opened with ``open(path, "w")``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder in `parent` (created if missing) with mode ``0o777 & ~umask``.

    :func:`tempfile.mkdtemp` makes it ``0o700``; a folder that is later renamed into place as a
    run's output must get the user's usual permissions instead.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(d, 0o777 & ~current_umask())
    return d


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_parent(path: str | Path, what: str = "output") -> None:
    """ConfigError naming `path` unless a file or folder can be created at it.

    The nearest existing ancestor must be a folder we may write to: a path under a file, or in a
    read-only folder, is refused before any work starts.
    """
    p = Path(path).expanduser().absolute()
    base = _first_existing(p.parent)
    if not base.is_dir():
        raise ConfigError(f"{path}: cannot create the {what}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot create the {what}: no permission to write in {base}")


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """`path` as a Path, checked before any work starts: not an existing file, and creatable (or
    an existing folder we may write to). ConfigError naming the path otherwise."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{path}: exists and is not a folder (the {what}); choose another path")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{path}: no permission to write in this {what}")
    else:
        check_writable_parent(p, what)
    return p


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()
