"""A reward model in the Hugging Face ecosystem: its folder, transformers exports, model card.

:mod:`~latentrm.hub.folder` reads and writes the latentrm files of a model folder (and checks the
embedder's identity), :mod:`~latentrm.hub.head` its head files (every check before anything is
allocated), :mod:`~latentrm.hub.export` writes a transformers sequence-classification model
(custom code, :mod:`~latentrm.hub.modeling_latentrm`, for any head; a native
``*ForSequenceClassification`` for a linear head), :mod:`~latentrm.hub.card` the model card.
``RewardModel.save`` / ``load`` / ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``
(:mod:`latentrm.model`) use them.
"""
