"""Benchmark latentrm's Embedder and print a markdown section.

(a) Encoder: our Embedder with MiniLM vs sentence-transformers' `SentenceTransformer.encode` on the
    same HH-RLHF texts (plain rendering of prompt + chosen reply) with the same max length and batch
    size: texts/s, non-pad tokens/s, ratio ours/ST. Also ours with token-budget batching
    (--budget-batch texts per batch, capped at --max-batch-tokens padded tokens).
(b) Decoder: SmolLM2 on the same pairs: texts/s, non-pad tokens/s, padding waste, useful FLOP/s
    (2 x non-embedding params x tokens + causal attention 2 x layers x d_attn x T^2 per text)
    against the FLOP/s of a plain torch matmul of the model's MLP shape on this device.

    .venv/bin/python scripts/bench_embed.py --threads 2                      # both parts, CPU
    .venv/bin/python scripts/bench_embed.py --parts decoder --n-decoder 32
    python3 scripts/bench_embed.py --device cuda --minilm PATH --decoder PATH  # any folders

Timings are the median of --repeats runs after one warm-up; the model load is not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import platform
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_hh(path: str, n: int) -> tuple[list, list[str]]:
    from latentrm.data import parse_hh

    prompts, responses = [], []
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        for line in f:
            if len(prompts) == n:
                break
            prompt, chosen = parse_hh(json.loads(line)["chosen"])
            prompts.append(prompt)
            responses.append(chosen)
    return prompts, responses


def timed(fn, repeats: int, sync) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_flops(device: torch.device, dtype: torch.dtype, m: int, k: int, n: int, sync) -> float:
    """FLOP/s of an (m x k) @ (k x n) product, the shape of the model's MLP on one batch."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    reps = 3 if device.type == "cpu" else 50

    def run() -> None:
        for _ in range(reps):
            a @ b

    return 2 * m * k * n * reps / timed(run, 3, sync)


