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
