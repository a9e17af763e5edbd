"""The reward head on embeddings: Bradley-Terry MLP (or an ensemble), its fitter, the training loop.

Modules: :mod:`~latentrm.head.reward` (RewardHead, EnsembleHead, the loss, RewardHeadFitter),
:mod:`~latentrm.head.train` (the one training loop, shared with the VAE; standardisation) and
:mod:`~latentrm.head.estimator` (the get/set_params contract of every fitted stage).
"""
