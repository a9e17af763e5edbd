"""The divergence VAE of LENS and its loss: recon + beta*KL - gamma*W2.

One VAE is shared by chosen and rejected embeddings. Besides the usual ELBO terms on each side, the
loss *rewards* a large 2-Wasserstein distance between the posteriors of a pair's chosen and rejected
embedding, so the latent space keeps the two apart and samples near a chosen embedding decode to
"chosen-like" embeddings.

Boundedness of ``-gamma * W2``: W2 grows linearly in the distance between the posterior means
(and in the difference of their standard deviations) while the KL terms grow quadratically, so for
beta > 0 the loss is bounded below: with ``mu+ = a``, ``mu- = -a`` the two KLs add ``beta*|a|^2``
and the divergence term subtracts ``2*gamma*|a|``, minimal at ``|a| = gamma/beta`` with value
``-gamma^2/beta``. With beta = 0 nothing anchors the means, so :class:`VAEFitter` refuses
``gamma > 0`` with ``beta <= 0``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentrm.config import VAEConfig
from latentrm.config.bounds import CHOICES, check_divergence  # noqa: F401  (re-exported)
from latentrm.data.splits import carve_validation
from latentrm.errors import ConfigError, TrainingError
from latentrm.head.estimator import Estimator
from latentrm.head.train import fit_loop, minibatches, seeded, standardization_stats
from latentrm.pairs import check_pairs

log = logging.getLogger(__name__)

LOGVAR_MIN = -10.0
LOGVAR_MAX = 10.0


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DivergenceVAE(nn.Module):
    """Gaussian-posterior VAE over (standardised) embeddings.

    Encoder: ``d -> hidden... -> (mu, logvar)`` with two linear heads of width `latent_dim`;
    decoder mirrors it: ``latent_dim -> reversed(hidden)... -> d``. ReLU between layers.
    ``logvar`` is clamped to ``[logvar_min, logvar_max]`` (default [-10, 10], i.e. std in
    [0.0067, 148]) so exp() in KL/W2 and in sampling can never overflow. Parameters at d=4096 with
    the defaults: 531,616 (see :func:`n_parameters`).
    """

    def __init__(
        self,
        d: int,
        hidden: Sequence[int] = (64,),
        latent_dim: int = 16,
        logvar_min: float = LOGVAR_MIN,
        logvar_max: float = LOGVAR_MAX,
    ) -> None:
        super().__init__()
        if d < 1 or latent_dim < 1 or any(h < 1 for h in hidden):
            raise ConfigError(
                f"DivergenceVAE: bad sizes d={d}, hidden={tuple(hidden)}, latent_dim={latent_dim}"
            )
        if not logvar_min < logvar_max:
            raise ConfigError(f"logvar_min ({logvar_min}) must be < logvar_max ({logvar_max})")
        self.d, self.hidden, self.latent_dim = d, tuple(hidden), latent_dim
        self.logvar_min, self.logvar_max = logvar_min, logvar_max
        widths = [d, *self.hidden]
        # The trunk ends in a ReLU so both heads read non-linear features.
        self.trunk = nn.Sequential(_mlp(widths), nn.ReLU()) if self.hidden else nn.Identity()
        self.mu_head = nn.Linear(widths[-1], latent_dim)
        self.logvar_head = nn.Linear(widths[-1], latent_dim)
        self.decoder = _mlp([latent_dim, *reversed(self.hidden), d])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, d) -> mu (B, z), logvar (B, z) clamped to [logvar_min, logvar_max]."""
        h = self.trunk(x)
        logvar = self.logvar_head(h).clamp(self.logvar_min, self.logvar_max)
        return self.mu_head(h), logvar

    def decode(self, z: Tensor) -> Tensor:
        """z (..., z) -> x (..., d)."""
        return self.decoder(z)

    def forward(self, x: Tensor, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, d) -> (recon (B, d), mu (B, z), logvar (B, z)).

        sample=True decodes a reparameterised z = mu + exp(logvar/2) * eps (eps from the global
        torch RNG); sample=False decodes z = mu.
        """
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.decode(z), mu, logvar


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def kl_std_normal(
    mu: Tensor, logvar: Tensor, logvar_min: float = LOGVAR_MIN, logvar_max: float = LOGVAR_MAX
) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row.

    ``KL = 0.5 * sum_j (mu_j^2 + exp(lv_j) - lv_j - 1)``, with ``lv = clamp(logvar, logvar_min,
    logvar_max)`` so the value and gradient stay finite for any input.

    Shapes: mu, logvar (B, z) -> (B,).
    """
    lv = logvar.clamp(logvar_min, logvar_max)
    return 0.5 * (mu.pow(2) + lv.exp() - lv - 1.0).sum(dim=-1)


