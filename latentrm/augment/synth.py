"""LENS synthesis: latent sampling, likelihood top-k, and pairing within each seed pair.

For every seed pair (c_i, r_i) and each side, LENS encodes the embedding to its posterior mean mu,
draws K latents ``z = mu + eta`` with ``eta ~ N(0, sigma2 I)``, keeps the k most likely ones and
decodes them. The (1 + k) chosen-side embeddings (original + kept) and (1 + k) rejected-side ones
form a grid of ``(1+k)^2 - 1`` new pairs (the (original, original) cell is the seed pair itself);
``ratio`` of them are drawn without replacement. Pairs never mix two seeds, so each synthetic pair
inherits its preference label from exactly one human-labelled pair.

All randomness of :meth:`LensAugmenter.augment` comes from one ``torch.Generator(seed)`` and is
drawn up front in latent space (small: N*K*z floats), so the chunking that bounds memory while
decoding does not change which samples are drawn.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import Tensor

from latentrm.augment.vae import DivergenceVAE, VAEFitter
from latentrm.config import SynthConfig, VAEConfig, check_ratio
from latentrm.config.bounds import CHOICES, default_top_k
from latentrm.errors import ConfigError, LatentrmError
from latentrm.head.estimator import Estimator
from latentrm.pairs import AugmentedPairs, check_pairs

log = logging.getLogger(__name__)

# The choices, from the config's one table (SynthConfig checks them when it is built).
LIKELIHOODS = CHOICES["synth.likelihood"]
PAIRINGS = CHOICES["synth.pairing"]
NOISE_ON = CHOICES["synth.noise_on"]
DECODES = CHOICES["synth.decode"]


def sample_grid_pairs(
    n: int, k: int, ratio: int, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `ratio` distinct cells per seed from the (1+k) x (1+k) grid minus cell (0, 0).

    Returns (a, b), each (n, ratio) int64: a = chosen-side slot, b = rejected-side slot, where slot
    0 is the original embedding and slot j >= 1 the j-th kept synthetic one. Vectorised: one row of
    random keys per seed, argsort, first `ratio` cells (= uniform sampling without replacement).
    """
    cells = (1 + k) ** 2 - 1
    if ratio > cells:
        raise ConfigError(
            f"ratio {ratio} needs (1+top_k)^2 - 1 >= ratio, but top_k={k} gives only {cells} pairs"
        )
    keys = torch.rand(n, cells, generator=generator)  # (n, cells)
    g = keys.argsort(dim=1)[:, :ratio].numpy().astype(np.int64) + 1  # skip cell 0 = (orig, orig)
    return g // (1 + k), g % (1 + k)