def bench_encoder(args, prompts, responses, sync, lines: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    from latentrm.config import EmbedConfig
    from latentrm.data import render_plain
    from latentrm.embed import Embedder
    from latentrm.embed.models import resolve_model

    L, B = args.max_length, args.batch_size
    cfg = EmbedConfig(
        model=args.minilm,
        max_length=L,
        batch_size=B,
        max_batch_tokens=B * L,
        device=args.device,
        show_progress=False,
    )
    emb = Embedder(cfg)
    budget = Embedder(
        dataclasses.replace(
            cfg, batch_size=args.budget_batch, max_batch_tokens=args.max_batch_tokens
        )
    )
    path, _ = resolve_model(args.minilm)
    st = SentenceTransformer(str(path), device=str(emb.device))
    st.max_seq_length = L
    texts = [render_plain(p, r) for p, r in zip(prompts, responses, strict=True)]
    ids = emb.tokenize(prompts, responses)
    tokens = sum(len(x) for x in ids)
    # ST cuts from the right, we cut prompt tokens from the left: the same number of tokens each
    st_tokens = sum(min(len(x), L) for x in st.tokenizer(texts, verbose=False)["input_ids"])
    t_ours = timed(lambda: emb.embed(prompts, responses), args.repeats, sync)
    waste = emb.last_stats["padding_waste"]
    t_budget = timed(lambda: budget.embed(prompts, responses), args.repeats, sync)
    waste_budget = budget.last_stats["padding_waste"]
    t_st = timed(
        lambda: st.encode(texts, batch_size=B, convert_to_numpy=True, show_progress_bar=False),
        args.repeats,
        sync,
    )
    n = len(texts)
    lines += [
        f"### (a) Encoder: MiniLM, {n} HH texts, max_length {L}",
        "",
        "| embedder | batching | texts/s | non-pad tokens/s | padding waste | vs ST |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        f"| sentence-transformers encode | {B} texts, sorted by chars | {n / t_st:.1f} | "
        f"{st_tokens / t_st:.0f} | - | 1.00 |",
        f"| latentrm Embedder | {B} texts, sorted by tokens | {n / t_ours:.1f} | "
        f"{tokens / t_ours:.0f} | {100 * waste:.1f}% | {t_st / t_ours:.2f} |",
        f"| latentrm Embedder | <= {args.budget_batch} texts and <= {args.max_batch_tokens} padded "
        f"tokens | {n / t_budget:.1f} | {tokens / t_budget:.0f} | {100 * waste_budget:.1f}% | "
        f"{t_st / t_budget:.2f} |",
        "",
    ]


def bench_decoder(args, prompts, responses, sync, lines: list[str]) -> None:
    from latentrm.config import EmbedConfig
    from latentrm.embed import Embedder

    cfg = EmbedConfig(
        model=args.decoder,
        max_length=args.decoder_max_length,
        batch_size=args.decoder_batch,
        max_batch_tokens=args.max_batch_tokens,
        device=args.device,
        dtype=args.dtype,
        show_progress=False,
    )
    emb = Embedder(cfg)
    ids = emb.tokenize(prompts, responses)
    t = timed(lambda: emb.embed(prompts, responses), args.repeats, sync)
    st = emb.last_stats
    c = emb.model.config
    params = sum(p.numel() for n, p in emb.model.named_parameters() if "embed_tokens" not in n)
    d_attn = c.num_attention_heads * getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
    flops = sum(2 * params * len(x) + 2 * c.num_hidden_layers * d_attn * len(x) ** 2 for x in ids)
    mean_t = st["tokens"] / len(ids)
    peak = matmul_flops(
        emb.device,
        emb.model.dtype,
        args.decoder_batch * int(mean_t),
        c.hidden_size,
        c.intermediate_size,
        sync,
    )
    n = len(ids)
    lines += [
        f"### (b) Decoder: {args.decoder} ({params / 1e6:.0f}M non-embedding params, "
        f"d={emb.dim}), {n} HH texts, max_length {cfg.max_length}, {cfg.dtype}",
        "",
        "| texts/s | non-pad tokens/s | mean tokens/text | padding waste | useful GFLOP/s | "
        "matmul GFLOP/s | efficiency |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {n / t:.2f} | {st['tokens'] / t:.0f} | {mean_t:.0f} | "
        f"{100 * st['padding_waste']:.1f}% | {flops / t / 1e9:.1f} | {peak / 1e9:.1f} | "
        f"{100 * flops / t / peak:.0f}% |",
        "",
        f"FLOPs/token = 2 x {params / 1e6:.1f}M + attention = {flops / st['tokens'] / 1e9:.3f} "
        f"GFLOP at this length mix; matmul peak measured on ({args.decoder_batch}x{int(mean_t)}) x "
        f"{c.hidden_size} @ {c.hidden_size} x {c.intermediate_size}.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="../shared/data/hh-rlhf/harmless-base-test.jsonl.gz")
    ap.add_argument("--parts", default="encoder,decoder")
    ap.add_argument("--minilm", default="minilm", help="alias or folder (ST layout) of MiniLM")
    ap.add_argument("--decoder", default="smollm2", help="alias or folder of the decoder")
    ap.add_argument("--n-encoder", type=int, default=256, help="texts for part (a)")
    ap.add_argument("--n-decoder", type=int, default=32, help="texts for part (b)")
    ap.add_argument("--max-length", type=int, default=256, help="part (a), both embedders")
    ap.add_argument("--batch-size", type=int, default=32, help="part (a), both embedders")
    ap.add_argument("--budget-batch", type=int, default=128)
    ap.add_argument("--max-batch-tokens", type=int, default=8192)
    ap.add_argument("--decoder-max-length", type=int, default=512)
    ap.add_argument("--decoder-batch", type=int, default=16)
    ap.add_argument("--dtype", default="float32", help="part (b)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n = max(args.n_encoder, args.n_decoder)
    prompts, responses = read_hh(args.data, n)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    lines = [
        "## Embedding throughput (scripts/bench_embed.py)",
        "",
        f"Device {args.device} ({where or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; median of {args.repeats} runs after a warm-up.",
        "",
    ]
    parts = args.parts.split(",")
    if "encoder" in parts:
        bench_encoder(args, prompts[: args.n_encoder], responses[: args.n_encoder], sync, lines)
    if "decoder" in parts:
        bench_decoder(args, prompts[: args.n_decoder], responses[: args.n_decoder], sync, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
