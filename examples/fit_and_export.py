"""From a TRL preference dataset to a reward model any transformers tool can load, in a few lines.

    python examples/fit_and_export.py --data ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz \
        --pairs 200 --out runs/rm-minilm [--push-to-hub me/rm-minilm]

`latentrm.fit` trains a reward head on frozen embeddings (MiniLM here: offline, fast on a CPU);
`save_pretrained` writes a folder that latentrm (`RewardModel.from_pretrained`) and transformers
(`AutoModelForSequenceClassification.from_pretrained(..., trust_remote_code=True)`) both load,
with a model card. The script checks that transformers gives latentrm's scores.
"""

from __future__ import annotations

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="preference data file or Hub dataset id")
    parser.add_argument("--pairs", type=int, default=200, help="train on the first N pairs")
    parser.add_argument("--embedder", default="minilm", help="alias, Hub id or local path")
    parser.add_argument("--method", default="none", help="none | direct | gaussian | lens")
    parser.add_argument("--out", required=True, help="folder for save_pretrained")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO_ID")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    import datasets
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import latentrm
    from latentrm.data import load_pairs

    # Any TRL preference dataset works; here HH pairs in TRL's conversational format.
    pairs = load_pairs(args.data).pairs[: args.pairs]
    data = datasets.Dataset.from_list(
        [
            {
                "prompt": list(p.prompt),
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in pairs
        ]
    )

    rm = latentrm.fit(
        data, embedder=args.embedder, method=args.method, overrides={"embed.dtype": "float32"}
    )
    print(f"trained: {rm.training['metrics']}")
    rm.save_pretrained(args.out)

    tok = AutoTokenizer.from_pretrained(args.out, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(args.out, trust_remote_code=True)
    prompt = [{"role": "user", "content": "How do I boil an egg?"}]
    answers = ["Simmer it for 8 minutes, then cool it in cold water.", "Eggs are boring."]
    texts = [
        tok.apply_chat_template([*prompt, {"role": "assistant", "content": a}], tokenize=False)
        for a in answers
    ]
    with torch.no_grad():
        hf = model(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0].numpy()
    ours = rm.score([prompt] * 2, answers)
    print(
        f"latentrm {np.round(ours, 5)}, transformers {np.round(hf, 5)}, "
        f"max |diff| {np.abs(hf - ours).max():.2g}"
    )
    if args.push_to_hub:
        print(rm.push_to_hub(args.push_to_hub))


if __name__ == "__main__":
    main()
