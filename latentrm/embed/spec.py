"""What an EmbedConfig resolves to on this machine before any weights load: the compute dtype
(`auto`: bfloat16 where the hardware computes it natively, float32 elsewhere), the device and the
hidden states one forward pass stores. One resolution (:func:`resolve_spec`) for the embedder, the
store's key and the check that a loaded embedder serves a request, so the three cannot disagree.
The config itself keeps `auto`: a model folder saved here must resolve again on the machine that
loads it (bf16 is ~50x slower than float32 on CPUs without bf16 units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentrm.config import EmbedConfig
from latentrm.errors import ConfigError
from latentrm.runtime import resolve_device, resolve_dtype


@dataclass(frozen=True)
class EmbedSpec:
    dtype: str  # the compute dtype: float32 | bfloat16 | float16
    layers: tuple[int, ...]  # the hidden states stored, in the cache's order
    device_name: str  # embed.device as asked (auto | cpu | cuda | cuda:N | mps)

    @property
    def device(self) -> torch.device:
        """The device to compute on (resolved when asked: reading a cache filled on a GPU
        needs no GPU here)."""
        return resolve_device(self.device_name, "embed.device")


def resolve_spec(cfg: EmbedConfig) -> EmbedSpec:
    """The dtype and stored layers `cfg` asks for on this machine, and its device."""
    return EmbedSpec(resolve_dtype(cfg.dtype, cfg.device), tuple(stored_layers(cfg)), cfg.device)


def stored_layers(cfg: EmbedConfig) -> list[int]:
    """The hidden-state indices an embedder computes and the cache stores, in one forward pass.

    embed.layers plus embed.layer (unless it is "mean", the mean over embed.layers), sorted with
    the last layer (-1) last; e.g. layer=-1, layers=[15, 20] -> [15, 20, -1].
    """
    extra = [cfg.layer] if isinstance(cfg.layer, int) else []
    layers = sorted(set(cfg.layers) | set(extra), key=lambda v: (v < 0, v))
    if not layers:
        raise ConfigError("embed.layer='mean' needs embed.layers, the hidden states to average")
    return layers
