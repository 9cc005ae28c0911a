"""Can the decomposer learn to route in T5 space at all? A CPU probe of issue 27 (no transformer passes).

2,400 long shapes-world captions of 2-6 objects (training phrasings), encoded once by the embedded toy's T5 (the first
192 tokens kept: the object sentences come first); targets: `lpd.routing`'s objects by cell for K = 9 components,
each the T5 states of its object's caption at 32 tokens (the empty prompt's where the cell is empty). A decomposer is
trained on the first 2,000 (MSE, AdamW, batch 16) and scored every 50 steps on the last 200: the MSE and the routing
accuracy, how often a component with an object is closer to its own target than to the prompt's other objects'
targets (chance ~0.26).

    python nbs/experiments/route_probe.py VARIANT STEPS [--out FILE.jsonl]

VARIANT: base, h4, h4m, h4m-lr1e3, h32m, ctx, conv (the last two: a text context before the decomposer).
"""
import argparse
import json
import random
import time
from pathlib import Path

import torch

from lpd.decomposer import PromptDecomposer
from lpd.pipeline import load_pipeline
from lpd.routing import route_texts
from lpd.shapes import make_row, sample_scene
from lpd.text import encode_long_prompt

K, N, L, TEXT = 9, 32, 512, 192
VARIANTS = {"base": dict(heads=32, mask=False, lr=3e-4), "h4": dict(heads=4, mask=False, lr=3e-4),
            "h4m": dict(heads=4, mask=True, lr=3e-4), "h4m-lr1e3": dict(heads=4, mask=True, lr=1e-3),
            "h32m": dict(heads=32, mask=True, lr=3e-4),
            "ctx": dict(heads=4, mask=True, lr=1e-3, context="attention"),
            "conv": dict(heads=4, mask=True, lr=1e-3, context="conv")}

class TextContext(torch.nn.Module):
    "Each text token sees its neighbours first: learned positions + 2 self-attention layers, or 2 convolutions."

    def __init__(self, kind: str, width: int = 128, length: int = TEXT):
        super().__init__()
        self.kind = kind
        if kind == "attention":
            self.pos = torch.nn.Parameter(torch.zeros(length, width))
            layer = torch.nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True,
                                                     norm_first=True)
            self.layers = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        else:
            self.layers = torch.nn.Sequential(torch.nn.Conv1d(width, width, 9, padding=4), torch.nn.GELU(),
                                              torch.nn.Conv1d(width, width, 9, padding=4))

    def forward(self, x, mask):
        if self.kind == "attention":
            return self.layers(x + self.pos[: x.shape[1]], src_key_padding_mask=~mask.bool())
        return x + self.layers((x * mask[..., None]).transpose(1, 2)).transpose(1, 2)

class WithContext(torch.nn.Module):
    def __init__(self, context, dec):
        super().__init__()
        self.context, self.dec = context, dec

    def forward(self, x, mask):
        return self.dec(self.context(x, mask), mask)

def probe_data(cache: Path) -> dict:
    "T5 states of the captions (first TEXT tokens), their masks, the K targets and which components have an object."
    if cache.is_file():
        return torch.load(cache)
    pipe = load_pipeline(None, None, "cpu", torch.float32)
    rng = random.Random(0)
    rows = [make_row(sample_scene(rng, (2, 6)), rng, "long", "train") for _ in range(2400)]
    captions = [r["caption"] for r in rows]
    texts = route_texts("objects", captions, [r["scene"] for r in rows], K)
    X, M, Y = [], [], []
    with torch.no_grad():
        for i in range(0, len(rows), 200):
            enc = encode_long_prompt(pipe, captions[i : i + 200], max_sequence_length=L)
            X.append(enc.t5_embeds)
            M.append(enc.t5_mask)
            joined = [" ".join(t) for ts in texts[i : i + 200] for t in ts]
            Y.append(encode_long_prompt(pipe, joined, max_sequence_length=N).t5_embeds.view(-1, K, N, 128))
    data = dict(X=torch.cat(X)[:, :TEXT].contiguous(), M=torch.cat(M)[:, :TEXT].contiguous(), Y=torch.cat(Y),
                has=torch.tensor([[len(t) > 0 for t in ts] for ts in texts]))
    torch.save(data, cache)
    return data

@torch.no_grad()
def score(dec, X, M, Y, has) -> tuple[float, float]:
    "MSE, and the routing accuracy over the components that have an object in prompts of 2 or more objects."
    out = torch.stack(dec(X, M), 1)  # (B, K, N, D)
    d = ((out[:, :, None] - Y[:, None]) ** 2).mean((-1, -2))  # (B, K, K): component i against target j
    right = total = 0
    for b in range(len(d)):
        ks = has[b].nonzero().flatten()
        if len(ks) >= 2:
            right += (d[b][ks][:, ks].argmin(1) == torch.arange(len(ks))).sum().item()
            total += len(ks)
    return ((out - Y) ** 2).mean().item(), right / total

def main():
    p = argparse.ArgumentParser()
    p.add_argument("variant", choices=sorted(VARIANTS))
    p.add_argument("steps", type=int)
    p.add_argument("--cache", default="runs/route_probe.pt")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    data = probe_data(Path(args.cache))
    test = slice(2000, 2200)
    held = [data[k][test] for k in ("X", "M", "Y", "has")]
    c = VARIANTS[args.variant]
    torch.manual_seed(0)
    dec = PromptDecomposer(num_components=K, num_tokens=N, width=128, num_heads=c["heads"], num_layers=6,
                           use_attention_mask=c["mask"])
    if "context" in c:
        dec = WithContext(TextContext(c["context"]), dec)
    opt = torch.optim.AdamW(dec.parameters(), lr=c["lr"], weight_decay=0)
    g, t0 = torch.Generator().manual_seed(0), time.time()
    mse, acc = score(dec, *held)
    log = [dict(variant=args.variant, step=0, mse=mse, accuracy=acc, seconds=0)]
    print(json.dumps(log[-1]), flush=True)
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, 2000, (16,), generator=g)
        loss = ((torch.stack(dec(data["X"][idx], data["M"][idx]), 1) - data["Y"][idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            mse, acc = score(dec, *held)
            log.append(dict(variant=args.variant, step=step, loss=loss.item(), mse=mse, accuracy=acc,
                            seconds=round(time.time() - t0)))
            print(json.dumps(log[-1]), flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in log))

if __name__ == "__main__":
    main()
