"""A latentrm reward model as a transformers sequence-classification model (custom code).

This file is copied into every transformers export of a latentrm reward model and depends on torch
and transformers only (>= 4.46; tested with 4.57 and 5.x), so
``AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`` loads the
export without latentrm installed. It computes what latentrm computes:

    text --tokenizer--> ids --canonicalise--> base model --pool--> e (B, d)
         --standardise (e - mean) / std--> MLP d -> hidden... -> 1 (mean of K for an ensemble)
         --> logits (B, 1)

canonicalise (per row, on the real tokens of the attention mask):
  * the tokenizer's automatic framing ([CLS] ... [SEP], a BOS) becomes what latentrm's own
    tokenisation has, whether the caller tokenised with add_special_tokens=True (RewardBench,
    pipelines) or False (TRL, OpenRLHF); duplicates (chat template BOS + tokenizer BOS) collapse;
  * rows longer than `truncate_length` (latentrm's max_length) lose prompt tokens from the left,
    keeping the leading/trailing special tokens and the response (found after the last
    `response_marker_ids`), as latentrm does;
  * rows are re-padded on the right and position ids come from the mask.
Pooling: the last real token ("last") or the masked mean ("mean") of each hidden state in
`layers` (the ones latentrm's embedder computes in one pass: the last hidden state alone when
layers == [-1]), L2-normalised when `normalize` (sentence-transformers models such as
all-MiniLM-L6-v2), then the one at `layer`, or their mean when `layer` is "mean".
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class LatentRMConfig(PretrainedConfig):
    model_type = "latentrm"

    def __init__(
        self,
        base_config: dict | None = None,
        pooling: str = "last",
        layer: int | str = -1,
        layers: list[int] | None = None,
        normalize: bool = False,
        head_config: dict | None = None,
        truncate_length: int = 512,
        prefix_ids: list[int] | None = None,
        n_prefix: int = 0,
        suffix_ids: list[int] | None = None,
        n_suffix: int = 0,
        special_token_ids: list[int] | None = None,
        response_marker_ids: list[int] | None = None,
        canonicalize_inputs: bool = True,
        text_format: str = "plain",
        latentrm: dict | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("num_labels", 1)
        # The base class first: transformers 4.x sets generation defaults (max_length=20, ...) in
        # PretrainedConfig.__init__, which would overwrite same-named attributes set before it.
        super().__init__(**kwargs)
        if isinstance(base_config, PretrainedConfig):
            base_config = base_config.to_dict()
        self.base_config = dict(base_config or {})
        self.pooling = pooling
        self.layer = layer if layer == "mean" else int(layer)
        self.layers = [int(x) for x in (layers if layers is not None else [self.layer])]
        self.normalize = bool(normalize)
        self.head_config = dict(head_config or {"d": 1, "hidden": [], "dropout": 0.0})
        self.truncate_length = int(truncate_length)  # latentrm's max_length (tokens per text)
        self.prefix_ids = list(prefix_ids or [])  # tokens the tokenizer adds in front (CLS, BOS)
        self.n_prefix = int(n_prefix)  # how many copies latentrm's tokenisation starts with
        self.suffix_ids = list(suffix_ids or [])  # tokens the tokenizer adds at the end (SEP)
        self.n_suffix = int(n_suffix)
        self.special_token_ids = list(special_token_ids or [])
        self.response_marker_ids = list(response_marker_ids or [])
        self.canonicalize_inputs = bool(canonicalize_inputs)
        self.text_format = text_format  # documentation: how texts must be rendered
        self.latentrm = dict(latentrm or {})  # provenance: embedder identity, head, version
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {self.pooling!r}")
        if self.layer != "mean" and self.layer not in self.layers:
            raise ValueError(f"layer {self.layer} is not among layers {self.layers}")
        # Tools that size things from the config (DeepSpeed auto values) read hidden_size.
        if "hidden_size" in self.base_config:
            self.hidden_size = self.base_config["hidden_size"]

    def build_base_config(self) -> PretrainedConfig:
        d = dict(self.base_config)
        # The dtype is the top-level config's / from_pretrained's: a dtype here would pin the base.
        for k in ("dtype", "torch_dtype", "auto_map", "architectures"):
            d.pop(k, None)
        return AutoConfig.for_model(d.pop("model_type"), **d)


class LatentRMHead(nn.Module):
    """latentrm's RewardHead: standardise with the mean/std buffers, then MLP d -> hidden... -> 1.

    The module layout (``mlp.0``, ``mlp.3``, ..., ``mean``, ``std``) is that of latentrm's
    RewardHead, so its state dict loads unchanged under the ``head.`` prefix.
    """

    def __init__(self, d: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))

    def forward(self, e: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B,)
        return self.mlp((e - self.mean) / self.std).squeeze(-1)


class LatentRMEnsemble(nn.Module):
    """latentrm's EnsembleHead: the mean of K heads (``members.k.*`` in the state dict)."""

    def __init__(self, members: list[dict]) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            LatentRMHead(int(m["d"]), list(m["hidden"]), float(m["dropout"])) for m in members
        )

    def forward(self, e: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B,)
        return torch.stack([m(e) for m in self.members]).mean(0)


