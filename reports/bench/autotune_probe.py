"""GPU probe for issue 11: the shared-negative step with fp8 blocks compiled in inductor's `max-autotune` mode (GEMM
templates autotuned, epilogues fused, CUDA graphs), next to the original layout eager in the same run. One JSON
line per measurement in OUT_DIR/probe.jsonl.

    python reports/bench/autotune_probe.py OUT_DIR [SIZE ...]
"""
import json
import sys
import time
from pathlib import Path

import torch

from lpd.bench import build_modules, measure, transformer_step
from lpd.pipeline import compile_blocks, fp8_blocks

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
sizes = [int(s) for s in sys.argv[2:]] or [1024, 512]
dev, dt = torch.device("cuda"), torch.bfloat16


def log(**r):
    print(json.dumps(r), flush=True)
    with (out / "probe.jsonl").open("a") as f:
        f.write(json.dumps(r) + "\n")


log(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
torch.manual_seed(0)
m = build_modules("sd35_medium", dev, dt)
m["t5"].to("cpu")
tf = m["transformer"]
gflop, base = {}, {}


def timed(mode, size, layout, cudagraphs=False):
    step = transformer_step(m, size, layout, cudagraphs=cudagraphs)
    t0 = time.perf_counter()
    with torch.no_grad():
        try:
            r = measure(step, dev, 3, 10, gflop.get((size, layout)))
        except Exception as e:  # noqa: BLE001
            r = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    if mode == "eager" and "gflop" in r:
        gflop[size, layout] = int(r["gflop"] * 1e9)
        if layout == "original":
            base[size] = r["ms"]
    if "ms" in r and size in base:
        r["vs_original_eager"] = round(r["ms"] / base[size], 3)
    log(what="step", mode=mode, size=size, layout=layout, setup_s=round(time.perf_counter() - t0, 1), **r)


for size in sizes:
    timed("eager", size, "original")
    timed("eager", size, "shared")
log(what="fp8 layers", n=fp8_blocks(tf))
compile_blocks(tf, "max-autotune")
for size in sizes:
    timed("fp8 max-autotune", size, "shared", cudagraphs=True)
