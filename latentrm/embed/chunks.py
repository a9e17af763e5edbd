"""The chunk files of an embedding store: a chunk's vectors (<id>.<sha prefix>.npy) and its
description (<id>.json: the row keys, the file, its SHA-256), written and read back with every
check (the name, the size before any byte is read, the checksum, the .npy header before any
allocation, finite values). What a store is and how a request is planned:
:mod:`latentrm.embed.store`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.errors import CacheError
from latentrm.io import atomic_write, atomic_write_json, sha256_file

log = logging.getLogger(__name__)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CacheError(
            f"{path}: cannot read the {what} ({e}); delete {path.parent} to rebuild it"
        ) from None


class StoreMismatch(CacheError):
    """store.json disagrees with a chunk whose checksum holds: the store's description is wrong,
    not the chunk (so nothing is set aside)."""


@dataclass
class Chunk:
    id: str
    file: str  # the .npy file name in chunks/
    sha256: str
    keys: list[str]
    created: float


# What write_chunk names a chunk's vectors: <chunk id>.<checksum prefix>.npy, beside the
# description. A description naming anything else (/dev/zero, ../x) is refused, never opened.
_CHUNK_FILE = re.compile(r"[0-9a-f]{32}\.[0-9a-f]{16}\.npy")
_NPY_HEADER_MAX = 1 << 16  # a .npy header of a 3-d float32 array is 128 bytes


def list_chunks(d: Path) -> list[Chunk]:
    """Every complete chunk of the store (one with a readable sidecar), oldest first."""
    out = []
    for side in sorted((d / "chunks").glob("*.json")):
        doc = read_json(side, "chunk description")
        try:
            ch = Chunk(
                side.stem, doc["file"], str(doc["sha256"]), list(doc["keys"]), float(doc["created"])
            )
        except (KeyError, TypeError, ValueError):
            raise CacheError(
                f"{side}: malformed chunk description; delete it (the chunk is recomputed)"
            ) from None
        why = (
            f"file {ch.file!r:.80} is not a chunk file name"
            if not isinstance(ch.file, str) or not _CHUNK_FILE.fullmatch(ch.file)
            else "'keys' must be a list of row keys"
            if not all(isinstance(k, str) for k in ch.keys)
            else None
        )
        if why:
            raise CacheError(
                f"{side}: malformed chunk description ({why}); delete it (the chunk is recomputed)"
            )
        out.append(ch)
    return sorted(out, key=lambda c: (c.created, c.id))


def index_rows(chunks: Sequence[Chunk]) -> dict[str, tuple[int, int]]:
    """row key -> (position in `chunks`, row in that chunk); the oldest copy of a row wins."""
    index: dict[str, tuple[int, int]] = {}
    for ci, ch in enumerate(chunks):
        for r, k in enumerate(ch.keys):
            index.setdefault(k, (ci, r))
    return index


def read_chunk(d: Path, ch: Chunk, dim: int, n_layers: int) -> np.ndarray:
    """(rows, L, d) float32 of a chunk; CacheError if its file is missing, corrupt or malformed."""
    path = d / "chunks" / ch.file
    want_bytes = len(ch.keys) * n_layers * dim * 4
    try:
        st = os.stat(path)
    except OSError as e:
        raise CacheError(f"{path}: unreadable chunk ({e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"{path}: not a regular file")
    if st.st_size > want_bytes + _NPY_HEADER_MAX:
        # Larger than the description says, checked before the file is read: a 30 GB (sparse)
        # file is never loaded. The store's description is to blame only if the file is intact.
        _check_size_alone(d, path, ch, st.st_size, dim, n_layers, want_bytes)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CacheError(f"{path}: unreadable chunk ({e})") from None
    if hashlib.sha256(data).hexdigest() != ch.sha256:
        raise CacheError(f"{path}: checksum mismatch (the file changed after it was written)")
    want = (len(ch.keys), n_layers, dim)
    try:  # the header first: nothing is allocated for a shape that is not the expected one
        f = io.BytesIO(data)
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(f)
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: unreadable chunk ({e})") from None
    if len(shape) == 3 and shape[0] == want[0] and dtype == np.float32 and shape != want:
        raise StoreMismatch(
            f"{path.parent.parent / 'store.json'}: says {n_layers} layers of dim {dim}, but the "
            f"intact chunk {path.name} (its checksum holds) is {shape}; delete {d} to rebuild it"
        )
    if shape != want or dtype != np.float32:
        raise CacheError(f"{path}: expected float32 {want}, found {dtype} {shape}")
    try:
        rows = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: unreadable chunk ({e})") from None
    if not np.isfinite(rows).all():
        raise CacheError(f"{path}: chunk holds NaN/Inf values")
    return rows


def _check_size_alone(
    d: Path, path: Path, ch: Chunk, size: int, dim: int, n_layers: int, want_bytes: int
) -> None:
    """A chunk file whose size is not the description's: StoreMismatch if it is an intact,
    self-consistent chunk of the right rows (store.json is wrong; checked by hashing the file in
    blocks, never holding it), CacheError otherwise."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f, max_header_size=_NPY_HEADER_MAX)
            consistent = (
                len(shape) == 3
                and shape[0] == len(ch.keys)
                and dtype == np.float32
                and size == f.tell() + 4 * int(np.prod(shape, dtype=object))
            )
    except (OSError, ValueError, TypeError):
        consistent = False
    if consistent and sha256_file(path) == ch.sha256:
        raise StoreMismatch(
            f"{path.parent.parent / 'store.json'}: says {n_layers} layers of dim {dim}, but the "
            f"intact chunk {path.name} (its checksum holds) is {shape}; delete {d} to rebuild it"
        )
    raise CacheError(
        f"{path}: {size} bytes, but {len(ch.keys)} rows of {n_layers} layers x dim "
        f"{dim} take {want_bytes} (+ a header of at most {_NPY_HEADER_MAX})"
    )


def set_aside(d: Path, ch: Chunk, why: str) -> None:
    """Move a bad chunk's description out of the way (its rows count as missing again)."""
    side = d / "chunks" / f"{ch.id}.json"
    log.warning(
        "cache %s: chunk %s is bad (%s); set aside, its rows will be recomputed", d, ch.id, why
    )
    try:
        os.replace(side, side.with_name(f"{ch.id}.json.bad"))
    except FileNotFoundError:
        pass


def write_chunk(d: Path, cid: str, keys: Sequence[str], vectors: np.ndarray) -> None:
    """Store the (rows, L, d) vectors of chunk `cid` of the store at `d`, whose rows are `keys`:
    the .npy first (named by its checksum), then the JSON that points at it."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 3 or vectors.shape[0] != len(keys):
        raise CacheError(f"chunk {cid}: {vectors.shape} vectors for {len(keys)} rows")
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    name = f"{cid}.{sha[:16]}.npy"
    atomic_write(d / "chunks" / name, lambda p: p.write_bytes(data))
    atomic_write_json(
        d / "chunks" / f"{cid}.json",
        {
            "file": name,
            "sha256": sha,
            "keys": list(keys),
            "shape": list(vectors.shape),
            "created": time.time(),
        },
    )
