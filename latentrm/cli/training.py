"""Training-side commands: config, init, embed, synth, train, run, experiment.

Each parses its options and calls one recipe (latentrm.recipes.*), then prints the result.
"""

from __future__ import annotations

import argparse

from latentrm.cli.options import command, config_args, load_run_config, positive_int
from latentrm.errors import ConfigError


# --- config ---------------------------------------------------------------------------------------
def _add_config(p: argparse.ArgumentParser) -> None:
    config_args(p)  # --threads / --seed show up in the printed config


@command("config", "Print the resolved config (YAML) with every key's help text.", _add_config)
def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from latentrm.config import RunConfig, help_lines, to_dict

    cfg = load_run_config(args)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    print("# keys:")
    print("\n".join("#" + line for line in help_lines(RunConfig)))
    return 0


# --- init ----------------------------------------------------------------------------------------
def _add_init(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        nargs="?",
        default="latentrm.yaml",
        help="config file to write (default: latentrm.yaml)",
    )
    p.add_argument(
        "--data", default=None, help="preference data for data.path (default: pairs.jsonl, to edit)"
    )
    p.add_argument("--embedder", default="minilm", help="embed.model (default: minilm)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")


@command("init", "Write a starter config to edit (then: latentrm run CONFIG).", _add_init)
def _cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from latentrm.config import load_config
    from latentrm.config.starter import starter_config
    from latentrm.io import atomic_write_text, check_writable_parent

    path = Path(args.path)
    if path.exists() and not args.force:
        raise ConfigError(f"{path}: exists; pass --force to overwrite it")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the config file's name")
    check_writable_parent(path, "config file")
    n_pairs, why = _count_pairs(args.data)
    text = starter_config(str(path), args.data, args.embedder, n_pairs)
    atomic_write_text(path, text)
    load_config(path)  # what was written loads
    print(
        f"wrote {path}: edit data.path"
        f"{'' if args.data else ' (now pairs.jsonl: point it at your data)'}, "
        f"then `latentrm run {path}`"
    )
    if n_pairs:
        print(f"split sized from {args.data}: {n_pairs} pairs, data.n_seed and data.n_test 80/20")
    elif args.data:
        print(f"data.n_seed 1000 / data.n_test 200 ({why}): size them to your data")
    return 0


def _count_pairs(data: str | None) -> tuple[int | None, str]:
    """(pairs in the local file or folder `data`, "") or (None, why not): a Hub id is not
    downloaded by `init`."""
    from pathlib import Path

    from latentrm.errors import LatentrmError

    if data is None:
        return None, "no data"
    if not Path(data).exists():
        return None, f"{data} is not a local file"
    from latentrm.data.load import load_pairs

    try:
        return len(load_pairs(data)), ""
    except LatentrmError as e:
        return None, f"cannot read {data}: {e}"


# --- embed ---------------------------------------------------------------------------------------
def _add_embed(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from latentrm.config import EmbedConfig

    p.add_argument(
        "--data",
        help="preference data: a file, a folder of files, a saved datasets "
        "folder or a Hub id (default: data.path)",
    )
    p.add_argument("--out", help="cache root; the cache is OUT/<key>/ (default: cache_dir)")
    p.add_argument("--limit", type=positive_int, help="embed only the first N pairs")
    p.add_argument("--config", help="YAML run config; its data/embed sections are the defaults")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. embed.layer=-2"
    )
    # One flag per EmbedConfig field, help text from the config; None = keep the config's value.
    for f in dataclasses.fields(EmbedConfig):
        # --model names a reward model in score/bon; here the embedding model is --embedder.
        flag = "--embedder" if f.name == "model" else "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})".replace("%", "%%")
        if isinstance(f.default, bool):
            p.add_argument(
                flag,
                dest=f"embed_{f.name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            p.add_argument(flag, dest=f"embed_{f.name}", default=None, metavar="V", help=help_text)
    _add_embed_scale_out(p)


def _add_embed_scale_out(p: argparse.ArgumentParser) -> None:
    """Scale-out flags (latentrm.embed.scale / ray_engine): Ray, static shards, verification."""
    g = p.add_argument_group("scale-out (see README: embedding on a cluster)")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (or its shard); ray: a pool of Ray actors",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster: auto (the one this node belongs to) or ray://HOST:10001; "
        "default: start a local Ray instance",
    )
    g.add_argument(
        "--num-actors", type=positive_int, default=2, help="Ray actors (one model copy each)"
    )
    g.add_argument(
        "--num-gpus-per-actor",
        type=float,
        default=None,
        help="GPUs per Ray actor (default: 1 if the cluster has GPUs, else 0)",
    )
    g.add_argument(
        "--ray-write-on",
        choices=("actors", "driver"),
        default="actors",
        help="who writes chunk files: actors (OUT on storage all nodes share) or driver",
    )
    g.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="embed only chunks c with c %% N == I (torchrun/accelerate: from "
        "RANK/WORLD_SIZE); shards share OUT, merging is just reading",
    )
    g.add_argument(
        "--verify",
        action="store_true",
        help="compute nothing: check the cache is complete (all chunks, shapes, no NaN)",
    )


