"""Scale-out of embedding extraction: a Ray Data engine, and static sharding (torchrun/accelerate).

Both engines write into the ordinary cache folder of `latentrm.embed` (`cache_root/<key>/meta.json`,
`ids.json`, `chunk-NNNNN.npy`) with the same key, metadata and atomic chunk writer, so the ordinary
single-process reader (`embed_pairs`, `load_pair_cache`) reads their result and a killed run, of
either engine, resumes by computing only the missing chunks.

The unit of work is one cache chunk, never a loose row: a chunk file must be whole, and the Embedder
sorts a chunk's texts by length before batching them, so embedding exactly a chunk's rows in one
call gives the same batches, hence on CPU the same bits, as a local run.

- Ray (`embed_pairs_ray`): one Ray Data row per missing chunk -> `map_batches` over a pool of
  actors, each holding one Embedder (model loaded once per actor) -> each actor writes its chunks.
- Shards (`embed_rows_shard`): process `rank` of `world_size` computes chunks with
  chunk % world_size == rank. Chunks are disjoint files written atomically and meta.json is written
  idempotently, so merging is just reading; `verify_cache` checks the merged folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from latentrm.cache import (
    CachePlan,
    PairEmbeddings,
    cache_request,
    candidates_hash,
    chunk_path,
    ensure_meta,
    plan_folder,
    read_chunk,
    read_meta,
    write_chunk,
)
from latentrm.config import EmbedConfig
from latentrm.embed import Embedder, check_embed_config, embed_candidates, embed_pairs
from latentrm.errors import CacheError, ConfigError, LatentrmError
from latentrm.io import atomic_write_json
from latentrm.models import model_identity, resolve_model

if TYPE_CHECKING:
    from latentrm.data.types import CandidateSet, PreferenceDataset

log = logging.getLogger(__name__)


# --- what goes into one cache folder ------------------------------------------------------------
@dataclass(frozen=True)
class FlatRows:
    """The flat (prompt, response) row list behind one cache folder, as `latentrm.embed` has it."""

    kind: str  # "pairs" | "candidates"
    content_hash: str
    prompts: list  # row i: tuple of messages
    responses: list[str]
    ids_doc: dict  # what ids.json holds


def pair_rows(ds: PreferenceDataset) -> FlatRows:
    """Rows chosen_0..chosen_{N-1}, rejected_0..rejected_{N-1}, as `embed_pairs` orders them."""
    return FlatRows(
        kind="pairs",
        content_hash=ds.content_hash(),
        prompts=[p.prompt for p in ds.pairs] * 2,
        responses=[p.chosen for p in ds.pairs] + [p.rejected for p in ds.pairs],
        ids_doc={"ids": [p.id for p in ds.pairs]},
    )


def candidate_rows(sets: Sequence[CandidateSet]) -> FlatRows:
    """Every candidate response, set by set, exactly as `embed_candidates` orders them."""
    return FlatRows(
        kind="candidates",
        content_hash=candidates_hash(sets),
        prompts=[s.prompt for s in sets for _ in s.responses],
        responses=[r for s in sets for r in s.responses],
        ids_doc={"ids": [s.id for s in sets], "counts": [len(s.responses) for s in sets]},
    )


def _identity(cfg: EmbedConfig, root: Path) -> dict:
    path, alias_gguf = resolve_model(cfg.model)
    gguf = cfg.gguf_file or alias_gguf
    memo = root / "file-hashes.json"
    found = model_identity(path, gguf, cfg.revision, memo)
    if found is None:
        # A Hub model not downloaded here: its config.json pins the commit without fetching the
        # weights, so the driver of a cluster run needs no copy of the model.
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(path, "config.json", revision=cfg.revision)
        except Exception as e:  # noqa: BLE001 - offline, gated, or no such repo
            raise ConfigError(f"cannot resolve model {path!r} on the Hub: {e}") from None
        found = model_identity(path, gguf, cfg.revision, memo)
    if found is None:
        raise ConfigError(f"cannot resolve which weights {path!r} is")
    return found


def plan_cache(rows: FlatRows, cfg: EmbedConfig, cache_root: str | Path) -> CachePlan:
    """The cache folder `latentrm.embed` uses for `rows` under `cfg`, and its missing chunks.

    Loads no model (a local model's identity is its file hashes, a Hub model's its commit).
    CacheError when an existing folder was made with a different request.
    """
    check_embed_config(cfg)
    root = Path(cache_root)
    identity = _identity(cfg, root)
    request = cache_request(cfg, identity, rows.kind, rows.content_hash, len(rows.responses))
    return plan_folder(request, root, cfg.chunk_size)


def _check_identity(plan: CachePlan, embedder: Embedder) -> None:
    ident = embedder.identity(plan.dir.parent / "file-hashes.json")
    if ident != plan.request["model_identity"]:
        raise CacheError(
            f"this worker's model is {ident}, but the run was planned for "
            f"{plan.request['model_identity']} (different weights on this node?)"
        )


def _embed_chunk(
    embedder: Embedder,
    plan: CachePlan,
    c: int,
    prompts: Sequence,
    responses: Sequence[str],
    bar: Any = None,
) -> np.ndarray:
    rows = embedder.embed(prompts, responses, bar=bar)
    if not np.isfinite(rows).all():
        lo, hi = plan.bounds(c)
        raise ConfigError(
            f"the model produced NaN/Inf embeddings for rows {lo}..{hi - 1} "
            f"(dtype={embedder.cfg.dtype}; float32 avoids overflow)"
        )
    return rows


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
        return dataclasses.replace(cfg, threads=max(1, _local_cpus() // shard.local_world_size))
    return cfg


def _local_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def embed_rows_shard(
    rows: FlatRows,
    cfg: EmbedConfig,
    cache_root: str | Path,
    shard: Shard,
    embedder: Embedder | None = None,
) -> dict:
    """Compute the missing chunks c with c % world_size == rank into the shared cache folder.

    Returns {"dir", "chunks_total", "chunks_mine", "chunks_computed", "rows_computed", "seconds"}.
    The model is loaded only when one of this shard's chunks is missing.
    """
    t0 = time.perf_counter()
    plan = plan_cache(rows, cfg, cache_root)
    mine = chunk_owner(range(plan.n_chunks), shard)
    todo = chunk_owner(plan.missing, shard)
    n_rows = sum(plan.bounds(c)[1] - plan.bounds(c)[0] for c in todo)
    if todo:
        embedder = embedder if embedder is not None else Embedder(cfg)
        _check_identity(plan, embedder)
        ensure_meta(plan, embedder.metadata(), rows.ids_doc)
        log.info(
            "shard %d/%d: computing %d of its %d chunks (%d rows) into %s",
            shard.rank,
            shard.world_size,
            len(todo),
            len(mine),
            n_rows,
            plan.dir,
        )
        with tqdm(
            total=n_rows,
            unit="text",
            desc=f"embed {shard.rank}/{shard.world_size}",
            disable=not cfg.show_progress,
        ) as bar:
            for c in todo:
                lo, hi = plan.bounds(c)
                out = _embed_chunk(
                    embedder, plan, c, rows.prompts[lo:hi], rows.responses[lo:hi], bar
                )
                write_chunk(chunk_path(plan.dir, c), out)
    return {
        "dir": str(plan.dir),
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


# --- verification ---------------------------------------------------------------------------------
def verify_cache(cache_dir: str | Path) -> dict:
    """Check a cache folder is complete: every chunk present, float32 (rows, d), finite, and the row
    count agrees with ids.json. Returns {"dir", "kind", "rows", "dim", "chunks", "stale_tmp"};
    CacheError listing every missing or bad chunk otherwise.
    """
    d = Path(cache_dir)
    meta = read_meta(d)
    n, cs, dim = meta["request"]["n_rows"], meta["chunk_size"], meta["embedder"]["dim"]
    kind = meta["request"].get("kind")
    problems: list[str] = []
    n_chunks = -(-n // cs)
    for c in range(n_chunks):
        p = chunk_path(d, c)
        if not p.exists():
            problems.append(f"{p.name} missing")
            continue
        try:
            read_chunk(p, min(n, (c + 1) * cs) - c * cs, dim)
        except CacheError as e:
            problems.append(str(e).replace(f"{p}: ", f"{p.name}: ").split(";")[0])
    try:
        ids = json.loads((d / "ids.json").read_text())
    except (OSError, ValueError) as e:
        problems.append(f"ids.json unreadable ({e})")
    else:
        expect = 2 * len(ids["ids"]) if kind == "pairs" else sum(ids.get("counts", []))
        if expect != n:
            problems.append(f"ids.json describes {expect} rows, meta.json {n}")
    if problems:
        shown = "; ".join(problems[:10]) + (
            f"; ... {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        raise CacheError(f"cache at {d} is incomplete: {shown}")
    # temp files of killed writers: harmless (never read), reported so they can be deleted
    stale = sorted(p.name for p in d.glob(".*.tmp"))
    return {
        "dir": str(d),
        "kind": kind,
        "rows": n,
        "dim": dim,
        "chunks": n_chunks,
        "stale_tmp": stale,
    }


# --- Ray ------------------------------------------------------------------------------------------
def threads_per_actor(
    nodes: Sequence[Mapping[str, float]],
    num_actors: int,
    gpus_per_actor: float = 0.0,
    want: int | None = None,
) -> int:
    """The most CPU threads t each of `num_actors` actors can get so that they all fit on `nodes`.

    Node i holds min(floor(CPU_i / t), floor(GPU_i / gpus_per_actor)) actors; t is the largest
    value with sum_i >= num_actors (or `want`, checked). ConfigError if it does not fit: Ray would
    otherwise wait forever for resources that never come.
    """

    def fits(t: int) -> bool:
        total = 0
        for node in nodes:
            k = int(node.get("CPU", 0) // t)
            if gpus_per_actor > 0:
                # true division: 1.0 // 0.1 == 9.0 in floating point
                k = min(k, int(node.get("GPU", 0) / gpus_per_actor + 1e-9))
            total += k
        return total >= num_actors

    if num_actors < 1:
        raise ConfigError(f"num_actors must be >= 1, got {num_actors}")
    if not fits(want or 1):
        cpus = sum(n.get("CPU", 0) for n in nodes)
        gpus = sum(n.get("GPU", 0) for n in nodes)
        raise ConfigError(
            f"{num_actors} actors x ({want or 1} CPU, {gpus_per_actor:g} GPU) do not fit on the "
            f"Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs in {len(nodes)} nodes); lower "
            "--num-actors (or --threads)"
        )
    if want is not None:
        return want
    t = max(1, int(max(n.get("CPU", 0) for n in nodes)))
    while not fits(t):
        t -= 1
    return t


class _ChunkActor:
    """Ray Data actor: holds one Embedder; each call embeds whole chunks and writes or returns them.

    Errors a user can fix come back as data ("error" column) rather than exceptions, because Ray
    wraps exceptions in its own types and the CLI should print one line, not a Ray traceback.
    """

    def __init__(self, cfg: EmbedConfig, plan: CachePlan, write: bool) -> None:
        self.plan, self.write, self.error, self.meta = plan, write, "", ""
        self.where = f"{os.uname().nodename}:{os.getpid()}"
        try:
            self.embedder = Embedder(cfg)
            _check_identity(plan, self.embedder)
            emb_meta = self.embedder.metadata()
            self.meta = json.dumps(emb_meta)
            if write:
                ensure_meta(plan, emb_meta, None)
        except LatentrmError as e:
            self.error = f"{type(e).__name__}: {e}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        keys = ("chunk", "rows", "seconds", "where", "error", "data", "meta")
        out: dict[str, list] = {k: [] for k in keys}
        for c, payload in zip(batch["chunk"], batch["payload"], strict=True):
            t0, err, data = time.perf_counter(), self.error, b""
            doc = json.loads(payload)
            if not err:
                try:
                    rows = _embed_chunk(
                        self.embedder, self.plan, int(c), doc["prompts"], doc["responses"]
                    )
                    if self.write:
                        write_chunk(chunk_path(self.plan.dir, int(c)), rows)
                    else:
                        data = rows.tobytes()
                except LatentrmError as e:
                    err = f"{type(e).__name__}: {e}"
            vals = (
                int(c),
                len(doc["responses"]),
                time.perf_counter() - t0,
                self.where,
                err,
                data,
                self.meta,
            )
            for k, v in zip(keys, vals, strict=True):
                out[k].append(v)
        return out


def _raise_remote(err: str) -> None:
    kind, _, msg = err.partition(": ")
    cls = {"CacheError": CacheError, "ConfigError": ConfigError}.get(kind, LatentrmError)
    raise cls(f"Ray actor: {msg}")


def embed_rows_ray(
    rows: FlatRows,
    cfg: EmbedConfig,
    cache_root: str | Path,
    address: str | None = None,
    num_actors: int = 2,
    num_gpus_per_actor: float | None = None,
    write_on: str = "actors",
) -> dict:
    """Compute the missing chunks of `rows` with a pool of Ray actors, into the ordinary cache.

    address: None starts a local Ray instance (all local CPUs, no dashboard) unless one is already
    initialised in this process; "auto" joins the cluster this machine belongs to; "ray://host:10001"
    connects a Ray Client. Only an instance started here is shut down.
    num_gpus_per_actor: None = 1 when the cluster has GPUs (and embed.device is not cpu), else 0.
    Each actor gets the most CPU threads that let all actors fit (`threads_per_actor`), unless
    embed.threads is set.
    write_on: "actors" writes chunk files on the workers (cache_root must be storage every node
    shares); "driver" ships each chunk's rows back and writes them here (no shared storage needed).

    Returns {"dir", "chunks_total", "chunks_computed", "rows_computed", "seconds", "ray_init_s",
    "threads_per_actor", "num_gpus_per_actor", "per_actor": {where: {"chunks", "rows", "seconds"}}}.
    """
    if write_on not in ("actors", "driver"):
        raise ConfigError(f"write_on must be actors|driver, got {write_on!r}")
    t0 = time.perf_counter()
    plan = plan_cache(rows, cfg, cache_root)
    stats: dict[str, Any] = {
        "dir": str(plan.dir),
        "chunks_total": plan.n_chunks,
        "chunks_computed": 0,
        "rows_computed": 0,
        "ray_init_s": 0.0,
        "per_actor": {},
    }
    if not plan.missing:
        log.info("cache %s: complete, nothing for Ray to do", plan.dir)
        return {**stats, "seconds": time.perf_counter() - t0}
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("the Ray engine needs ray[data]: pip install 'latentrm[ray]'") from None

    started = False
    t_init = time.perf_counter()
    if not ray.is_initialized():
        if address is None:
            # "local": a new instance even if a `ray start` cluster runs here (join it: "auto")
            ray.init(address="local", num_cpus=_local_cpus(), include_dashboard=False)
        else:
            ray.init(address=address)
        started = True
    elif address is not None:
        log.warning("Ray is already initialised in this process; ignoring address=%s", address)
    stats["ray_init_s"] = time.perf_counter() - t_init
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars  # restored below: the caller's Ray session is not ours
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        cluster_gpus = sum(n.get("GPU", 0) for n in nodes)
        if num_gpus_per_actor is None:
            num_gpus_per_actor = 1.0 if cluster_gpus > 0 and cfg.device != "cpu" else 0.0
        if num_gpus_per_actor > 0 and cfg.device == "cpu":
            raise ConfigError("embed.device=cpu but num_gpus_per_actor > 0")
        num_actors = min(num_actors, len(plan.missing))  # a resume may need fewer
        threads = threads_per_actor(nodes, num_actors, num_gpus_per_actor, cfg.threads)
        # Ray restricts each GPU actor to its own device(s) through CUDA_VISIBLE_DEVICES.
        device = "cuda" if num_gpus_per_actor > 0 else "cpu"
        actor_cfg = dataclasses.replace(cfg, threads=threads, device=device, show_progress=False)
        stats.update(threads_per_actor=threads, num_gpus_per_actor=num_gpus_per_actor)
        atomic_write_json(plan.dir / "ids.json", rows.ids_doc)
        items = []
        for c in plan.missing:
            lo, hi = plan.bounds(c)
            payload = {"prompts": rows.prompts[lo:hi], "responses": rows.responses[lo:hi]}
            items.append({"chunk": c, "payload": json.dumps(payload)})
        ctx.enable_progress_bars = cfg.show_progress
        # one block per chunk, so the pool can hand chunks to whichever actor is free
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        out = ds.map_batches(
            _ChunkActor,
            fn_constructor_kwargs={"cfg": actor_cfg, "plan": plan, "write": write_on == "actors"},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=num_actors),
            num_cpus=threads,
            num_gpus=num_gpus_per_actor,
        )
        log.info(
            "Ray: %d chunks over %d actors (%d threads, %g GPUs each) into %s",
            len(items),
            num_actors,
            threads,
            num_gpus_per_actor,
            plan.dir,
        )
        for r in out.iter_rows():
            if r["error"]:
                _raise_remote(r["error"])
            c = int(r["chunk"])
            if write_on == "driver":
                if not stats["chunks_computed"]:
                    ensure_meta(plan, json.loads(r["meta"]), None)
                arr = np.frombuffer(r["data"], dtype=np.float32).reshape(int(r["rows"]), -1)
                write_chunk(chunk_path(plan.dir, c), arr)
            a = stats["per_actor"].setdefault(r["where"], {"chunks": 0, "rows": 0, "seconds": 0.0})
            a["chunks"] += 1
            a["rows"] += int(r["rows"])
            a["seconds"] += float(r["seconds"])
            stats["chunks_computed"] += 1
            stats["rows_computed"] += int(r["rows"])
    finally:
        ctx.enable_progress_bars = bars
        if started:
            ray.shutdown()
    still = [c for c in plan.missing if not chunk_path(plan.dir, c).exists()]
    if still:
        raise CacheError(
            f"{len(still)} chunks the Ray actors wrote are not visible in {plan.dir}: cache_root "
            "must be on storage every node shares, or use write_on='driver' (--ray-write-on driver)"
        )
    stats["seconds"] = time.perf_counter() - t0
    log.info(
        "Ray: %d chunks (%d rows) in %.1fs (Ray start %.1fs)",
        stats["chunks_computed"],
        stats["rows_computed"],
        stats["seconds"],
        stats["ray_init_s"],
    )
    return stats


def embed_pairs_ray(
    ds: PreferenceDataset,
    cfg: EmbedConfig,
    cache_root: str | Path,
    address: str | None = None,
    num_actors: int = 2,
    num_gpus_per_actor: float | None = None,
    write_on: str = "actors",
) -> PairEmbeddings:
    """`embed_pairs` with the missing chunks computed by Ray actors (see `embed_rows_ray`), then
    read by the ordinary reader. meta["ray"] holds the Ray run's stats."""
    stats = embed_rows_ray(
        pair_rows(ds), cfg, cache_root, address, num_actors, num_gpus_per_actor, write_on
    )
    pe = embed_pairs(ds, cfg, cache_root)
    pe.meta["ray"] = stats
    return pe


def embed_candidates_ray(
    sets: list[CandidateSet],
    cfg: EmbedConfig,
    cache_root: str | Path,
    address: str | None = None,
    num_actors: int = 2,
    num_gpus_per_actor: float | None = None,
    write_on: str = "actors",
) -> list[np.ndarray]:
    """`embed_candidates` with the missing chunks computed by Ray actors."""
    embed_rows_ray(
        candidate_rows(sets), cfg, cache_root, address, num_actors, num_gpus_per_actor, write_on
    )
    return embed_candidates(sets, cfg, cache_root)


def chunk_owner(chunks: Iterable[int], shard: Shard) -> list[int]:
    """The chunks among `chunks` that `shard` computes (c % world_size == rank)."""
    return [c for c in chunks if c % shard.world_size == shard.rank]
