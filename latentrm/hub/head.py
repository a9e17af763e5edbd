"""The head files of a model folder: ``head.safetensors`` (weights + standardisation buffers)
and ``head.json`` (config, training history), written and read back with every check.

:func:`load_head` trusts nothing in the two files: head.json is type-checked field by field,
head.safetensors' header is checked against the file's size (:func:`read_safetensors_header`) and
head.json's sizes against the header before any tensor is allocated, and NaN/Inf weights or a
standardisation ``std`` <= 0 are refused. Every problem is one ModelError naming the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentrm.errors import ConfigError, ModelError
from latentrm.head.reward import ENSEMBLE_FORMAT, HEAD_FORMAT, EnsembleHead, RewardHead
from latentrm.head.train import History
from latentrm.io import atomic_write, atomic_write_json

# Byte sizes of the safetensors dtypes a head may hold (float only: heads are trained in float32).
_ST_FLOAT_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_ST_MAX_HEADER = 100 << 20  # a head's header is a few kB; more means a corrupt or hostile file
# A model folder's JSON files are kilobytes (head.json with a long training history: < 1 MB).
MAX_JSON_BYTES = 16 << 20


def model_file(path: Path, root: Path | None = None) -> Path:
    """`path`, a file of a model folder, checked before it is opened: a regular file (not a
    device such as /dev/zero, a FIFO that would block the read, or a folder), and, if it is a
    link, one that stays inside `root` (default: the folder itself; from_pretrained passes the
    Hub cache's repo folder, whose snapshots link to its blobs). ModelError naming it otherwise.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: missing (or a link to nothing)") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(
            f"{path}: not a regular file (a device, FIFO, socket or folder); a model "
            "folder holds plain files"
        )
    base = Path(root if root is not None else path.parent).resolve()
    target = path.resolve()
    if target != base and base not in target.parents:
        raise ModelError(
            f"{path}: a link to {target}, outside the folder; a model folder never "
            "reads files outside itself (copy the file in)"
        )
    return path


def read_model_json(path: Path, root: Path | None = None) -> Any:
    """A JSON file of a model folder: checked by :func:`model_file`, at most MAX_JSON_BYTES,
    duplicate keys refused (JSON readers keep the last silently); ModelError naming it."""
    model_file(path, root)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ModelError(
            f"{path}: {size} bytes, more than the {MAX_JSON_BYTES} a model folder's "
            "JSON file may hold"
        )

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            key = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
            raise ValueError(f"duplicate key {key!r}")
        return obj

    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelError(f"{path}: not valid JSON ({' '.join(str(e).split())})") from None


def save_head(
    head: RewardHead | EnsembleHead, out_dir: str | Path, history: History | None = None
) -> None:
    """Write ``head.safetensors`` (weights + standardisation buffers) and ``head.json`` (config,
    and the training `history` when given)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    atomic_write(out / "head.safetensors", lambda p: save_file(tensors, str(p)))
    info = head.config()
    if history is not None:
        info["history"] = history
    atomic_write_json(out / "head.json", info)


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} of a safetensors file, checked against the file's size.

    Reads the header only (nothing is allocated from what the file claims): every tensor's byte
    range must lie inside the file and match its shape, so the shapes are as large as the file
    is, not as large as a corrupt or hostile header says. ModelError naming the file otherwise
    (empty, truncated, a pickle/torch checkpoint, a bad header).
    """

    def bad(why: str) -> ModelError:
        return ModelError(f"{path}: not a valid safetensors file ({why})")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"{size} bytes, too short for a header")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, _ST_MAX_HEADER):
                raise bad(
                    f"header length {n} but the file has {size} bytes; a pickle or "
                    "torch checkpoint is not accepted"
                )
            raw = f.read(n)
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("the header is not JSON") from None
    if not isinstance(doc, dict):
        raise bad("the header is not a JSON object")
    data_bytes = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, t in doc.items():
        if name == "__metadata__":
            continue
        ok = (
            isinstance(t, dict)
            and isinstance(t.get("shape"), list)
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in t["shape"])
            and isinstance(t.get("data_offsets"), list)
            and len(t["data_offsets"]) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in t["data_offsets"])
        )
        if not ok:
            raise bad(f"malformed entry for tensor {name!r}")
        if t.get("dtype") not in _ST_FLOAT_BYTES:
            raise bad(f"tensor {name!r} has dtype {t.get('dtype')!r}; a head holds floats")
        begin, end = t["data_offsets"]
        shape = tuple(t["shape"])
        if not 0 <= begin <= end <= data_bytes or end - begin != (
            math.prod(shape) * _ST_FLOAT_BYTES[t["dtype"]]
        ):
            raise bad(
                f"tensor {name!r} {list(shape)} does not fit the file's {data_bytes} data "
                "bytes (truncated?)"
            )
        out[name] = (t["dtype"], shape)
    return out


