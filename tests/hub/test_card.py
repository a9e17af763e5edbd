"""latentrm.hub.card: the model card says what the model is, how it was trained, how to use it."""

from __future__ import annotations

from latentrm.hub.card import render_card

RECORD = {
    "model": "smollm2",
    "path": "/models/smollm2",
    "gguf_file": "x.gguf",
    "pooling": "last",
    "layer": -1,
    "layers": [-1],
    "max_length": 512,
    "text_format": "chat",
    "dtype": "bfloat16",
    "normalize": False,
    "dim": 576,
    "model_type": "llama",
    "model_identity": {"files": {"x.gguf": "ab" * 32}},
}
HEAD = {"format": "latentrm.reward_head/1", "d": 576, "hidden": [], "dropout": 0.0}


def test_card_of_a_native_export_states_the_dropped_offset():
    card = render_card(
        RECORD,
        HEAD,
        {
            "data": "Anthropic/hh-rlhf",
            "n_pairs": 1000,
            "n_val": 100,
            "method": "none",
            "margin": True,
            "metrics": {"val_accuracy": 0.62},
        },
        max_response_chars=4000,
        kind="native",
        repo_id="me/rm",
        offset=0.378,
    )
    head, body = card.split("---\n", 2)[1:]
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in head
    assert "library_name: transformers" in head and "- Anthropic/hh-rlhf" in head
    assert "Exported as a plain `LlamaForSequenceClassification`" in body
    assert "constant offset (0.378000) is dropped" in body
    assert "Head: linear 576 -> 1," in body and "- margin)`" in body
    assert "augmented with" not in body  # method none: the plain head
    assert "(1000 labelled pairs, 100 of them held out for early stopping)" in body
    assert "| val_accuracy | 0.62 |" in body
    assert f"| sha256 x.gguf | `{'ab' * 32}` |" in body
    assert "Responses longer than 4000\n  characters are cut to that length first" in body
    assert 'from_pretrained("me/rm")' in body and "trust_remote_code" not in body
    assert "OpenRLHF: loads this folder" in body


def test_card_without_training_info_or_export():
    card = render_card(
        {**RECORD, "model": "/my/model", "model_identity": None},
        {
            "format": "latentrm.reward_ensemble/1",
            "d": 576,
            "members": [{"d": 576, "hidden": [64], "dropout": 0.3}] * 3,
        },
        None,
        None,
        kind="none",
    )
    assert "library_name: latentrm" in card and "base_model" not in card
    assert "## Data\n\nNot recorded." in card and "## Metrics\n\nNot recorded." in card
    assert "mean of 3 heads, each MLP 576 -> 64 -> 1 (ReLU, dropout 0.3)" in card
    assert "latentrm files only (no transformers export)" in card
    assert "PATH_OR_REPO_ID" in card


def test_card_reports_the_held_out_pairs_and_the_training_config():
    card = render_card(
        RECORD,
        HEAD,
        {
            "data": "hh.jsonl",
            "n_pairs": 80,
            "n_val": 16,
            "n_test": 40,
            "method": "lens",
            "ratio": 2,
            "config": {"seed": 0, "vae": {"latent_dim": 4}},
        },
        None,
        kind="none",
    )
    assert (
        "Trained on `hh.jsonl` (80 labelled pairs, 16 of them held out for early stopping); "
        "evaluated on 40 further held-out pairs."
    ) in card
    assert "## Training configuration" in card
    assert "```yaml\nseed: 0\nvae:\n  latent_dim: 4\n```" in card


def yaml_header(card: str) -> dict:
    import yaml

    return yaml.safe_load(card.split("---\n", 2)[1])


def test_card_metadata_is_what_the_hub_expects():
    """license and language of the base model (SmolLM2: apache-2.0, en), the Hub dataset, the
    base model, tags, library_name and a model-index of the held-out metrics of a run."""
    card = render_card(
        RECORD,
        HEAD,
        {
            "data": "Anthropic/hh-rlhf",
            "n_pairs": 200,
            "n_test": 100,
            "metrics": {"val_accuracy": 0.6, "heldout_accuracy": 0.62, "bon_gap_closed": 0.25},
        },
        None,
        kind="transformers",
        repo_id="me/rm",
    )
    meta = yaml_header(card)
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert meta["datasets"] == ["Anthropic/hh-rlhf"]
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "transformers" and "reward-model" in meta["tags"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "latentrm reward model on smollm2"
    got = {
        (r["dataset"]["type"], m["type"], m["value"])
        for r in entry["results"]
        for m in r["metrics"]
    }
    # validation accuracy is early stopping's, not held out: not in the model-index
    assert got == {
        ("Anthropic/hh-rlhf", "accuracy", 0.62),
        ("Anthropic/hh-rlhf", "bon_gap_closed", 0.25),
    }


def test_card_without_held_out_metrics_has_no_model_index():
    meta = yaml_header(
        render_card(
            RECORD, HEAD, {"data": "x.jsonl", "metrics": {"val_accuracy": 0.6}}, None, kind="none"
        )
    )
    assert "model-index" not in meta and "datasets" not in meta


def test_card_user_settings_and_no_local_paths():
    """The user names an in-memory Dataset, the license, the language; absolute paths of this
    machine (data, embedder path, config paths) appear only as their last part."""
    record = {
        **RECORD,
        "model": "/home/me/models/my-llm",
        "path": "/home/me/models/my-llm",
        "model_identity": None,
    }
    training = {
        "data": "/home/me/data/pairs.jsonl",
        "n_pairs": 10,
        "config": {
            "data": {"path": "/home/me/data/pairs.jsonl"},
            "cache_dir": "/home/me/cache",
            "out_dir": "runs/x",
        },
    }
    card = render_card(record, HEAD, training, None, kind="none")
    assert "/home/me" not in card
    assert "Trained on `pairs.jsonl`" in card and "cache_dir: cache" in card
    assert "out_dir: runs/x" in card  # relative paths are kept
    named = render_card(
        RECORD,
        HEAD,
        {"data": "<Dataset>"},
        None,
        kind="none",
        card={"dataset": "me/prefs", "license": "mit", "language": ["de"]},
    )
    meta = yaml_header(named)
    assert meta["datasets"] == ["me/prefs"] and meta["license"] == "mit"
    assert meta["language"] == ["de"] and "Trained on `me/prefs`" in named


def test_card_names_an_unnamed_dataset_by_what_it_is():
    card = render_card(RECORD, HEAD, {"data": "<Dataset>", "n_pairs": 300}, None, kind="none")
    assert "<Dataset>" not in card
    assert "Trained on an in-memory `datasets.Dataset` (name it with" in card
    card = render_card(RECORD, HEAD, {"data": "<hh-rlhf>"}, None, kind="none")
    assert "Trained on the `datasets.Dataset` `hh-rlhf`" in card


def test_card_refuses_unknown_settings():
    import pytest

    from latentrm.errors import ConfigError

    with pytest.raises(ConfigError, match="model_card_kwargs: unknown licence; known: dataset"):
        render_card(RECORD, HEAD, None, None, kind="none", card={"licence": "mit"})