def build_head(spec: dict) -> nn.Module:
    if "members" in spec:
        return LatentRMEnsemble(list(spec["members"]))
    return LatentRMHead(int(spec["d"]), list(spec["hidden"]), float(spec["dropout"]))


def _strip_repeats(ids: list[int], frame: list[int], front: bool) -> list[int]:
    k = len(frame)
    if not k:
        return ids
    if front:
        while len(ids) >= k and ids[:k] == frame:
            ids = ids[k:]
    else:
        while len(ids) >= k and ids[-k:] == frame:
            ids = ids[:-k]
    return ids


def truncate_ids(
    ids: list[int], resp_start: int, max_length: int, n_head: int, n_tail: int
) -> list[int]:
    """latentrm.embed.batching.truncate_ids: drop prompt tokens from the left, keep the frame."""
    n = len(ids)
    if n <= max_length:
        return list(ids)
    if n_head + n_tail >= max_length:
        n_head = n_tail = 0
    start = max(resp_start, n_head)
    head, tail = list(ids[:n_head]), list(ids[n - n_tail :]) if n_tail else []
    prompt, resp = list(ids[n_head:start]), list(ids[start : n - n_tail])
    room = max_length - n_head - n_tail
    if len(resp) >= room:
        return head + resp[:room] + tail
    keep = room - len(resp)
    return head + prompt[len(prompt) - keep :] + resp + tail


def canonical_ids(config: LatentRMConfig, ids: list[int]) -> list[int]:
    """One row of real token ids -> what latentrm's tokenisation gives for the same text."""
    c = config
    ids = _strip_repeats(list(ids), c.prefix_ids, front=True)
    ids = _strip_repeats(ids, c.suffix_ids, front=False)
    ids = c.prefix_ids * c.n_prefix + ids + c.suffix_ids * c.n_suffix
    if len(ids) <= c.truncate_length:
        return ids
    special = set(c.special_token_ids)
    n_head = 0
    while n_head < len(ids) and ids[n_head] in special:
        n_head += 1
    n_tail = 0
    while n_tail < len(ids) - n_head and ids[len(ids) - 1 - n_tail] in special:
        n_tail += 1
    resp_start = len(ids) - n_tail  # no marker: everything counts as prompt (cut from the left)
    m = c.response_marker_ids
    if m:
        for j in range(len(ids) - len(m), -1, -1):
            if ids[j : j + len(m)] == m:
                resp_start = j + len(m)
                break
    n_head = min(n_head, resp_start)
    return truncate_ids(ids, resp_start, c.truncate_length, n_head, n_tail)