@command(
    "embed",
    "Embed preference pairs into the on-disk cache (resumable; hits load no model).",
    _add_embed,
)
def _cmd_embed(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from latentrm.config import EmbedConfig, from_dict, load_config, to_dict
    from latentrm.embed.scale import ScaleConfig
    from latentrm.io import check_output_dir
    from latentrm.recipes.embed import embed_data

    quiet = ["embed.show_progress=false"] if args.quiet else []
    cfg = load_config(args.config, [*args.overrides, *quiet])
    flags = {k[len("embed_") :]: v for k, v in vars(args).items() if k.startswith("embed_")}
    embed_cfg = from_dict(
        EmbedConfig,
        {**to_dict(cfg.embed), **{k: v for k, v in flags.items() if v is not None}},
        prefix="embed.",
    )
    if args.quiet:
        embed_cfg = dataclasses.replace(embed_cfg, show_progress=False)
    how = ScaleConfig(
        args.engine,
        args.ray_address,
        args.num_actors,
        args.num_gpus_per_actor,
        args.ray_write_on,
        args.shard,
        args.verify,
    )
    root = Path(args.out or cfg.cache_dir).expanduser()
    if not root.is_dir():  # an existing cache may be read-only: refused once rows must be written
        check_output_dir(root, "cache root")
    print("\n".join(embed_data(cfg, embed_cfg, args.data, args.out, args.limit, how)))
    return 0


# --- synth / train / run ----------------------------------------------------------------------
def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("cache", help="pair embedding cache folder (written by `latentrm embed`)")
    config_args(p)
    p.add_argument("--out", required=True, help="output folder for augmented.safetensors/.json")


@command(
    "synth",
    "Augment cached seed-pair embeddings (synth.method, ratios=[r]) and save them.",
    _add_synth,
)
def _cmd_synth(args: argparse.Namespace) -> int:
    from latentrm.io import check_output_dir
    from latentrm.recipes.stepwise import synth_from_cache
    from latentrm.runtime import torch_threads

    cfg = load_run_config(args)
    check_output_dir(args.out)
    with torch_threads(cfg.threads):
        st = synth_from_cache(args.cache, cfg, args.out)
    print(
        f"method {st['method']}, ratio {st['ratio']}: {st['n_train']} seed pairs "
        f"({st['n_val']} more kept for validation), d={st['d']}"
    )
    if "candidates_drawn" in st:
        print(f"candidates drawn {st['candidates_drawn']}, kept {st['kept']} (top-k {st['top_k']})")
    print(
        f"pairs made {st['pairs_made']}, total {st['pairs']} pairs, {st['seconds']:.1f}s "
        "(fit + synth)"
    )
    print(f"wrote {args.out}/augmented.safetensors, augmented.json")
    return 0


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="`latentrm synth` output folder, or a pair embedding cache folder")
    config_args(p)
    p.add_argument("--out", required=True, help="output folder for the reward model")


@command("train", "Train a reward head on an augmented set (or plain cached pairs).", _add_train)
def _cmd_train(args: argparse.Namespace) -> int:
    from latentrm.io import check_output_dir
    from latentrm.recipes.stepwise import train_head
    from latentrm.runtime import torch_threads

    cfg = load_run_config(args)
    check_output_dir(args.out)
    with torch_threads(cfg.threads):
        st = train_head(args.input, cfg, args.out)
    h = st["history"]
    print(
        f"trained on {st['pairs']} pairs ({st['method']}, ratio {st['ratio']}), d={st['d']}: "
        f"{h['epochs_run']} epochs in {h['seconds']:.1f}s, best epoch {h['best_epoch']}"
    )
    print(
        f"validation: BT loss {h['best_val']:.4f}, accuracy {st['val_accuracy']:.3f} on "
        f"{st['n_val']} pairs"
    )
    print(f"wrote {args.out}/ (head.safetensors, head.json, embed_config.json)")
    return 0


def _add_run(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")


@command(
    "run", "Train and evaluate every method x ratio on one split; artifacts in out_dir.", _add_run
)
def _cmd_run(args: argparse.Namespace) -> int:
    import json

    from latentrm.recipes.report import json_safe
    from latentrm.recipes.run import run_pipeline

    cfg = load_run_config(args)
    metrics = run_pipeline(cfg)
    if args.json:
        print(json.dumps(json_safe(metrics), indent=2, sort_keys=True))
    else:
        print(metrics["table"], end="")
        print(f"artifacts in {cfg.out_dir}/ (metrics.json, results.md, heads/, config.yaml)")
    return 0


# --- experiment ----------------------------------------------------------------------------------
def _add_experiment(p: argparse.ArgumentParser) -> None:
    config_args(p, config_required=True, seed=False)  # it repeats over `seeds`
    p.add_argument(
        "--keep-heads",
        action="store_true",
        help="save every head as a reward model folder, out_dir/heads/[SWEEP=VALUE/]"
        "seed-S/<method>-r<ratio> (for `latentrm export`, `score`)",
    )


@command(
    "experiment",
    "Methods x ratios x seeds (x a swept key): results.csv/md and plots in out_dir.",
    _add_experiment,
)
def _cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from latentrm.recipes.experiment import run_experiment

    cfg = load_run_config(args)
    run_experiment(cfg, keep_heads=args.keep_heads)
    print((Path(cfg.out_dir) / "results.md").read_text(), end="")
    print(
        f"results in {cfg.out_dir}/ (results.csv, results.md, plots/"
        f"{', heads/' if args.keep_heads else ''})"
    )
    return 0
