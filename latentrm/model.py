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
                                  the transformers export (latentrm.hub.export, hub.native;
                                  save_pretrained itself: latentrm.hub.pretrained)

:meth:`RewardModel.save` writes the first group (what `latentrm run` writes per head, kilobytes);
:meth:`RewardModel.save_pretrained` all of it. :meth:`RewardModel.load` reads both (and older
folders without latentrm.json, unchecked). Security: a model folder never turns on remote code
and never reads files outside itself; remote code comes only from the caller
(``trust_remote_code=True``, ``--trust-remote-code``), with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentrm import __version__
from latentrm.config import EmbedConfig
from latentrm.data.messages import as_batch, as_prompt, as_response
from latentrm.embed.embedder import Embedder
from latentrm.embed.models import resolve_identity, resolve_model
from latentrm.errors import ConfigError, DataError
from latentrm.head.reward import EnsembleHead, RewardHead, check_scores
from latentrm.head.train import History
from latentrm.hub.card_meta import TAGS
from latentrm.hub.folder import (
    FORMAT,
    INFO_FILE,
    check_identity,
    check_resolved,
    hash_memo,
    read_embed_config,
    read_info,
    write_files,
)
from latentrm.hub.head import read_head
from latentrm.hub.pretrained import HubMixin
from latentrm.runtime import NoBar, quiet_serving

log = logging.getLogger(__name__)


class RewardModel(
    HubMixin,
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
        self,
        embed_cfg: EmbedConfig,
        head: RewardHead | EnsembleHead,
        embedder: Any | None = None,
        history: History | None = None,
        *,
        max_response_chars: int | None = None,
        identity: dict | None = None,
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
            raise ConfigError(
                "return_spread needs an ensemble head (train with reward.ensemble "
                f"> 1); {self.source or 'this reward model'} holds a single head"
            )
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
            return (
                emb.embed(ctx, texts, bar=NoBar())
                if isinstance(emb, Embedder)
                else emb.embed(ctx, texts)
            )

    # --- active selection ----------------------------------------------------------------------
    def suggest(
        self,
        pool: Sequence[Any],
        k: int,
        *,
        strategy: str = "hybrid",
        seed: int = 0,
        labelled: Sequence[Any] | None = None,
        top_m: int | None = None,
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

        return suggest_pairs(
            self._embed,
            self.head,
            pool,
            k,
            strategy=strategy,
            seed=seed,
            labelled=labelled,
            top_m=top_m,
            shuffle_sides=shuffle_sides,
            where=self.source or "reward model",
        )

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
        return {
            "model": cfg.model,
            "path": path,
            "gguf_file": cfg.gguf_file or alias_gguf,
            "revision": cfg.revision,
            "model_identity": ident,
            "pooling": cfg.pooling,
            "layer": cfg.layer,
            "layers": list(cfg.layers),
            "max_length": cfg.max_length,
            "text_format": cfg.text_format,
            "dtype": cfg.dtype,
            "dim": self.head.d,
            "latentrm_version": __version__,
        }

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
        write_files(
            out,
            self.embed_cfg,
            self.head,
            self.history,
            record,
            self.max_response_chars,
            self.training,
        )

    @classmethod
    def load(
        cls,
        in_dir: str | Path,
        embedder: Any | None = None,
        *,
        trust_remote_code: bool = False,
        check_identity: bool = True,
        embed_overrides: dict[str, Any] | None = None,
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
        rm = cls(
            cfg,
            head,
            embedder=None,
            history=history,
            max_response_chars=info.get("data", {}).get("max_response_chars"),
            identity=info.get("embedder"),
            training=info.get("training"),
        )
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


__all__ = ["FORMAT", "RewardModel"]
