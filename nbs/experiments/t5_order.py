"""Does the toy's T5 carry word order? Why T5-only captions of two or three objects are not placed (issue 26).

For pairs of two-object captions that differ only in which colour goes with which shape ("a red circle ... and a blue
square ..." against "a blue circle ... and a red square ..."), the relative difference of the two encodings, token
by token after sorting the tokens (the same multiset of words, so a bag of words gives 0): for the embedded toy's
frozen random T5, for CLIP (absolute positions, so order shows), for a T5 of the same config, another seed, and for
the toy's T5 with its relative-position biases scaled (`lpd.toy`'s `t5_position_scale`).

    python nbs/experiments/t5_order.py [--out reports/toy-study/open/t5_order.json] [--scales 3 10 30]
"""
import argparse
import itertools
import json
from pathlib import Path

import torch
from transformers import T5EncoderModel

from lpd.pipeline import load_pipeline
from lpd.toy import ToySD3Config, toy_pipeline

COLOURS, SHAPES = ["red", "blue", "green", "yellow"], ["circle", "square", "triangle"]
PLACES = ["at the top left", "at the bottom right"]


def pairs():
    "Caption pairs with the colours of their two objects swapped."
    for (c1, c2), (s1, s2) in itertools.product(itertools.permutations(COLOURS, 2),
                                                itertools.permutations(SHAPES, 2)):
        a = f"a {c1} {s1} {PLACES[0]} and a {c2} {s2} {PLACES[1]}."
        b = f"a {c2} {s1} {PLACES[0]} and a {c1} {s2} {PLACES[1]}."
        yield a, b


@torch.no_grad()
def bag_difference(encode, tokenizer, a: str, b: str) -> float:
    "|E(a) - E(b)| / |E(a)| over the tokens sorted by id: 0 when the encoder sees only which words occur."
    states = []
    for text in (a, b):
        ids = tokenizer(text, return_tensors="pt").input_ids
        states.append(encode(ids)[0][torch.argsort(ids[0], stable=True)])
    return ((states[0] - states[1]).norm() / states[0].norm()).item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/toy-study/open/t5_order.json")
    p.add_argument("--scales", type=float, nargs="*", default=[3.0, 10.0, 30.0],
                   help="also the toy's T5 with its position biases scaled so (lpd.toy's t5_position_scale)")
    args = p.parse_args(argv)
    pipe = load_pipeline(None, None, "cpu", "fp32")
    torch.manual_seed(1)  # the toy's own T5 is the seed-0 draw of this config
    fresh = T5EncoderModel(pipe.text_encoder_3.config).eval()
    encoders = {
        "toy T5 (shipped)": (lambda ids: pipe.text_encoder_3(ids).last_hidden_state, pipe.tokenizer_3),
        "T5, same config, seed 1": (lambda ids: fresh(ids).last_hidden_state, pipe.tokenizer_3),
        "toy CLIP-L (penultimate)": (lambda ids: pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2],
                                     pipe.tokenizer),
    }
    for scale in args.scales:
        t5 = toy_pipeline(ToySD3Config(t5_position_scale=scale)).text_encoder_3
        encoders[f"toy T5, position biases x {scale:g}"] = (lambda ids, t5=t5: t5(ids).last_hidden_state,
                                                           pipe.tokenizer_3)
    captions = list(pairs())
    result = {"pairs": len(captions), "example": captions[0], "relative_difference": {}}
    for name, (encode, tokenizer) in encoders.items():
        diffs = torch.tensor([bag_difference(encode, tokenizer, a, b) for a, b in captions])
        result["relative_difference"][name] = {"mean": round(diffs.mean().item(), 4),
                                               "max": round(diffs.max().item(), 4)}
        print(f"{name:32s} mean {diffs.mean():.4f}  max {diffs.max():.4f}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
