"""`latentrm embed`: embed a preference file into the cache with any engine, or verify a cache;
and filling the caches of experiment configs (e.g. on a GPU machine) without training anything.

The cache key holds no device, batch size or thread count, so caches filled on a GPU are the ones
`latentrm run` / `experiment` read on a CPU afterwards (copy the cache folder).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from latentrm.config import EmbedConfig, RunConfig, load_config
from latentrm.data.load import load_pairs
from latentrm.embed import scale
from latentrm.embed.local import embed_pairs
from latentrm.embed.store import pair_rows, plan_cache
from latentrm.embed.views import verify_cache
from latentrm.errors import ConfigError
from latentrm.recipes.prepare import prepare_data

log = logging.getLogger(__name__)


def embed_data(
    cfg: RunConfig,
    embed_cfg: EmbedConfig,
    data: str | None,
    out: str | None,
    limit: int | None,
    how: scale.ScaleConfig,
) -> list[str]:
    """Embed `data` (default: cfg.data.path) into the cache root `out` (default: cfg.cache_dir).

    `how` picks the engine: this process, its shard of a torchrun/accelerate launch (or
    ``how.shard``), Ray actors, or only a check of an existing cache. Returns the lines to print.
    """
    t0 = time.perf_counter()
    root = out or cfg.cache_dir
    ds = load_pairs(data or cfg.data.path, cfg.data)
    if limit is not None:
        ds = ds.subset(range(min(limit, len(ds))))
    shard = scale.parse_shard(how.shard) if how.shard else scale.shard_from_env()
    if how.verify:
        plan = plan_cache(pair_rows(ds), embed_cfg, root)
        target = plan.view_path if plan.view_path.exists() else plan.dir
        info = verify_cache(target)
        stale = (
            f"; {len(info['stale_tmp'])} stale temp files (killed writers, safe to delete)"
            if info["stale_tmp"]
            else ""
        )
        return [
            f"cache: {target}",
            f"verified: {info['chunks']} chunks, {info['rows']} rows x "
            f"{len(info['layers'])} layers x {info['dim']}, checksums, float32, finite{stale}",
        ]
    if how.engine == "ray":
        if shard is not None:
            raise ConfigError("--engine ray shards by itself; drop --shard / RANK/WORLD_SIZE")
        from latentrm.embed.ray_engine import embed_pairs_ray

        pe = embed_pairs_ray(ds, embed_cfg, root, how)
        ray = pe.meta["ray"]
        return [
            f"cache: {pe.meta['cache']['view']}",
            f"chosen {pe.chosen.shape}, rejected {pe.rejected.shape}, float32",
            f"ray: {ray['chunks_computed']} of {ray['chunks_total']} chunks in "
            f"{ray['seconds']:.1f}s (Ray start {ray['ray_init_s']:.1f}s, "
            f"{len(ray['per_actor'])} actors)",
        ]
    if shard is not None:
        st = scale.embed_rows_shard(
            pair_rows(ds), scale.shard_config(embed_cfg, shard), root, shard
        )
        lines = [
            f"shard {shard.rank}/{shard.world_size}: computed {st['chunks_computed']} of its "
            f"{st['chunks_mine']} chunks ({st['chunks_total']} in all) in "
            f"{st['seconds']:.1f}s"
        ]
        if scale.barrier_if_launched():  # torchrun / accelerate: all shards done, rank 0 checks
            if shard.rank == 0:
                info = verify_cache(st["view"])
                lines += [
                    f"cache: {st['view']}",
                    f"merged and verified: {info['chunks']} "
                    f"chunks, {info['rows']} rows x {info['dim']}",
                ]
        else:
            lines += [
                f"cache: {st['view']}",
                "when every shard is done: the same command with --verify",
            ]
        return lines
    pe = embed_pairs(ds, embed_cfg, root)
    info = pe.meta["cache"]
    state = "hit" if info["hit"] else f"miss ({info['chunks_computed']} chunks computed)"
    return [
        f"cache: {info['view']}",
        f"chosen {pe.chosen.shape}, rejected {pe.rejected.shape}, float32",
        f"{state} in {time.perf_counter() - t0:.1f}s (embedding step {info['seconds']:.1f}s)",
    ]


def fill_caches(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> list[str]:
    """Embed everything each config's runs will read (all its splits), training nothing.

    `overrides` apply to every config (device, batch size, cache_dir, ...). Returns one line per
    config.
    """
    lines = []
    for path in configs:
        cfg = load_config(path, ["embed.show_progress=false", *overrides])
        t0 = time.perf_counter()
        prep = prepare_data(cfg, split_seeds=list(cfg.seeds), embed_all=True)
        texts = prep.meta.get("candidates_embedded", 2 * len(prep.chosen))
        lines.append(
            f"{path}: {len(prep.chosen)} pairs, {texts} texts embedded or read in "
            f"{time.perf_counter() - t0:.1f}s"
        )
        log.info(lines[-1])
    return lines
