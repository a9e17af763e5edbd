"""Preference data: files, folders or Hub datasets -> PreferencePairs / candidate sets; splits.

Modules: :mod:`~latentrm.data.types` (what data is), :mod:`~latentrm.data.readers` (the one
reader for every command: files, folders, Hub ids), :mod:`~latentrm.data.formats` (record
formats), :mod:`~latentrm.data.load` (records -> pairs), :mod:`~latentrm.data.splits`,
:mod:`~latentrm.data.messages` (prompts/completions as served), :mod:`~latentrm.data.writers`.
"""

from latentrm.data.formats import parse_hh, render_plain
from latentrm.data.load import binarize_candidates, load_candidates, load_pairs
from latentrm.data.splits import carve_validation, split_indices
from latentrm.data.types import (
    CandidateSet,
    Message,
    PreferenceDataset,
    PreferencePair,
    Prompt,
)

__all__ = [
    "CandidateSet",
    "Message",
    "PreferenceDataset",
    "PreferencePair",
    "Prompt",
    "binarize_candidates",
    "carve_validation",
    "load_candidates",
    "load_pairs",
    "parse_hh",
    "render_plain",
    "split_indices",
]
