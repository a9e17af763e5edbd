"""Synthetic data with a known answer for tests, benchmarks and demos (never the pipeline)."""

from __future__ import annotations

import math

import numpy as np


# --- toy data -------------------------------------------------------------------------------------
def toy_pairs(
    n: int, d: int, seed: int, rank: int = 8, signal: float = 1.0, noise: float = 0.5,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic preference pairs with a planted preference direction (tests, benchmarks, demos).

    Each pair shares a prompt "content" vector ``c @ U`` (rank `rank`, per-dimension variance ~1).
    Each response gets a quality ``q ~ N(0, 1)`` and the embedding
    ``content + signal * q * w + noise * eps`` with a unit direction w; chosen is the response with
    the higher quality. The ideal reward ``e @ w`` ranks a pair correctly with probability
    ``1/2 + arctan(signal / noise) / pi`` (0.852 with the defaults).

    Returns (chosen (n, d), rejected (n, d), w (d,)), float32; one seed fixes U, w and the pairs.
    Rows are generated `chunk` at a time in float32, so peak memory is the two outputs.
    """
    rng = np.random.default_rng(seed)
    u = (rng.standard_normal((rank, d)) / math.sqrt(rank)).astype(np.float32)  # (rank, d)
    w = rng.standard_normal(d)
    w = (w / np.linalg.norm(w)).astype(np.float32)
    chosen, rejected = np.empty((n, d), np.float32), np.empty((n, d), np.float32)
    for s0 in range(0, n, chunk):
        m = min(n, s0 + chunk) - s0
        content = rng.standard_normal((m, rank), np.float32) @ u  # (m, d)
        q = np.sort(rng.standard_normal((m, 2), np.float32), axis=1)  # (m, 2): low, high
        for out, quality in ((chosen, q[:, 1:]), (rejected, q[:, :1])):
            eps = rng.standard_normal((m, d), np.float32)
            out[s0 : s0 + m] = content + signal * quality * w + noise * eps
    return chosen, rejected, w
