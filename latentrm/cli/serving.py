"""Serving commands: score, bon (Best-of-N) and export (an augmented set to Parquet).

Each parses its options, loads the reward model (latentrm.serve), runs its recipe
(latentrm.recipes.score) and writes one output file.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

from latentrm.cli.options import command, positive_int, thread_count


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
    p.add_argument("--threads", type=thread_count, default=None,
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


def format_summary(summary: Mapping[str, Any]) -> str:
    """One `key: value` line per summary entry (floats to 4 decimals)."""
    lines = []
    for k, v in summary.items():
        shown = f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else v
        lines.append(f"{k}: {shown}")
    return "\n".join(lines)


@command("score", "Score responses or chosen/rejected pairs in a file with a reward model.",
         _add_score)
def _cmd_score(args: argparse.Namespace) -> int:
    from latentrm.data.readers import read_rows
    from latentrm.data.writers import check_output_path, write_rows
    from latentrm.recipes.score import score_rows

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
    from latentrm.recipes.score import bon_rows

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
