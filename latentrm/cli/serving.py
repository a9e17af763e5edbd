"""Serving commands: score, bon (Best-of-N) and export (a reward model for the Hub, or an
augmented set to Parquet).

Each parses its options, loads the reward model (latentrm.serve), runs its recipe
(latentrm.recipes.score) and writes one output file.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

from latentrm.cli.options import command, positive_int, thread_count
from latentrm.errors import ConfigError


# --- score / bon / export -----------------------------------------------------------------------
def _add_model_io(p: argparse.ArgumentParser, what: str, out_help: str | None = None) -> None:
    """--model, --data, --out (required unless `out_help` says what an optional one holds)."""
    p.add_argument(
        "--model",
        required=True,
        help="reward model folder (latentrm run: OUT/heads/<method>-r<ratio>) or Hub "
        "repo id (RewardModel.from_pretrained)",
    )
    p.add_argument(
        "--data",
        "--input",
        dest="input",
        required=True,
        help=f"{what}; .jsonl/.json/.csv/.tsv/.parquet or a saved datasets folder",
    )
    p.add_argument(
        "--out",
        required=out_help is None,
        default=None,
        help=out_help or "output file; its suffix picks the format",
    )
    p.add_argument("--batch-size", type=positive_int, default=1024, help="rows per scoring call")
    p.add_argument(
        "--threads", type=thread_count, default=None, help="torch threads (default: torch's)"
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
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


@command(
    "score", "Score responses or chosen/rejected pairs in a file with a reward model.", _add_score
)
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
        "--candidates-field",
        default=None,
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
        model,
        rows,
        path=args.input,
        candidates_field=args.candidates_field,
        batch_size=args.batch_size,
    )
    write_rows(out, args.out)
    print(format_summary(summary))
    print(f"wrote {len(out)} rows to {args.out}")
    return 0


def _add_rewardbench(p: argparse.ArgumentParser) -> None:
    _add_model_io(
        p,
        "RewardBench-format rows: prompt + chosen/rejected (+ subset, id), or "
        "chosen/rejected conversations",
        out_help="optional output file: the rows with score_chosen, score_rejected, correct",
    )


def _format_rewardbench(summary: Mapping[str, Any]) -> str:
    lines = [f"accuracy: {summary['accuracy']:.4f} on {summary['pairs']} pairs"]
    for name, acc in summary["subsets"].items():
        lines.append(f"  {name}: {acc:.4f} ({summary['subset_pairs'][name]} pairs)")
    for name, score in summary.get("sections", {}).items():
        lines.append(f"{name}: {score:.2f}")
    return "\n".join(lines)


@command(
    "rewardbench",
    "RewardBench's evaluation (accuracy per subset, section scores) of a "
    "reward model on a local RewardBench-format file, offline on a CPU.",
    _add_rewardbench,
)
def _cmd_rewardbench(args: argparse.Namespace) -> int:
    from latentrm.data.readers import read_rows
    from latentrm.data.writers import check_output_path, write_rows
    from latentrm.recipes.rewardbench import rewardbench_rows

    if args.out is not None:
        check_output_path(args.out)  # before any scoring
    rows = read_rows(args.input)
    model = _load_for_serving(args)
    out, summary = rewardbench_rows(model, rows, path=args.input, batch_size=args.batch_size)
    print(_format_rewardbench(summary))
    if args.out is not None:
        write_rows(out, args.out)
        print(f"wrote {len(out)} rows to {args.out}")
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "head",
        nargs="?",
        metavar="HEAD_DIR",
        help="reward model folder to export (latentrm run: OUT/heads/<method>-r<ratio>)",
    )
    p.add_argument(
        "out_dir",
        nargs="?",
        metavar="OUT",
        help="folder for the Hugging Face model (RewardModel.save_pretrained)",
    )
    p.add_argument(
        "--export",
        dest="kind",
        choices=("transformers", "native", "none"),
        default="transformers",
        help="transformers: custom code, any head (default); native: a plain "
        "*ForSequenceClassification (linear head, decoder); none: latentrm files",
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="dtype of the exported base weights (default: the one the embedder computes in)",
    )
    p.add_argument(
        "--push",
        metavar="REPO",
        default=None,
        help="also upload OUT to this Hub repo (owner/name); the card then loads it",
    )
    p.add_argument("--private", action="store_true", help="with --push: create a private repo")
    p.add_argument(
        "--license",
        default=None,
        help="model card license (default: the base model's, where known)",
    )
    p.add_argument("--dataset", default=None, help="model card dataset name (a Hub id links it)")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the embedder run Python code from its repository",
    )
    g = p.add_argument_group("an augmented set to Parquet (the older form)")
    g.add_argument("--augmented", default=None, help="directory written by `latentrm synth`")
    g.add_argument("--out", default=None, help="output .parquet file")


@command(
    "export",
    "Export a reward model folder for the Hugging Face Hub (HEAD_DIR OUT "
    "[--push REPO]), or an augmented set to Parquet (--augmented DIR --out F).",
    _add_export,
)
def _cmd_export(args: argparse.Namespace) -> int:
    if args.augmented is not None:
        return _export_augmented(args)
    if args.head is None or args.out_dir is None:
        raise ConfigError(
            "latentrm export: give HEAD_DIR OUT (a reward model folder and the "
            "folder to write), or --augmented DIR --out F.parquet"
        )
    from latentrm.recipes.publish import export_head

    card = {k: v for k, v in (("license", args.license), ("dataset", args.dataset)) if v}
    info = export_head(
        args.head,
        args.out_dir,
        export=args.kind,
        dtype=args.dtype,
        push=args.push,
        private=args.private or None,
        card=card,
        trust_remote_code=args.trust_remote_code,
    )
    print(f"wrote {len(info['files'])} files to {info['out']} ({', '.join(info['files'])})")
    if info["url"]:
        print(f"pushed to {args.push}: {info['url']}")
    return 0


def _export_augmented(args: argparse.Namespace) -> int:
    from latentrm.data.writers import check_output_path
    from latentrm.parquet import export_synth_dir

    if args.out is None:
        raise ConfigError("latentrm export --augmented DIR: give --out F.parquet")
    check_output_path(args.out, (".parquet",))  # before the set is read
    info = export_synth_dir(args.augmented, args.out)
    print(
        f"wrote {info['pairs']} pairs ({info['synthetic_pairs']} synthetic, "
        f"method {info['method']}, ratio {info['ratio']}, d={info['dim']}) to {args.out}"
    )
    return 0
