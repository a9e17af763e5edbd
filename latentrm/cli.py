"""Command-line interface: thin. Parse, build configs, call the library, print results.

User mistakes (LatentrmError) print as one line `latentrm: error: ...` with exit code 2;
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from latentrm.errors import LatentrmError

log = logging.getLogger("latentrm")

# Subcommands: name -> (help, add_arguments(parser), handler(args) -> exit code).
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable:
    """Register `handler` as subcommand `name`; `add_args` adds its options to the subparser."""

    def deco(handler: Callable[[argparse.Namespace], int | None]) -> Callable:
        _COMMANDS[name] = (help, add_args, handler)
        return handler

    return deco


def config_args(p: argparse.ArgumentParser, config_required: bool = False) -> None:
    """Positional CONFIG (YAML) and key=value overrides, shared by run/experiment/synth/train."""
    p.add_argument("config", nargs=None if config_required else "?", help="YAML config file")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="config overrides, e.g. vae.gamma=0.5 ratios=[2,4]; `latentrm config` lists every key",
    )


def load_run_config(args: argparse.Namespace):
    """RunConfig from args.config (YAML, optional) + args.overrides (a leading key=value counts)."""
    from latentrm.config import load_config

    path, overrides = args.config, list(args.overrides)
    if path is not None and "=" in path and not path.endswith((".yaml", ".yml")):
        path, overrides = None, [path, *overrides]
    return load_config(path, overrides)


# --- config ---------------------------------------------------------------------------------------
def _add_config(p: argparse.ArgumentParser) -> None:
    config_args(p)


@command("config", "Print the resolved config (YAML) with every key's help text.", _add_config)
def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from latentrm.config import RunConfig, help_lines, to_dict

    cfg = load_run_config(args)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    print("# keys:")
    print("\n".join("#" + line for line in help_lines(RunConfig)))
    return 0


# --- embed (issue: foundation) ---------------------------------------------------------------
def _add_embed(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from latentrm.config import EmbedConfig

    p.add_argument("--data", help="preference data file or Hub id (default: data.path)")
    p.add_argument("--out", help="cache root; the cache is OUT/<key>/ (default: cache_dir)")
    p.add_argument("--limit", type=int, help="embed only the first N pairs")
    p.add_argument("--config", help="YAML run config; its data/embed sections are the defaults")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. embed.layer=-2"
    )
    # One flag per EmbedConfig field, help text from the config; None = keep the config's value.
    for f in dataclasses.fields(EmbedConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})".replace("%", "%%")
        if isinstance(f.default, bool):
            p.add_argument(flag, dest=f"embed_{f.name}", action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(flag, dest=f"embed_{f.name}", default=None, metavar="V", help=help_text)
    _add_embed_scale_out(p)


def _add_embed_scale_out(p: argparse.ArgumentParser) -> None:
    """Scale-out flags (latentrm.embed.scale / ray_engine): Ray, static shards, verification."""
    g = p.add_argument_group("scale-out (see README: embedding on a cluster)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (or its shard); ray: a pool of Ray actors")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster: auto (the one this node belongs to) or ray://HOST:10001; "
                        "default: start a local Ray instance")
    g.add_argument("--num-actors", type=int, default=2, help="Ray actors (one model copy each)")
    g.add_argument("--num-gpus-per-actor", type=float, default=None,
                   help="GPUs per Ray actor (default: 1 if the cluster has GPUs, else 0)")
    g.add_argument("--ray-write-on", choices=("actors", "driver"), default="actors",
                   help="who writes chunk files: actors (OUT on storage all nodes share) or driver")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="embed only chunks c with c %% N == I (torchrun/accelerate: from "
                        "RANK/WORLD_SIZE); shards share OUT, merging is just reading")
    g.add_argument("--verify", action="store_true",
                   help="compute nothing: check the cache is complete (all chunks, shapes, no NaN)")


def _embed_scale_out(args: argparse.Namespace, ds, embed_cfg, root: str) -> int | None:
    """--verify / --engine ray / shards; None when this is a plain single-process run."""
    from latentrm.embed import scale as dist
    from latentrm.embed.cache import pair_rows, plan_cache, verify_cache
    from latentrm.errors import ConfigError

    shard = dist.parse_shard(args.shard) if args.shard else dist.shard_from_env()
    if args.verify:
        info = verify_cache(plan_cache(pair_rows(ds), embed_cfg, root).dir)
        print(f"cache: {info['dir']}\nverified: {info['chunks']} chunks, {info['rows']} rows x "
              f"{info['dim']}, float32, finite" + (f"; {len(info['stale_tmp'])} stale temp files "
              "(killed writers, safe to delete)" if info["stale_tmp"] else ""))
        return 0
    if args.engine == "ray":
        if shard is not None:
            raise ConfigError("--engine ray shards by itself; drop --shard / RANK/WORLD_SIZE")
        from latentrm.embed.ray_engine import embed_pairs_ray

        out = embed_pairs_ray(ds, embed_cfg, root, args.ray_address, args.num_actors,
                              args.num_gpus_per_actor, args.ray_write_on)
        ray = out.meta["ray"]
        print(f"cache: {ray['dir']}\nchosen {out.chosen.shape}, rejected {out.rejected.shape}, "
              f"float32\nray: {ray['chunks_computed']} of {ray['chunks_total']} chunks in "
              f"{ray['seconds']:.1f}s (Ray start {ray['ray_init_s']:.1f}s, "
              f"{len(ray['per_actor'])} actors)")
        return 0
    if shard is None:
        return None
    st = dist.embed_rows_shard(pair_rows(ds), dist.shard_config(embed_cfg, shard), root, shard)
    print(f"shard {shard.rank}/{shard.world_size}: computed {st['chunks_computed']} of its "
          f"{st['chunks_mine']} chunks ({st['chunks_total']} in all) in {st['seconds']:.1f}s")
    if dist.barrier_if_launched():  # torchrun / accelerate: all shards done, rank 0 checks
        if shard.rank == 0:
            info = verify_cache(st["dir"])
            print(f"cache: {info['dir']}\nmerged and verified: {info['chunks']} chunks, "
                  f"{info['rows']} rows x {info['dim']}")
    else:
        print(f"cache: {st['dir']}\nwhen every shard is done: the same command with --verify")
    return 0


@command("embed", "Embed preference pairs into the on-disk cache (resumable; hits load no model).",
         _add_embed)
def _cmd_embed(args: argparse.Namespace) -> int:
    import time

    from latentrm.config import EmbedConfig, from_dict, load_config, to_dict
    from latentrm.data.load import load_pairs
    from latentrm.embed.cached import embed_pairs

    cfg = load_config(args.config, list(args.overrides))
    flags = {k[len("embed_"):]: v for k, v in vars(args).items() if k.startswith("embed_")}
    embed_cfg = from_dict(
        EmbedConfig,
        {**to_dict(cfg.embed), **{k: v for k, v in flags.items() if v is not None}},
        prefix="embed.",
    )
    t0 = time.perf_counter()
    ds = load_pairs(args.data or cfg.data.path, cfg.data)
    if args.limit is not None:
        ds = ds.subset(range(min(args.limit, len(ds))))
    code = _embed_scale_out(args, ds, embed_cfg, args.out or cfg.cache_dir)
    if code is not None:
        return code
    out = embed_pairs(ds, embed_cfg, args.out or cfg.cache_dir)
    info = out.meta["cache"]
    state = "hit" if info["hit"] else f"miss ({info['chunks_computed']} chunks computed)"
    print(f"cache: {info['dir']}")
    print(f"chosen {out.chosen.shape}, rejected {out.rejected.shape}, float32")
    print(f"{state} in {time.perf_counter() - t0:.1f}s (embedding step {info['seconds']:.1f}s)")
    return 0


# --- synth / train / run (issue: LENS core) -------------------------------------------------------
def _seed_split(pairs, cfg):
    """(train, validation) rows of a pair cache: the seed set `latentrm run` would draw from it
    (data.n_seed, data.n_test, data.split_seed), then data.val_fraction of it as validation."""
    from latentrm.data.splits import carve_validation, split_indices

    seed_idx, _ = split_indices(
        len(pairs.ids), cfg.data.n_seed, cfg.data.n_test, cfg.data.split_seed
    )
    train, val = carve_validation(seed_idx, cfg.data.val_fraction, cfg.data.split_seed)
    if len(val) == 0:
        raise LatentrmError("empty validation split: raise data.val_fraction or data.n_seed")
    return train, val


def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("cache", help="pair embedding cache folder (written by `latentrm embed`)")
    config_args(p)
    p.add_argument("--out", required=True, help="output folder for augmented.safetensors/.json")


@command("synth", "Augment cached seed-pair embeddings (synth.method, synth.ratio) and save them.",
         _add_synth)
def _cmd_synth(args: argparse.Namespace) -> int:
    import time

    from latentrm.config import to_dict
    from latentrm.embed.cache import load_pair_cache
    from latentrm.methods import make_augmenter
    from latentrm.pairs import save_augmented

    cfg = load_run_config(args)
    pairs = load_pair_cache(args.cache, expect=cfg.embed)
    train, val = _seed_split(pairs, cfg)
    c, r = pairs.chosen[train], pairs.rejected[train]
    t0 = time.perf_counter()
    aug = make_augmenter(cfg.synth.method, cfg, cfg.seed).fit(c, r)
    out = aug.augment(c, r, cfg.synth.ratio, cfg.seed)
    seconds = time.perf_counter() - t0
    meta = {"cache": str(args.cache), "embed": to_dict(cfg.embed), "config": to_dict(cfg),
            "val_ids": [pairs.ids[i] for i in val], "seconds": seconds}
    save_augmented(args.out, out, val=(pairs.chosen[val], pairs.rejected[val]),
                   ids=[pairs.ids[i] for i in train], meta=meta)
    st = out.stats
    print(f"method {out.method}, ratio {out.ratio}: {len(train)} seed pairs "
          f"({len(val)} more kept for validation), d={c.shape[1]}")
    if "candidates_drawn" in st:
        print(f"candidates drawn {st['candidates_drawn']}, kept {st['kept']} (top-k {st['top_k']})")
    print(f"pairs made {st['pairs_made']}, total {len(out)} pairs, {seconds:.1f}s (fit + synth)")
    print(f"wrote {args.out}/augmented.safetensors, augmented.json")
    return 0


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="`latentrm synth` output folder, or a pair embedding cache folder")
    config_args(p)
    p.add_argument("--out", required=True, help="output folder for the reward model")


@command("train", "Train a reward head on an augmented set (or plain cached pairs).", _add_train)
def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from latentrm.config import EmbedConfig, from_dict
    from latentrm.evaluate import pairwise_accuracy
    from latentrm.model import RewardModel
    from latentrm.reward import RewardHeadFitter

    cfg = load_run_config(args)
    if (Path(args.input) / "augmented.json").exists():
        from latentrm.pairs import load_augmented

        aug, val, header = load_augmented(args.input)
        embed_cfg = from_dict(EmbedConfig, header["meta"]["embed"], prefix="embed.")
        if val is None:
            raise LatentrmError(f"{args.input}: the augmented set holds no validation pairs")
    else:
        from latentrm.embed.cache import load_pair_cache
        from latentrm.pairs import AugmentedPairs

        pairs = load_pair_cache(args.input, expect=cfg.embed)
        train, va = _seed_split(pairs, cfg)
        aug = AugmentedPairs.originals(pairs.chosen[train], pairs.rejected[train])
        val, embed_cfg = (pairs.chosen[va], pairs.rejected[va]), cfg.embed
    fitter = RewardHeadFitter(cfg.reward, cfg.seed).fit(aug, val)
    head, h = fitter.head_, fitter.history_
    RewardModel(embed_cfg, head, history=h).save(args.out)
    acc = pairwise_accuracy(head.score(val[0]), head.score(val[1]))
    print(f"trained on {len(aug)} pairs ({aug.method}, ratio {aug.ratio}), d={aug.pool.shape[1]}: "
          f"{h['epochs_run']} epochs in {h['seconds']:.1f}s, best epoch {h['best_epoch']}")
    print(f"validation: BT loss {h['best_val']:.4f}, accuracy {acc:.3f} on {len(val[0])} pairs")
    print(f"wrote {args.out}/ (head.safetensors, head.json, embed_config.json)")
    return 0


def _add_run(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")


@command("run", "Train and evaluate every method x ratio on one split; artifacts in out_dir.",
         _add_run)
def _cmd_run(args: argparse.Namespace) -> int:
    import json

    from latentrm.pipeline import json_safe, run_pipeline

    cfg = load_run_config(args)
    metrics = run_pipeline(cfg)
    if args.json:
        print(json.dumps(json_safe(metrics), indent=2, sort_keys=True))
    else:
        print(metrics["table"], end="")
        print(f"artifacts in {cfg.out_dir}/ (metrics.json, results.md, heads/, config.yaml)")
    return 0


# --- experiment (issue: evaluation) ---------------------------------------------------------------
def _add_experiment(p: argparse.ArgumentParser) -> None:
    config_args(p, config_required=True)


@command("experiment",
         "Methods x ratios x seeds (x a swept key): results.csv/md and plots in out_dir.",
         _add_experiment)
def _cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from latentrm.experiment import run_experiment

    cfg = load_run_config(args)
    run_experiment(cfg)
    print((Path(cfg.out_dir) / "results.md").read_text(), end="")
    print(f"results in {cfg.out_dir}/ (results.csv, results.md, plots/)")
    return 0


# --- score / bon / export (issue: put the reward model to work) ----------------------------------
def _add_model_io(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--model", required=True, help="reward model directory (RewardModel.save)")
    p.add_argument(
        "--input", required=True, help=f"{what}; .jsonl/.json/.csv/.tsv/.parquet"
    )
    p.add_argument("--out", required=True, help="output file; its suffix picks the format")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per scoring call")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")


def _add_score(p: argparse.ArgumentParser) -> None:
    _add_model_io(
        p, "rows with prompt (text or messages) + response/completion, or chosen/rejected pairs"
    )


def _load_for_serving(args: argparse.Namespace):
    from latentrm.serve import as_scorer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return as_scorer(args.model)


@command("score", "Score responses or chosen/rejected pairs in a file with a reward model.",
         _add_score)
def _cmd_score(args: argparse.Namespace) -> int:
    from latentrm.data.readers import read_rows
    from latentrm.data.writers import check_output_path, write_rows
    from latentrm.serve import format_summary, score_rows

    check_output_path(args.out)  # before any scoring
    rows = read_rows(args.input)
    model = _load_for_serving(args)
    out, summary = score_rows(model, rows, path=args.input, batch_size=args.batch_size)
    write_rows(out, args.out)
    print(format_summary(summary))
    print(f"wrote {len(out)} rows to {args.out}")
    return 0


def _add_bon(p: argparse.ArgumentParser) -> None:
    _add_model_io(p, "rows with prompt/instruction + a list of candidates")
    p.add_argument(
        "--candidates-field", default="candidates",
        help="column of candidates: strings, messages, or dicts with output/text (+ gold)",
    )


@command("bon", "Best-of-N: pick the highest-scoring candidate per prompt.", _add_bon)
def _cmd_bon(args: argparse.Namespace) -> int:
    from latentrm.data.readers import read_rows
    from latentrm.data.writers import check_output_path, write_rows
    from latentrm.serve import bon_rows, format_summary

    check_output_path(args.out)  # before any scoring
    rows = read_rows(args.input)
    model = _load_for_serving(args)
    out, summary = bon_rows(
        model, rows, path=args.input, candidates_field=args.candidates_field,
        batch_size=args.batch_size,
    )
    write_rows(out, args.out)
    print(format_summary(summary))
    print(f"wrote {len(out)} rows to {args.out}")
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--augmented", required=True, help="directory written by `latentrm synth`")
    p.add_argument("--out", required=True, help="output .parquet file")


@command("export", "Export an augmented training set (`latentrm synth` output) to Parquet.",
         _add_export)
def _cmd_export(args: argparse.Namespace) -> int:
    from latentrm.parquet import export_synth_dir

    info = export_synth_dir(args.augmented, args.out)
    print(
        f"wrote {info['pairs']} pairs ({info['synthetic_pairs']} synthetic, "
        f"method {info['method']}, ratio {info['ratio']}, d={info['dim']}) to {args.out}"
    )
    return 0



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentrm",
        description="Reward models from little preference data with LENS latent-space synthesis.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_args, handler) in sorted(_COMMANDS.items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(_handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    try:
        return int(args._handler(args) or 0)
    except LatentrmError as e:
        if args.debug:
            raise
        print(f"latentrm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentrm: interrupted", file=sys.stderr)
        return 130
