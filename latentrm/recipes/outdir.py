"""Run folders that are all-or-nothing (`latentrm run`, `latentrm experiment`).

A run writes its artifacts into a temporary folder next to ``out_dir`` and swaps it in when
everything is written (:func:`staged_run_dir`), so ``out_dir`` always holds one complete run:
the earlier one if this one fails, this one if it succeeds, never the config of one next to the
heads or metrics of another, and no head of a method the last run did not train.

- What a run writes (:data:`ARTIFACTS`) is replaced as a whole. Anything else in ``out_dir``
  (an embedding cache under it, notes) is carried over into the new folder.
- A non-empty folder that holds no earlier run (no :data:`MARKERS`) is refused before any work,
  as is the current working directory or a folder above it, or an existing file.
- `latentrm experiment` keeps its finished rows in ``.NAME.partial/`` next to ``out_dir``
  (:func:`partial_dir`) until it finishes, so a killed experiment resumes, and one that fails
  leaves the earlier results alone.
- The swap is one ``renameat2(RENAME_EXCHANGE)`` on Linux (:func:`exchange`), so ``out_dir`` is
  never absent. Elsewhere, or on a file system without it, it is two renames and ``out_dir`` is
  absent for the instant between them.
- A run killed outright (``kill -9``, power loss) leaves its temporary folder
  ``.NAME.tmp-PID@HOST-*`` (or the displaced earlier run, ``.NAME.old-PID@HOST-*``) next to
  ``out_dir``. The next run of that ``out_dir`` removes them when the process PID on this HOST
  is gone (:func:`remove_leftovers`); others are left alone. A kill in the instant between
  the exchange and moving the displaced run aside leaves it under the staging folder's name:
  a ``.tmp-`` folder (removed as above) or ``.NAME.partial``, which the next experiment clears
  unless it holds rows of that experiment's very config.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from latentrm.config.bounds import check_name
from latentrm.errors import ConfigError
from latentrm.io import check_output_dir, make_temp_dir

log = logging.getLogger(__name__)

# Everything `latentrm run` / `experiment` write into out_dir.
ARTIFACTS = frozenset(
    {"config.yaml", "metrics.json", "results.md", "heads", "results.csv", "plots"}
)
# Files that show a folder holds an earlier run (it may then be replaced).
MARKERS = frozenset({"config.yaml", "metrics.json", "results.csv"})


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_run_dir(out: str | Path, keep: Iterable[str | Path] = ()) -> Path:
    """`out` as a Path if a run may be written there; ConfigError naming it otherwise.

    Refused: an existing file, a place we cannot write, the working directory or a folder above
    it, and a non-empty folder without an earlier run's :data:`MARKERS` (its entries named in
    `keep`, e.g. an embedding cache the config puts there, do not count). Checked before any work.
    A symbolic link stands for the folder it points to (returned), so the link stays a link.
    """
    p = Path(out).expanduser()
    if p.is_symlink():  # runs/latest -> runs/2026-12-05: the run replaces what it points to
        p = Path(os.path.realpath(p))
        if not p.exists():
            raise ConfigError(
                f"out_dir={out} is a symbolic link to {p}, which does not exist; "
                "create it or give another out_dir"
            )
    p = check_output_dir(p, "out_dir")
    if _inside(Path.cwd(), p):
        raise ConfigError(
            f"out_dir={out} is the working directory or holds it; a run replaces "
            "its out_dir as a whole: give a folder of its own, e.g. runs/NAME"
        )
    if p.is_dir():
        kept = {Path(k).resolve() for k in keep}
        names = {e.name for e in p.iterdir() if e.resolve() not in kept}
        if names and not names & MARKERS:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise ConfigError(
                f"out_dir={out} holds files but no latentrm run ({shown}); give a "
                "new or empty folder"
            )
    return p


def child_dir(folder: str | Path, name: str) -> Path:
    """``folder / name`` for a `name` made from config values (heads/NAME-rRATIO), refused with a
    ConfigError unless it is one safe folder name that stays inside `folder`.

    The config refuses such names when it is loaded; this is the second lock, where the path is
    made, so no code path can join an unchecked name into a run's folder."""
    path = Path(folder) / check_name(name)  # one component: no '/', no '..', not absolute
    if path.is_symlink():  # a link planted there would lead the writes elsewhere
        raise ConfigError(f"{path}: is a symbolic link; a run writes only into its own folders")
    return path


