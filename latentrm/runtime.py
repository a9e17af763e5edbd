"""How torch runs: thread counts for a block, and devices; set explicitly, never at import."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from latentrm.errors import ConfigError


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the block only, then restore it."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def resolve_device(name: str, key: str = "device") -> torch.device:
    """`name` as a torch device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.

    ConfigError naming the config `key` for anything else, or for CUDA where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key} must be auto|cpu|cuda|cuda:N, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name!r} but CUDA is not available")
    return dev


def local_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
