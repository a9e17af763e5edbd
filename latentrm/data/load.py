"""The loaders: a file, folder or Hub id -> PreferenceDataset or candidate sets.

Reading (files, Hub) is :mod:`latentrm.data.readers`; parsing one record of each format is
:mod:`latentrm.data.formats`; here records become pairs, with the counts of what was cut or
dropped in ``PreferenceDataset.stats``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from latentrm.config import DataConfig
from latentrm.data.formats import (
    PARSERS,
    RecordError,
    detect_format,
    iter_records,
    parse_candidates,
    record_id,
)
from latentrm.data.readers import Source, read_sources
from latentrm.data.types import CandidateSet, PreferenceDataset, PreferencePair
from latentrm.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _truncate(text: str, limit: int, stats: dict) -> str:
    if len(text) <= limit:
        return text
    stats["truncated_responses"] += 1
    return text[:limit]


def _check_limit(cfg: DataConfig) -> None:
    if cfg.max_response_chars < 1:
        raise ConfigError(f"data.max_response_chars must be >= 1, got {cfg.max_response_chars}")


def _detect(sources: list[Source], cfg: DataConfig) -> tuple[str, str]:
    """(shape, format) of the sources' records, which must agree across the files of a folder."""
    shape, fmt = detect_format(sources[0], cfg)
    for src in sources[1:]:
        other = detect_format(src, cfg)
        if other != (shape, fmt):
            raise DataError(
                f"mixed formats: this file holds {other[1]} records but "
                f"{sources[0].label} holds {fmt}",
                path=src.label,
                line=src.records[0][0],
            )
    return shape, fmt


def _pairs_from_sources(
    sources: list[Source], label: str, cfg: DataConfig, shape: str, fmt: str
) -> PreferenceDataset:
    parse = PARSERS[fmt]
    stats = {
        "format": fmt,
        "records": sum(len(src.records) for src in sources),
        "dropped_identical": 0,
        "truncated_responses": 0,
        "hh_split_at_divergence": 0,
        "empty_responses": 0,
    }
    if len(sources) > 1:
        stats["files"] = len(sources)
    pairs: list[PreferencePair] = []
    no_margin: list[tuple[str, int]] = []  # (file, line) of pairs without a margin value
    seen: dict[str, tuple[str, int]] = {}
    stats["exact_duplicates"] = 0
    for src in sources:
        identical: list[int] = []
        first_of: dict[tuple, int] = {}  # (prompt, chosen, rejected) -> its first line
        repeats: list[tuple[int, int]] = []
        for line, rec in iter_records(src, shape, fmt):
            try:
                prompt, chosen, rejected, diverged = parse(rec, cfg.allow_empty_response)
            except RecordError as e:
                raise DataError(e.msg, path=src.label, line=line, field=e.field) from None
            stats["hh_split_at_divergence"] += diverged
            stats["empty_responses"] += (chosen == "") + (rejected == "")
            chosen = _truncate(chosen, cfg.max_response_chars, stats)
            rejected = _truncate(rejected, cfg.max_response_chars, stats)
            if chosen == rejected:
                identical.append(line)
                continue
            pid = record_id(rec, src.stem, line)
            if pid in seen:
                where, at = seen[pid]
                also = f"line {at}" if where == src.label else f"{where}:{at}"
                raise DataError(
                    f"duplicate id {pid!r} (also on {also})",
                    path=src.label,
                    line=line,
                    field="id",
                )
            seen[pid] = (src.label, line)
            content = (tuple(tuple(m.items()) for m in prompt), chosen, rejected)
            if content in first_of:
                repeats.append((line, first_of[content]))
            else:
                first_of[content] = line
            margin = _margin(rec, src.label, line)
            if margin is None:
                no_margin.append((src.label, line))
            pairs.append(PreferencePair(pid, prompt, chosen, rejected, margin))
        if repeats:
            stats["exact_duplicates"] += len(repeats)
            shown = ", ".join(f"{a} (= {b})" for a, b in repeats[:10])
            log.warning(
                "%s: %d records repeat an earlier record exactly (lines %s%s); kept: "
                "remove them if they are not meant to weigh twice",
                src.label,
                len(repeats),
                shown,
                ", ..." if len(repeats) > 10 else "",
            )
        if identical:
            stats["dropped_identical"] += len(identical)
            shown = ", ".join(map(str, identical[:10])) + (", ..." if len(identical) > 10 else "")
            log.warning(
                "%s: dropped %d pairs whose chosen == rejected (lines %s)",
                src.label,
                len(identical),
                shown,
            )
    if not pairs:
        raise DataError("no usable pairs (every record was dropped)", path=label)
    stats["pairs"] = len(pairs)
    n_margin = len(pairs) - len(no_margin)
    if n_margin:
        stats["margin_records"] = n_margin  # TRL's column: every pair gets one
        if no_margin:
            shown = ", ".join(str(line) for _, line in no_margin[:5])
            log.warning(
                "%s: %d of %d records have no margin (lines %s%s): margin 0 for them",
                label,
                len(no_margin),
                len(pairs),
                shown,
                ", ..." if len(no_margin) > 5 else "",
            )
            pairs = [
                p if p.margin is not None else dataclasses.replace(p, margin=0.0) for p in pairs
            ]
    return PreferenceDataset(pairs, label, stats)


