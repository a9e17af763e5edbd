"""Policy commands: rs-sft (rejection-sampling fine-tuning) and judge (two policies, offline).

Each parses its options into a SamplingConfig / SFTConfig, checks its output paths, runs its
recipe (latentrm.recipes.rs_sft) and prints a summary.
"""

from __future__ import annotations

import argparse

from latentrm.cli.options import command, positive_int, seed_int, thread_count
from latentrm.cli.serving import format_summary


def _add_sampling(p: argparse.ArgumentParser, n: int) -> None:
    g = p.add_argument_group("sampling (every one of these is in the generation cache's key)")
    g.add_argument("--n", type=positive_int, default=n, help=f"responses per prompt ({n})")
    g.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (0.7)")
    g.add_argument("--top-p", type=float, default=0.95, help="nucleus mass (0.95)")
    g.add_argument("--max-new-tokens", type=positive_int, default=64, help="(64)")
    g.add_argument(
        "--max-prompt-tokens",
        type=positive_int,
        default=384,
        help="prompt budget: earliest turns dropped, then cut left (384)",
    )
    g.add_argument("--seed", type=seed_int, default=0, help="sampling and training seed (0)")
    g.add_argument(
        "--gen-batch-size", type=positive_int, default=8, help="prompts per generate call (8)"
    )
    g.add_argument(
        "--chunk-size",
        type=positive_int,
        default=32,
        help="prompts per cache file: a kill loses at most one (32)",
    )
    p.add_argument("--cache-dir", default="cache", help="generation cache root (cache)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (cpu)")
    p.add_argument("--threads", type=thread_count, default=None, help="torch threads")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="rows per reward-model scoring call (256)",
    )
    p.add_argument(
        "--no-show-progress", dest="show_progress", action="store_false", help="no progress bars"
    )


def _sampling(args: argparse.Namespace):
    from latentrm.text.generation import SamplingConfig

    return SamplingConfig(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        seed=args.seed,
        batch_size=args.gen_batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        show_progress=args.show_progress and not args.quiet,
    )


def _add_rs_sft(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        required=True,
        help="causal LM to sample from and fine-tune: alias (smollm2), folder or Hub id",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--prompts",
        help="prompt file: rows with prompt/instruction, or any preference-pair file (its prompts)",
    )
    src.add_argument("--candidates", help="pre-generated candidates (the `bon` input): no sampling")
    p.add_argument(
        "--model",
        required=True,
        help="reward model: a latentrm folder (a run's heads/<method>-r<ratio>), any "
        "AutoModelForSequenceClassification path, or 'random'",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder: the policy (save_pretrained), picks.jsonl, rs_sft.json",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="keep a prompt's best response only if its reward is at least this",
    )
    g = p.add_argument_group("fine-tuning (TRL SFTTrainer)")
    g.add_argument("--mode", choices=("lora", "full"), default="lora", help="(lora)")
    g.add_argument("--epochs", type=positive_int, default=1, help="(1)")
    g.add_argument("--lr", type=float, default=None, help="(1e-4 lora, 1e-5 full)")
    g.add_argument("--train-batch-size", type=positive_int, default=8, help="(8)")
    g.add_argument("--lora-r", type=positive_int, default=8, help="(8)")
    g.add_argument(
        "--max-length",
        type=positive_int,
        default=512,
        help="prompt + response tokens per example (512)",
    )
    g.add_argument(
        "--no-merge",
        dest="merge",
        action="store_false",
        help="lora: save the adapter only (needs peft to load), not the merged model",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a result in --out")
    _add_sampling(p, 4)


@command(
    "rs-sft",
    "Rejection-sampling fine-tuning: sample N, keep the reward model's best, SFT.",
    _add_rs_sft,
)
def _cmd_rs_sft(args: argparse.Namespace) -> int:
    from latentrm.recipes.rs_sft import rs_sft
    from latentrm.runtime import torch_threads
    from latentrm.text.rs_sft import SFTConfig

    sampling = _sampling(args)
    sft = SFTConfig(
        mode=args.mode,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.train_batch_size,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        max_prompt_tokens=args.max_prompt_tokens,
        max_length=args.max_length,
        merge=args.merge,
        seed=args.seed,
        device=args.device,
        show_progress=sampling.show_progress,
    )
    with torch_threads(args.threads):
        summary = rs_sft(
            args.policy,
            args.model,
            args.out,
            prompts=args.prompts,
            candidates=args.candidates,
            sampling=sampling,
            sft=sft,
            threshold=args.threshold,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
        )
    summary.pop("generation", None)
    print(format_summary(summary))
    print(f"wrote the policy and picks.jsonl to {args.out}")
    return 0


def _add_judge(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--judge",
        required=True,
        help="the stronger reward model: a latentrm folder or any "
        "AutoModelForSequenceClassification path",
    )
    p.add_argument("--prompts", required=True, help="held-out prompt file (as rs-sft --prompts)")
    p.add_argument("--policy-a", required=True, help="causal LM A (folder, alias or Hub id)")
    p.add_argument("--policy-b", required=True, help="causal LM B")
    p.add_argument("--out", default=None, help="per-prompt answers and rewards (.jsonl, ...)")
    p.add_argument("--n-bootstrap", type=positive_int, default=2000, help="(2000)")
    _add_sampling(p, 1)


@command(
    "judge",
    "Judge two policies' answers to held-out prompts by a stronger reward model.",
    _add_judge,
)
def _cmd_judge(args: argparse.Namespace) -> int:
    from latentrm.recipes.rs_sft import judge_policies
    from latentrm.runtime import torch_threads

    with torch_threads(args.threads):
        summary = judge_policies(
            args.judge,
            args.prompts,
            args.policy_a,
            args.policy_b,
            sampling=_sampling(args),
            cache_dir=args.cache_dir,
            out=args.out,
            n_bootstrap=args.n_bootstrap,
            batch_size=args.batch_size,
        )
    print(format_summary(summary))
    return 0