def _head_spec(info: Any, where: str) -> tuple[int, tuple[int, ...], float]:
    """(d, hidden, dropout) of one head's config in head.json, type-checked."""
    if not isinstance(info, dict):
        raise ModelError(f"{where}: expected an object, got {type(info).__name__}")
    for key in ("d", "hidden", "dropout"):
        if key not in info:
            raise ModelError(f"{where}: missing {key!r}")
    d, hidden, dropout = info["d"], info["hidden"], info["dropout"]
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ModelError(f"{where}: 'd' must be an integer >= 1, got {d!r}")
    if not isinstance(hidden, list) or any(
        isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden
    ):
        raise ModelError(f"{where}: 'hidden' must be a list of integers >= 1, got {hidden!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (0 <= dropout < 1):
        raise ModelError(f"{where}: 'dropout' must be a number in [0, 1), got {dropout!r}")
    return d, tuple(hidden), float(dropout)


def _check_sizes(
    shapes: dict[str, tuple[str, tuple[int, ...]]],
    prefix: str,
    d: int,
    hidden: tuple[int, ...],
    where: str,
    file: Path,
) -> None:
    """head.json's `d` and `hidden` against the tensors of the file, before anything is built."""
    mean = shapes.get(f"{prefix}mean")
    if mean is None:
        raise ModelError(f"{file}: tensor '{prefix}mean' missing")
    if mean[1] != (d,):
        raise ModelError(
            f"{where}: 'd' = {d} but {file.name} holds '{prefix}mean' of shape {list(mean[1])}"
        )
    widths = []
    for k in range(len(hidden) + 1):
        w = shapes.get(f"{prefix}mlp.{3 * k}.weight")
        if w is None or len(w[1]) != 2:
            break
        widths.append(w[1][0])
    if tuple(widths[:-1]) != hidden or len(widths) != len(hidden) + 1 or widths[-1] != 1:
        raise ModelError(
            f"{where}: 'hidden' = {list(hidden)} but {file.name} holds layers of widths {widths}"
        )


def load_head(in_dir: str | Path) -> RewardHead | EnsembleHead:
    """Read a head (or an ensemble of heads) written by :func:`save_head`, in eval mode
    (:func:`read_head` without head.json's other fields)."""
    return read_head(in_dir)[0]


def read_head(
    in_dir: str | Path, root: Path | None = None
) -> tuple[RewardHead | EnsembleHead, dict[str, Any]]:
    """A head written by :func:`save_head`, in eval mode, and head.json as parsed (its
    `history` among the rest).

    Every problem is one ModelError (a ConfigError) naming the file and the field or tensor:
    a file that is not a regular file inside the folder (`root`: see :func:`model_file`),
    head.json that is not JSON or lacks/mistypes `d`, `hidden`, `dropout`; head.safetensors that
    is not a safetensors file (empty, truncated, pickle); sizes that disagree with the file
    (checked on the file's header before any allocation, so an absurd `d` allocates nothing);
    NaN/Inf weights, or a standardisation `std` that is not > 0 (the head would score NaN).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(in_dir)
    hj, hs = d / "head.json", d / "head.safetensors"
    if not hj.is_symlink() and not hj.exists() or not hs.is_symlink() and not hs.exists():
        raise ConfigError(f"{d}: not a reward head (head.json/head.safetensors missing)")
    info = read_model_json(hj, root if root is not None else d)
    model_file(hs, root if root is not None else d)
    if not isinstance(info, dict):
        raise ModelError(f"{hj}: expected a JSON object, got {type(info).__name__}")
    shapes = read_safetensors_header(hs)
    if info.get("format") == ENSEMBLE_FORMAT:
        members = info.get("members")
        if not isinstance(members, list) or not members:
            raise ModelError(f"{hj}: 'members' must be a non-empty list of heads")
        specs = [_head_spec(m, f"{hj}: members[{k}]") for k, m in enumerate(members)]
        for k, (dim, hidden, _) in enumerate(specs):
            _check_sizes(shapes, f"members.{k}.", dim, hidden, f"{hj}: members[{k}]", hs)
        head: RewardHead | EnsembleHead = EnsembleHead([RewardHead(*s) for s in specs])
    elif info.get("format") == HEAD_FORMAT:
        spec = _head_spec(info, str(hj))
        _check_sizes(shapes, "", spec[0], spec[1], str(hj), hs)
        head = RewardHead(*spec)
    else:
        raise ModelError(f"{hj}: unknown format {info.get('format')!r}")
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    got = {k: s for k, (_, s) in shapes.items()}
    if expected != got:
        diff = sorted(set(expected) ^ set(got)) or sorted(
            k for k in expected if expected[k] != got[k]
        )
        raise ModelError(f"{hs}: tensors do not match head.json (first difference: {diff[0]!r})")
    try:
        tensors = load_file(str(hs))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{hs}: not a valid safetensors file ({e})") from None
    check_finite_state(tensors, hs)
    head.load_state_dict(tensors)
    return head.eval(), info


def check_finite_state(tensors: dict[str, Tensor], where: str | Path) -> None:
    """ModelError naming the tensor unless every value is finite and every `std` is > 0."""
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            n = int((~torch.isfinite(t)).sum())
            raise ModelError(f"{where}: tensor {name!r} holds {n} NaN/Inf values")
        if name == "std" or name.endswith(".std"):
            bad = (t <= 0).nonzero().flatten()
            if len(bad):
                raise ModelError(
                    f"{where}: standardisation {name!r} is <= 0 at {len(bad)} dimensions "
                    f"(first: {int(bad[0])}); the head would divide by zero"
                )
