"""What preference data is once read: prompts as chat messages, pairs, candidate sets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": str}


Prompt = tuple[Message, ...]


@dataclass(frozen=True)
class PreferencePair:
    id: str
    prompt: Prompt  # conversation before the response; last message is "user"
    chosen: str  # the final assistant reply preferred by the label
    rejected: str
    # TRL's `margin` column (chosen should win by this much), None when the data has no margins
    margin: float | None = None


@dataclass(frozen=True)
class CandidateSet:
    """One prompt with N scored responses (alpaca-eval format); gold[i] scores responses[i]."""

    id: str
    prompt: Prompt
    responses: tuple[str, ...]
    gold: tuple[float, ...]


class PreferenceDataset(Sequence[PreferencePair]):
    """An ordered list of PreferencePairs with where they came from and what loading dropped/cut."""

    def __init__(
        self, pairs: Iterable[PreferencePair], source: str = "", stats: dict | None = None
    ) -> None:
        self.pairs: list[PreferencePair] = list(pairs)
        self.source = source
        self.stats: dict = dict(stats or {})

    def __len__(self) -> int:
        return len(self.pairs)

    @overload
    def __getitem__(self, i: int) -> PreferencePair: ...
    @overload
    def __getitem__(self, i: slice) -> PreferenceDataset: ...
    def __getitem__(self, i: int | slice) -> PreferencePair | PreferenceDataset:
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        return self.pairs[i]

    def __repr__(self) -> str:
        return f"PreferenceDataset({len(self)} pairs from {self.source!r})"

    def subset(self, idx: Iterable[int] | np.ndarray) -> PreferenceDataset:
        """Pairs at positions `idx`, in that order (same source; stats keep the loading counts)."""
        rows = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx, dtype=np.int64)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"subset index out of range for {len(self)} pairs")
        return PreferenceDataset(
            [self.pairs[i] for i in rows.ravel().tolist()],
            self.source,
            {**self.stats, "subset_of": len(self)},
        )

    def content_hash(self) -> str:
        """sha256 over ids, prompts, chosen and rejected, in order; stable across runs/machines."""
        h = hashlib.sha256()
        for p in self.pairs:
            prompt = [[m["role"], m["content"]] for m in p.prompt]
            rec = [p.id, prompt, p.chosen, p.rejected]
            h.update(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    @property
    def margins(self) -> np.ndarray | None:
        """(P,) float32 margins (TRL's column; a pair without one: 0), or None when no pair has
        one (the plain Bradley-Terry loss)."""
        if all(p.margin is None for p in self.pairs):
            return None
        return np.array([p.margin or 0.0 for p in self.pairs], np.float32)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]

    @property
    def prompts(self) -> list[Prompt]:
        return [p.prompt for p in self.pairs]

    @property
    def chosen(self) -> list[str]:
        return [p.chosen for p in self.pairs]

    @property
    def rejected(self) -> list[str]:
        return [p.rejected for p in self.pairs]
