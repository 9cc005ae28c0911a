"""GPU probe for issue 11: SDPA kernels at the composite's shapes; which one PyTorch picks inside the SD3.5-Medium-size
transformer (random weights); the shared-negative step in bf16 and with fp8 blocks (per-row and per-tensor scales,
torchao without its inductor settings), compiled and with CUDA graphs; with --max_autotune instead, the fp8 blocks
in inductor's max-autotune mode (GEMM templates autotuned, epilogues fused, CUDA graphs). One JSON line per
measurement in OUT_DIR/probe.jsonl; `reports/bench/20261127-nvidia-h100-80gb-hbm3-attention-fp8-probe.jsonl` is one
run, `-fp8-max-autotune-probe.jsonl` one of --max_autotune (written by this script's first form, autotune_probe.py).

    python nbs/experiments/bench/attention_probe.py OUT_DIR [--max_autotune]
"""
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffusers import SD3Transformer2DModel

from lpd.bench import SCALES, build_modules, measure, transformer_step
from lpd.speedups import compile_blocks, fp8_blocks
import probes

log = probes.start()
dev, dt, SIZES = torch.device("cuda"), torch.bfloat16, (512, 1024)


log(gpu=torch.cuda.get_device_name(), torch=torch.__version__, cudnn=torch.backends.cudnn.version())

# 1. SDPA alone, 5 rows (shared negative) x 24 heads of 64: joint sequences at 512² / 1024², image-only ones
for S in (1229, 1024, 4301, 4096):
    q, k, v = (torch.randn(5, 24, S, 64, device=dev, dtype=dt) for _ in range(3))
    for name, b in {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}.items():
        def f():
            with sdpa_kernel(b):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        r = measure(f, dev, 3, 20, flops=4 * 5 * 24 * S * S * 64)
        log(what="sdpa", seq=S, backend=name, ms=r["ms"], tflops=r["tflops_per_s"])

torch.manual_seed(0)
m = build_modules("sd35_medium", dev, dt)
m["t5"].to("cpu")
tf = m["transformer"]


def timed(mode, size, layout, attention, cudagraphs=False):
    step = transformer_step(m, size, layout, cudagraphs=cudagraphs)
    probes.timed(log, step, (size, layout), mode, size=size, layout=layout, attention=attention)


def kernels(size, label):  # which attention kernels one (eager) step ran
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        transformer_step(m, size, "shared")()
        torch.cuda.synchronize()
    names = {e.key[:90]: round(e.device_time_total / 1e3, 2) for e in prof.key_averages()
             if any(s in e.key.lower() for s in ("sdpa", "flash", "fmha", "attention"))}
    log(what="attention kernels (ms)", label=label, size=size, kernels=names)


def phase(label, mode, sizes=SIZES):
    for b in tf.transformer_blocks:
        b._compiled_call_impl = None
    torch._dynamo.reset()
    t0 = time.perf_counter()
    compile_blocks(tf, mode)
    for size in sizes:
        timed(f"{label} {mode}", size, "shared", "native", mode in ("reduce-overhead", "max-autotune"))
    log(what="phase", label=label, mode=mode, seconds=round(time.perf_counter() - t0, 1))


# 2. eager: the original layout (the baseline) and the shared negative; which attention kernel PyTorch picks
for size in SIZES:
    timed("eager", size, "original", "native")
    timed("eager", size, "shared", "native")
kernels(1024, "eager, PyTorch's choice")
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
    timed("eager", 1024, "shared", "flash")
    kernels(1024, "eager, flash held")

if "--max_autotune" in sys.argv[2:]:  # instead of 3-4 (its first call of 1024² outlasted a 10-minute GPU call)
    log(what="fp8 layers", n=fp8_blocks(tf))
    phase("fp8 rows", "max-autotune", (1024, 512))
    sys.exit()

# 3. bf16 compiled (the earlier runs' 32.1 / 121.7 ms); fp8 per row, compiled and CUDA graphs
phase("bf16", "default")
log(what="fp8 layers", n=fp8_blocks(tf), coordinate_descent=torch._inductor.config.coordinate_descent_tuning)
phase("fp8 rows", "default")
phase("fp8 rows", "reduce-overhead")

# 4. fp8 per tensor (one scale per activation and weight: cuBLAS's fp8 GEMM), the same weights rebuilt
from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerTensor, quantize_  # noqa: E402

del m["transformer"], tf
torch.manual_seed(0)  # build_modules makes the transformer first: the same weights
with torch.device(dev):
    tf = m["transformer"] = SD3Transformer2DModel(**SCALES["sd35_medium"]["transformer"]).to(dt).eval()
fits = lambda mod, fqn="": isinstance(mod, torch.nn.Linear) and mod.in_features % 16 == 0  # noqa: E731
quantize_(tf.transformer_blocks, Float8DynamicActivationFloat8WeightConfig(granularity=PerTensor(),
                                                                        set_inductor_config=False), filter_fn=fits)
phase("fp8 tensor", "default", (1024,))
phase("fp8 tensor", "reduce-overhead", (512,))
