"""The command registry and the options every command shares.

Each command module registers its subcommands with `@command`; `latentrm.cli.build_parser` adds
them all. Options mean the same in every command: `--threads` torch's threads, `--seed` the seed,
positional CONFIG + key=value overrides for the commands that read a run config.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from latentrm.errors import ConfigError

# Subcommands: name -> (help, add_arguments(parser), handler(args) -> exit code).
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable:
    """Register `handler` as subcommand `name`; `add_args` adds its options to the subparser."""

    def deco(handler: Callable[[argparse.Namespace], int | None]) -> Callable:
        _COMMANDS[name] = (help, add_args, handler)
        return handler

    return deco


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def thread_count(text: str) -> int:
    """argparse type: torch threads, an integer in [1, MAX_THREADS] (torch.set_num_threads with
    100000 crashed the process)."""
    from latentrm.config.bounds import MAX_THREADS

    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_THREADS}, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2^32)."""
    value = _integer(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2^32), got {value}")
    return value


def config_args(
    p: argparse.ArgumentParser, config_required: bool = False, seed: bool = True
) -> None:
    """Positional CONFIG (YAML) and key=value overrides, shared by run/experiment/synth/train,
    with --threads and --seed as shorthands for the `threads` and `seed` keys."""
    p.add_argument("config", nargs=None if config_required else "?", help="YAML config file")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. vae.gamma=0.5 ratios=[2,4]; `latentrm config` lists every key",
    )
    p.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="torch threads (the config key `threads`)",
    )
    if seed:
        p.add_argument(
            "--seed",
            type=seed_int,
            default=None,
            help="seed of every random choice (the config key `seed`)",
        )


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


def _check_flags_agree(args: argparse.Namespace, overrides: list[str]) -> None:
    """ConfigError when --threads / --seed and a key=value override set the key differently
    (which one wins would be a guess; the config file's value is what the flags are for)."""
    from latentrm.config import parse_overrides

    for key in ("threads", "seed"):
        flag = getattr(args, key, None)
        for item in overrides:
            if flag is not None and item.split("=", 1)[0].strip() == key:
                if parse_overrides([item]).get(key) != flag:
                    raise ConfigError(
                        f"--{key} {flag} and the override {item} disagree; give one of them"
                    )


def load_run_config(args: argparse.Namespace):
    """RunConfig from args.config (YAML, optional) + args.overrides (a leading key=value counts)
    + the shorthand flags; a cache_dir that is a file is refused here, before any work."""
    from pathlib import Path

    from latentrm.config import load_config

    path, overrides = args.config, list(args.overrides)
    if path is not None and "=" in path and not path.endswith((".yaml", ".yml")):
        path, overrides = None, [path, *overrides]
    _check_flags_agree(args, overrides)
    cfg = load_config(path, [*overrides, *_flag_overrides(args)])
    cache = Path(cfg.cache_dir).expanduser()
    if cache.exists() and not cache.is_dir():
        raise ConfigError(
            f"{cfg.cache_dir}: exists and is not a folder (the cache_dir); choose another path"
        )
    return cfg