class _SafeSqrt(torch.autograd.Function):
    """sqrt(x) for x >= 0 whose gradient is 0 (not inf) at x == 0."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = x.clamp_min(0).sqrt()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        # d sqrt(x)/dx = 1/(2 sqrt(x)); at x == 0 we pick the subgradient 0 of the norm.
        return torch.where(y > 0, grad / (2 * y).clamp_min(torch.finfo(y.dtype).tiny), 0.0)


def w2_diag_gaussians(
    mu1: Tensor,
    logvar1: Tensor,
    mu2: Tensor,
    logvar2: Tensor,
    logvar_min: float = LOGVAR_MIN,
    logvar_max: float = LOGVAR_MAX,
) -> Tensor:
    """2-Wasserstein distance between diagonal Gaussians N(mu1, diag s1^2) and N(mu2, diag s2^2).

    ``W2 = sqrt(||mu1 - mu2||^2 + ||s1 - s2||^2)`` with ``s = exp(clamp(logvar)/2)`` (logvar
    clamped to [logvar_min, logvar_max]). The square root is a safe sqrt: exact value (0 when the
    posteriors coincide, no epsilon bias) and gradient 0 there instead of inf, so identical
    posteriors give a finite (zero) gradient. Elsewhere the gradient w.r.t. mu1 is the unit vector
    (mu1 - mu2) / W2.

    Shapes: mu1, logvar1, mu2, logvar2 (B, z) -> (B,).
    """
    s1 = (0.5 * logvar1.clamp(logvar_min, logvar_max)).exp()
    s2 = (0.5 * logvar2.clamp(logvar_min, logvar_max)).exp()
    sq = (mu1 - mu2).pow(2).sum(dim=-1) + (s1 - s2).pow(2).sum(dim=-1)
    return _SafeSqrt.apply(sq)


# The choices, from the config's one table (VAEConfig checks them when it is built).
RECON_LOSSES = CHOICES["vae.recon"]
REDUCTIONS = CHOICES["vae.recon_reduction"]
DIVERGENCES = CHOICES["vae.divergence"]


def recon_loss(x_hat: Tensor, x: Tensor, kind: str, reduction: str = "sum") -> Tensor:
    """Reconstruction loss per row on standardised embeddings.

    - ``mse``: ``0.5 * sum_j (x_hat_j - x_j)^2``, the negative log-likelihood of a unit-variance
      Gaussian decoder up to a constant.
    - ``cosine``: ``d * (1 - cos(x_hat, x))``, which equals the mse term for two vectors of norm
      sqrt(d) (the typical norm of a standardised embedding), so beta and gamma keep their meaning.

    `reduction` over the d dimensions (the paper leaves it open): ``sum`` makes beta = 1 the
    standard ELBO, but at d = 576 the term is ~300 per embedding against gamma * W2 ~ 0.1, so the
    divergence term barely moves the fit; ``mean`` divides by d (``0.5 * mean_j (...)^2``), which
    puts reconstruction, KL and divergence on comparable scales (and pulls the posterior towards
    the prior d times harder).

    Shapes: x_hat, x (B, d) -> (B,).
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"vae.recon_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if kind == "mse":
        per_dim = 0.5 * (x_hat - x).pow(2).sum(dim=-1)
    elif kind == "cosine":
        per_dim = x.shape[-1] * (1.0 - F.cosine_similarity(x_hat, x, dim=-1, eps=1e-8))
    else:
        raise ConfigError(f"vae.recon must be one of {RECON_LOSSES}, got {kind!r}")
    return per_dim if reduction == "sum" else per_dim / x.shape[-1]


def divergence_vae_loss(
    model: DivergenceVAE,
    e_pos: Tensor,
    e_neg: Tensor,
    beta: float,
    gamma: float,
    recon: str = "mse",
    sample: bool = True,
    reduction: str = "sum",
    divergence: str = "w2",
) -> tuple[Tensor, dict[str, float]]:
    """LENS divergence-VAE loss on a batch of standardised pairs.

    ``L = mean_b [recon(e+_b) + beta*KL(q(z|e+_b)) + recon(e-_b) + beta*KL(q(z|e-_b))
    - gamma * D(q(z|e+_b), q(z|e-_b))]`` with D = W2 (``divergence="w2"``) or W2^2
    (``"w2_squared"``), recon as in :func:`recon_loss` (summed or averaged over dimensions by
    `reduction`) evaluated on one reparameterised sample z ~ q(z|e) (noise from the global torch
    RNG; seed it for determinism), or on z = mu when ``sample=False`` (a noise-free validation
    loss). :func:`latentrm.config.bounds.check_divergence` says when the loss is bounded below.

    Shapes: e_pos, e_neg (B, d) -> scalar loss, plus a dict of the batch-mean parts (floats):
    ``recon``, ``kl``, ``w2`` (W2 itself, whichever D is used), ``divergence`` (gamma * D, what the
    loss subtracts), ``loss``.
    """
    x = torch.cat([e_pos, e_neg])  # one pass for both sides: (2B, d)
    x_hat, mu, logvar = model(x, sample=sample)
    b = e_pos.shape[0]
    rec = recon_loss(x_hat, x, recon, reduction)  # (2B,)
    kl = kl_std_normal(mu, logvar, model.logvar_min, model.logvar_max)  # (2B,)
    lv_range = (model.logvar_min, model.logvar_max)
    w2 = w2_diag_gaussians(mu[:b], logvar[:b], mu[b:], logvar[b:], *lv_range)  # (B,)
    div = w2 if divergence == "w2" else w2.pow(2)  # (B,)
    per_pair = rec[:b] + rec[b:] + beta * (kl[:b] + kl[b:]) - gamma * div  # (B,)
    loss = per_pair.mean()
    parts = {
        "loss": loss.item(),
        "recon": (rec[:b] + rec[b:]).mean().item(),
        "kl": (kl[:b] + kl[b:]).mean().item(),
        "w2": w2.mean().item(),
        "divergence": gamma * div.mean().item(),
    }
    return loss, parts


