"""GPU probe for issue 11: where the shared-negative step's time goes at SD3.5-Medium size (random weights), and
whether one CUDA graph of the whole transformer (captured around the regionally compiled blocks) beats the 24
per-block graphs of `reduce-overhead`. bf16, then fp8 blocks (torchao, per-row); 512² and 1024²; the original layout
eager timed in the same run. One JSON line per measurement in OUT_DIR/probe.jsonl.
`20261127-nvidia-h100-80gb-hbm3-graph-probe-2.jsonl` is one run of it; `-graph-probe.jsonl` one of its first form
(commit 80ba4b2), which captured the graph by hand before `lpd.speedups.cuda_graphs` existed.

    python nbs/experiments/bench/graph_probe.py OUT_DIR
"""
import time

import torch

from lpd.bench import build_modules, layout_rows, step_inputs, transformer_step
from lpd.speedups import compile_blocks, cuda_graphs, fp8_blocks
import probes

log = probes.start()
dev, dt, SIZES = torch.device("cuda"), torch.bfloat16, (512, 1024)


log(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
torch.manual_seed(0)
m = build_modules("sd35_medium", dev, dt)
m["t5"].to("cpu")
tf = m["transformer"]
K = m["spec"]["decomposer"]["num_components"]


def timed(mode, size, layout, fn):
    return probes.timed(log, fn, (size, layout), mode, iters=20, size=size, layout=layout)


def inputs(size, layout):
    torch.manual_seed(1)
    text = 77 + m["spec"]["decomposer"]["num_tokens"]
    return step_inputs(m, size, layout_rows(layout, K, 1), text, dev, dt)


def kernels(size, layout, label):
    "GPU time of one call by kind of kernel (the compiled blocks, no graphs) and its 12 longest kernels."
    from torch.profiler import ProfilerActivity, profile
    x = inputs(size, layout)
    with torch.no_grad():
        tf(**x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            tf(**x)
            torch.cuda.synchronize()
    kinds = {"attention": ("fmha", "cudnn", "flash", "attention", "sdpa"),
             "gemm": ("gemm", "xmma", "cutlass", "nvjet", "scaled_mm", "sm90_", "cublas"),
             "triton": ("triton",)}
    total, by_kind, top = 0.0, {}, []
    for e in prof.key_averages():
        t = e.device_time_total / 1e3
        if t <= 0 or e.key.startswith(("cudaLaunch", "cudaStream", "Memcpy", "Memset")):
            continue
        kind = next((k for k, keys in kinds.items() if any(s in e.key.lower() for s in keys)), "other")
        by_kind[kind] = by_kind.get(kind, 0) + t
        total += t
        top.append((round(t, 2), e.count, e.key[:100]))
    log(what="kernels (ms)", label=label, size=size, layout=layout, total=round(total, 2),
        by_kind={k: round(v, 2) for k, v in by_kind.items()}, top=sorted(top, reverse=True)[:12])


# eager baselines (and the FLOP counts the compiled modes are given)
for size in SIZES:
    for layout in ("original", "shared", "components"):
        timed("eager", size, layout, transformer_step(m, size, layout))

for precision in ("bf16", "fp8"):
    if precision == "fp8":
        log(what="fp8 layers", layers=fp8_blocks(tf))
    torch._dynamo.reset()
    compile_blocks(tf, "default")
    for size in SIZES:
        for layout in ("shared", "components"):
            x = inputs(size, layout)
            r = timed(f"{precision} compiled", size, layout, lambda x=x: tf(**x))
            y = {k: v * 0.5 if torch.is_tensor(v) else v for k, v in inputs(size, layout).items()}  # other inputs
            with torch.no_grad():
                ref, want = tf(**x)[0].float(), tf(**y)[0].float()
            t0 = time.perf_counter()
            graphs = cuda_graphs(tf)  # lpd.pipeline's: captured at the first call of a shape, inputs copied in
            with torch.no_grad():
                tf(**x)
            log(what="capture", precision=precision, size=size, layout=layout,
                seconds=round(time.perf_counter() - t0, 2))
            timed(f"{precision} compiled, whole graph", size, layout, lambda x=x: tf(**x))
            with torch.no_grad():
                got = tf(**y)[0].float()
            log(what="whole graph == compiled call", precision=precision, size=size, layout=layout,
                max_abs=float((got - want).abs().max()), ref_scale=float(want.abs().max()),
                first_inputs_max_abs=float((ref - want).abs().max()))
            graphs.remove()
    for size in SIZES:
        kernels(size, "shared", f"{precision} compiled")
    torch._dynamo.reset()
    compile_blocks(tf, "reduce-overhead")
    for size in SIZES:
        timed(f"{precision} per-block graphs", size, "shared", transformer_step(m, size, "shared", cudagraphs=True))
    torch._dynamo.reset()
log(what="done")