def _margin(rec: object, label: str, line: int) -> float | None:
    """A record's `margin` (TRL's column: chosen should win by this much): None when absent or
    null (a `datasets.Dataset` stores a missing cell as None); DataError naming the line when it
    is not a finite number."""
    m = rec.get("margin") if isinstance(rec, Mapping) else None
    if m is None:
        return None
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m):
        raise DataError(
            f"margin must be a finite number, got {m!r}", path=label, line=line, field="margin"
        )
    return float(m)


def _candidate_sets(sources: list[Source], cfg: DataConfig) -> list[CandidateSet]:
    stats = {"truncated_responses": 0}
    sets = []
    for src in sources:
        for line, rec in iter_records(src, "candidates", "candidates"):
            try:
                prompt, outputs, gold = parse_candidates(rec)
            except RecordError as e:
                raise DataError(e.msg, path=src.label, line=line, field=e.field) from None
            outputs = [_truncate(o, cfg.max_response_chars, stats) for o in outputs]
            sets.append(
                CandidateSet(record_id(rec, src.stem, line), prompt, tuple(outputs), tuple(gold))
            )
    if stats["truncated_responses"]:
        log.info(
            "%s: cut %d candidate outputs to %d characters",
            _label(sources),
            stats["truncated_responses"],
            cfg.max_response_chars,
        )
    return sets


def _label(sources: list[Source], path: str | Path | None = None) -> str:
    """What names the data as a whole: the file, saved dataset or Hub id; a folder's path."""
    return sources[0].label if len(sources) == 1 else str(path)


# --- public loaders -------------------------------------------------------------------------------
def load_pairs(path: str | Path | None, cfg: DataConfig | None = None) -> PreferenceDataset:
    """Load preference pairs from a file, a folder or a Hub id (:func:`read_sources`) in any
    supported format; the files of a folder must hold one format.

    A candidates file yields binarised pairs (``binarize_candidates`` with ``cfg.min_gold_gap``,
    ``cfg.pairs_per_prompt`` and ``cfg.split_seed``). Responses over ``cfg.max_response_chars``
    characters are cut to that length keeping the start (``stats["truncated_responses"]``); pairs
    with chosen == rejected are dropped (``stats["dropped_identical"]``). Raises DataError naming
    file, line and field for anything else that is wrong with the input.
    """
    cfg = cfg or DataConfig()
    _check_limit(cfg)
    t0 = time.perf_counter()
    sources = read_sources(path, cfg)
    ds = pairs_from_sources(sources, cfg, _label(sources, path))
    log.info(
        "%s: %d pairs (%s) in %.2fs",
        ds.source,
        len(ds),
        ds.stats.get("format"),
        time.perf_counter() - t0,
    )
    return ds


