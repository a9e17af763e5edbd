"""latentrm.hub.card: the model card says what the model is, how it was trained, how to use it."""

from __future__ import annotations

from latentrm.hub.card import render_card

RECORD = {"model": "smollm2", "path": "/models/smollm2", "gguf_file": "x.gguf", "pooling": "last",
          "layer": -1, "layers": [-1], "max_length": 512, "text_format": "chat",
          "dtype": "bfloat16", "normalize": False, "dim": 576, "model_type": "llama",
          "model_identity": {"files": {"x.gguf": "ab" * 32}}}
HEAD = {"format": "latentrm.reward_head/1", "d": 576, "hidden": [], "dropout": 0.0}


def test_card_of_a_native_export_states_the_dropped_offset():
    card = render_card(RECORD, HEAD, {"data": "Anthropic/hh-rlhf", "n_pairs": 1000, "n_val": 100,
                                      "method": "none", "margin": True,
                                      "metrics": {"val_accuracy": 0.62}},
                       max_response_chars=4000, kind="native", repo_id="me/rm", offset=0.378)
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
    card = render_card({**RECORD, "model": "/my/model", "model_identity": None}, {
        "format": "latentrm.reward_ensemble/1", "d": 576,
        "members": [{"d": 576, "hidden": [64], "dropout": 0.3}] * 3}, None, None, kind="none")
    assert "library_name: latentrm" in card and "base_model" not in card
    assert "## Data\n\nNot recorded." in card and "## Metrics\n\nNot recorded." in card
    assert "mean of 3 heads, each MLP 576 -> 64 -> 1 (ReLU, dropout 0.3)" in card
    assert "latentrm files only (no transformers export)" in card
    assert "PATH_OR_REPO_ID" in card


def test_card_reports_the_held_out_pairs_and_the_training_config():
    card = render_card(RECORD, HEAD, {"data": "hh.jsonl", "n_pairs": 80, "n_val": 16, "n_test": 40,
                                      "method": "lens", "ratio": 2,
                                      "config": {"seed": 0, "vae": {"latent_dim": 4}}},
                       None, kind="none")
    assert ("Trained on `hh.jsonl` (80 labelled pairs, 16 of them held out for early stopping); "
            "evaluated on 40 further held-out pairs.") in card
    assert "## Training configuration" in card
    assert "```yaml\nseed: 0\nvae:\n  latent_dim: 4\n```" in card
