"""Model resolution: decoder detection, the offline aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentrm.embed.embedder import Embedder
from latentrm.embed.models import SMOLLM2_GGUF, is_decoder_config, resolve_model
from latentrm.errors import ConfigError
from latentrm.testing import cfg_for


def test_is_decoder_config():
    from transformers import BertConfig, LlamaConfig, T5Config

    assert is_decoder_config(LlamaConfig())
    assert not is_decoder_config(BertConfig())
    assert is_decoder_config(BertConfig(is_decoder=True))
    with pytest.raises(ConfigError, match="encoder-decoder"):
        is_decoder_config(T5Config())


def test_resolve_model_aliases():
    folder, gguf = resolve_model("smollm2")
    assert gguf == SMOLLM2_GGUF and (Path(folder) / gguf).is_file()
    minilm, none = resolve_model("minilm")
    assert none is None and (Path(minilm) / "model.safetensors").is_file()
    assert resolve_model("org/some-model") == ("org/some-model", None)
    assert resolve_model("./local/dir") == ("./local/dir", None)
    with pytest.raises(ConfigError, match="not found"):
        Embedder(cfg_for("./no/such/model"))
