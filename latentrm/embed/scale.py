"""Scale-out of embedding extraction: static shards (torchrun / accelerate / --shard i/n).

Every engine writes into the ordinary store of :mod:`latentrm.embed.store` with the same key and
the same chunks, so the ordinary reader (`embed_pairs`, `load_pair_cache`) reads their result and a
killed run of any engine resumes by computing only the missing chunks.

The unit of work is one chunk, never a loose row: every engine cuts the request's rows into the
same chunks, and the Embedder sorts a chunk's texts by length before batching them, so embedding
exactly a chunk's rows in one call gives the same batches, hence on CPU the same bits, as a local
run. Shards (`embed_rows_shard`): process `rank` of `world_size` computes the chunks c with
c % world_size == rank; chunk files are content-named and written atomically, so merging is just
reading, and `verify_cache` checks the result. The Ray engine is :mod:`latentrm.embed.ray_engine`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from latentrm.config import EmbedConfig
from latentrm.embed.embedder import Embedder
from latentrm.embed.local import check_identity, compute_chunks
from latentrm.embed.store import FlatRows, plan_cache
from latentrm.embed.views import write_view
from latentrm.errors import ConfigError
from latentrm.runtime import local_cpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleConfig:
    """How `latentrm embed` spreads the work: this process, a shard of a launch, or Ray actors."""

    engine: str = "local"  # local: this process (or its shard); ray: a pool of Ray actors
    ray_address: str | None = None  # None: a local Ray instance; "auto"; "ray://host:10001"
    num_actors: int = 2  # Ray actors, one model copy each
    num_gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0
    ray_write_on: str = "actors"  # actors (shared storage) | driver
    shard: str | None = None  # "i/n"; None: from RANK/WORLD_SIZE when launched
    verify: bool = False  # compute nothing, check the cache is complete

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"engine must be local or ray, got {self.engine!r}")
        if self.ray_write_on not in ("actors", "driver"):
            raise ConfigError(f"ray_write_on must be actors or driver, got {self.ray_write_on!r}")


# --- static sharding (torchrun / accelerate / --shard i/n) ---------------------------------------
@dataclass(frozen=True)
class Shard:
    rank: int
    world_size: int
    local_rank: int = 0
    local_world_size: int = 1  # processes on this machine (they share its CPUs/GPUs)


def parse_shard(text: str) -> Shard:
    """'i/n' -> Shard(i, n); ConfigError unless 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return Shard(i, n)


def shard_from_env(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The Shard that `torchrun` / `accelerate launch` describe in RANK, WORLD_SIZE, LOCAL_RANK and
    LOCAL_WORLD_SIZE. None when WORLD_SIZE is unset or 1 (a plain single process)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", "0"))
        local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError("RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE must be integers") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return Shard(rank, world, local, max(1, local_world))


def shard_config(cfg: EmbedConfig, shard: Shard) -> EmbedConfig:
    """cfg for one shard process: device auto -> cuda:LOCAL_RANK when GPUs exist (one GPU per
    process); on CPU, unset threads -> this machine's cores / LOCAL_WORLD_SIZE, so co-located
    shards do not each start a thread per core."""
    import torch

    if cfg.device == "auto" and torch.cuda.is_available():
        gpu = shard.local_rank % torch.cuda.device_count()
        return dataclasses.replace(cfg, device=f"cuda:{gpu}")
    if cfg.threads is None and shard.local_world_size > 1:
        return dataclasses.replace(cfg, threads=max(1, local_cpus() // shard.local_world_size))
    return cfg


def embed_rows_shard(
    rows: FlatRows,
    cfg: EmbedConfig,
    cache_root: str | Path,
    shard: Shard,
    embedder: Embedder | None = None,
) -> dict:
    """Compute the missing chunks c with c % world_size == rank into the shared cache.

    Every rank plans the same chunks (the request's rows cut in order), so the shards split the
    work without talking. Returns {"dir", "chunks_total", "chunks_mine", "chunks_computed",
    "rows_computed", "seconds"}. The model is loaded only when one of this shard's chunks is
    missing; rank 0 also records the request's view.
    """
    t0 = time.perf_counter()
    plan = plan_cache(rows, cfg, cache_root)
    mine = chunk_owner(range(plan.n_chunks), shard)
    todo = chunk_owner(plan.missing, shard)
    n_rows = plan.n_rows(todo)
    if todo:
        embedder = embedder if embedder is not None else Embedder(cfg)
        check_identity(plan, embedder)
        log.info(
            "shard %d/%d: computing %d of its %d chunks (%d rows) into %s",
            shard.rank,
            shard.world_size,
            len(todo),
            len(mine),
            n_rows,
            plan.dir,
        )
        compute_chunks(
            embedder, plan, todo, cfg.show_progress, desc=f"embed {shard.rank}/{shard.world_size}"
        )
    view = write_view(plan, cfg) if shard.rank == 0 else plan.view_path
    return {
        "dir": str(plan.dir),
        "view": str(view),
        "chunks_total": plan.n_chunks,
        "chunks_mine": len(mine),
        "chunks_computed": len(todo),
        "rows_computed": n_rows,
        "seconds": time.perf_counter() - t0,
    }


def barrier_if_launched(environ: Mapping[str, str] | None = None) -> bool:
    """Wait for every process of a torchrun/accelerate launch (gloo barrier); False if not launched.

    Only when MASTER_ADDR/MASTER_PORT are set (the launchers set them); a process group that the
    caller already initialised is reused and left alone. The timeout is a day: shards finish at
    different times and a slow one must not kill the others.
    """
    env = os.environ if environ is None else environ
    if "MASTER_ADDR" not in env or "MASTER_PORT" not in env or int(env.get("WORLD_SIZE", "1")) <= 1:
        return False
    from datetime import timedelta

    import torch.distributed as dist

    own = not dist.is_initialized()
    if own:
        dist.init_process_group("gloo", timeout=timedelta(days=1))
    try:
        dist.barrier()
    finally:
        if own:
            dist.destroy_process_group()
    return True


def chunk_owner(chunks: Iterable[int], shard: Shard) -> list[int]:
    """The chunks among `chunks` that `shard` computes (c % world_size == rank)."""
    return [c for c in chunks if c % shard.world_size == shard.rank]
