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


# --- embed ---------------------------------------------------------------------------------------
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


@command("embed", "Embed preference pairs into the on-disk cache (resumable; hits load no model).",
         _add_embed)
def _cmd_embed(args: argparse.Namespace) -> int:
    from latentrm.config import EmbedConfig, from_dict, load_config, to_dict
    from latentrm.embed.scale import ScaleConfig
    from latentrm.recipes.embed import embed_data

    cfg = load_config(args.config, list(args.overrides))
    flags = {k[len("embed_"):]: v for k, v in vars(args).items() if k.startswith("embed_")}
    embed_cfg = from_dict(
        EmbedConfig,
        {**to_dict(cfg.embed), **{k: v for k, v in flags.items() if v is not None}},
        prefix="embed.",
    )
    how = ScaleConfig(args.engine, args.ray_address, args.num_actors, args.num_gpus_per_actor,
                      args.ray_write_on, args.shard, args.verify)
    print("\n".join(embed_data(cfg, embed_cfg, args.data, args.out, args.limit, how)))
    return 0


# --- synth / train / run ----------------------------------------------------------------------
def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("cache", help="pair embedding cache folder (written by `latentrm embed`)")
    config_args(p)
    p.add_argument("--out", required=True, help="output folder for augmented.safetensors/.json")


@command("synth", "Augment cached seed-pair embeddings (synth.method, ratios=[r]) and save them.",
         _add_synth)
def _cmd_synth(args: argparse.Namespace) -> int:
    from latentrm.recipes.augment import synth_from_cache

    st = synth_from_cache(args.cache, load_run_config(args), args.out)
    print(f"method {st['method']}, ratio {st['ratio']}: {st['n_train']} seed pairs "
          f"({st['n_val']} more kept for validation), d={st['d']}")
    if "candidates_drawn" in st:
        print(f"candidates drawn {st['candidates_drawn']}, kept {st['kept']} (top-k {st['top_k']})")
    print(f"pairs made {st['pairs_made']}, total {st['pairs']} pairs, {st['seconds']:.1f}s "
          "(fit + synth)")
    print(f"wrote {args.out}/augmented.safetensors, augmented.json")
    return 0


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="`latentrm synth` output folder, or a pair embedding cache folder")
    config_args(p)
    p.add_argument("--out", required=True, help="output folder for the reward model")


@command("train", "Train a reward head on an augmented set (or plain cached pairs).", _add_train)
def _cmd_train(args: argparse.Namespace) -> int:
    from latentrm.recipes.augment import train_head

    st = train_head(args.input, load_run_config(args), args.out)
    h = st["history"]
    print(f"trained on {st['pairs']} pairs ({st['method']}, ratio {st['ratio']}), d={st['d']}: "
          f"{h['epochs_run']} epochs in {h['seconds']:.1f}s, best epoch {h['best_epoch']}")
    print(f"validation: BT loss {h['best_val']:.4f}, accuracy {st['val_accuracy']:.3f} on "
          f"{st['n_val']} pairs")
    print(f"wrote {args.out}/ (head.safetensors, head.json, embed_config.json)")
    return 0


def _add_run(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")


@command("run", "Train and evaluate every method x ratio on one split; artifacts in out_dir.",
         _add_run)
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
    config_args(p, config_required=True)


@command("experiment",
         "Methods x ratios x seeds (x a swept key): results.csv/md and plots in out_dir.",
         _add_experiment)
def _cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from latentrm.recipes.experiment import run_experiment

    cfg = load_run_config(args)
    run_experiment(cfg)
    print((Path(cfg.out_dir) / "results.md").read_text(), end="")
    print(f"results in {cfg.out_dir}/ (results.csv, results.md, plots/)")
    return 0


# --- score / bon / export -----------------------------------------------------------------------
def _add_model_io(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--model", required=True,
                   help="reward model folder (latentrm run: OUT/heads/<method>-r<ratio>) or Hub "
                        "repo id (RewardModel.from_pretrained)")
    p.add_argument(
        "--input", required=True, help=f"{what}; .jsonl/.json/.csv/.tsv/.parquet"
    )
    p.add_argument("--out", required=True, help="output file; its suffix picks the format")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per scoring call")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--trust-remote-code", action="store_true",
        help="let the embedder run Python code from its repository (a model folder never can)",
    )


def _add_score(p: argparse.ArgumentParser) -> None:
    _add_model_io(
        p, "rows with prompt (text or messages) + response/completion, or chosen/rejected pairs"
    )


def _load_for_serving(args: argparse.Namespace):
    from latentrm.serve import as_scorer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return as_scorer(args.model, trust_remote_code=args.trust_remote_code)


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
        "--candidates-field", default=None,
        help="column of candidates: strings, messages, or dicts with output/text (+ gold); "
             "default: the first of candidates, completions, responses",
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