class LensAugmenter(Estimator):
    """LENS: divergence-VAE latent sampling + likelihood top-k + within-seed pairing.

    Likelihood used to rank the K candidates of a seed embedding e with posterior (mu, logvar):

    - ``prior``: ``log N(z; 0, I) = -0.5 ||z||^2 + c`` (prefers samples in the dense region of the
      latent space, which the decoder saw most in training);
    - ``posterior``: ``log q(z | e) = -0.5 sum_j ((z_j - mu_j)^2 / exp(logvar_j) + logvar_j) + c``
      (prefers samples closest to the seed in the posterior's own metric);
    - ``recon``: ``-||decode(z) - e||^2`` in standardised space (prefers samples whose decoding
      stays closest to the seed embedding; decodes all K candidates, so costs K/k times more).

    Learned state: ``vae_`` (a fitted :class:`~latentrm.augment.vae.VAEFitter`).
    """

    method = "lens"

    # what fit() learns from; the other hyperparameters only change sampling
    fit_params = ("vae_cfg", "seed", "val_fraction")

    def __init__(
        self, vae_cfg: VAEConfig, synth_cfg: SynthConfig, seed: int, val_fraction: float
    ) -> None:
        self.vae_cfg, self.synth_cfg, self.seed = vae_cfg, synth_cfg, seed
        self.val_fraction = val_fraction

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> LensAugmenter:
        """Fit the divergence VAE on the seed pairs (`val_fraction` held out for early stopping)."""
        self.vae_ = VAEFitter(self.vae_cfg, self.seed, self.val_fraction).fit(chosen, rejected)
        return self

    def top_k(self, ratio: int) -> int:
        """Kept samples per seed embedding: synth.top_k, or the smallest k covering `ratio`."""
        k = self.synth_cfg.top_k if self.synth_cfg.top_k is not None else default_top_k(ratio)
        if k < 1 or k > self.synth_cfg.n_candidates:
            raise ConfigError(
                f"synth.top_k={k} must be in [1, synth.n_candidates={self.synth_cfg.n_candidates}]"
            )
        return k

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        """Originals + ``ratio * N`` synthetic pairs, deterministic given `seed`."""
        ratio, cfg = check_ratio(ratio), self.synth_cfg
        check_pairs(chosen, rejected, "augment")
        if not hasattr(self, "vae_"):
            raise LatentrmError("LensAugmenter.augment called before fit()")
        t0 = time.perf_counter()
        n, d = chosen.shape
        k, big_k = self.top_k(ratio), cfg.n_candidates
        out = AugmentedPairs.originals(
            chosen, rejected, method=self.method, ratio=ratio, pool_rows=2 * n + 2 * n * k
        )
        gen = torch.Generator().manual_seed(seed)
        z_dim = self.vae_.model_.latent_dim
        # Latent noise for both sides, drawn before any chunking: (n, K, z) each.
        noise = [
            torch.randn(n, big_k, z_dim, generator=gen) * math.sqrt(cfg.sigma2) for _ in range(2)
        ]
        if cfg.pairing == "within_seed":
            a, b = sample_grid_pairs(n, k, ratio, gen)  # (n, ratio) slots
        # noise_on=sample: each seed's latent centre is one posterior draw, (n, z) per side.
        eps = (
            [torch.randn(n, z_dim, generator=gen) for _ in range(2)]
            if cfg.noise_on == "sample"
            else [None, None]
        )
        for side, (emb, eta) in enumerate(zip((chosen, rejected), noise, strict=True)):
            base = 2 * n + side * n * k  # first pool row of this side's synthetic block
            for s0 in range(0, n, cfg.chunk_size):
                s1 = min(n, s0 + cfg.chunk_size)
                e_side = None if eps[side] is None else eps[side][s0:s1]
                kept = self._sample_chunk(emb[s0:s1], eta[s0:s1], k, e_side)  # (B, k, d)
                out.pool[base + s0 * k : base + s1 * k] = kept.reshape(-1, d)
        if cfg.pairing == "within_seed":
            seeds = np.arange(n, dtype=np.int64)[:, None]
            # Slot 0 is the original row; slot j >= 1 the (j-1)-th kept sample of that seed.
            c_rows = np.where(a == 0, seeds, 2 * n + seeds * k + a - 1)
            r_rows = np.where(b == 0, n + seeds, 2 * n + n * k + seeds * k + b - 1)
            out.add_pairs(c_rows, r_rows, np.broadcast_to(seeds, a.shape))
        else:
            out.add_pairs(*sample_cross_pairs(n, k, ratio, gen))
        out.stats.update(
            {
                "candidates_drawn": 2 * n * big_k,
                "kept": 2 * n * k,
                "top_k": k,
                "likelihood": cfg.likelihood,
                "sigma2": cfg.sigma2,
                "pairing": cfg.pairing,
                "noise_on": cfg.noise_on,
                "decode": cfg.decode,
                "seconds": time.perf_counter() - t0,
                "vae_epochs": self.vae_.history_["epochs_run"],
                "vae_seconds": self.vae_.history_["seconds"],
            }
        )
        log.info(
            "lens: %d seeds, %d candidates drawn, %d kept, %d pairs made in %.2fs",
            n,
            out.stats["candidates_drawn"],
            out.stats["kept"],
            out.stats["pairs_made"],
            out.stats["seconds"],
        )
        return out

    def _sample_chunk(self, emb: np.ndarray, eta: Tensor, k: int, eps: Tensor | None) -> np.ndarray:
        """Seed embeddings (B, d) + latent noise (B, K, z) -> kept samples (B, k, d), raw."""
        cfg = self.synth_cfg
        kept = top_k_samples(
            self.vae_.model_,
            self.vae_.standardize(emb),
            eta,
            k,
            cfg.likelihood,
            eps=eps,
            residual=cfg.decode == "residual",
        )
        return self.vae_.unstandardize(kept)


