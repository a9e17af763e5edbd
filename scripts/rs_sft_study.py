"""The rejection-sampling fine-tuning study (issue 25): whose picks make the better policy?

A SmolLM2-135M policy samples N responses to HH prompts; a reward head picks the best per prompt
(the plain head, LENS, the 5-head ensemble, or random picks); the policy is LoRA-fine-tuned on
the picks (`latentrm.recipes.rs_sft.rs_sft`). Each fine-tuned policy then answers held-out
prompts and a judge head, trained on HH pairs that no picker saw, compares it with the others
(`latentrm.recipes.rs_sft.judge_policies`).

Splits of the HH file, by prompt (seeded by `split_seed`, disjoint): judge prompts (held-out
answers only), policy prompts (sampled and fine-tuned on), picker pairs (`n_head_pairs`: the
pickers' training data) and the judge's pairs (every remaining pair, policy prompts included).
Embeddings come from the shared cache (the embed settings of `head_config`).

    python scripts/rs_sft_study.py configs/studies/rs_sft_hh.yaml [key=value ...]

Resumable: a finished policy (its rs_sft.json) and finished judgements are kept, and every
generation goes through the generation cache. Writes OUT/results.json, OUT/results.md and
reports/rs_sft_hh/.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("rs_sft_study")


def load_study(path: Path, overrides: list[str]) -> dict[str, Any]:
    cfg = yaml.safe_load(path.read_text())
    for o in overrides:
        key, _, value = o.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for k in parents:
            node = node[k]
        node[leaf] = yaml.safe_load(value)
    return cfg


def split_by_prompt(ds: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Disjoint judge prompts, policy prompts, picker pairs and judge-training pairs."""
    from latentrm.text.generation import prompt_key

    keys = [prompt_key(p.prompt) for p in ds]
    order = list(dict.fromkeys(keys))  # distinct prompts, file order
    rng = np.random.default_rng(cfg["split_seed"])
    order = [order[i] for i in rng.permutation(len(order))]
    nj, npol = cfg["n_judge_prompts"], cfg["n_policy_prompts"]
    judge_p, policy_p = set(order[:nj]), set(order[nj : nj + npol])
    rest = [i for i, k in enumerate(keys) if k not in judge_p and k not in policy_p]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    # Picker pairs: whole prompts only, so no prompt is shared with the judge's pairs.
    picker, used = [], set()
    for i in rest:
        if len(picker) >= cfg["n_head_pairs"]:
            break
        picker.append(i)
        used.add(keys[i])
    picker = [i for i in rest if keys[i] in used]
    judge_train = [i for i, k in enumerate(keys) if k not in used and k not in judge_p]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    return {
        "judge_prompts": [ds[first[k]].prompt for k in order[:nj]],
        "policy_prompts": [ds[first[k]].prompt for k in order[nj : nj + npol]],
        "picker_pairs": ds.subset(sorted(picker)),
        "judge_pairs": ds.subset(sorted(judge_train)),
    }


class MemoEmbedder:
    """One loaded Embedder shared by every head, each (prompt, response) embedded once."""

    def __init__(self, emb: Any) -> None:
        self.inner, self.dim, self.memo = emb, emb.dim, {}

    def embed(self, prompts: Any, responses: Any) -> np.ndarray:
        from latentrm.embed.store import row_key
        from latentrm.runtime import NoBar

        keys = [row_key(p, r) for p, r in zip(prompts, responses, strict=True)]
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self.memo:
                todo.setdefault(k, i)
        if todo:
            idx = list(todo.values())
            e = self.inner.embed([prompts[i] for i in idx], [responses[i] for i in idx], NoBar())
            self.memo.update(zip(todo, e, strict=True))
        return np.stack([self.memo[k] for k in keys])


def write_prompts(path: Path, prompts: list) -> Path:
    from latentrm.data.writers import write_rows

    write_rows([{"prompt": [dict(m) for m in p]} for p in prompts], path)
    return path


