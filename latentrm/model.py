"""A reward model you can use: embedder + reward head, text in, score out.

:class:`RewardModel` scores raw (prompt, response) text end to end and is what every serving path
(`latentrm score`/`bon`, the TRL reward function, Best-of-N) loads. It saves and loads the
Hugging Face way: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` (huggingface_hub's
ModelHubMixin), with a generated model card and a transformers export in the same folder.

The model folder, one format family (``latentrm.reward_model/2``)::

    head.safetensors, head.json   the head: weights + standardisation; config + training history
    embed_config.json             the EmbedConfig (never `trust_remote_code`)
    latentrm.json                 format, version, the embedder's identity (id/path, file sha256s
                                  or Hub commit, pooling, layer(s), max_length, text format, dtype,
                                  normalisation), the serving data rule (max_response_chars),
                                  training info (data, method, metrics)
    -- save_pretrained adds --
    README.md                     the model card
    config.json, modeling_latentrm.py, model.safetensors, tokenizer files
                                  the transformers export (latentrm.hub.export)

:meth:`RewardModel.save` writes the first group (what `latentrm run` writes per head, kilobytes);
:meth:`RewardModel.save_pretrained` all of it. :meth:`RewardModel.load` reads both (and older
folders without latentrm.json, unchecked). Security: a model folder never turns on remote code
and never reads files outside itself; remote code comes only from the caller
(``trust_remote_code=True``, ``--trust-remote-code``), with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import ModelHubMixin, snapshot_download

from latentrm import __version__
from latentrm.config import EmbedConfig
from latentrm.data.messages import as_batch, as_prompt, as_response
from latentrm.embed.embedder import Embedder
from latentrm.embed.models import resolve_identity, resolve_model
from latentrm.errors import ConfigError, DataError, ModelError
from latentrm.head.reward import EnsembleHead, RewardHead, check_scores
from latentrm.hub.card import CARD_KEYS, TAGS, render_card
from latentrm.hub.export import export_transformers
from latentrm.hub.folder import (
    FORMAT,
    INFO_FILE,
    LATENTRM_FILES,
    check_identity,
    check_resolved,
    hash_memo,
    read_embed_config,
    read_info,
    write_files,
)
from latentrm.hub.head import read_head
from latentrm.hub.native import export_native, fold_linear_head, native_reason
from latentrm.io import atomic_write_text
from latentrm.runtime import NoBar, quiet_serving

log = logging.getLogger(__name__)

EXPORTS = ("transformers", "native", "none")  # what save_pretrained can add to the folder


class RewardModel(
    ModelHubMixin,
    library_name="latentrm",
    tags=list(TAGS),  # the mixin appends to the list it gets
    pipeline_tag="text-classification",
):
    """Embedder + reward head: scores raw (prompt, response) text end to end.

    The embedder (``latentrm.embed.embedder.Embedder(embed_cfg)``) is built on first use; pass a
    loaded one as `embedder` to reuse it (its dimension must match the head's). `history` is the
    head's training record; `max_response_chars` the data rule of training (responses are cut to
    it before embedding, as training data was); `identity` the recorded identity of the embedder
    (checked against the one that gets loaded); `training` what the card reports (data, method,
    metrics).
    """

    def __init__(
        self, embed_cfg: EmbedConfig, head: RewardHead | EnsembleHead,
        embedder: Any | None = None, history: dict | None = None, *,
        max_response_chars: int | None = None, identity: dict | None = None,
        training: dict | None = None,
    ) -> None:
        # config.json is the transformers export's: the mixin must not write its own.
        self._hub_mixin_config = None
        self.embed_cfg, self.head, self.history = embed_cfg, head, history
        self.max_response_chars = max_response_chars
        self.identity, self.training = identity, dict(training or {})
        self.source: str | None = None  # the folder it was loaded from
        self._verify_on_load = False  # identity still to check once the embedder is loaded
        self._save_options: dict[str, Any] = {"export": "transformers", "dtype": None}
        self._embedder = None
        if embedder is not None:
            self._check_dim(embedder)
            self._embedder = embedder

    def __repr__(self) -> str:
        src = f", from {self.source}" if self.source else ""
        return f"RewardModel(embedder={self.embed_cfg.model!r}, d={self.head.d}{src})"

    def _check_dim(self, embedder: Any) -> None:
        if int(embedder.dim) != self.head.d:
            raise ConfigError(
                f"reward head takes d={self.head.d} embeddings but embedder "
                f"'{self.embed_cfg.model}' gives d={embedder.dim}; use the embedding model the "
                "head was trained on"
            )

    @property
    def embedder(self) -> Any:
        """The embedder, loaded (quietly) on first use and checked against the recorded one."""
        if self._embedder is None:
            cfg = dataclasses.replace(self.embed_cfg, show_progress=False)
            try:
                with quiet_serving():
                    emb = Embedder(cfg)
            except ConfigError as e:
                if "trust_remote_code" in str(e) and not cfg.trust_remote_code:
                    raise ConfigError(
                        f"embedder {cfg.model!r} needs remote code (Python code from its "
                        "repository); a model folder never enables it: pass "
                        "trust_remote_code=True (CLI: --trust-remote-code) if you trust it"
                    ) from None
                raise
            self._check_dim(emb)
            if self._verify_on_load:
                self._check_identity(emb.identity(hash_memo()))
                self._verify_on_load = False
            check_resolved(self.identity, emb, self._where())
            self._embedder = emb
        return self._embedder

    # --- scoring -------------------------------------------------------------------------------
    def score(
        self, prompts: Sequence[Any], responses: Sequence[Any], return_spread: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Rewards (N,) float32 for N (prompt, response) pairs.

        A prompt is a string (one user turn, as TRL's standard format; HH-style
        "\\n\\nHuman: ...\\n\\nAssistant:" text keeps its turns) or a list of {"role", "content"}
        messages; a response is a string or assistant messages (latentrm.data.messages).
        Responses are stripped and cut to `max_response_chars`, as the training data was. Quiet:
        no progress bar, no INFO lines. ModelError if a score is NaN/Inf.

        return_spread: also return the standard deviation (N,) of an ensemble's members
        (`reward.ensemble` > 1) for each pair, the members' disagreement: a cheap uncertainty, e.g.
        to send the least certain Best-of-N picks to a human. ConfigError for a single head.
        """
        if return_spread and len(self.head.members) < 2:
            raise ConfigError("return_spread needs an ensemble head (train with reward.ensemble "
                              f"> 1); {self.source or 'this reward model'} holds a single head")
        prompts = as_batch(prompts, "prompts", "prompts")
        responses = as_batch(responses, "responses", "responses")
        if len(prompts) != len(responses):
            raise ConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if len(prompts) == 0:
            empty = np.zeros(0, np.float32)
            return (empty, empty.copy()) if return_spread else empty
        e = self._embed(prompts, responses)
        with quiet_serving():
            if return_spread:  # an ensemble: one pass of its members gives both
                scores, spread = self.head.score_and_spread(e)
                return check_scores(scores, self.source or "reward model"), spread
            return check_scores(self.head.score(e), self.source or "reward model")

    def _embed(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """(N, d) embeddings of (prompt, response) pairs as :meth:`score` sees them (quiet)."""
        ctx, texts = [], []
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            c, t = as_response(r, as_prompt(p, field=f"prompts[{i}]"), field=f"responses[{i}]")
            ctx.append(c)
            texts.append(t if self.max_response_chars is None else t[: self.max_response_chars])
        with quiet_serving():
            emb = self.embedder
            return (emb.embed(ctx, texts, bar=NoBar()) if isinstance(emb, Embedder)
                    else emb.embed(ctx, texts))

    # --- active selection ----------------------------------------------------------------------
    def suggest(
        self, pool: Sequence[Any], k: int, *, strategy: str = "hybrid", seed: int = 0,
        labelled: Sequence[Any] | None = None, top_m: int | None = None,
        shuffle_sides: bool = True,
    ) -> list[Any]:
        """The `k` pairs of `pool` most worth labelling next (latentrm.suggest.Suggestion, best
        first).

        `pool`: PreferencePairs (a prompt and two responses; which is "chosen" is ignored) or
        CandidateSets (a prompt and N responses: the best pair of each set competes, one pair per
        set). `strategy`: random | bald | entropy | diversity | hybrid (latentrm.head.acquire);
        bald needs an ensemble head (ConfigError with a single head); hybrid ranks by BALD with an
        ensemble, by entropy with a single head. `labelled`: pairs labelled already (diversity
        and hybrid keep away from them). `seed`: random's draw and the a/b order of a pair pool
        (`shuffle_sides`).
        """
        from latentrm.suggest import suggest_pairs

        return suggest_pairs(self._embed, self.head, pool, k, strategy=strategy, seed=seed,
                             labelled=labelled, top_m=top_m, shuffle_sides=shuffle_sides,
                             where=self.source or "reward model")

    # --- identity ------------------------------------------------------------------------------
    def embedder_record(self) -> dict[str, Any]:
        """The embedder's identity as latentrm.json records it.

        With a loaded Embedder: its metadata (the resolved pooling, text format, dtype,
        normalisation, layers, max length, file sha256s or Hub commit). Without: the config's
        values and the identity of the weights it names (hashed, not loaded); None fields where
        they cannot be resolved (a Hub model not in the local cache).
        """
        emb = self._embedder
        if isinstance(emb, Embedder):
            meta = dict(emb.metadata())
            meta.pop("device", None)
            meta["model_identity"] = emb.identity(hash_memo())
            meta["resolved"] = True  # the values the loaded model resolved ('auto' -> ...)
            return meta
        cfg = self.embed_cfg
        try:
            path, alias_gguf = resolve_model(cfg.model)
            ident = resolve_identity(cfg, hash_memo())
        except ConfigError as e:
            log.debug("embedder identity of %s not recorded: %s", cfg.model, e)
            path, alias_gguf, ident = cfg.model, None, None
        return {"model": cfg.model, "path": path, "gguf_file": cfg.gguf_file or alias_gguf,
                "revision": cfg.revision, "model_identity": ident, "pooling": cfg.pooling,
                "layer": cfg.layer, "layers": list(cfg.layers), "max_length": cfg.max_length,
                "text_format": cfg.text_format, "dtype": cfg.dtype, "dim": self.head.d,
                "latentrm_version": __version__}

    def _where(self) -> str:
        return f"{self.source}/{INFO_FILE}" if self.source else "reward model"

    def _check_identity(self, have: dict[str, Any] | None) -> None:
        """ModelError unless the embedder's weights `have` are the recorded ones."""
        check_identity(self.identity, have, self.embed_cfg.model, self._where())

    # --- light save / load (one format family with save_pretrained) ----------------------------
    def save(self, out_dir: str | Path) -> None:
        """Write the latentrm files of the model folder (module docstring); :meth:`load` reads it.

        The embedder is not loaded for this: its identity is that of the weights the config
        names (file sha256s or Hub commit); a Hub embedder's revision is pinned to that commit.
        """
        self._write_latentrm_files(Path(out_dir), self.embedder_record())

    def _write_latentrm_files(self, out: Path, record: dict[str, Any]) -> None:
        write_files(out, self.embed_cfg, self.head, self.history, record,
                    self.max_response_chars, self.training)

    @classmethod
    def load(
        cls, in_dir: str | Path, embedder: Any | None = None, *, trust_remote_code: bool = False,
        check_identity: bool = True, embed_overrides: dict[str, Any] | None = None,
        root: str | Path | None = None,
    ) -> RewardModel:
        """The model saved in `in_dir` by :meth:`save` or :meth:`save_pretrained`.

        `embedder` (a loaded Embedder) saves loading the LLM again. `trust_remote_code` is the
        only way to let the embedder run its repository's code (a saved config asking for it is
        ignored, with a warning). `embed_overrides` changes embed config fields for serving
        (device, threads, batch_size, or `model` when the weights live elsewhere here; the
        identity check still applies). Every problem with the folder is one ModelError naming
        the file: every file must be a regular file inside `in_dir` (`root`, default `in_dir`:
        the folder its files may link into; from_pretrained passes the Hub cache's repo folder,
        whose snapshots link to its blobs), so nothing outside is read.
        """
        d = Path(in_dir)
        if not d.is_dir():
            raise DataError("reward model directory not found", path=str(d))
        base = Path(root) if root is not None else d
        info = read_info(d, base)
        cfg = read_embed_config(d, trust_remote_code, embed_overrides, base, info.get("embedder"))
        head, head_info = read_head(d, base)
        history = head_info.get("history")
        rm = cls(cfg, head, embedder=None, history=history,
                 max_response_chars=info.get("data", {}).get("max_response_chars"),
                 identity=info.get("embedder"), training=info.get("training"))
        rm.source = str(d)
        if check_identity and (rm.identity or {}).get("model_identity"):
            rm._verify(embedder)
        if embedder is not None:
            rm._check_dim(embedder)
            rm._embedder = embedder
        return rm

    def _verify(self, embedder: Any | None) -> None:
        """Check the recorded identity now when it can be known without loading a model."""
        if embedder is not None:
            if hasattr(embedder, "identity"):
                self._check_identity(embedder.identity(hash_memo()))
            return
        try:
            have = resolve_identity(self.embed_cfg, hash_memo())
        except ConfigError:  # e.g. the path is gone: loading the embedder will say so
            have = None
        if have is None:  # (or a Hub model not downloaded yet) checked once it is loaded
            self._verify_on_load = True
        else:
            self._check_identity(have)

    # --- the Hugging Face way ------------------------------------------------------------------
    def save_pretrained(  # type: ignore[override]
        self, save_directory: str | Path, *, export: str | None = None, dtype: str | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Write the whole model folder (module docstring), loading the embedder if needed.

        `export`: "transformers" (default; custom code, any head: the folder then also loads with
        ``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``),
        "native" (a plain *ForSequenceClassification, linear heads on decoders only) or "none"
        (latentrm files and the card only). `dtype` of the exported base weights (default: the
        dtype the embedder computes in). Other arguments are huggingface_hub's (push_to_hub=,
        repo_id=, ...).
        """
        out = Path(save_directory)
        existed = out.exists()
        card = kwargs.get("model_card_kwargs")
        try:
            # repo_id (the mixin's, for push_to_hub=True) is also the repo the card's usage loads
            with self._saving(export, dtype, card=card, repo_id=kwargs.get("repo_id")):
                return super().save_pretrained(save_directory, **kwargs)
        except BaseException:
            if not existed and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # a refused export leaves no empty folder behind
            raise

    def push_to_hub(  # type: ignore[override]
        self, repo_id: str, *, export: str | None = None, dtype: str | None = None, **kwargs: Any,
    ) -> str:
        """Upload the :meth:`save_pretrained` folder to the Hub repo `repo_id` (one commit).

        `export` and `dtype` as in save_pretrained; other arguments are huggingface_hub's
        (private=, token=, branch=, commit_message=, create_pr=, ...).
        """
        if "/" not in repo_id:  # the Hub puts a bare name under the token's user
            from huggingface_hub import HfApi

            repo_id = f"{HfApi(token=kwargs.get('token')).whoami()['name']}/{repo_id}"
        with self._saving(export, dtype, repo_id=repo_id):
            return super().push_to_hub(repo_id, **kwargs)

    @contextlib.contextmanager
    def _saving(self, export: str | None, dtype: str | None, *, card: dict | None = None,
                repo_id: str | None = None) -> Iterator[None]:
        """`export`/`dtype` (None: as set), the card's settings and the repo id the card's usage
        code loads, for the huggingface_hub save calls inside, restored after: the mixin's
        save_pretrained/push_to_hub take no such options of their own."""
        if export is not None and export not in EXPORTS:
            raise ConfigError(f"export must be one of {', '.join(EXPORTS)}, got {export!r}")
        if unknown := sorted(set(card or {}) - set(CARD_KEYS)):
            raise ConfigError(f"model_card_kwargs: unknown {', '.join(unknown)}; known: "
                              f"{', '.join(CARD_KEYS)}")
        old = dict(self._save_options)
        if export is not None:
            self._save_options["export"] = export
        if dtype is not None:
            self._save_options["dtype"] = dtype
        if card is not None:
            self._save_options["card"] = dict(card)
        if repo_id is not None:
            self._save_options["repo_id"] = repo_id
        try:
            yield
        finally:
            self._save_options = old

    def _save_pretrained(self, save_directory: Path) -> None:
        out = Path(save_directory)
        export = self._save_options["export"]
        emb = self.embedder  # loaded: the record holds the resolved pooling, dtype, ...
        if export != "none" and not isinstance(emb, Embedder):
            raise ConfigError(f"a transformers export needs latentrm's Embedder, not "
                              f"{type(emb).__name__}; use export='none'")
        if export == "native" and (why := native_reason(self)) is not None:
            raise ConfigError(f"cannot export natively: {why}; use export='transformers'")
        record = self.embedder_record()
        self._write_latentrm_files(out, record)
        offset = None
        if export == "transformers":
            export_transformers(self, out, dtype=self._save_options["dtype"], record=record)
        elif export == "native":
            export_native(self, out, dtype=self._save_options["dtype"], record=record)
            offset = fold_linear_head(self.head)[1]  # the constant config.json records
        else:
            for stale in ("config.json", "modeling_latentrm.py"):
                (out / stale).unlink(missing_ok=True)  # a folder of another save
        card = render_card(record, self.head.config(), self.training, self.max_response_chars,
                           export, offset=offset, card=self._save_options.get("card"),
                           repo_id=self._save_options.get("repo_id")
                           or self.training.get("repo_id"))
        atomic_write_text(out / "README.md", card)  # the mixin keeps an existing README.md

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
        token: str | bool | None = None, cache_dir: str | Path | None = None,
        local_files_only: bool = False, revision: str | None = None, **model_kwargs: Any,
    ) -> RewardModel:
        """A RewardModel from a model folder or a Hub repo id (:meth:`save_pretrained`'s).

        From the Hub only the latentrm files are downloaded (kilobytes), never the transformers
        copy of the base weights. `model_kwargs`: embedder=, trust_remote_code=,
        check_identity=, embed_overrides= (see :meth:`load`). The recorded embedder identity is
        checked: other files under the same name or path are refused (ModelError).
        """
        # The mixin's from_pretrained would read config.json, which is the transformers export's.
        return cls._from_pretrained(
            model_id=str(pretrained_model_name_or_path), revision=revision, cache_dir=cache_dir,
            force_download=force_download, local_files_only=local_files_only, token=token,
            **model_kwargs,
        )

    @classmethod
    def _from_pretrained(
        cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
        force_download: bool, local_files_only: bool, token: str | bool | None,
        embedder: Any | None = None, trust_remote_code: bool = False,
        check_identity: bool = True, embed_overrides: dict[str, Any] | None = None,
    ) -> RewardModel:
        p = Path(model_id).expanduser()
        root = None
        if p.is_dir():
            folder = p
        elif p.exists() or model_id.startswith(("/", ".", "~")) or model_id.count("/") != 1:
            raise DataError("not a reward model folder or Hub repo id", path=model_id)
        else:
            try:
                folder = Path(snapshot_download(
                    repo_id=model_id, revision=revision, cache_dir=cache_dir,
                    force_download=force_download, local_files_only=local_files_only,
                    token=token, allow_patterns=list(LATENTRM_FILES),
                ))
            except Exception as e:  # noqa: BLE001 - offline, gated, missing: one line for all
                msg = " ".join(str(e).split())[:300]
                raise ModelError(f"{model_id}: cannot fetch from the Hub ({type(e).__name__}: "
                                 f"{msg})") from None
            if folder.parent.name == "snapshots":  # <repo>/snapshots/<commit>/f -> <repo>/blobs
                root = folder.parent.parent
        return cls.load(folder, embedder, trust_remote_code=trust_remote_code,
                        check_identity=check_identity, embed_overrides=embed_overrides, root=root)


__all__ = ["FORMAT", "RewardModel"]
