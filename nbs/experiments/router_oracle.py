"""How far can a token router go? Its ceiling on the study's prompts, with no training (issue 27).

A router (`PromptDecomposer(kind="router")`, T5-only components, sum rule, w 2) whose choice per token is the label
that `lpd.routing.token_routes` gives it, instead of a learned one. Each component is then the prompt's own T5 states
at the tokens of its sentences and the empty prompt's states elsewhere, at the prompt's length (512). The prompts
are the study's (`lpd-eval --shapes_eval 240 --seed 1 --shapes_objects 2 9`, training phrasings, noise seed 0).

- `copy`: every token to component 0 (the whole prompt as one T5-only component, the `whole-t5` row);
- `objects`: K 9: a sentence that names one object to its cell's component; the rest (opening, background,
  relations, filler) to none;
- `objects-keep`: the same, the rest of the prompt's tokens to a tenth component of their own (nothing dropped);
- `sentences`: one component per sentence (K 36, the most a study prompt has), `</s>` to none;
- `blocks4`: the sentences in 4 blocks in order (what `--route_targets sentences` teaches a K 4 router).

    python nbs/experiments/router_oracle.py --out FILE.jsonl [--prompts 240] [--ways copy,objects,...] [--device cuda]
"""
import argparse
import json
import time
from pathlib import Path

import torch

from lpd.decomposer import PromptDecomposer
from lpd.evaluate import shapes_eval_prompts
from lpd.judge import aggregate, judge_row
from lpd.pipeline import PromptDecomposePipeline, load_pipeline
from lpd.routing import token_routes

LENGTH = 512
WAYS = {"copy": ("copy", 1), "objects": ("objects", 9), "objects-keep": ("objects", 10),
        "sentences": ("sentences", 36), "blocks4": ("sentences", 4)}


class LabelScores(torch.nn.Module):
    "Scores that send token t of prompt b to `labels[b, t]` (-100: to `rest`), as a router's `scores` module."

    def __init__(self, k: int):
        super().__init__()
        self.k, self.labels, self.rest = k, None, k

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        labels = self.labels.to(context.device)
        labels = torch.where(labels < 0, torch.full_like(labels, self.rest), labels)
        return 50.0 * torch.nn.functional.one_hot(labels, self.k + 1).to(context.dtype)


def labels_for(way: str, tokenizer, rows: list[dict]) -> torch.Tensor:
    mode, k = WAYS[way]
    if mode == "copy":
        return torch.zeros(len(rows), LENGTH, dtype=torch.long)
    labels = token_routes(mode, tokenizer, [r["prompt"] for r in rows], [r["scene"] for r in rows],
                          9 if way == "objects-keep" else k, LENGTH)
    if way == "objects-keep":  # unlabelled tokens of real sentences to component 9; </s> and padding to none
        real = tokenizer([r["prompt"] for r in rows], padding="max_length", max_length=LENGTH, truncation=True,
                         return_tensors="pt").attention_mask.bool()
        labels = torch.where((labels < 0) & real, torch.full_like(labels, 9), labels)
    return labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--prompts", type=int, default=240)
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    base = load_pipeline(None, None, args.device, dtype)
    rows = shapes_eval_prompts(240, 1, base.tokenizer_3, (2, 9), "train")[: args.prompts]
    records = []
    for way in args.ways.split(","):
        k = WAYS[way][1]
        dec = PromptDecomposer(num_components=k, num_tokens=LENGTH, width=base.transformer.config.joint_attention_dim,
                               use_attention_mask=True, kind="router", component_clip="empty", composition="sum")
        pipe = PromptDecomposePipeline(**base.components, decomposer=dec.to(args.device, dtype))
        pipe.set_progress_bar_config(disable=True)
        dec.set_blank(pipe.encode([""], None, False, max_sequence_length=LENGTH)[0].t5_embeds[0])
        scores = dec.mask_head.router.scores = LabelScores(k)
        start = time.time()
        for i in range(0, len(rows), args.batch):
            batch = rows[i : i + args.batch]
            scores.labels = labels_for(way, pipe.tokenizer_3, batch)
            images = pipe([r["prompt"] for r in batch], num_inference_steps=20, height=64, width=64,
                          guidance_scale=2.0, max_sequence_length=LENGTH,
                          generator=[torch.Generator("cpu").manual_seed(0) for _ in batch]).images
            for r, image in zip(batch, images):
                records.append({"way": way, "id": r["id"], "seed": 0, "num_objects": int(r["num_objects"]),
                                "t5_tokens": int(r["t5_tokens"]), **judge_row(image, r)})
        mine = [x for x in records if x["way"] == way]
        summary = {f"{m}{tag}": [round(v, 3) for v in s[m + "_ci"]] + [round(s[m], 3)]
                   for tag, part in (("", mine), (" 4-9", [x for x in mine if x["num_objects"] >= 4]))
                   for s in aggregate(part) for m in ("presence", "location")}
        print(json.dumps({"way": way, "k": k, "prompts": len(mine), "seconds": round(time.time() - start),
                          **summary}), flush=True)
    Path(args.out).write_text("".join(json.dumps(x) + "\n" for x in records))


if __name__ == "__main__":
    main()
