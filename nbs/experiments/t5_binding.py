"""Does the toy's T5 bind words? Linear probes on the shape word's state of two- and three-object captions.

SD3's transformer gives text tokens no positions, so which colour and which grid cell go with which shape must be in
the text encoder's states. For held-out short captions of the shapes world (`lpd.shapes.short_caption`, 2-3 objects)
a ridge probe fitted on 3,000 captions reads, from the state of each object's shape word alone, the object's colour,
row and column on 600 others; and the relative change of the states between padding to 64 and to 512 T5 tokens (the
toy is trained at 64-512). Encoders: the embedded toy's random T5, the same with its position biases x 30 (issue 26's
first try, `lpd.toy`'s `t5_position_scale`) and with biases decaying with distance (`t5_attention_decay`).

    python nbs/experiments/t5_binding.py [--out reports/toy-study/open/t5_binding.json]
"""
import argparse
import json
import random
from pathlib import Path

import torch

from lpd.shapes import COLOURS, sample_scene, short_caption
from lpd.tiny import t5_tokenizer
from lpd.toy import ToySD3Config, toy_pipeline

ENCODERS = {  # name -> ToySD3Config settings of the T5
    "toy T5 (random position biases)": {},
    "position biases x 30": {"t5_position_scale": 30.0},
    "decaying biases, slopes 1 / 0.5 / 0.25 / 0.125": {"t5_attention_decay": [1.0, 0.5, 0.25, 0.125]},
    "decaying biases, slopes 2 / 1 / 0.5 / 0.25 (the profile's)": {"t5_attention_decay": [2.0, 1.0, 0.5, 0.25]},
}


def captions(n: int, seed: int) -> list:
    rng = random.Random(seed)
    return [(short_caption(scene, rng), scene) for scene in (sample_scene(rng, (2, 3)) for _ in range(n))]


@torch.no_grad()
def shape_states(t5, tokenizer, rows: list, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    "The state of each object's shape word (its last piece, after its colour) and its (colour, row, column)."
    ids = tokenizer([c for c, _ in rows], padding="max_length", max_length=length, return_tensors="pt").input_ids
    states, feats, truth = t5(ids)[0], [], []
    for i, (_, scene) in enumerate(rows):
        tokens = tokenizer.convert_ids_to_tokens(ids[i])
        for o in scene.objects:
            name = tokenizer.tokenize(f"{o.colour} {o.shape}")
            j = next(j for j in range(len(tokens)) if tokens[j : j + len(name)] == name) + len(name) - 1
            feats.append(states[i, j])
            truth.append((list(COLOURS).index(o.colour), o.row, o.col))
    return torch.stack(feats), torch.tensor(truth)


def probe_accuracy(train, test) -> list[float]:
    "Ridge (1.0) one-vs-rest probes on standardised states: held-out accuracy of colour, row, column."
    (x, y), (xt, yt) = train, test
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a, b = [torch.cat([(v - mu) / sd, torch.ones(len(v), 1)], 1) for v in (x, xt)]
    out = []
    for task, classes in ((0, len(COLOURS)), (1, 3), (2, 3)):
        target = torch.nn.functional.one_hot(y[:, task], classes).float()
        w = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1]), a.T @ target)
        out.append(round(((b @ w).argmax(1) == yt[:, task]).float().mean().item(), 3))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/toy-study/open/t5_binding.json")
    args = p.parse_args(argv)
    tokenizer = t5_tokenizer()  # the toy's tokenizer_3
    train, test = captions(3000, 0), captions(600, 1)
    result = {"train_captions": len(train), "test_captions": len(test), "example": test[0][0], "encoders": {}}
    for name, settings in ENCODERS.items():
        t5 = toy_pipeline(ToySD3Config(**settings)).text_encoder_3
        at = {n: (shape_states(t5, tokenizer, train, n), shape_states(t5, tokenizer, test, n)) for n in (64, 512)}
        a, b = at[64][1][0], at[512][1][0]
        row = {f"probe at {n} tokens (colour, row, column)": probe_accuracy(*at[n]) for n in at}
        row["padding 64 -> 512: relative change of the states"] = round(((a - b).norm() / a.norm()).item(), 3)
        result["encoders"][name] = row
        print(name, row, flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
