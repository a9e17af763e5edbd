"""The Ray engine of embedding: a Ray Data pipeline hands each missing chunk to a pool of actors.

Each actor holds one Embedder (model loaded once per actor) and writes whole chunks into the
ordinary cache folder (or ships them back to the driver), so the result is bit-equal to a local
run on CPU and a killed run resumes like one. ``ray[data]`` is imported lazily.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latentrm.config import EmbedConfig
from latentrm.embed.chunks import write_chunk
from latentrm.embed.embedder import Embedder
from latentrm.embed.local import check_identity, embed_pairs, embed_texts
from latentrm.embed.scale import ScaleConfig
from latentrm.embed.store import CachePlan, FlatRows, ensure_store, pair_rows, plan_cache
from latentrm.embed.views import PairEmbeddings
from latentrm.errors import CacheError, ConfigError, LatentrmError
from latentrm.runtime import local_cpus

if TYPE_CHECKING:
    from latentrm.data.types import PreferenceDataset

log = logging.getLogger(__name__)


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
            check_identity(plan, self.embedder)
            emb_meta = self.embedder.metadata()
            self.meta = json.dumps(emb_meta)
            if write:
                ensure_store(plan, emb_meta)
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
                    rows = embed_texts(
                        self.embedder,
                        doc["prompts"],
                        doc["responses"],
                        f"chunk {int(c)} of {self.plan.dir}",
                    )
                    if self.write:
                        write_chunk(self.plan.dir, doc["id"], doc["keys"], rows)
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
    rows: FlatRows, cfg: EmbedConfig, cache_root: str | Path, how: ScaleConfig | None = None
) -> dict:
    """Compute the missing chunks of `rows` with a pool of Ray actors, into the ordinary cache.

    `how` (default: ``ScaleConfig(engine="ray")``) holds the Ray settings:
    ray_address: None starts a local Ray instance (all local CPUs, no dashboard) unless one is
    already initialised in this process; "auto" joins the cluster this machine belongs to;
    "ray://host:10001" connects a Ray Client. Only an instance started here is shut down.
    num_actors: actors, one model copy each. num_gpus_per_actor: None = 1 when the cluster has
    GPUs (and embed.device is not cpu), else 0. Each actor gets the most CPU threads that let all
    actors fit (`threads_per_actor`), unless embed.threads is set.
    ray_write_on: "actors" writes chunk files on the workers (cache_root must be storage every
    node shares); "driver" ships each chunk's rows back and writes them here (no shared storage).

    Returns {"dir", "chunks_total", "chunks_computed", "rows_computed", "seconds", "ray_init_s",
    "threads_per_actor", "num_gpus_per_actor", "per_actor": {where: {"chunks", "rows", "seconds"}}}.
    """
    how = how if how is not None else ScaleConfig(engine="ray")
    address, num_actors, write_on = how.ray_address, how.num_actors, how.ray_write_on
    num_gpus_per_actor = how.num_gpus_per_actor
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
            ray.init(address="local", num_cpus=local_cpus(), include_dashboard=False)
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
        items, docs = [], {}
        for c in plan.missing:
            idx = plan.chunks[c]
            docs[c] = {"id": plan.chunk_id(c), "keys": plan.chunk_keys(c)}
            payload = {
                **docs[c],
                "prompts": [rows.prompts[i] for i in idx],
                "responses": [rows.responses[i] for i in idx],
            }
            items.append({"chunk": c, "payload": json.dumps(payload)})
        # Actors need the store, not the request's texts (those travel chunk by chunk).
        slim = dataclasses.replace(plan, rows=FlatRows(rows.kind, [], [], {}))
        ctx.enable_progress_bars = cfg.show_progress
        # one block per chunk, so the pool can hand chunks to whichever actor is free
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        out = ds.map_batches(
            _ChunkActor,
            fn_constructor_kwargs={"cfg": actor_cfg, "plan": slim, "write": write_on == "actors"},
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
                emb_meta = json.loads(r["meta"])
                if not stats["chunks_computed"]:
                    ensure_store(plan, emb_meta)
                arr = np.frombuffer(r["data"], dtype=np.float32).reshape(
                    int(r["rows"]), len(emb_meta["layers"]), int(emb_meta["dim"])
                )
                write_chunk(plan.dir, docs[c]["id"], docs[c]["keys"], arr)
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
    still = [
        c for c in plan.missing if not (plan.dir / "chunks" / f"{docs[c]['id']}.json").exists()
    ]
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
    ds: PreferenceDataset, cfg: EmbedConfig, cache_root: str | Path, how: ScaleConfig | None = None
) -> PairEmbeddings:
    """`embed_pairs` with the missing chunks computed by Ray actors (see `embed_rows_ray`), then
    read by the ordinary reader. meta["ray"] holds the Ray run's stats."""
    stats = embed_rows_ray(pair_rows(ds), cfg, cache_root, how)
    pe = embed_pairs(ds, cfg, cache_root)
    pe.meta["ray"] = stats
    return pe
