"""Texts -> (N, d) embeddings from any Hugging Face model, cached on disk in resumable chunks.

Modules: :mod:`~latentrm.embed.embedder` (the model: rendering, pooling),
:mod:`~latentrm.embed.batching` (the token budget: left-cut truncation, batches),
:mod:`~latentrm.embed.spec` (dtype, device and stored layers, resolved once),
:mod:`~latentrm.embed.models` (offline aliases, loading, which weights a model is),
:mod:`~latentrm.embed.store` (the on-disk format: keys, chunks, planning, reading, writing),
:mod:`~latentrm.embed.views` (one embedded dataset: write, load back, verify),
:mod:`~latentrm.embed.local` (embed through the cache in this process),
:mod:`~latentrm.embed.scale` (shards for torchrun/accelerate) and
:mod:`~latentrm.embed.ray_engine` (a Ray actor pool).
"""

from latentrm.embed.embedder import Embedder
from latentrm.embed.local import embed_candidates, embed_pairs
from latentrm.embed.models import resolve_model
from latentrm.embed.views import PairEmbeddings, load_pair_cache, verify_cache

__all__ = [
    "Embedder",
    "PairEmbeddings",
    "embed_candidates",
    "embed_pairs",
    "load_pair_cache",
    "resolve_model",
    "verify_cache",
]
