"""Active selection: `suggest` (the pairs to label next) and `active` (the study of strategies).

`suggest` loads a reward model, reads a pool and writes the K pairs to label
(latentrm.recipes.suggest); `active` runs the active-selection study of a config
(latentrm.recipes.active).
"""

from __future__ import annotations

import argparse

from latentrm.cli.options import (
    command,
    config_args,
    load_run_config,
    positive_int,
    seed_int,
    thread_count,
)
from latentrm.cli.serving import format_summary


def _add_suggest(p: argparse.ArgumentParser) -> None:
    from latentrm.head.acquire import STRATEGIES

    p.add_argument(
        "--pool",
        required=True,
        help="unlabelled comparisons: pairs (any training format, or prompt + "
        "response_a/response_b) or candidate sets (prompt + a candidates list)",
    )
    p.add_argument(
        "--model",
        required=True,
        help="reward model folder or Hub repo id (an ensemble head for bald)",
    )
    p.add_argument("--k", type=positive_int, required=True, help="pairs to suggest")
    p.add_argument(
        "--out",
        required=True,
        help="output .csv/.tsv/.jsonl/.json/.parquet: prompt, response_a, response_b, "
        "an empty label column (a or b) and the reasons",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="hybrid",
        help="acquisition (default hybrid: the most uncertain pairs, spread out by "
        "k-center greedy); bald needs an ensemble head",
    )
    p.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed of random's draw and of a pair pool's a/b order",
    )
    p.add_argument(
        "--labelled",
        default=None,
        help="pairs labelled already (any training format): diversity and hybrid keep "
        "away from them",
    )
    p.add_argument(
        "--threads", type=thread_count, default=None, help="torch threads (default: torch's)"
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the embedder run Python code from its repository",
    )


@command(
    "suggest",
    "Choose the K pairs of a pool most worth labelling next (active selection).",
    _add_suggest,
)
def _cmd_suggest(args: argparse.Namespace) -> int:
    from latentrm.data.writers import check_output_path
    from latentrm.model import RewardModel
    from latentrm.recipes.suggest import run_suggest
    from latentrm.runtime import torch_threads

    check_output_path(args.out)  # before the model is loaded
    with torch_threads(args.threads):
        model = RewardModel.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
        summary = run_suggest(
            model,
            args.pool,
            args.k,
            args.out,
            strategy=args.strategy,
            seed=args.seed,
            labelled_path=args.labelled,
        )
    print(format_summary(summary))
    print(
        f"wrote {summary['suggested']} pairs to {args.out}: fill the label column with a or b, "
        "then train on it (data.path=FILE)"
    )
    return 0


def _add_active(p: argparse.ArgumentParser) -> None:
    config_args(p, config_required=True, seed=False)  # it repeats over `seeds`


@command(
    "active",
    "Active-selection study: strategies x rounds x splits (config section active).",
    _add_active,
)
def _cmd_active(args: argparse.Namespace) -> int:
    from pathlib import Path

    from latentrm.recipes.active import run_active

    cfg = load_run_config(args)
    run_active(cfg)
    print((Path(cfg.out_dir) / "results.md").read_text(), end="")
    print(f"results in {cfg.out_dir}/ (results.csv, results.md)")
    return 0
