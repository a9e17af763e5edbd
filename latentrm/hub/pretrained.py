"""The Hugging Face way for :class:`latentrm.model.RewardModel`: ``save_pretrained`` /
``push_to_hub`` (the latentrm files, a model card and a transformers export in one folder) and
``from_pretrained`` (a folder or a Hub repo id), on huggingface_hub's ModelHubMixin.

:class:`HubMixin` is RewardModel's base; it uses the model's ``save``-side helpers
(``embedder``, ``embedder_record``, ``_write_latentrm_files``, ``head``, ``training``,
``max_response_chars``) and ``load``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import ModelHubMixin, snapshot_download

from latentrm.embed.embedder import Embedder
from latentrm.errors import ConfigError, DataError, ModelError
from latentrm.hub.card import render_card
from latentrm.hub.card_meta import CARD_KEYS
from latentrm.hub.export import export_transformers
from latentrm.hub.folder import LATENTRM_FILES
from latentrm.hub.native import export_native, fold_linear_head, native_reason
from latentrm.io import atomic_write_text

# The class from_pretrained returns: RewardModel, without importing it (it imports this module).
M = TypeVar("M", bound="HubMixin")

EXPORTS = ("transformers", "native", "none")  # what save_pretrained can add to the folder


class HubMixin(ModelHubMixin):
    """save_pretrained / push_to_hub / from_pretrained for a RewardModel (see the module)."""

    _save_options: dict[str, Any]

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | Path,
        *,
        export: str | None = None,
        dtype: str | None = None,
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
        self,
        repo_id: str,
        *,
        export: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
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
    def _saving(
        self,
        export: str | None,
        dtype: str | None,
        *,
        card: dict | None = None,
        repo_id: str | None = None,
    ) -> Iterator[None]:
        """`export`/`dtype` (None: as set), the card's settings and the repo id the card's usage
        code loads, for the huggingface_hub save calls inside, restored after: the mixin's
        save_pretrained/push_to_hub take no such options of their own."""
        if export is not None and export not in EXPORTS:
            raise ConfigError(f"export must be one of {', '.join(EXPORTS)}, got {export!r}")
        if unknown := sorted(set(card or {}) - set(CARD_KEYS)):
            raise ConfigError(
                f"model_card_kwargs: unknown {', '.join(unknown)}; known: {', '.join(CARD_KEYS)}"
            )
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
            raise ConfigError(
                f"a transformers export needs latentrm's Embedder, not "
                f"{type(emb).__name__}; use export='none'"
            )
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
        card = render_card(
            record,
            self.head.config(),
            self.training,
            self.max_response_chars,
            export,
            offset=offset,
            card=self._save_options.get("card"),
            repo_id=self._save_options.get("repo_id") or self.training.get("repo_id"),
        )
        atomic_write_text(out / "README.md", card)  # the mixin keeps an existing README.md

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[M],
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: Any,
    ) -> M:
        """A RewardModel from a model folder or a Hub repo id (:meth:`save_pretrained`'s).

        From the Hub only the latentrm files are downloaded (kilobytes), never the transformers
        copy of the base weights. `model_kwargs`: embedder=, trust_remote_code=,
        check_identity=, embed_overrides= (see :meth:`load`). The recorded embedder identity is
        checked: other files under the same name or path are refused (ModelError).
        """
        # The mixin's from_pretrained would read config.json, which is the transformers export's.
        return cls._from_pretrained(
            model_id=str(pretrained_model_name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            **model_kwargs,
        )

    @classmethod
    def _from_pretrained(
        cls: type[M],
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        embedder: Any | None = None,
        trust_remote_code: bool = False,
        check_identity: bool = True,
        embed_overrides: dict[str, Any] | None = None,
    ) -> M:
        p = Path(model_id).expanduser()
        root = None
        if p.is_dir():
            folder = p
        elif p.exists() or model_id.startswith(("/", ".", "~")) or model_id.count("/") != 1:
            raise DataError("not a reward model folder or Hub repo id", path=model_id)
        else:
            try:
                folder = Path(
                    snapshot_download(
                        repo_id=model_id,
                        revision=revision,
                        cache_dir=cache_dir,
                        force_download=force_download,
                        local_files_only=local_files_only,
                        token=token,
                        allow_patterns=list(LATENTRM_FILES),
                    )
                )
            except Exception as e:  # noqa: BLE001 - offline, gated, missing: one line for all
                msg = " ".join(str(e).split())[:300]
                raise ModelError(
                    f"{model_id}: cannot fetch from the Hub ({type(e).__name__}: {msg})"
                ) from None
            if folder.parent.name == "snapshots":  # <repo>/snapshots/<commit>/f -> <repo>/blobs
                root = folder.parent.parent
        return cls.load(
            folder,
            embedder,
            trust_remote_code=trust_remote_code,
            check_identity=check_identity,
            embed_overrides=embed_overrides,
            root=root,
        )
