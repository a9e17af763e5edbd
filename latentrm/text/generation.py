"""Sampling N responses per prompt from a causal LM, through a resumable on-disk cache.

Layout of ``cache_root/generations/``::

    <setting>/                       one per sampling setting: the policy's identity (sha256 of its
                                     files, or its Hub commit), n, temperature, top_p,
                                     max_new_tokens, max_prompt_tokens, seed, chunk and batch
                                     sizes, chat rendering, device type (hashed: the folder name)
      setting.json                   that setting, written once by the first writer
      chunks/<id>.json               the responses of `chunk_size` prompts: their prompt keys and
                                     n responses each

The ideas of the embedding store (:mod:`latentrm.embed.store`): a prompt's key is the SHA-256 of
its messages, so the same prompt is sampled once whatever file it comes from; a request's prompts
are cut into chunks in request order and a chunk's id is the hash of its prompt keys, so every run
plans the same chunks; each chunk is sampled under its own seed (from `seed` and the chunk id,
torch's global RNG forked for the call) and written atomically when done. A killed run loses at
most the chunk it was sampling; a rerun reads the finished chunks and samples the rest, with
the same results as one uninterrupted run (at a fixed thread count). A chunk that cannot be read
is set aside and sampled again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentrm.embed.models import model_identity, resolve_model
from latentrm.errors import ConfigError
from latentrm.io import atomic_write_json, sha256_json
from latentrm.runtime import resolve_device
from latentrm.text.lm import Prompt, load_text_model, pad_batch, prompt_ids, use_chat

log = logging.getLogger(__name__)

FORMAT = "latentrm.generations/1"


@dataclass(frozen=True)
class SamplingConfig:
    """How responses are sampled; every field but `device` and `show_progress` is in the cache key
    (the device's type is too: CPU and GPU sample different numbers)."""

    n: int = 4  # responses per prompt
    temperature: float = 0.7  # 0 = greedy (then n must be 1)
    top_p: float = 0.95
    max_new_tokens: int = 64
    max_prompt_tokens: int = 384  # earliest turns dropped, then tokens cut from the left
    seed: int = 0
    batch_size: int = 8  # prompts per generate() call (padding changes the numbers: in the key)
    chunk_size: int = 32  # prompts per cache file (a kill loses at most one)
    text_format: str = "auto"  # auto | chat | plain (lm.use_chat)
    device: str = "cpu"
    show_progress: bool = True

    def check(self) -> None:
        if self.n < 1 or self.batch_size < 1 or self.chunk_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("n, batch_size, chunk_size and max_new_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(
                f"temperature must be >= 0 and top_p in (0, 1], got "
                f"{self.temperature}, {self.top_p}"
            )
        if self.temperature == 0 and self.n > 1:
            raise ConfigError("temperature 0 (greedy) gives one response per prompt: use n=1")
        if self.max_prompt_tokens < 1:
            raise ConfigError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")


def prompt_key(prompt: Prompt) -> str:
    """Content key of a prompt (its messages in order)."""
    doc = [[m["role"], m["content"]] for m in prompt]
    return hashlib.sha256(
        json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


def policy_identity(policy: str, gguf_file: str | None, memo: Path | None) -> dict[str, Any]:
    """What decides a policy's samples: sha256 of its local files, or its Hub commit."""
    folder, alias_gguf = resolve_model(policy)
    found = model_identity(folder, gguf_file or alias_gguf, None, memo)
    if found is None:
        raise ConfigError(
            f"policy {policy!r}: not a local model and not in the Hugging Face "
            "cache; download it first (the cache key needs its exact weights)"
        )
    return found


class Sampler:
    """A causal LM that samples n responses per prompt; the model loads on the first call."""

    def __init__(self, policy: str, cfg: SamplingConfig, gguf_file: str | None = None) -> None:
        self.policy, self.cfg, self.gguf_file = policy, cfg, gguf_file

    def _ensure_model(self) -> None:
        if not hasattr(self, "model_"):
            model, self.tokenizer_ = load_text_model(self.policy, self.gguf_file, causal=True)
            self.device_ = resolve_device(self.cfg.device)
            self.model_ = model.to(self.device_).eval()
            self.chat_ = use_chat(self.tokenizer_, self.cfg.text_format)

    def sample(self, prompts: Sequence[Prompt], seed: int) -> list[list[str]]:
        """cfg.n responses per prompt, in batches of cfg.batch_size, under torch seed `seed`."""
        import torch

        self._ensure_model()
        tok, cfg = self.tokenizer_, self.cfg
        greedy = cfg.temperature == 0
        out: list[list[str]] = []
        with torch.random.fork_rng(devices=[] if self.device_.type == "cpu" else None):
            torch.manual_seed(seed)
            for s in range(0, len(prompts), cfg.batch_size):
                ids = [
                    prompt_ids(tok, p, self.chat_, cfg.max_prompt_tokens)
                    for p in prompts[s : s + cfg.batch_size]
                ]
                x, mask = pad_batch(ids, tok.pad_token_id, True, self.device_)
                kw: dict[str, Any] = (
                    {"do_sample": False}
                    if greedy
                    else {
                        "do_sample": True,
                        "temperature": cfg.temperature,
                        "top_p": cfg.top_p,
                        "top_k": 0,
                    }
                )
                with torch.inference_mode():
                    gen = self.model_.generate(
                        input_ids=x,
                        attention_mask=mask,
                        max_new_tokens=cfg.max_new_tokens,
                        num_return_sequences=cfg.n,
                        pad_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id,
                        **kw,
                    )  # (B * n, T + new)
                texts = tok.batch_decode(gen[:, x.shape[1] :], skip_special_tokens=True)
                n = cfg.n
                out.extend([t.strip() for t in texts[i * n : (i + 1) * n]] for i in range(len(ids)))
        return out


def chunk_seed(seed: int, chunk_id: str) -> int:
    """The torch seed of one chunk: from the run's seed and the chunk's content only."""
    return int(hashlib.sha256(f"{seed}:{chunk_id}".encode()).hexdigest()[:8], 16)


def setting_key(identity: dict[str, Any], cfg: SamplingConfig) -> dict[str, Any]:
    """What decides the samples (text_format "auto" is fixed by the tokenizer, in the identity)."""
    keep = {
        k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("device", "show_progress")
    }
    return {
        "format": FORMAT,
        "policy": identity,
        "device_type": resolve_device(cfg.device).type,
        **keep,
    }


def _read_chunk(path: Path, keys: Sequence[str], n: int) -> list[list[str]] | None:
    """The chunk's responses, or None (logged, file set aside) when it is not what was asked."""
    try:
        doc = json.loads(path.read_text("utf-8"))
        resp = doc["responses"]
        ok = (
            doc.get("prompt_keys") == list(keys)
            and len(resp) == len(keys)
            and all(len(r) == n and all(isinstance(t, str) for t in r) for r in resp)
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        ok, why = False, f"{type(e).__name__}: {e}"
    else:
        why = "its prompts or response counts differ from the request"
    if ok:
        return resp
    log.warning("%s: unreadable generation chunk (%s); set aside, sampling it again", path, why)
    path.rename(path.with_suffix(".bad"))
    return None


def generate_responses(
    policy: str,
    prompts: Sequence[Prompt],
    cfg: SamplingConfig,
    cache_root: str | Path,
    gguf_file: str | None = None,
    sampler: Sampler | None = None,
) -> tuple[list[list[str]], dict[str, Any]]:
    """cfg.n sampled responses per prompt (in order) and stats, through the cache (module doc).

    Stats: the setting folder, chunks read from the cache and chunks sampled now. The policy
    loads only when a chunk must be sampled; `sampler` (default: a Sampler of `policy`) must
    sample that policy.
    """
    from tqdm.auto import tqdm

    cfg.check()
    root = Path(cache_root) / "generations"
    identity = policy_identity(policy, gguf_file, Path(cache_root) / "file-hashes.json")
    sampler = sampler or Sampler(policy, cfg, gguf_file)
    key = setting_key(identity, cfg)
    folder = root / sha256_json(key)[:24]
    if not (folder / "setting.json").exists():
        atomic_write_json(folder / "setting.json", key)
    keys = [prompt_key(p) for p in prompts]
    starts = list(range(0, len(prompts), cfg.chunk_size))
    out: list[list[str]] = []
    stats = {"cache": str(folder), "chunks": len(starts), "chunks_cached": 0, "chunks_sampled": 0}
    bar = tqdm(total=len(prompts), desc="sampling", unit="prompt", disable=not cfg.show_progress)
    for s in starts:
        ck = keys[s : s + cfg.chunk_size]
        cid = sha256_json(ck)[:32]
        path = folder / "chunks" / f"{cid}.json"
        resp = _read_chunk(path, ck, cfg.n) if path.exists() else None
        if resp is None:
            resp = sampler.sample(prompts[s : s + cfg.chunk_size], chunk_seed(cfg.seed, cid))
            atomic_write_json(path, {"prompt_keys": ck, "responses": resp})
            stats["chunks_sampled"] += 1
        else:
            stats["chunks_cached"] += 1
        out.extend(resp)
        bar.update(len(ck))
    bar.close()
    log.info(
        "generated %d x %d responses (%d chunks cached, %d sampled) in %s",
        len(prompts),
        cfg.n,
        stats["chunks_cached"],
        stats["chunks_sampled"],
        folder,
    )
    return out, stats


__all__ = ["SamplingConfig", "Sampler", "generate_responses", "policy_identity", "prompt_key"]
