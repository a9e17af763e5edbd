"""latentrm.text.self_rewarding: order-debiased judging and synthesis with a tiny random Llama
(`tiny_lm`, offline, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.config import SelfRewardConfig
from latentrm.errors import TrainingError
from latentrm.testing import planted_pairs, user_prompt
from latentrm.text.lm import text_baselines_available
from latentrm.text.self_rewarding import SelfRewardingSynthesizer, combine_orders, n_responses

pytestmark = pytest.mark.skipif(not text_baselines_available(), reason="needs latentrm[text]")


def test_combine_orders_cancels_letter_bias_by_hand():
    # True preference x>y of 1.5 log-odds plus a constant bias of +2 toward the letter "A":
    # x shown as A -> 1.5 + 2 = 3.5; y shown as A -> -1.5 + 2 = 0.5; (3.5 - 0.5) / 2 = 1.5.
    np.testing.assert_allclose(combine_orders([3.5, 2.0], [0.5, 2.0]), [1.5, 0.0])
    np.testing.assert_allclose(combine_orders([0.5], [3.5]), [-1.5])


def test_n_responses_smallest_k_with_enough_pairs():
    # k(k-1)/2 >= ratio: 1 -> 2 (1 pair), 2,3 -> 3 (3 pairs), 4..6 -> 4, 8 -> 5 (10), 16 -> 7 (21)
    assert [n_responses(r) for r in (1, 2, 3, 4, 6, 7, 8, 16)] == [2, 3, 3, 4, 4, 5, 5, 7]


def test_self_rewarding_returns_ratio_pairs_per_seed(tiny_lm):
    seeds = planted_pairs(3, seed=5)
    synth = SelfRewardingSynthesizer(tiny_lm, SelfRewardConfig(max_new_tokens=6, device="cpu"))
    res = synth.synthesize(seeds, ratio=4, seed=0)
    assert len(res.pairs) == 12 and res.stats["responses_per_seed"] == 4
    np.testing.assert_array_equal(res.seed_idx, np.repeat([0, 1, 2], 4))
    for j, (pair, i) in enumerate(zip(res.pairs, res.seed_idx, strict=True)):
        assert pair.id == f"{seeds[i].id}#sr{j % 4}" and pair.prompt == seeds[i].prompt
        assert pair.chosen != pair.rejected
    # Within a seed the 4 pairs are distinct unordered pairs of its responses.
    for i in range(3):
        sets = {frozenset((p.chosen, p.rejected)) for p in res.pairs.pairs[4 * i : 4 * i + 4]}
        assert len(sets) == 4
    assert res.stats["seconds_per_pair"] > 0 and (res.log_odds >= 0).all()
    # Same seed, same pairs (sampling and pair choice are seeded).
    again = synth.synthesize(seeds, ratio=4, seed=0)
    key = lambda d: [(p.chosen, p.rejected) for p in d.pairs]  # noqa: E731
    assert key(again.pairs) == key(res.pairs)


def test_judge_is_antisymmetric_and_cancels_a_constant_letter_bias(tiny_lm, monkeypatch):
    synth = SelfRewardingSynthesizer(tiny_lm, SelfRewardConfig(device="cpu"))
    prompts, x, y = [user_prompt("w1 w2")] * 2, ["w3 good", "w5"], ["w4 bad", "w6 w7"]
    fwd, rev = synth.judge(prompts, x, y), synth.judge(prompts, y, x)
    np.testing.assert_allclose(fwd, -rev, atol=1e-5)
    # Replace the model read-out with a judge that prefers "good" by 1.25 log-odds and always
    # leans +3 toward the letter A: the combined judgement is exactly the 1.25 preference, and 0
    # for the second pair, where neither reply says "good" (both orders read 3 - 1.25).
    monkeypatch.setattr(synth, "_judge_text", lambda p, a, b: (a, b))
    fake = lambda texts: np.array([3.0 + (1.25 if "good" in a else -1.25) for a, _ in texts])  # noqa: E731
    monkeypatch.setattr(synth, "_log_odds", fake)
    np.testing.assert_allclose(synth.judge(prompts, x, y), [1.25, 0.0])
    np.testing.assert_allclose(synth.judge(prompts, y, x), [-1.25, 0.0])


def test_duplicate_generations_fall_back_to_seed_responses(tiny_lm, monkeypatch):
    seeds = planted_pairs(2, seed=6)
    synth = SelfRewardingSynthesizer(tiny_lm, SelfRewardConfig(max_rounds=2, device="cpu"))
    calls = []

    def same(prompts, n):  # every sample is the same text: one distinct response per prompt
        calls.append(len(prompts))
        return [["w1 w1"] * n for _ in prompts]

    monkeypatch.setattr(synth, "generate", same)
    res = synth.synthesize(seeds, ratio=3, seed=0)  # k = 3: "w1 w1" + the seed's chosen, rejected
    assert calls == [2, 2]  # a second round was tried for both prompts
    assert res.stats["filled_with_seed_responses"] == 4 and res.stats["responses_generated"] == 12
    for i, s in enumerate(seeds):
        got = {frozenset((p.chosen, p.rejected)) for p in res.pairs.pairs[3 * i : 3 * i + 3]}
        pool = ("w1 w1", s.chosen, s.rejected)
        assert got == {frozenset((a, b)) for a in pool for b in pool if a < b}
    with pytest.raises(TrainingError, match="need 4"):
        synth.synthesize(seeds, ratio=4, seed=0)
