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
    """RunConfig from args.config (YAML, optional) + args.overrides; a leading key=value is an override."""
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


# --- embed (issue: foundation) ----------------------------------------------------------------------
# --- synth / train / run (issue: LENS core) -------------------------------------------------------
# --- experiment (issue: evaluation) ---------------------------------------------------------------
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
    from latentrm.serve import load_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return load_model(args.model)


@command("score", "Score responses or chosen/rejected pairs in a file with a reward model.",
         _add_score)
def _cmd_score(args: argparse.Namespace) -> int:
    from latentrm.serve import format_summary, read_rows, score_rows, write_rows

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
    from latentrm.serve import bon_rows, format_summary, read_rows, write_rows

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
    from latentrm.export import export_synth_dir

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