def pairs_from_source(src: Source, cfg: DataConfig | None = None) -> PreferenceDataset:
    """:func:`load_pairs` on records already read: a `Source` of (line, record) pairs.

    For records that do not come from a file (a `datasets.Dataset`, a list of dicts:
    ``Source(label, stem, list(enumerate(records, 1)))``); pair ids are
    ``record_id(rec, src.stem, line)``.
    """
    return pairs_from_sources([src], cfg or DataConfig())


def pairs_from_sources(
    sources: list[Source], cfg: DataConfig, label: str | None = None
) -> PreferenceDataset:
    """The pairs of one or more sources that hold one format (a folder's files)."""
    _check_limit(cfg)
    label = label or _label(sources)
    shape, fmt = _detect(sources, cfg)
    if shape == "candidates":
        ds = binarize_candidates(
            _candidate_sets(sources, cfg), cfg.min_gold_gap, cfg.pairs_per_prompt, cfg.split_seed
        )
        ds.source = label
        if not len(ds):
            raise DataError(
                f"no usable pairs: none of the {ds.stats['sets']} candidate sets has two "
                "different non-empty outputs whose gold differs by >= "
                f"data.min_gold_gap={cfg.min_gold_gap:g}",
                path=label,
            )
        return ds
    return _pairs_from_sources(sources, label, cfg, shape, fmt)


def load_candidates(path: str | Path | None, cfg: DataConfig | None = None) -> list[CandidateSet]:
    """Load alpaca-eval style candidate sets: one prompt, N responses with gold scores each.

    Outputs are stripped and cut to ``cfg.max_response_chars``; empty outputs are kept (they are
    real candidates with a gold score). ``cfg.format`` is ignored: the file must hold candidates.
    """
    cfg = cfg or DataConfig()
    _check_limit(cfg)
    sources = read_sources(path, cfg)
    _detect(sources, dataclasses.replace(cfg, format="candidates"))
    return _candidate_sets(sources, cfg)


def binarize_candidates(
    sets: Sequence[CandidateSet], min_gap: float, pairs_per_prompt: int, seed: int
) -> PreferenceDataset:
    """Pairs (higher gold = chosen) of candidates of one prompt whose gold differs by >= min_gap.

    Eligible pairs also need a strictly positive gap and two different, non-empty texts. From each
    set at most `pairs_per_prompt` eligible pairs are drawn uniformly without replacement, with a
    generator seeded by (seed, set id), so a set's pairs do not depend on the other sets. Pair ids
    are ``"{set id}:{chosen index}>{rejected index}"``.
    """
    if pairs_per_prompt < 1:
        raise ConfigError(f"data.pairs_per_prompt must be >= 1, got {pairs_per_prompt}")
    if min_gap < 0:
        raise ConfigError(f"data.min_gold_gap must be >= 0, got {min_gap}")
    pairs: list[PreferencePair] = []
    stats = {
        "format": "candidates",
        "sets": len(sets),
        "eligible_pairs": 0,
        "sets_without_pairs": 0,
    }
    for s in sets:
        gold = np.asarray(s.gold, dtype=np.float64)
        i, j = np.triu_indices(len(gold), k=1)
        gap = np.abs(gold[i] - gold[j])
        texts = np.asarray(s.responses, dtype=object)
        ok = (
            (gap >= min_gap)
            & (gap > 0)
            & (texts[i] != texts[j])
            & (texts[i] != "")
            & (texts[j] != "")
        )
        i, j = i[ok], j[ok]
        stats["eligible_pairs"] += len(i)
        if len(i) == 0:
            stats["sets_without_pairs"] += 1
            continue
        key = int.from_bytes(hashlib.sha256(s.id.encode("utf-8")).digest()[:8], "little")
        rng = np.random.default_rng([seed, key])
        pick = np.sort(rng.choice(len(i), size=min(pairs_per_prompt, len(i)), replace=False))
        for a, b in zip(i[pick].tolist(), j[pick].tolist(), strict=True):
            c, r = (a, b) if gold[a] > gold[b] else (b, a)
            pairs.append(
                PreferencePair(f"{s.id}:{c}>{r}", s.prompt, s.responses[c], s.responses[r])
            )
    stats["pairs"] = len(pairs)
    return PreferenceDataset(pairs, "binarized candidates", stats)
