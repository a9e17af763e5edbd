"""Benchmark the text-side baselines on this machine and print a markdown section.

1. Self-rewarding text synthesis: the base model (SmolLM2-135M-Instruct by default) writes new
   responses for a sample of HH-RLHF seed prompts and judges them pairwise; reports seconds per
   generated response, per judged pair and per new preference pair, and extrapolates (labelled) to
   --extrapolate-seeds seeds at --extrapolate-ratio. Parameters touched per new pair are set
   against LENS's VAE + reward head.
2. Text reward models: TRL full fine-tune and LoRA on --rm-train seed pairs, 1 epoch, max length
   256; wall time and pairwise accuracy on --rm-test other held-out pairs.

    .venv/bin/python scripts/bench_text_synthesis.py --threads 2            # both parts
    .venv/bin/python scripts/bench_text_synthesis.py --rm-modes none        # synthesis only
    .venv/bin/python scripts/bench_text_synthesis.py --synth-prompts 0 --rm-train 200 --rm-test 200
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def bench_synthesis(args, ds, out: dict) -> None:
    from latentrm.config import SelfRewardConfig
    from latentrm.text.self_rewarding import SelfRewardingSynthesizer, n_responses

    rng = np.random.default_rng(args.seed)
    sample = ds.subset(np.sort(rng.choice(len(ds), args.synth_prompts, replace=False)))
    cfg = SelfRewardConfig(
        max_new_tokens=args.max_new_tokens, batch_size=args.synth_prompts, device=args.device
    )
    synth = SelfRewardingSynthesizer(args.model, cfg)
    t0 = time.perf_counter()
    synth._ensure_model()
    load_s = time.perf_counter() - t0
    # ratio r -> k responses per prompt; --responses 2 = ratio 1 (one judged pair per prompt).
    ratio = args.responses * (args.responses - 1) // 2
    c0 = time.process_time()
    res = synth.synthesize(sample, ratio=ratio, seed=args.seed)
    cpu_per_pair = (time.process_time() - c0) / max(res.stats["pairs"], 1)
    st = res.stats
    n_gen_params = _n_params(synth.model_)
    k8 = n_responses(args.extrapolate_ratio)
    per_seed = (
        k8 * st["seconds_per_response"] + args.extrapolate_ratio * st["seconds_per_judged_pair"]
    )
    total = args.extrapolate_seeds * per_seed
    vae_params = head_params = None
    try:
        from latentrm.augment.vae import DivergenceVAE
        from latentrm.head.reward import RewardHead

        d = synth.model_.config.hidden_size
        from latentrm.config import RewardConfig, VAEConfig

        vc, rc = VAEConfig(), RewardConfig()  # the defaults a LENS run uses
        vae_params = _n_params(DivergenceVAE(d, hidden=vc.hidden, latent_dim=vc.latent_dim))
        head_params = _n_params(RewardHead(d, rc.hidden, rc.dropout))
    except (ImportError, TypeError) as e:  # LENS modules absent or with another signature
        logging.warning("LENS parameter counts unavailable: %s", e)
    out["synthesis"] = {
        **st,
        "load_seconds": load_s,
        "cpu_seconds_per_pair": cpu_per_pair,
        "prompts": len(sample),
        "ratio": ratio,
        "generator_params": n_gen_params,
        "vae_params": vae_params,
        "head_params": head_params,
        "extrapolated_seconds": total,
    }
    lines = [
        f"### Self-rewarding text synthesis ({args.model}, {args.device}, {args.threads} threads)",
        "",
        f"Measured: {len(sample)} HH-RLHF seed prompts x {st['responses_per_seed']} sampled "
        f"responses (max_new_tokens={args.max_new_tokens}, T=0.8, top-p 0.95) = "
        f"{st['responses_generated']} responses, {st['pairs']} pairs judged in both orders "
        f"({2 * st['pairs']} judge forward passes). Model load {load_s:.1f} s (not counted below).",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| generation, s per response | {st['seconds_per_response']:.2f} |",
        f"| judging, s per judged pair (2 orders) | {st['seconds_per_judged_pair']:.2f} |",
        f"| **s per new preference pair** (at {st['responses_per_seed']} responses -> "
        f"{ratio} pair per seed) | **{st['seconds_per_pair']:.2f}** |",
        f"| process CPU s per new pair (all threads) | {cpu_per_pair:.2f} |",
        f"| filled with seed responses (duplicates/empty) | {st['filled_with_seed_responses']} |",
        f"| *extrapolated*: {args.extrapolate_seeds} seeds x ratio {args.extrapolate_ratio} "
        f"({k8} responses + {args.extrapolate_ratio} judged pairs per seed) | "
        f"*{total:.0f} s = {total / 3600:.2f} h* |",
        f"| parameters run per generated token / judge pass | {n_gen_params / 1e6:.1f} M |",
        f"| LENS: VAE (d={synth.model_.config.hidden_size}, defaults) + MLP head (defaults) "
        f"| {vae_params if vae_params is not None else 'n/a'} + "
        f"{head_params if head_params is not None else 'n/a'} |",
        "",
        "The extrapolation multiplies the measured per-response and per-judged-pair times; larger "
        "generation batches (5 responses per prompt at ratio 8) would amortise a little better.",
        "",
    ]
    print("\n".join(lines), flush=True)
    del synth


def bench_reward_models(args, ds, out: dict) -> None:
    from latentrm.config import TextRewardConfig
    from latentrm.data import split_indices
    from latentrm.evaluate import bootstrap_ci, pair_correctness
    from latentrm.text.reward_model import TextRewardModel

    tr, te = split_indices(len(ds), args.rm_train, args.rm_test, args.seed)
    train, test = ds.subset(tr), ds.subset(te)
    lines = [
        f"### Text reward models ({args.model}, TRL RewardTrainer, {args.device}, "
        f"{args.threads} threads)",
        "",
        f"{len(train)} seed pairs, {args.epochs} epoch(s), max length {args.max_length}, batch "
        f"{args.batch_size}; pairwise accuracy on {len(test)} other held-out pairs "
        "(95% bootstrap CI).",
        "",
        "| mode | lr | trainable params | load s | train s | score s (2 x test) | CPU s "
        "(load+train / score) | accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    print("\n".join(lines), flush=True)
    for mode in args.rm_modes:
        cfg = TextRewardConfig(
            epochs=args.epochs,
            max_length=args.max_length,
            batch_size=args.batch_size,
            device=args.device,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        rm = TextRewardModel(args.model, mode, cfg, seed=args.seed).fit(train)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        t1, c1 = time.perf_counter(), time.process_time()
        rc, rr = rm.score(test.prompts, test.chosen), rm.score(test.prompts, test.rejected)
        score_s, score_cpu = time.perf_counter() - t1, time.process_time() - c1
        correct = pair_correctness(rc, rr)
        lo, hi = bootstrap_ci(correct, 1000, args.seed)
        lr = 1e-5 if mode == "full" else 1e-4
        losses = [h["loss"] for h in rm.history_ if "loss" in h]
        out.setdefault("reward_models", {})[mode] = {
            "accuracy": float(correct.mean()),
            "ci": [lo, hi],
            "train_seconds": rm.train_seconds_,
            "load_seconds": fit_s - rm.train_seconds_,
            "score_seconds": score_s,
            "trainable": rm.n_trainable_,
            "params": rm.n_params_,
            "losses": losses,
            "fit_cpu_seconds": fit_cpu,
            "score_cpu_seconds": score_cpu,
        }
        lines.append(
            f"| {mode} | {lr:g} | {rm.n_trainable_ / 1e6:.3f} M of {rm.n_params_ / 1e6:.1f} M | "
            f"{fit_s - rm.train_seconds_:.0f} | {rm.train_seconds_:.0f} | {score_s:.0f} | "
            f"{fit_cpu:.0f} / {score_cpu:.0f} | {correct.mean():.3f} [{lo:.3f}, {hi:.3f}] |"
        )
        print(lines[-1], flush=True)  # a row as soon as it is measured
        del rm
    print(flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--data", default="../shared/data/hh-rlhf/harmless-base-test.jsonl.gz")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synth-prompts", type=int, default=8, help="0 skips the synthesis part")
    p.add_argument("--responses", type=int, default=2, help="sampled responses per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--extrapolate-seeds", type=int, default=1000)
    p.add_argument("--extrapolate-ratio", type=int, default=8)
    p.add_argument("--rm-modes", default="full,lora", help="comma list of full,lora or 'none'")
    p.add_argument("--rm-train", type=int, default=200)
    p.add_argument("--rm-test", type=int, default=200)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = p.parse_args()
    args.rm_modes = [] if args.rm_modes == "none" else args.rm_modes.split(",")
    logging.basicConfig(level=logging.WARNING)

    import torch

    from latentrm.data import load_pairs

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ds = load_pairs(args.data)
    print(
        "\n".join(
            [
                "## Text baselines: time and accuracy",
                "",
                f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                f"torch {torch.__version__}, {args.threads} threads; 1-min load average at start "
                f"{os.getloadavg()[0]:.1f} (other jobs share these cores).",
                "",
            ]
        ),
        flush=True,
    )
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    # Each part prints its markdown as it goes: partial results survive a later failure.
    if args.synth_prompts > 0:
        bench_synthesis(args, ds, out)
    if args.rm_modes:
        bench_reward_models(args, ds, out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
