"""Command-line interface: thin. Parse, build configs, call the library, print results.

User mistakes (LatentrmError, a bad argument, a full disk or a permission error) print as one
line `latentrm: error: ...` with exit code 2; `--debug` shows the traceback. Options mean the
same in every command: `--data` is the input data, `--out` the output, `--threads` torch's
threads, `--seed` the seed, `--model` a reward model (the embedding model is `--embedder`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable, Iterator

from latentrm import __version__
from latentrm.errors import ConfigError, LatentrmError

log = logging.getLogger("latentrm")

# Subcommands: name -> (help, add_arguments(parser), handler(args) -> exit code).
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable:
    """Register `handler` as subcommand `name`; `add_args` adds its options to the subparser."""

    def deco(handler: Callable[[argparse.Namespace], int | None]) -> Callable:
        _COMMANDS[name] = (help, add_args, handler)
        return handler

    return deco


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other error of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"latentrm: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2^32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2^32), got {value}")
    return value


def config_args(p: argparse.ArgumentParser, config_required: bool = False,
                seed: bool = True) -> None:
    """Positional CONFIG (YAML) and key=value overrides, shared by run/experiment/synth/train,
    with --threads and --seed as shorthands for the `threads` and `seed` keys."""
    p.add_argument("config", nargs=None if config_required else "?", help="YAML config file")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="config overrides, e.g. vae.gamma=0.5 ratios=[2,4]; `latentrm config` lists every key",
    )
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (the config key `threads`)")
    if seed:
        p.add_argument("--seed", type=seed_int, default=None,
                       help="seed of every random choice (the config key `seed`)")


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """--threads / --seed / -q as config overrides (after the user's, so the flags win)."""
    out = []
    if getattr(args, "threads", None) is not None:
        out.append(f"threads={args.threads}")
    if getattr(args, "seed", None) is not None:
        out.append(f"seed={args.seed}")
    if getattr(args, "quiet", False):
        out += ["embed.show_progress=false", "text.show_progress=false"]
    return out


def load_run_config(args: argparse.Namespace):
    """RunConfig from args.config (YAML, optional) + args.overrides (a leading key=value counts)
    + the shorthand flags."""
    from latentrm.config import load_config

    path, overrides = args.config, list(args.overrides)
    if path is not None and "=" in path and not path.endswith((".yaml", ".yml")):
        path, overrides = None, [path, *overrides]
    return load_config(path, [*overrides, *_flag_overrides(args)])


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
    p.add_argument("path", nargs="?", default="latentrm.yaml",
                   help="config file to write (default: latentrm.yaml)")
    p.add_argument("--data", default=None,
                   help="preference data for data.path (default: a placeholder, pairs.jsonl)")
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
    text = starter_config(str(path), args.data, args.embedder)
    atomic_write_text(path, text)
    load_config(path)  # what was written loads
    print(f"wrote {path}: edit data.path"
          f"{'' if args.data else ' (now a placeholder)'}, then `latentrm run {path}`")
    return 0


# --- embed ---------------------------------------------------------------------------------------
def _add_embed(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from latentrm.config import EmbedConfig

    p.add_argument("--data", help="preference data: a file, a folder of files, a saved datasets "
                                  "folder or a Hub id (default: data.path)")
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
            p.add_argument(flag, dest=f"embed_{f.name}", action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(flag, dest=f"embed_{f.name}", default=None, metavar="V", help=help_text)
    p.add_argument("--model", dest="old_model", default=None, help=argparse.SUPPRESS)
    _add_embed_scale_out(p)


def _add_embed_scale_out(p: argparse.ArgumentParser) -> None:
    """Scale-out flags (latentrm.embed.scale / ray_engine): Ray, static shards, verification."""
    g = p.add_argument_group("scale-out (see README: embedding on a cluster)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (or its shard); ray: a pool of Ray actors")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster: auto (the one this node belongs to) or ray://HOST:10001; "
                        "default: start a local Ray instance")
    g.add_argument("--num-actors", type=positive_int, default=2,
                   help="Ray actors (one model copy each)")
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
    import dataclasses

    from latentrm.config import EmbedConfig, from_dict, load_config, to_dict
    from latentrm.embed.scale import ScaleConfig
    from latentrm.io import check_output_dir
    from latentrm.recipes.embed import embed_data

    if args.old_model is not None:
        raise ConfigError(f"latentrm embed: --model is now --embedder (--embedder "
                          f"{args.old_model}); --model names a reward model in score and bon")
    quiet = ["embed.show_progress=false"] if args.quiet else []
    cfg = load_config(args.config, [*args.overrides, *quiet])
    flags = {k[len("embed_"):]: v for k, v in vars(args).items() if k.startswith("embed_")}
    embed_cfg = from_dict(
        EmbedConfig,
        {**to_dict(cfg.embed), **{k: v for k, v in flags.items() if v is not None}},
        prefix="embed.",
    )
    if args.quiet:
        embed_cfg = dataclasses.replace(embed_cfg, show_progress=False)
    how = ScaleConfig(args.engine, args.ray_address, args.num_actors, args.num_gpus_per_actor,
                      args.ray_write_on, args.shard, args.verify)
    check_output_dir(args.out or cfg.cache_dir, "cache root")
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
    from latentrm.io import check_output_dir
    from latentrm.recipes.augment import synth_from_cache
    from latentrm.runtime import torch_threads

    cfg = load_run_config(args)
    check_output_dir(args.out)
    with torch_threads(cfg.threads):
        st = synth_from_cache(args.cache, cfg, args.out)
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
    from latentrm.io import check_output_dir
    from latentrm.recipes.augment import train_head
    from latentrm.runtime import torch_threads

    cfg = load_run_config(args)
    check_output_dir(args.out)
    with torch_threads(cfg.threads):
        st = train_head(args.input, cfg, args.out)
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
    config_args(p, config_required=True, seed=False)  # it repeats over `seeds`


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
        "--data", "--input", dest="input", required=True,
        help=f"{what}; .jsonl/.json/.csv/.tsv/.parquet or a saved datasets folder",
    )
    p.add_argument("--out", required=True, help="output file; its suffix picks the format")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="rows per scoring call")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: torch's)")
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
    p.add_argument("--augmented", "--data", dest="augmented", required=True,
                   help="directory written by `latentrm synth`")
    p.add_argument("--out", required=True, help="output .parquet file")


