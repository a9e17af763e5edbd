"""`latentrm export HEAD_DIR OUT [--push REPO]`: a run's head as a Hugging Face model folder.

A head folder of `latentrm run` (`OUT/heads/<method>-r<ratio>`, kilobytes: head + embed config +
latentrm.json) becomes the full `RewardModel.save_pretrained` folder (model card, transformers
export, tokenizer), optionally uploaded to the Hub in one commit. Glue only: loading, saving and
the card are latentrm.model's and latentrm.hub's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from latentrm.errors import ConfigError
from latentrm.io import check_output_dir

log = logging.getLogger(__name__)


def export_head(
    head_dir: str | Path,
    out: str | Path,
    *,
    export: str = "transformers",
    dtype: str | None = None,
    push: str | None = None,
    private: bool | None = None,
    card: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Write the save_pretrained folder of the reward model in `head_dir` to `out`; with `push`
    (a Hub repo id) also upload that folder there, its card loading `push`.

    `export`: transformers | native | none (RewardModel.save_pretrained); `card`: the card's
    settings (dataset, license, language, title, tags). Returns {"out", "files", "url"}.
    """
    from latentrm.model import RewardModel

    head = Path(head_dir)
    out_dir = check_output_dir(out, "export folder")
    if out_dir.resolve() == head.resolve():
        raise ConfigError(f"{out}: is the head folder itself; export into another folder")
    if push is not None and push.count("/") != 1:
        raise ConfigError(f"--push {push!r}: give the Hub repo as owner/name")
    rm = RewardModel.load(head, trust_remote_code=trust_remote_code)
    rm.save_pretrained(
        out_dir, export=export, dtype=dtype, repo_id=push, model_card_kwargs=card or None
    )
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    url = None
    if push is not None:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push, private=private, exist_ok=True)
        url = str(
            api.upload_folder(
                repo_id=push,
                folder_path=str(out_dir),
                commit_message=f"latentrm export of {head.name}",
            )
        )
        log.info("pushed %s to %s", out_dir, push)
    return {"out": str(out_dir), "files": files, "url": url}
