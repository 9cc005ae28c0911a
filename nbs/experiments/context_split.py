"""Do the prompt's own T5 states compose? A CPU probe for issue 27's copy path (no training).

A decomposer that only *selects* tokens of the prompt's T5 encoding (a copy path) can at best render what a split of
those contextual states renders. This composes, for each held-out prompt of the study (`lpd-eval --shapes_eval 240
--seed 1 --shapes_objects 2 9`, training phrasings, noise seed 0), one T5-only component per sentence, sum rule,
w 2, 64 tokens per component, in three ways:

- `alone`: each sentence encoded on its own (the study's `sentences` row, recomputed here on the CPU);
- `context`: the sentence's tokens taken from the whole prompt's encoding (they have read the rest of the prompt),
  then the empty prompt's end-of-text and padding states to 64 tokens;
- `context-pad`: the same tokens in their positions of the whole prompt's encoding, the other positions the empty
  prompt's (first 512 tokens: a component that is the prompt with the other sentences blanked out).

    python nbs/experiments/context_split.py N_PROMPTS --out FILE.jsonl    # per prompt and way: the judge's scores
"""
import argparse
import json
import time
from pathlib import Path

import torch

from lpd.evaluate import shapes_eval_prompts
from lpd.judge import aggregate, judge_row
from lpd.pipeline import SPLIT_SETTINGS, load_pipeline, text_composer
from lpd.routing import sentence_of_tokens
from lpd.text import encode_long_prompt, sentences

WAYS = ("alone", "context", "context-pad")

def sentence_tokens(tokenizer, prompt: str) -> list[list[int]]:
    "For each sentence of `prompt`, the positions of its T5 tokens in the whole prompt's encoding."
    out = [[] for _ in sentences(prompt)]
    for t, s in enumerate(sentence_of_tokens(tokenizer, prompt, 512)):
        if s >= 0:
            out[s].append(t)
    return out

class ContextComposer:
    "Feeds the pipeline's sentence split T5 states built from the whole prompt's encoding (keys: 'pid|k')."

    def __init__(self, pipe, way: str):
        self.pipe, self.way, self.states = pipe, way, {}
        self.plain = pipe.plain_embeds
        pipe.plain_embeds = self.plain_embeds

    def prepare(self, pid: str, prompt: str) -> list[str]:
        whole = encode_long_prompt(self.pipe, [prompt], max_sequence_length=512).t5_embeds[0]  # (512, D)
        length = 512 if self.way == "context-pad" else 64
        empty = encode_long_prompt(self.pipe, [""], max_sequence_length=length).t5_embeds[0]  # EOS, then padding
        keys = []
        for k, tokens in enumerate(sentence_tokens(self.pipe.tokenizer_3, prompt)):
            if self.way == "context":
                tokens = tokens[:63]
                t5 = torch.cat([whole[tokens], empty[: length - len(tokens)]])
            else:
                t5 = empty.clone()
                t5[tokens] = whole[tokens]
            self.states[f"{pid}|{k}"] = t5
            keys.append(f"{pid}|{k}")
        return keys

    def plain_embeds(self, texts, num_images_per_prompt=1, max_sequence_length=512, clip_skip=None):
        if not any(t in self.states for t in texts):
            return self.plain(texts, num_images_per_prompt, max_sequence_length, clip_skip)
        embeds, pooled = self.plain([""] * len(texts), num_images_per_prompt, max_sequence_length, clip_skip)
        embeds = embeds.clone()  # the empty prompt's rows; the CLIP part stays the empty prompt's (T5-only components)
        for i, t in enumerate(texts):
            if t in self.states:
                embeds[i * num_images_per_prompt : (i + 1) * num_images_per_prompt, 77:] = self.states[t]
        return embeds, pooled

def main():
    p = argparse.ArgumentParser()
    p.add_argument("n", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--ways", default=",".join(WAYS))
    args = p.parse_args()
    torch.manual_seed(0)
    base = load_pipeline(None, None, "cpu", torch.float32)
    base.set_progress_bar_config(disable=True)
    rows = shapes_eval_prompts(240, 1, base.tokenizer_3, (2, 9), "train")[: args.n]
    records = []
    for way in args.ways.split(","):
        pipe = text_composer(base)
        composer = ContextComposer(pipe, way) if way != "alone" else None
        start = time.time()
        for r in rows:
            texts = composer.prepare(r["id"], r["prompt"]) if composer else sentences(r["prompt"])
            settings = {**SPLIT_SETTINGS, "sub_prompt_length": 512 if way == "context-pad" else 64}
            image = pipe(sub_prompts=[texts], **settings, num_inference_steps=20, height=64, width=64,
                         generator=torch.Generator("cpu").manual_seed(0)).images[0]
            records.append({"way": way, "id": r["id"], "seed": 0, "num_objects": r["num_objects"],
                            "t5_tokens": r["t5_tokens"], **judge_row(image, r)})
        summary = aggregate([x for x in records if x["way"] == way])[0]
        print(json.dumps({"way": way, "prompts": len(rows), "seconds": round(time.time() - start),
                          **{m: round(summary[m], 3) for m in ("presence", "location")}}), flush=True)
    Path(args.out).write_text("".join(json.dumps(x) + "\n" for x in records))

if __name__ == "__main__":
    main()