def fmt_ci(r: dict[str, Any]) -> str:
    return f"{r['win_rate']:.3f} [{r['win_rate_lo']:.3f}, {r['win_rate_hi']:.3f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    cfg = load_study(args.config, args.overrides)

    import torch

    import latentrm
    from latentrm.config import load_config
    from latentrm.data import load_pairs
    from latentrm.embed.embedder import Embedder
    from latentrm.model import RewardModel
    from latentrm.recipes.rs_sft import RandomScorer, judge_policies, rs_sft
    from latentrm.text.generation import SamplingConfig
    from latentrm.text.rs_sft import SFTConfig

    torch.set_num_threads(int(cfg["threads"]))
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cache = cfg["cache_dir"]
    t_start = time.perf_counter()
    ds = load_pairs(cfg["data"])
    parts = split_by_prompt(ds, cfg)
    log.info(
        "%d judge prompts, %d policy prompts, %d picker pairs, %d judge pairs",
        len(parts["judge_prompts"]),
        len(parts["policy_prompts"]),
        len(parts["picker_pairs"]),
        len(parts["judge_pairs"]),
    )
    policy_file = write_prompts(out / "policy_prompts.jsonl", parts["policy_prompts"])
    judge_file = write_prompts(out / "judge_prompts.jsonl", parts["judge_prompts"])
    head_cfg = load_config(ROOT / cfg["head_config"], list(cfg.get("head_overrides", [])))
    emb = MemoEmbedder(Embedder(head_cfg.embed))

    def head(data: Any, method: str, seed: int) -> RewardModel:
        rm = latentrm.fit(
            data, method=method, config=head_cfg, seed=seed, cache_dir=cache, embedder=emb.inner
        )
        return RewardModel(
            rm.embed_cfg,
            rm.head,
            embedder=emb,
            training=rm.training,
            max_response_chars=rm.max_response_chars,
        )

    judge = head(parts["judge_pairs"], "none", 0)
    sampling = SamplingConfig(**cfg["sampling"], device="cpu", show_progress=False)
    judge_sampling = SamplingConfig(**cfg["judge_sampling"], device="cpu", show_progress=False)
    policy = cfg["policy"]
    results: dict[str, Any] = {"config": cfg, "rows": [], "picks": {}}
    timing: dict[str, float] = {}
    for seed in cfg["seeds"]:
        samp = dataclasses.replace(sampling, seed=seed)
        jsamp = dataclasses.replace(judge_sampling, seed=1000 + seed)
        sft = SFTConfig(**cfg["sft"], seed=seed, max_prompt_tokens=samp.max_prompt_tokens)
        policies = {"base": policy}
        for picker in cfg["pickers"]:
            folder = out / f"seed{seed}" / picker
            policies[picker] = str(folder)
            if (folder / "rs_sft.json").exists():
                rec = json.loads((folder / "rs_sft.json").read_text())["summary"]
                if picker != "random":  # refit (seconds, cached embeddings) for its val accuracy
                    fitted = head(parts["picker_pairs"], picker, seed)
                    rec["picker_val_accuracy"] = fitted.training["metrics"]["val_accuracy"]
                results["picks"][f"{seed}/{picker}"] = rec
                continue
            t0 = time.perf_counter()
            scorer = (
                RandomScorer(seed)
                if picker == "random"
                else head(parts["picker_pairs"], picker, seed)
            )
            if folder.exists():
                shutil.rmtree(folder)  # an unfinished one
            summary = rs_sft(
                policy, scorer, folder, prompts=policy_file, sampling=samp, sft=sft, cache_dir=cache
            )
            if hasattr(scorer, "training"):
                summary["picker_val_accuracy"] = scorer.training["metrics"]["val_accuracy"]
            summary.pop("generation", None)
            results["picks"][f"{seed}/{picker}"] = summary
            timing[f"rs-sft {seed}/{picker}"] = time.perf_counter() - t0
        for a, b in cfg["comparisons"]:
            name = f"seed{seed}/{a}-vs-{b}"
            done = out / f"{name}.json"
            if done.exists():
                r = json.loads(done.read_text())
            else:
                t0 = time.perf_counter()
                r = judge_policies(
                    judge,
                    judge_file,
                    policies[a],
                    policies[b],
                    sampling=jsamp,
                    cache_dir=cache,
                    out=out / f"{name}.answers.jsonl",
                    n_bootstrap=int(cfg["n_bootstrap"]),
                )
                done.write_text(json.dumps(r, indent=1))
                timing[f"judge {name}"] = time.perf_counter() - t0
            results["rows"].append({"seed": seed, "a": a, "b": b, **r})
    same = {}
    for seed in cfg["seeds"]:
        idx = {
            k: [
                json.loads(x)["index"]
                for x in (out / f"seed{seed}" / k / "picks.jsonl").read_text().splitlines()
            ]
            for k in cfg["pickers"]
        }
        for a, b in itertools.combinations(cfg["pickers"], 2):
            same[f"{seed}: {a} = {b}"] = sum(x == y for x, y in zip(idx[a], idx[b], strict=True))
    results["same_pick"] = same
    # A resumed run adds its time to the earlier runs' (their steps were not redone).
    old = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    results["timing_seconds"] = {**old.get("timing_seconds", {}), **timing}
    results["total_seconds"] = old.get("total_seconds", 0.0) + time.perf_counter() - t_start
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    md = render(results, cfg, len(parts["judge_pairs"]), len(parts["picker_pairs"]))
    (out / "results.md").write_text(md)
    rep = ROOT / "reports" / cfg.get("report_name", "rs_sft_hh")
    rep.mkdir(parents=True, exist_ok=True)
    # The report names the data and cache as the config file does, not where this machine has them.
    given = yaml.safe_load(args.config.read_text())
    for f in ("results.md", "results.json", "config.yaml"):
        text = (out / f).read_text()
        for key in ("data", "cache_dir"):
            if str(cfg[key]) != str(given[key]):
                text = text.replace(str(cfg[key]), str(given[key]))
        (rep / f).write_text(text)
    print(md)
    return 0


