"""How torch runs: threads for a block, devices, dtypes, quiet serving; set explicitly, never at
import."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import torch

from latentrm.config.bounds import CHOICES
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


class NoBar:
    """A progress bar that shows nothing: serving passes it so the embedder opens no bar."""

    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def quiet_serving() -> Iterator[None]:
    """No progress bars and no INFO lines while a reward model loads and scores.

    A GRPO step calls the reward function many times: transformers' weight-loading bar and the
    embedder's per-call INFO lines would flood its output. The latentrm.embed loggers are raised
    to WARNING for the call (unless DEBUG was asked for) and transformers' bars are off; both are
    restored afterwards.
    """
    from transformers.utils import logging as hf_logging

    embed_log = logging.getLogger("latentrm.embed")
    level = embed_log.level
    if embed_log.getEffectiveLevel() > logging.DEBUG:
        embed_log.setLevel(max(logging.WARNING, embed_log.getEffectiveLevel()))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        embed_log.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


# Below this many parameters a training step is a few small matmuls (the d=576 VAE has ~76k, its
# head ~37k; at d=4096 they have ~530k and ~260k): one core finishes them before a second thread
# has been woken and synchronised, and on a shared machine a descheduled second thread stalls
# every op (BENCHMARKS.md, lens-threads: one thread is faster for LENS at d=576).
SMALL_MODEL_PARAMS = 200_000


def training_threads(n_params: int, requested: int | None = None) -> int:
    """Intra-op threads to train a model of `n_params` parameters with: 1 for small models.

    `requested` (default: torch's current count) is returned for models of at least
    SMALL_MODEL_PARAMS parameters. On CPU the small models' results are the same bits at 1 and 2
    threads here (their matmuls are split across threads by rows, not by sums).
    """
    n = torch.get_num_threads() if requested is None else requested
    return 1 if n_params < SMALL_MODEL_PARAMS else n


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


def _cpuinfo(prefix: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with `prefix` (None elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU feature flags the OS reports (Linux /proc/cpuinfo; empty elsewhere)."""
    return set((_cpuinfo("flags") or "").split())


def cpu_name() -> str:
    """The CPU's model name as the OS reports it (Linux /proc/cpuinfo; "unknown CPU" elsewhere)."""
    return _cpuinfo("model name") or "unknown CPU"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 matmuls natively (AMX-BF16 or AVX512-BF16).

    Asks torch's own dispatcher first (what its kernels will actually use), then the OS flags.
    """
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        if (probe is not None and probe()) or (amx is not None and amx()):
            return True
    except RuntimeError:  # pragma: no cover - exotic builds
        pass
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


DTYPES = CHOICES["embed.dtype"]  # the config's one table
# The torch dtype of each concrete name (the one table: embedding and export both read it).
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: str = "auto") -> str:
    """The compute dtype an `embed.dtype` names; 'auto' = bfloat16 where the hardware has it.

    auto: bfloat16 on CUDA GPUs that support it and on CPUs with AMX or AVX512-BF16 (several
    times float32's matmul throughput there, embeddings within ~1e-2 cosine of float32's);
    float32 elsewhere. ConfigError for an unknown name.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"embed.dtype must be one of {'|'.join(DTYPES)}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    dev = resolve_device(device, "embed.device")
    if dev.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if dev.type == "cpu" and cpu_has_bf16() else "float32"
