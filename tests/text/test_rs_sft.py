"""latentrm.text.rs_sft / generation and latentrm.recipes.rs_sft: rejection-sampling fine-tuning
on a tiny random Llama (`tiny_lm`, offline, seconds), the generation cache, and the judge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentrm.testing import user_prompt, word_tokenizer, write_jsonl
from latentrm.text.generation import Sampler, SamplingConfig, generate_responses
from latentrm.text.lm import text_baselines_available
from latentrm.text.rs_sft import SFTConfig, pick_best, sft_examples

pytestmark = [
    pytest.mark.skipif(not text_baselines_available(), reason="needs latentrm[text]"),
    pytest.mark.usefixtures("one_thread"),
]

PROMPTS = ["w1 w2", "w3 w4 w5", "w6", "w7 w8"]
SAMPLING = SamplingConfig(
    n=3, max_new_tokens=5, batch_size=2, chunk_size=2, seed=0, show_progress=False
)


class GoodScorer:
    """+1 per 'good', -1 per 'bad' in the response."""

    def score(self, prompts, responses):
        return np.array(
            [r.split().count("good") - r.split().count("bad") for r in responses], np.float32
        )


class NoSampling(Sampler):
    def sample(self, prompts, seed):
        raise AssertionError("the generator was called although everything is cached")


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random one-label LlamaForSequenceClassification + the word tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = word_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("judge")
    LlamaForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_pick_best_by_hand():
    scores = [np.array([0.1, 0.5, 0.5]), np.array([2.0, 1.0])]
    assert pick_best(scores).tolist() == [1, 0]  # the first of two equal maxima
    assert pick_best(scores, threshold=1.5).tolist() == [-1, 0]  # 0.5 < 1.5: left out
    assert pick_best(scores, threshold=0.5).tolist() == [1, 0]  # at the threshold: kept


def test_sft_examples_train_on_the_response_and_eos_only():
    tok = word_tokenizer()
    ex = sft_examples(tok, [user_prompt("w1 w2")], ["w3 good"], True, 384, 64)
    ids = tok.convert_tokens_to_ids
    prompt = ids(["<user>", "w1", "w2", "</s>", "<assistant>"])  # the chat template's rendering
    assert ex["input_ids"] == [prompt + ids(["w3", "good", "</s>"])]
    assert ex["labels"] == [[-100] * 5 + ids(["w3", "good", "</s>"])]
    # max_length 6 keeps the 5 prompt tokens and the response's first token.
    cut = sft_examples(tok, [user_prompt("w1 w2")], ["w3 good"], True, 384, 6)
    assert cut["input_ids"] == [prompt + ids(["w3"])]


def test_generation_is_cached_in_chunks_and_resumes(tiny_lm, tmp_path):
    prompts = [user_prompt(p) for p in PROMPTS[:3]]  # chunk_size 2: chunks of 2 and 1 prompts
    first, stats = generate_responses(tiny_lm, prompts, SAMPLING, tmp_path)
    assert stats["chunks_sampled"] == 2 and stats["chunks_cached"] == 0
    assert [len(r) for r in first] == [3, 3, 3]
    again, stats = generate_responses(
        tiny_lm, prompts, SAMPLING, tmp_path, sampler=NoSampling(tiny_lm, SAMPLING)
    )
    assert again == first and stats["chunks_cached"] == 2
    # A run killed in its second chunk: only that chunk is sampled again, with the same result
    # (each chunk has its own seed).
    chunks = sorted((Path(stats["cache"]) / "chunks").glob("*.json"))
    one = next(c for c in chunks if len(json.loads(c.read_text())["prompt_keys"]) == 1)
    one.unlink()
    resumed, stats = generate_responses(tiny_lm, prompts, SAMPLING, tmp_path)
    assert resumed == first and (stats["chunks_cached"], stats["chunks_sampled"]) == (1, 1)
    # A corrupt chunk is set aside and sampled again.
    one.write_text("{not json")
    fixed, stats = generate_responses(tiny_lm, prompts, SAMPLING, tmp_path)
    assert fixed == first and one.with_suffix(".bad").exists()
    # Another sampling setting is another cache folder.
    hotter = SamplingConfig(**{**SAMPLING.__dict__, "temperature": 1.0})
    _, stats2 = generate_responses(tiny_lm, prompts, hotter, tmp_path)
    assert stats2["cache"] != stats["cache"] and stats2["chunks_sampled"] == 2


def test_sampling_config_is_checked():
    from latentrm.errors import ConfigError

    with pytest.raises(ConfigError, match="greedy"):
        SamplingConfig(n=2, temperature=0).check()
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=0).check()


def test_whole_loop_generate_score_pick_sft_save_judge(tiny_lm, tiny_judge, prompt_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from latentrm.recipes.rs_sft import judge_policies, rs_sft

    sft = SFTConfig(mode="lora", epochs=1, batch_size=2, lora_r=4, max_length=64, seed=0)
    out = tmp_path / "policy"
    summary = rs_sft(
        tiny_lm,
        GoodScorer(),
        out,
        prompts=prompt_file,
        sampling=SAMPLING,
        sft=sft,
        cache_dir=tmp_path / "cache",
    )
    assert (summary["prompts"], summary["responses"], summary["kept"]) == (4, 12, 4)
    picks = [json.loads(x) for x in (out / "picks.jsonl").read_text().splitlines()]
    assert [p["prompt"][0]["content"] for p in picks] == PROMPTS
    for p in picks:  # the pick is the first response with the highest score
        assert p["index"] == int(np.argmax(p["scores"])) and p["score"] == max(p["scores"])
        assert p["completion"][0]["role"] == "assistant"
    # 4 examples / batch 2 = 2 optimiser steps; the merged policy loads as a plain causal LM.
    record = json.loads((out / "rs_sft.json").read_text())
    assert len([h for h in record["history"] if "loss" in h]) == 2
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not np.allclose(tuned.state_dict()[q].numpy(), base.state_dict()[q].numpy())
    assert not any("lora" in k for k in tuned.state_dict())
    # The judge: both policies answer the prompts, a sequence classifier scores both.
    verdict = judge_policies(
        tiny_judge,
        prompt_file,
        str(out),
        tiny_lm,
        sampling=SamplingConfig(n=1, max_new_tokens=5, show_progress=False),
        cache_dir=tmp_path / "cache",
        out=tmp_path / "verdict.jsonl",
        n_bootstrap=200,
    )
    assert verdict["prompts"] == 4 and 0.0 <= verdict["win_rate"] <= 1.0
    rows = [json.loads(x) for x in (tmp_path / "verdict.jsonl").read_text().splitlines()]
    credit = np.mean(
        [
            1.0
            if r["reward_a"][0] > r["reward_b"][0]
            else 0.5
            if r["reward_a"][0] == r["reward_b"][0]
            else 0.0
            for r in rows
        ]
    )
    assert verdict["win_rate"] == pytest.approx(credit)
    # A rerun into a new folder samples nothing: the generation cache holds every response.
    import latentrm.text.generation as gen

    again = tmp_path / "again"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gen.Sampler, "sample", NoSampling.sample)
        rs_sft(
            tiny_lm,
            GoodScorer(),
            again,
            prompts=prompt_file,
            sampling=SAMPLING,
            sft=sft,
            cache_dir=tmp_path / "cache",
        )
    assert (again / "picks.jsonl").read_text() == (out / "picks.jsonl").read_text()


def test_candidates_file_needs_no_generation_and_threshold_drops(tiny_lm, tmp_path):
    from latentrm.recipes.rs_sft import rs_sft

    cands = write_jsonl(
        tmp_path / "cands.jsonl",
        [
            {"prompt": "w1", "candidates": ["w2 bad", "w3 good", {"output": "w4 good good"}]},
            {"prompt": "w5", "candidates": [{"output": "w6 bad"}, "w7"]},
        ],
    )
    with pytest.MonkeyPatch.context() as mp:
        import latentrm.text.generation as gen

        mp.setattr(gen.Sampler, "sample", NoSampling.sample)
        summary = rs_sft(
            tiny_lm,
            GoodScorer(),
            tmp_path / "out",
            candidates=cands,
            threshold=1.0,
            sft=SFTConfig(batch_size=1, max_length=32),
            cache_dir=tmp_path / "cache",
        )
    # Prompt 1: scores -1, 1, 2 -> 'w4 good good' (2 >= 1); prompt 2: -1, 0 -> best 0 < 1, dropped.
    assert summary["kept"] == 1
    picks = [json.loads(x) for x in (tmp_path / "out" / "picks.jsonl").read_text().splitlines()]
    assert [(p["completion"][0]["content"], p["scores"]) for p in picks] == [
        ("w4 good good", [-1.0, 1.0, 2.0])
    ]


def test_random_scorer_is_seeded_and_in_unit_interval():
    from latentrm.recipes.rs_sft import RandomScorer

    p = [user_prompt("w1")] * 3
    s0 = RandomScorer(0).score(p, ["a", "b", "c"])
    assert np.array_equal(s0, RandomScorer(0).score(p, ["a", "b", "c"]))
    assert not np.array_equal(s0, RandomScorer(1).score(p, ["a", "b", "c"]))
    assert ((s0 >= 0) & (s0 < 1)).all()


def test_cli_checks_outputs_before_work(tmp_path, prompt_file, capsys):
    from latentrm.cli import main

    file_out = tmp_path / "taken"
    file_out.write_text("x")
    code = main(
        [
            "rs-sft",
            "--policy",
            "smollm2",
            "--prompts",
            str(prompt_file),
            "--model",
            "random",
            "--out",
            str(file_out),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not a folder" in err and len(err.splitlines()) == 1
    code = main(
        [
            "judge",
            "--judge",
            "x",
            "--prompts",
            str(prompt_file),
            "--policy-a",
            "a",
            "--policy-b",
            "b",
            "--out",
            str(tmp_path / "v.unknown"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown output type" in err and not (tmp_path / "c").exists()


def test_read_prompts_from_a_pair_file_and_from_prompt_rows(fixtures_dir, tmp_path):
    from latentrm.errors import DataError
    from latentrm.recipes.rs_sft import read_candidates, read_prompts

    hh = read_prompts(fixtures_dir / "hh.jsonl")  # HH pairs: the dialogue before the last reply
    assert hh[0] == user_prompt("What is 2+2?")
    assert len(hh) == len({tuple(tuple(m.items()) for m in p) for p in hh})  # distinct
    rows = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "w1"}, {"instruction": "w2"}, {"prompt": "w1"}]
    )
    assert read_prompts(rows) == [user_prompt("w1"), user_prompt("w2")]  # repeats read once
    bad = write_jsonl(
        tmp_path / "c.jsonl",
        [{"prompt": "w1", "candidates": ["a"]}, {"prompt": "w2", "candidates": [{"gold": 1}]}],
    )
    with pytest.raises(DataError, match=r"c.jsonl:2: candidate needs.*candidates\[0\]"):
        read_candidates(bad)


def test_cli_rs_sft_then_judge(tiny_lm, tiny_judge, prompt_file, tmp_path, capsys):
    from latentrm.cli import main

    out, cache = tmp_path / "pol", str(tmp_path / "cache")
    code = main(
        [
            "rs-sft",
            "--policy",
            tiny_lm,
            "--prompts",
            str(prompt_file),
            "--model",
            "random",
            "--out",
            str(out),
            "--n",
            "2",
            "--max-new-tokens",
            "3",
            "--train-batch-size",
            "2",
            "--lora-r",
            "2",
            "--cache-dir",
            cache,
            "--no-show-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0 and "kept: 4" in capsys.readouterr().out
    assert len((out / "picks.jsonl").read_text().splitlines()) == 4
    code = main(
        [
            "judge",
            "--judge",
            tiny_judge,
            "--prompts",
            str(prompt_file),
            "--policy-a",
            str(out),
            "--policy-b",
            tiny_lm,
            "--max-new-tokens",
            "3",
            "--cache-dir",
            cache,
            "--n-bootstrap",
            "50",
            "--no-show-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "win_rate:" in printed and "prompts: 4" in printed
