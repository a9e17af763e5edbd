"""The model card (README.md) of a saved reward model: method, data, metrics, embedder, usage."""

from __future__ import annotations

from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

from latentrm.errors import ConfigError
from latentrm.hub.card_meta import (
    ALIAS_META,
    ALIAS_SOURCES,
    CARD_KEYS,
    TAGS,
    data_name,
    is_hub_id,
    model_index,
    public,
)
from latentrm.hub.native import NATIVE_ARCHS

# latentrm's cut of an over-long input (latentrm.embed.batching.truncate_ids), in plain Python for
# a native export's card: no custom code runs there, so the caller cuts. Exact while the response
# itself fits (latentrm then keeps the response's first tokens). Tests exec this text.
NATIVE_CUT = '''def latentrm_cut(ids, special, max_length):
    """Keep the leading/trailing special tokens, drop prompt tokens from the left."""
    if len(ids) <= max_length:
        return list(ids)
    h = t = 0
    while h < len(ids) and ids[h] in special:
        h += 1
    while t < len(ids) - h and ids[len(ids) - 1 - t] in special:
        t += 1
    if h + t >= max_length:
        h = t = 0
    return list(ids[:h]) + list(ids[len(ids) - (max_length - h):])
'''

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
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{{ repo_id }}"{{ trc }})
model = AutoModelForSequenceClassification.from_pretrained("{{ repo_id }}"{{ trc }})
text = tok.apply_chat_template(
    [{"role": "user", "content": "How do I boil an egg?"},
     {"role": "assistant", "content": "Simmer it for 8 minutes."}], tokenize=False)
{%- if kind == "native" %}

{{ cut_code }}
ids = latentrm_cut(tok(text, add_special_tokens=False)["input_ids"],
                   set(tok.all_special_ids), {{ max_len }})
