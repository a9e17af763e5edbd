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
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from latentrm.errors import ConfigError
from latentrm.io import check_output_dir, make_temp_dir

log = logging.getLogger(__name__)

# Everything `latentrm run` / `experiment` write into out_dir.
ARTIFACTS = frozenset({"config.yaml", "metrics.json", "results.md", "heads", "results.csv",
                       "plots"})
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
    """
    p = check_output_dir(out, "out_dir")
    if _inside(Path.cwd(), p):
        raise ConfigError(f"out_dir={out} is the working directory or holds it; a run replaces "
                          "its out_dir as a whole: give a folder of its own, e.g. runs/NAME")
    if p.is_dir():
        kept = {Path(k).resolve() for k in keep}
        names = {e.name for e in p.iterdir() if e.resolve() not in kept}
        if names and not names & MARKERS:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise ConfigError(f"out_dir={out} holds files but no latentrm run ({shown}); give a "
                              "new or empty folder")
    return p


def swap_in(new: Path, out: Path) -> None:
    """Make folder `new` the folder `out`: entries of `out` that are not run artifacts are moved
    into `new` first; the old folder, left with the earlier run's artifacts, is then removed."""
    out = Path(out).absolute()
    if out.exists():
        for entry in out.iterdir():
            if entry.name not in ARTIFACTS and not (new / entry.name).exists():
                os.rename(entry, new / entry.name)
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
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
    tmp = make_temp_dir(p.absolute().parent, f".{p.name}.tmp-")
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