def render(res: dict[str, Any], cfg: dict[str, Any], n_judge_pairs: int, n_pick: int) -> str:
    s, j = cfg["sampling"], cfg["judge_sampling"]
    lines = [
        f"Policy {cfg['policy']} (SmolLM2-135M-Instruct), {cfg['n_policy_prompts']} policy prompts"
        f" x N={s['n']} samples (temperature {s['temperature']}, top_p {s['top_p']}, "
        f"{s['max_new_tokens']} new tokens, prompts cut to {s['max_prompt_tokens']} tokens), "
        f"LoRA r={cfg['sft']['lora_r']}, {cfg['sft']['epochs']} epoch, learning rate "
        f"{cfg['sft'].get('lr') or 1e-4:g}; pickers trained on "
        f"{n_pick} HH pairs; judge: the plain head on {n_judge_pairs} other HH pairs; "
        f"{cfg['n_judge_prompts']} held-out judge prompts, {j['n']} answer each "
        f"(temperature {j['temperature']}); seeds {cfg['seeds']}. Win rate of A over B (ties "
        "half; a tie is almost always the same answer, word for word) with a 95% bootstrap CI "
        "over judge prompts.\n",
        "| seed | A | B | A wins | wins/ties/losses | judged reward A | B | words A | B |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['seed']} | {r['a']} | {r['b']} | {fmt_ci(r)} | "
            f"{r['wins']}/{r['ties']}/{r['losses']} | {r['reward_a']:.3f} |"
            f" {r['reward_b']:.3f} | {r['words_a']:.1f} | {r['words_b']:.1f} |"
        )
    lines += [
        "",
        "Picks (policy prompts; judge-free: the picker's own scores):",
        "",
        "| seed/picker | picker val acc | kept | picked vs all chars | final SFT loss |",
        "|---|---|---|---|---|",
    ]
    for k, v in res["picks"].items():
        acc = v.get("picker_val_accuracy")
        lines.append(
            f"| {k} | {'-' if acc is None else f'{acc:.3f}'} | {v['kept']} | "
            f"{v['chars_mean_picked']:.0f} vs {v['chars_mean_all']:.0f} | "
            f"{v['final_loss']:.3f} |"
        )
    lines.append(
        "\nPrompts on which two pickers chose the same response (of "
        f"{cfg['n_policy_prompts']}; N={s['n']}, so 1/{s['n']} by chance): "
        + ", ".join(f"{k}: {v}" for k, v in res.get("same_pick", {}).items())
        + "."
    )
    lines.append(f"\nWall time, all runs of this out_dir: {res['total_seconds'] / 60:.0f} min.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
