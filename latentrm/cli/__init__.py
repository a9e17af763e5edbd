"""Command-line interface: thin. Parse, build configs, call the library, print results.

User mistakes (LatentrmError, a bad argument, a full disk or a permission error) print as one
line `latentrm: error: ...` with exit code 2; `--debug` shows the traceback. Options mean the
same in every command: `--data` is the input data, `--out` the output, `--threads` torch's
threads, `--seed` the seed, `--model` a reward model (the embedding model is `--embedder`).

The commands live in `training` (config, init, embed, synth, train, run, experiment),
`serving` (score, bon, export), `rssft` (rs-sft, judge) and `active` (suggest, active);
`options` holds the registry and the options they share.
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
from latentrm.cli import active, rssft, serving, training  # noqa: F401  (importing registers)
from latentrm.cli.options import _COMMANDS
from latentrm.errors import LatentrmError

log = logging.getLogger("latentrm")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other error of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"latentrm: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="latentrm",
        description="Reward models from little preference data with LENS latent-space synthesis.",
    )
    parser.add_argument("--version", action="version", version=f"latentrm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level logging")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="warnings and errors only: no progress bars, no INFO lines "
        "(latentrm's, transformers', datasets' and the Hub's)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_args, handler) in sorted(_COMMANDS.items()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        # -q also after the command (`latentrm run cfg.yaml -q`); SUPPRESS keeps the top-level one
        p.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="warnings and errors only (as before the command)",
        )
        p.set_defaults(_handler=handler)
    return parser


# Environment switches the Hugging Face libraries read when they are imported.
_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "DATASETS_VERBOSITY": "error",
    "TQDM_DISABLE": "1",
}


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
        undo.append(
            lambda: (tlog.set_verbosity(level), tlog.enable_progress_bar() if bars else None)
        )
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
        undo.append(
            lambda: (
                datasets.logging.set_verbosity(ds_level),
                datasets.enable_progress_bars() if ds_bars else None,
            )
        )
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
        return (
            f"{what}{where}. Every file is written atomically, so what was finished is kept "
            "(embedding chunks, finished experiment seeds) and nothing half-written is "
            "left: free some space and rerun the same command to resume"
        )
    return f"{what}{where}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse cannot take positionals after an option (`run c.yaml --seed 5 seed=6`): the
        # key=value left over are overrides, in the order given; anything else is an error.
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
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