def _owner() -> str:
    """``PID@HOST`` of this process, as temporary folder names record it."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64]
    return f"{os.getpid()}@{host}"


# A temporary folder of a run of out_dir NAME: .NAME.tmp-PID@HOST-RANDOM (or .old-: displaced).
_LEFTOVER = re.compile(r"(?:tmp|old)-(\d+)@([A-Za-z0-9._-]*)-[A-Za-z0-9_]+")


def _process_gone(pid: int) -> bool:
    """Whether no process `pid` runs on this machine (False when unsure: the folder is kept)."""
    if os.name != "posix" or pid == os.getpid() or pid <= 0:
        return False  # Windows' os.kill would end the process rather than probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it runs, as another user
        return False
    return False


def remove_leftovers(out: str | Path) -> list[Path]:
    """Remove the temporary folders that killed runs of `out` left next to it; returns them.

    Only ``.NAME.tmp-PID@HOST-*`` / ``.NAME.old-PID@HOST-*`` folders whose HOST is this machine
    and whose process PID is gone are removed (each logged); a folder of a live process, of
    another machine or without an owner (made by an earlier latentrm) is kept, with a warning
    for the last two. ``.NAME.partial`` (a resumable experiment) is never touched.
    """
    out = Path(out).absolute()
    if not out.parent.is_dir():
        return []
    prefix, host, removed = f".{out.name}.", _owner().split("@", 1)[1], []
    for entry in sorted(out.parent.iterdir()):
        rest = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
        if not rest.startswith(("tmp-", "old-")) or entry.is_symlink() or not entry.is_dir():
            continue
        m = _LEFTOVER.fullmatch(rest)
        if m is None or m.group(2) != host:
            log.warning(
                "%s: left by an earlier run of %s %s; remove it if no run is using it",
                entry,
                out.name,
                "on another machine" if m else "(owner not recorded)",
            )
        elif _process_gone(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)  # a run starting alongside may race us
            if not entry.exists():
                log.info(
                    "%s: removed, left by a killed run of %s (process %s gone)",
                    entry,
                    out.name,
                    m.group(1),
                )
                removed.append(entry)
    return removed


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    False, with nothing changed, where that is not available (another OS, a libc without
    renameat2, a kernel or file system without RENAME_EXCHANGE); OSError for other failures.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def swap_in(new: Path, out: Path) -> None:
    """Make folder `new` the folder `out`: entries of `out` that are not run artifacts are moved
    into `new` first; the old folder, left with the earlier run's artifacts, is then removed.

    `out` is swapped atomically where :func:`exchange` can; else it is absent for the instant
    between two renames."""
    out, new = Path(out).absolute(), Path(new).absolute()
    if out.exists():
        for entry in out.iterdir():
            if entry.name not in ARTIFACTS and not (new / entry.name).exists():
                os.rename(entry, new / entry.name)
        old = out.parent / f".{out.name}.old-{_owner()}-{uuid.uuid4().hex[:8]}"
        if exchange(new, out):
            os.rename(new, old)  # `new` holds the earlier run now
        else:
            os.rename(out, old)
            os.rename(new, out)  # between the two renames `out` is briefly absent
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.rename(new, out)
    log.debug("%s: swapped in", out)


@contextlib.contextmanager
def staged_run_dir(out: str | Path, keep: Iterable[str | Path] = ()) -> Iterator[Path]:
    """A temporary folder next to `out` to write a run into; swapped in as `out` when the block
    ends without an exception, removed when it raises (`out` is then left as it was)."""
    p = check_run_dir(out, keep)
    remove_leftovers(p)
    tmp = make_temp_dir(p.absolute().parent, f".{p.name}.tmp-{_owner()}-")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, p)


def partial_dir(out: str | Path) -> Path:
    """Where an unfinished experiment of `out` keeps its rows: ``.NAME.partial`` next to it."""
    p = Path(out).absolute()
    return p.parent / f".{p.name}.partial"