logit = model(input_ids=torch.tensor([ids])).logits[0, 0]
reward = logit + {{ "%.6f"|format(offset) }}  # latentrm's score (config.latentrm_offset)
{%- else %}
reward = model(**tok(text, return_tensors="pt")).logits[0, 0]
{%- endif %}
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
    rows = [
        (k, str(emb[k]))
        for k in (
            "model",
            "path",
            "gguf_file",
            "revision",
            "model_type",
            "pooling",
            "layer",
            "layers",
            "max_length",
            "text_format",
            "dtype",
            "normalize",
            "dim",
            "latentrm_version",
        )
        if emb.get(k) is not None
    ]
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
    record: dict[str, Any],
    head: dict[str, Any],
    training: dict[str, Any] | None,
    max_response_chars: int | None,
    kind: str,
    repo_id: str | None = None,
    offset: float | None = None,
    card: dict[str, Any] | None = None,
) -> str:
    """Model card markdown. `record`: the embedder identity (latentrm.json's "embedder"); `head`:
    the head config; `training`: data, n_pairs, n_val, n_test, method, ratio, margin, metrics
    {name: value}, config (the RunConfig as a dict); `kind`: "transformers" | "native" |
    "none" (which export the folder holds); `repo_id`: the Hub repo the usage code loads;
    `card`: what the user sets (CARD_KEYS: dataset, license, language, title, tags).

    The YAML header is the Hub's (license, language, datasets, base_model, tags, library_name,
    model-index for held-out metrics); absolute local paths never appear (:func:`public`).
    """
    card = dict(card or {})
    unknown = sorted(set(card) - set(CARD_KEYS))
    if unknown:
        raise ConfigError(
            f"model_card_kwargs: unknown {', '.join(unknown)}; known: {', '.join(CARD_KEYS)}"
        )
    emb = dict(record)
    training = dict(training or {})
    alias = str(emb.get("model"))
    source = ALIAS_SOURCES.get(alias)
    license_, language = ALIAS_META.get(alias, (None, None))
    ident = emb.get("model_identity") or {}
    data = str(card.get("dataset") or training.get("data") or "")
    hub_data = data if data and is_hub_id(data) else None
    title = (
        card.get("title")
        or training.get("title")
        or (f"latentrm reward model on {public(emb.get('model'))}")
    )
    card_data = ModelCardData(
        library_name="latentrm" if kind == "none" else "transformers",
        license=card.get("license") or license_,
        language=card.get("language") or language,
        tags=[*TAGS, *(card.get("tags") or [])],
        pipeline_tag="text-classification",
        base_model=source[0] if source else ident.get("hub_id"),
        datasets=[hub_data] if hub_data else None,
        model_name=title,
        eval_results=model_index(
            data_name(data).strip("`") if data else "held-out pairs", training, hub_data
        ),
    )
    emb = public(emb)
    layer = emb.get("layer", -1)
    custom = kind == "transformers"
    max_len = emb.get("max_length")
    if kind == "native":
        tmpl = (
            "The tokenizer's chat template renders texts exactly as latentrm does; pass "
            "`add_special_tokens=False` (the template writes the special tokens). Inputs "
            f"longer than {max_len} tokens: latentrm keeps the leading/trailing special "
            "tokens and drops prompt tokens from the left; a plain model runs no code to do "
            "that and tools (TRL, RewardBench) pass whole texts, so cut the ids as above "
            "(exact while the response itself fits) or use the custom-code export. The "
            f"tokenizer truncates from the left at {max_len} tokens (`truncation=True`), "
            "which is close to that but drops the leading special tokens."
        )
    else:
        tmpl = (
            "The tokenizer's chat template renders texts exactly as latentrm does"
            + (
                " (an HH-style template, `\\n\\nHuman: ...\\n\\nAssistant: ...`, added for "
                "this export)"
                if emb.get("text_format") == "plain"
                else ""
            )
            + "; texts rendered any other way get other scores. Tokenise with or without "
            "special tokens and pad on either side: the model normalises both. Do not cut "
            f"the texts yourself (no `max_length`): the model cuts inputs longer than "
            f"{max_len} tokens from the left of the prompt as latentrm does, and its "
            "tokenizer sets no length limit, so `truncation=True` alone cuts nothing."
        )
    n_pairs, n_test = training.get("n_pairs"), training.get("n_test")
    data_desc = (
        (
            f"Trained on {data_name(data)}"
            + (
                f" ({n_pairs} labelled pairs"
                + (
                    f", {training['n_val']} of them held out for early stopping"
                    if training.get("n_val")
                    else ""
                )
                + ")"
                if n_pairs
                else ""
            )
            + (f"; evaluated on {n_test} further held-out pairs" if n_test else "")
            + "."
        )
        if data
        else "Not recorded."
    )
    config = public(training.get("config"))
    method = training.get("method")
    model_card = ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        title=title,
        cut_code=NATIVE_CUT,
        max_len=max_len,
        repo_id=repo_id or "PATH_OR_REPO_ID",
        kind=kind,
        emb=emb,
        source_desc=f" ({source[0]}, {source[1]})" if source else "",
        emb_rows=_emb_rows(emb),
        training=public(training),
        data_desc=data_desc,
        config_yaml=yaml.safe_dump(config, sort_keys=False) if isinstance(config, dict) else "",
        max_chars=max_response_chars if max_response_chars is not None else "(no limit)",
        fmt_desc=(
            "the embedder tokenizer's chat template applied to [*prompt, assistant response]"
            if emb.get("text_format") == "chat"
            else "HH plain text `\\n\\nHuman: ...\\n\\nAssistant: <response>`"
        ),
        pool_desc=(
            "the last real token"
            if emb.get("pooling") == "last"
            else "the attention-masked mean of all tokens"
        ),
        layer_desc=(
            f"the mean of hidden states {emb.get('layers')}"
            if layer == "mean"
            else "the last hidden state"
            if layer == -1
            else f"hidden state {layer}"
        ),
        head_desc=_head_desc(head),
        margin_term=" - margin" if training.get("margin") else "",
        method_desc=(
            f"; training pairs augmented with `{method}`"
            + (f" at ratio {training['ratio']}" if training.get("ratio") else "")
            if method and method != "none"
            else ""
        ),
        arch=NATIVE_ARCHS.get(str(emb.get("model_type")), "*ForSequenceClassification"),
        offset=float(offset or 0.0),
        custom_note=" (custom code: read `modeling_latentrm.py` first)" if custom else "",
        trc=", trust_remote_code=True" if custom else "",
        template_note=tmpl,
        grpo_args=", args=GRPOConfig(..., trust_remote_code=True)" if custom else "",
        rb_flags=" --trust_remote_code" if custom else "",
        openrlhf=(
            "loads this folder (`--reward.normalize_enable` adds the offset back through "
            "`mean`/`std`)."
            if kind == "native"
            else "not supported (it builds its own "
            "linear `score` head); only a native export (linear head, last-token pooling "
            "of the last layer) loads there."
        ),
    )
    return str(model_card)