def sample_cross_pairs(
    n: int, k: int, ratio: int, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's cross pairing: ``ratio * n`` distinct (chosen-side, rejected-side) pairs.

    E_aug = {(e+, e-) | e+ in E+ u E+synth, e- in E- u E-synth}, any seed with any seed: the
    chosen side is one of the n originals or n*k kept chosen samples, the rejected side one of the
    n originals or n*k kept rejected samples (the LENS pool layout), drawn uniformly without
    replacement, never an original pair itself. Returns pool rows (chosen, rejected) and each
    pair's seed, taken to be its chosen side's (its label comes from the chosen/rejected split,
    not from one seed pair).
    """
    m = n * (1 + k)  # rows on each side
    cells = m * m
    want = ratio * n
    if want > cells - n:
        raise ConfigError(f"ratio {ratio} asks for {want} cross pairs but only {cells - n} exist")
    picked: list[int] = []
    seen: set[int] = set()
    while len(picked) < want:
        draw = torch.randint(0, cells, (2 * (want - len(picked)) + 16,), generator=generator)
        for cell in draw.tolist():
            a, b = divmod(cell, m)
            if cell in seen or (a < n and a == b):  # duplicates and the seed pairs themselves
                continue
            seen.add(cell)
            picked.append(cell)
            if len(picked) == want:
                break
    a, b = np.divmod(np.asarray(picked, np.int64), m)  # chosen-side, rejected-side index
    c_rows = np.where(a < n, a, 2 * n + (a - n))
    r_rows = np.where(b < n, n + b, 2 * n + n * k + (b - n))
    seeds = np.where(a < n, a, (a - n) // k)
    return c_rows, r_rows, seeds


@torch.no_grad()
def top_k_samples(
    model: DivergenceVAE,
    x: Tensor,
    eta: Tensor,
    k: int,
    likelihood: str,
    eps: Tensor | None = None,
    residual: bool = False,
) -> Tensor:
    """Sample ``z = c + eta`` around each row's latent centre c, keep the k most likely, decode.

    c = mu(x) (``eps=None``: noise on the posterior mean), or the posterior sample
    ``mu + exp(logvar/2) * eps`` (noise on a posterior sample). With `residual`, a kept sample
    decodes to ``x + g(z) - g(c)`` instead of ``g(z)``: the seed embedding moved by the decoder's
    change, so what the VAE cannot reconstruct is kept, not replaced by the decoder's mean.

    x: (B, d) standardised embeddings; eta: (B, K, z) latent noise; eps: (B, z) or None ->
    (B, k, d), most likely first. Likelihoods as in :class:`LensAugmenter` (prior / posterior /
    recon; posterior is measured from mu in either case).
    """
    mu, logvar = model.encode(x)  # (B, z)
    centre = mu if eps is None else mu + (0.5 * logvar).exp() * eps  # (B, z)
    z = centre[:, None, :] + eta  # (B, K, z)
    decoded = None
    if likelihood == "prior":
        score = -0.5 * z.pow(2).sum(-1)  # (B, K)
    elif likelihood == "posterior":
        var = logvar.exp()[:, None]  # (B, 1, z)
        score = -0.5 * ((z - mu[:, None]).pow(2) / var + logvar[:, None]).sum(-1)
    elif likelihood == "recon":
        decoded = model.decode(z)  # (B, K, d)
        score = -(decoded - x[:, None]).pow(2).sum(-1)  # (B, K)
    else:
        raise ConfigError(f"synth.likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    top = score.topk(k, dim=1).indices  # (B, k)
    if decoded is None:  # decode only the kept samples
        kept = model.decode(z.gather(1, top[..., None].expand(-1, -1, z.shape[-1])))  # (B, k, d)
    else:
        kept = decoded.gather(1, top[..., None].expand(-1, -1, decoded.shape[-1]))
    if residual:
        kept = x[:, None, :] + kept - model.decode(centre)[:, None, :]  # (B, k, d)
    return kept