class LatentRMForSequenceClassification(PreTrainedModel):
    config_class = LatentRMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules: list[str] = []
    _keep_in_fp32_modules = ["head"]
    _keep_in_fp32_modules_strict = ["head"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flash_attn_2 = True
    supports_gradient_checkpointing = True

    def __init__(self, config: LatentRMConfig) -> None:
        super().__init__(config)
        self.num_labels = 1
        base_cfg = config.build_base_config()
        impl = getattr(config, "_attn_implementation", None)
        if impl:
            try:
                base_cfg._attn_implementation = impl
            except Exception:  # noqa: BLE001 - older configs: keep the default
                pass
        self.model = AutoModel.from_config(base_cfg)
        self.head = build_head(config.head_config)
        params = inspect.signature(self.model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_cache = "use_cache" in params
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Every weight comes from the checkpoint; the base model initialises its own modules.
        if isinstance(module, LatentRMHead):
            module.mean.zero_()
            module.std.fill_(1.0)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def _head_fp32(self) -> nn.Module:
        # transformers < 4.54 lacks _keep_in_fp32_modules_strict: a bf16 load casts the head too.
        # It is tiny; scoring in float32 keeps (e - mean) / std exact for a small std.
        if next(self.head.buffers()).dtype != torch.float32:
            self.head.float()
        return self.head

    def score(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Per-token rewards (B, T, 1) from last-layer hidden states (B, T, d).

        TRL's experimental PPO/online trainers (trl.experimental.utils.get_reward) run
        ``getattr(model, model.base_model_prefix)`` and then ``model.score(last_hidden_state)``,
        pooling the token before the first pad themselves. That equals latentrm only for
        last-token pooling of the last layer without normalisation.
        """
        c = self.config
        if c.pooling != "last" or c.layers != [-1] or c.normalize:
            raise NotImplementedError(
                f"per-token scores need last-token pooling of the last layer alone without "
                f"normalisation (this model: pooling={c.pooling}, layers={c.layers}, "
                f"normalize={c.normalize}); call the model instead"
            )
        return self._head_fp32()(hidden_states.float()).unsqueeze(-1)

    def _canonicalise(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = attention_mask.bool()
        rows = [
            canonical_ids(self.config, input_ids[i][mask[i]].tolist())
            for i in range(input_ids.shape[0])
        ]
        width = max(1, max(len(r) for r in rows))
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=input_ids.dtype)
        am = torch.zeros((len(rows), width), dtype=attention_mask.dtype)
        for i, r in enumerate(rows):
            if r:
                ids[i, : len(r)] = torch.tensor(r, dtype=input_ids.dtype)
                am[i, : len(r)] = 1
        return ids.to(input_ids.device), am.to(attention_mask.device)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple:
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids (or inputs_embeds)")
        ref = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
        if input_ids is not None and self.config.canonicalize_inputs:
            input_ids, attention_mask = self._canonicalise(input_ids, attention_mask)
        kw: dict[str, Any] = {"attention_mask": attention_mask}
        if input_ids is not None:
            kw["input_ids"] = input_ids
        else:
            kw["inputs_embeds"] = inputs_embeds
        if self._takes_positions:
            kw["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if self._takes_cache:
            kw["use_cache"] = False
        layers = self.config.layers
        if layers != [-1]:
            kw["output_hidden_states"] = True
        out = self.model(**kw)
        hs = [out.last_hidden_state] if layers == [-1] else [out.hidden_states[i] for i in layers]
        h = torch.stack(hs, dim=1)  # (B, L, T, d)
        mask = attention_mask.to(h.device)
        if self.config.pooling == "last":
            last = mask.shape[1] - 1 - mask.long().flip(-1).argmax(-1)  # last real token, (B,)
            pooled = h[torch.arange(h.shape[0], device=h.device), :, last]  # (B, L, d)
        else:
            m = mask[:, None, :, None].to(h.dtype)  # (B, 1, T, 1)
            pooled = (h * m).sum(2) / m.sum(2).clamp(min=1)  # (B, L, d)
        pooled = pooled.float()
        if self.config.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        layer = self.config.layer
        e = pooled.mean(1) if layer == "mean" else pooled[:, layers.index(layer)]  # (B, d)
        logits = self._head_fp32()(e).unsqueeze(-1)  # (B, 1) float32
        loss = None
        if labels is not None:
            loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return SequenceClassifierOutput(loss=loss, logits=logits)


LatentRMConfig.register_for_auto_class()
LatentRMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
