"""The embedder: (prompt, response) pairs -> (N, d) float32 rows from any Hugging Face model.

One (prompt, response) becomes one text: the tokenizer's chat template when it has one, otherwise
`render_plain`. Decoders are pooled at the last real token, encoders by a masked mean. Inputs
longer than `max_length` lose *prompt* tokens from the left: HH chosen/rejected share every turn but
the last reply, so cutting from the right would make them identical. Caching is
:mod:`latentrm.embed.local`.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from latentrm import __version__
from latentrm.config import EmbedConfig
from latentrm.data.formats import render_plain
from latentrm.embed.batching import make_batches, truncate_ids
from latentrm.embed.models import (
    is_decoder_config,
    load_hf_model,
    resolve_identity,
    resolve_model,
    st_normalizes,
)
from latentrm.embed.spec import resolve_spec
from latentrm.errors import ConfigError
from latentrm.runtime import TORCH_DTYPES, torch_threads

if TYPE_CHECKING:
    from latentrm.data.types import Message

log = logging.getLogger(__name__)


def pick_layer(rows: np.ndarray, layers: Sequence[int], layer: int | str) -> np.ndarray:
    """(N, L, d) vectors of the stored `layers` -> (N, d) at `layer` (an index, or "mean")."""
    if layer == "mean":
        return rows.mean(axis=1, dtype=np.float32)
    if layer not in layers:
        raise ConfigError(
            f"embed.layer={layer!r} is not among the stored layers {list(layers)}; "
            "add it to embed.layers"
        )
    return np.ascontiguousarray(rows[:, list(layers).index(layer)])


class Embedder:
    """A Hugging Face model + tokenizer mapping (prompt, response) pairs to (N, d) float32 rows."""

    def __init__(self, cfg: EmbedConfig) -> None:
        self.cfg = cfg
        self.path, alias_gguf = resolve_model(cfg.model)
        self.gguf_file = cfg.gguf_file or alias_gguf
        self.spec = resolve_spec(cfg)  # dtype, device and stored layers, as the store keys them
        self.device, self.dtype = self.spec.device, self.spec.dtype
        if cfg.dtype == "auto":
            log.info("embed.dtype=auto -> %s on %s", self.dtype, self.device)
        self.layers: list[int] = list(self.spec.layers)
        self.tokenizer, self.model = load_hf_model(
            self.path,
            self.gguf_file,
            cfg.revision,
            cfg.trust_remote_code,
            TORCH_DTYPES[self.dtype],
            self.device,
        )
        # sentence-transformers models that end in a Normalize module (MiniLM) give unit vectors.
        self.normalize: bool = st_normalizes(self.path)
        config = self.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.is_decoder: bool = is_decoder_config(config)
        self.dim: int = int(text_config.hidden_size)
        self.pooling: str = (
            cfg.pooling if cfg.pooling != "auto" else ("last" if self.is_decoder else "mean")
        )
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if cfg.text_format == "chat" and not has_template:
            raise ConfigError(f"embed.text_format='chat' but {cfg.model} has no chat template")
        # auto: encoders (MiniLM) were trained on plain sentences, so only decoders get the template
        self.text_format: str = (
            "chat"
            if cfg.text_format == "chat"
            or (cfg.text_format == "auto" and has_template and self.is_decoder)
            else "plain"
        )
        n_layers = int(getattr(text_config, "num_hidden_layers", 0) or 0)
        for layer in self.layers:
            if n_layers and not -(n_layers + 1) <= layer <= n_layers:
                raise ConfigError(
                    f"embed.layer(s) {layer} but {cfg.model} has hidden states "
                    f"-{n_layers + 1}..{n_layers}"
                )
        self.n_layers = n_layers
        # Position embeddings bound the usable length (BERT: 512), whatever max_length asks for.
        max_pos = getattr(text_config, "max_position_embeddings", None)
        self.max_length: int = min(cfg.max_length, int(max_pos)) if max_pos else cfg.max_length
        if self.max_length < cfg.max_length:
            log.info("max_length %d capped to the model's %d positions", cfg.max_length, max_pos)
        tok = self.tokenizer
        self.pad_id: int = next(
            (t for t in (tok.pad_token_id, tok.eos_token_id, 0) if t is not None), 0
        )
        self.padding_side: str = getattr(tok, "padding_side", "right") or "right"
        self._special = set(getattr(tok, "all_special_ids", []) or [])
        params = inspect.signature(self.model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_cache = "use_cache" in params
        self.last_stats: dict[str, float] = {}
        self._identity: dict | None = None

    # --- text -> token ids ---------------------------------------------------------------------
    def render(self, prompt: Sequence[Message], response: str) -> tuple[str, int]:
        """(text, character index where the response starts) in this embedder's text format."""
        prefix: str | None
        if self.text_format == "chat":
            from jinja2 import TemplateError

            tok = self.tokenizer
            try:
                full = tok.apply_chat_template(
                    [*prompt, {"role": "assistant", "content": response}], tokenize=False
                )
            except TemplateError as e:  # SecurityError: the sandbox stopped it
                msg = " ".join(str(e).split())[:300]
                raise ConfigError(
                    f"embedder {self.cfg.model}'s chat template failed on this "
                    f"input ({type(e).__name__}: {msg}); use embed.text_format="
                    "plain, or a model whose template you trust"
                ) from None
            try:
                prefix = tok.apply_chat_template(
                    list(prompt), tokenize=False, add_generation_prompt=True
                )
            except Exception:  # noqa: BLE001 - templates may reject e.g. an empty prompt
                prefix = None
        else:
            full, prefix = render_plain(prompt, response), render_plain(prompt, None)
        if prefix is not None and full.startswith(prefix):
            return full, len(prefix)
        # Templates that rewrite earlier turns break the prefix property; the reply is then the
        # last occurrence of the response text.
        at = full.rfind(response) if response else -1
        if at < 0:
            at = full.rfind(response.strip()) if response.strip() else -1
        if at < 0:
            log.warning("cannot locate the response in the rendered text; truncation may cut it")
            at = len(prefix) if prefix is not None and len(prefix) <= len(full) else 0
        return full, at

    def tokenize(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]
    ) -> list[list[int]]:
        """Token ids per (prompt, response), truncated to max_length by `truncate_ids`."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        rendered = [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]
        texts = [t for t, _ in rendered]
        # Chat templates already contain BOS etc.; plain text needs the tokenizer's own specials.
        add_special = self.text_format == "plain"
        tok = self.tokenizer
        fast = bool(getattr(tok, "is_fast", False))
        enc = tok(texts, add_special_tokens=add_special, return_offsets_mapping=fast, verbose=False)
        out = []
        for i, (text, boundary) in enumerate(rendered):
            ids = list(enc["input_ids"][i])
            n_head = 0
            while n_head < len(ids) and ids[n_head] in self._special:
                n_head += 1
            n_tail = 0
            while n_tail < len(ids) - n_head and ids[len(ids) - 1 - n_tail] in self._special:
                n_tail += 1
            if fast:
                # first token ending after the boundary; a token straddling it counts as response
                ends = [e for _, e in enc["offset_mapping"][i]]
                r = next((j for j, e in enumerate(ends) if e > boundary), len(ids) - n_tail)
            else:
                pre = tok(text[:boundary], add_special_tokens=add_special, verbose=False)[
                    "input_ids"
                ]
                r = 0
                while r < min(len(pre), len(ids)) and pre[r] == ids[r]:
                    r += 1
            n_head = min(n_head, r)
            out.append(truncate_ids(ids, r, self.max_length, n_head, n_tail))
        return out

    # --- token ids -> vectors ------------------------------------------------------------------
    def _forward(self, batch: list[list[int]]) -> torch.Tensor:
        """(B, d) pooled float32 for one batch of id lists."""
        width = max(len(x) for x in batch)
        pads = [[self.pad_id] * (width - len(x)) for x in batch]
        left = self.padding_side == "left"
        rows = [p + x if left else x + p for x, p in zip(batch, pads, strict=True)]
        ones = [
            [0] * len(p) + [1] * len(x) if left else [1] * len(x) + [0] * len(p)
            for x, p in zip(batch, pads, strict=True)
        ]
        cuda = self.device.type == "cuda"
        ids = torch.tensor(rows, dtype=torch.long, pin_memory=cuda).to(
            self.device, non_blocking=True
        )
        mask = torch.tensor(ones, dtype=torch.long, pin_memory=cuda).to(
            self.device, non_blocking=True
        )
        kw: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self._takes_positions:
            # left padding would otherwise shift every real token's position
            kw["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        if self._takes_cache:
            kw["use_cache"] = False
        if self.layers != [-1]:
            kw["output_hidden_states"] = True
        out = self.model(**kw)
        if self.layers == [-1]:
            h = out.last_hidden_state[:, None]  # (B, 1, T, d)
        else:
            h = torch.stack([out.hidden_states[i] for i in self.layers], dim=1)  # (B, L, T, d)
        if self.pooling == "last":
            # last real token from the mask: right/left padding and pad == eos all work
            last = width - 1 - mask.flip(-1).argmax(-1)  # (B,)
            pooled = h[torch.arange(len(batch), device=h.device), :, last]  # (B, L, d)
        else:
            m = mask[:, None, :, None].to(h.dtype)  # (B, 1, T, 1)
            pooled = (h * m).sum(2) / m.sum(2)  # (B, L, d)
        pooled = pooled.float()
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def embed_ids(self, ids: list[list[int]], bar: Any = None) -> np.ndarray:
        """(N, L, d) float32 for pre-tokenized inputs, in input order (L = the stored layers)."""
        out = np.empty((len(ids), len(self.layers), self.dim), dtype=np.float32)
        lengths = [len(x) for x in ids]
        batches = make_batches(lengths, self.cfg.batch_size, self.cfg.max_batch_tokens)
        t0, real, padded = time.perf_counter(), sum(lengths), 0
        pooled: list[torch.Tensor] = []
        with torch_threads(self.cfg.threads), torch.inference_mode():
            for b in batches:
                # rows stay on the device until the end: no host sync per batch, so a GPU
                # runs batch k while Python prepares batch k+1
                pooled.append(self._forward([ids[i] for i in b]))
                padded += len(b) * max(lengths[i] for i in b)
                if bar is not None:
                    bar.update(len(b))
            if batches:
                out[[i for b in batches for i in b]] = torch.cat(pooled).cpu().numpy()
        secs = time.perf_counter() - t0
        self.last_stats = {
            "texts": len(ids),
            "seconds": secs,
            "tokens": real,
            "padded_tokens": padded,
            "texts_per_s": len(ids) / secs if secs else 0.0,
            "tokens_per_s": real / secs if secs else 0.0,
            "padding_waste": 1 - real / padded if padded else 0.0,
        }
        log.info(
            "embedded %d texts in %.1fs: %.1f texts/s, %.0f tokens/s, %.1f%% padding",
            len(ids),
            secs,
            self.last_stats["texts_per_s"],
            self.last_stats["tokens_per_s"],
            100 * self.last_stats["padding_waste"],
        )
        return out

    def embed(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str], bar: Any = None
    ) -> np.ndarray:
        """(N, d) float32 at embed.layer: row i embeds (prompts[i], responses[i])."""
        return pick_layer(self.embed_layers(prompts, responses, bar), self.layers, self.cfg.layer)

    def embed_layers(
        self, prompts: Sequence[Sequence[Message]], responses: Sequence[str], bar: Any = None
    ) -> np.ndarray:
        """(N, L, d) float32 at every stored layer (one forward pass): what the cache holds."""
        ids = self.tokenize(prompts, responses)
        own = bar is None and self.cfg.show_progress
        if own:
            bar = tqdm(total=len(ids), unit="text", desc="embed")
        try:
            return self.embed_ids(ids, bar)
        finally:
            if own:
                bar.close()

    def identity(self, memo_path: Path | None = None) -> dict:
        if self._identity is None:
            ident = resolve_identity(self.cfg, memo_path)
            self._identity = (
                ident
                if ident is not None
                else {
                    "hub_id": self.path,
                    "revision": self.cfg.revision,
                    "gguf_file": self.gguf_file,
                }
            )
        return self._identity

    def metadata(self) -> dict:
        """Everything that decides the vectors, plus where the model came from."""
        ident = self.identity()
        return {
            "model": self.cfg.model,
            "path": self.path,
            "gguf_file": self.gguf_file,
            "revision": self.cfg.revision,
            "model_identity": ident,
            "model_type": getattr(self.model.config, "model_type", None),
            "is_decoder": self.is_decoder,
            "pooling": self.pooling,
            "layer": self.cfg.layer,
            "layers": self.layers,
            "n_layers": self.n_layers,
            "max_length": self.max_length,
            "text_format": self.text_format,
            "dtype": self.dtype,
            "normalize": self.normalize,
            "dim": self.dim,
            "device": str(self.device),
            "latentrm_version": __version__,
        }
