"""The method: seed pair embeddings -> synthetic preference pairs (LENS and its baselines).

Modules: :mod:`~latentrm.augment.vae` (the divergence VAE and its loss),
:mod:`~latentrm.augment.synth` (LENS: latent sampling, likelihood top-k, pairing),
:mod:`~latentrm.augment.baselines` (direct perturbation, Gaussian sampling, cross-prompt pairs),
:mod:`~latentrm.augment.teacher` (label-safe synthesis: out-of-fold teacher heads) and
:mod:`~latentrm.augment.methods` (the registry: an augmenter by method name).
"""