class VAEFitter(Estimator):
    """Fit a :class:`DivergenceVAE` on seed pairs (estimator-style: ``fit()`` returns self).

    Embeddings are standardised with the mean/std of the pairs given to ``fit`` (``mean_``,
    ``std_``); :meth:`standardize` / :meth:`unstandardize` convert between raw and
    model space. Learned state: ``model_``, ``mean_``, ``std_``, ``history_`` (see
    :func:`latentrm.head.train.fit_loop`). Without validation pairs, ``fit`` holds out
    `val_fraction`
    of the pairs for early stopping (the run passes ``data.val_fraction``).
    """

    def __init__(self, cfg: VAEConfig, seed: int, val_fraction: float) -> None:
        self.cfg, self.seed, self.val_fraction = cfg, seed, val_fraction

    def fit(
        self,
        chosen: np.ndarray,
        rejected: np.ndarray,
        val: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> VAEFitter:
        """Train on (N, d) chosen/rejected pairs; `val` for early stopping (else carved)."""
        cfg = self.cfg
        check_pairs(chosen, rejected, "VAE fit")  # cfg's choices were checked when it was built
        self.mean_, self.std_ = standardization_stats(chosen, rejected)
        pos, neg = self.standardize(chosen), self.standardize(rejected)
        if val is None:
            # Its own random stream (stream=()): unrelated to the seed split's carve.
            tr, va = carve_validation(np.arange(len(pos)), self.val_fraction, self.seed, stream=())
            val_pos, val_neg = pos[va], neg[va]
            pos, neg = pos[tr], neg[tr]
        else:
            check_pairs(*val, "VAE validation")
            val_pos, val_neg = self.standardize(val[0]), self.standardize(val[1])
        for name, t in (
            ("train", pos),
            ("train", neg),
            ("validation", val_pos),
            ("validation", val_neg),
        ):
            if not torch.isfinite(t).all():
                raise TrainingError(f"VAE fit: the {name} embeddings contain NaN/Inf")

        with seeded(self.seed):
            model = DivergenceVAE(
                chosen.shape[1], cfg.hidden, cfg.latent_dim, cfg.logvar_min, cfg.logvar_max
            )

        loss_kw = {
            "beta": cfg.beta,
            "gamma": cfg.gamma,
            "recon": cfg.recon,
            "reduction": cfg.recon_reduction,
            "divergence": cfg.divergence,
        }

        def step(idx: Tensor) -> Tensor:
            return divergence_vae_loss(model, pos[idx], neg[idx], **loss_kw)[0]

        def val_fn() -> float:
            # Posterior means only: a deterministic validation loss makes early stopping stable.
            return divergence_vae_loss(model, val_pos, val_neg, sample=False, **loss_kw)[0].item()

        self.history_ = fit_loop(
            model,
            model.parameters(),
            step,
            lambda epoch, rng: minibatches(len(pos), cfg.batch_size, rng),
            val_fn if len(val_pos) else None,
            epochs=cfg.epochs,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            patience=cfg.patience,
            seed=self.seed,
            name="vae",
        )
        # Loss parts of the restored model on validation, to see what each term contributes.
        with torch.no_grad():
            self.history_["val_parts"] = (
                divergence_vae_loss(model, val_pos, val_neg, sample=False, **loss_kw)[1]
                if len(val_pos)
                else {}
            )
        self.model_ = model
        return self

    def standardize(self, x: np.ndarray) -> Tensor:
        """Raw (N, d) embeddings -> standardised float32 tensor."""
        out = np.array(x, dtype=np.float32)  # one copy, then in place: no extra (N, d) temporaries
        out -= self.mean_
        out /= self.std_
        return torch.from_numpy(out)

    def unstandardize(self, x: Tensor) -> np.ndarray:
        """Standardised (..., d) tensor -> raw float32 embeddings (undoes the seed-set scaling)."""
        return (x.detach().cpu().numpy() * self.std_ + self.mean_).astype(np.float32, copy=False)

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> tuple[Tensor, Tensor]:
        """Raw (N, d) embeddings -> posterior (mu, logvar), each (N, z)."""
        return self.model_.encode(self.standardize(x))