@command("export", "Export an augmented training set (`latentrm synth` output) to Parquet.",
         _add_export)
def _cmd_export(args: argparse.Namespace) -> int:
    from latentrm.data.writers import check_output_path
    from latentrm.parquet import export_synth_dir

    check_output_path(args.out, (".parquet",))  # before the set is read
    info = export_synth_dir(args.augmented, args.out)
    print(
        f"wrote {info['pairs']} pairs ({info['synthetic_pairs']} synthetic, "
        f"method {info['method']}, ratio {info['ratio']}, d={info['dim']}) to {args.out}"
    )
    return 0



def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="latentrm",
        description="Reward models from little preference data with LENS latent-space synthesis.",
    )
    parser.add_argument("--version", action="version", version=f"latentrm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level logging")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="warnings and errors only: no progress bars, no INFO lines "
                             "(latentrm's, transformers', datasets' and the Hub's)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_args, handler) in sorted(_COMMANDS.items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(_handler=handler)
    return parser


# Environment switches the Hugging Face libraries read when they are imported.
_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
              "DATASETS_VERBOSITY": "error", "TQDM_DISABLE": "1"}


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence transformers', datasets' and huggingface_hub's logging and progress bars (and any
    tqdm bar left at its defaults) for the block.

    Libraries not imported yet read the environment when they are; those already imported are
    switched through their own API and switched back afterwards.
    """
    saved = {k: os.environ.get(k) for k in _QUIET_ENV}
    os.environ.update(_QUIET_ENV)
    undo: list[Callable[[], None]] = []
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        level, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
        undo.append(lambda: (tlog.set_verbosity(level),
                             tlog.enable_progress_bar() if bars else None))
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import utils as hub

        hub_bars = not hub.are_progress_bars_disabled()
        hub.disable_progress_bars()
        undo.append(lambda: hub.enable_progress_bars() if hub_bars else None)
    if "datasets" in sys.modules:
        import datasets

        ds_bars = datasets.is_progress_bar_enabled()
        ds_level = datasets.logging.get_verbosity()
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
        undo.append(lambda: (datasets.logging.set_verbosity(ds_level),
                             datasets.enable_progress_bars() if ds_bars else None))
    try:
        yield
    finally:
        for fn in reversed(undo):
            fn()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# OSErrors a user fixes (space, quota, permissions): one line, not a traceback.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def _os_error_line(e: OSError) -> str:
    where = f": {e.filename}" if e.filename else ""
    what = e.strerror or str(e)
    if e.errno in _FULL:
        return (f"{what}{where}. Every file is written atomically, so what was finished is kept "
                "(embedding chunks, finished experiment seeds) and nothing half-written is "
                "left: free some space and rerun the same command to resume")
    return f"{what}{where}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    try:
        with quiet_libraries() if args.quiet else contextlib.nullcontext():
            code = int(args._handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except LatentrmError as e:
        if args.debug:
            raise
        print(f"latentrm: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `latentrm config | head`: the reader has gone. Point stdout at /dev/null so the
        # interpreter's final flush does not print a traceback either.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    except OSError as e:
        if args.debug or e.errno not in _FULL | _DENIED:
            raise
        print(f"latentrm: error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentrm: interrupted", file=sys.stderr)
        return 130
