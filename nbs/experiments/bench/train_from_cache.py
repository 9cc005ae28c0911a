"""Whole lpd-train runs at SD3.5-Medium size with random weights (issue 11, items 3-5): from lpd-cache's encodings
against encoding on the fly, the transformer compiled or not, on one GPU or two; samples/s after warm-up and peak
GPU memory of each run. Each run is `accelerate launch --config_file data/accelerate/{1gpu,2gpu}.yaml -m lpd.train`.

    python nbs/experiments/bench/train_from_cache.py OUT.json [--runs on_the_fly,cached] [--scale sd35_medium|tiny]
        [--steps 25] [--warmup 5] [--work DIR]

The model is lpd.bench's true-size pipeline (random weights) saved as a diffusers folder under --work; the data
are the fixture set's images upscaled to --resolution; every run trains the default decomposer (4 x 128 tokens,
6 blocks) at batch 1 per GPU, bf16 on CUDA. RUNS names each run's optimizer, checkpointing, encodings, compilation
and number of GPUs."""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import StableDiffusion3Pipeline
from diffusers.training_utils import free_memory

from lpd.bench import build_pipeline
from lpd.core import repo_root
from lpd.train import cache_encodings

LIGHT = ["--use_adafactor", "--gradient_checkpointing"]  # the lightest setup (24 GiB cards)
CACHE = "CACHE"  # stands for --encoding_cache WORK/cache
COMPILED = ["--compile"]
RUNS = {  # name: (GPUs, lpd-train flags beyond the common ones); AdamW unless LIGHT
    "on_the_fly": (1, LIGHT),
    "cached": (1, [*LIGHT, CACHE]),
    "original": (1, []),  # the original's setup: AdamW, no checkpointing, encoders run on the fly
    "cached_adamw": (1, [CACHE]),
    "cached_adamw_compiled": (1, [CACHE, *COMPILED]),
    "cached_adamw_2gpu": (2, [CACHE]),
    "cached_adamw_compiled_2gpu": (2, [CACHE, *COMPILED]),
}


def samples_per_s(log: list[dict], warmup: int, samples_per_step: int) -> float:
    "Samples per second between step `warmup` and the last step (elapsed_s of the training log)."
    first, last = log[warmup - 1], log[-1]
    return round((last["step"] - first["step"]) * samples_per_step / (last["elapsed_s"] - first["elapsed_s"]), 3)


def train(name: str, args: list[str], work: Path, warmup: int) -> dict:
    "One run of RUNS in its own process(es); its throughput, memory and loss."
    gpus, flags = RUNS[name]
    flags = [x for f in flags for x in (["--encoding_cache", str(work / "cache")] if f == CACHE else [f])]
    out = work / name
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(repo_root() / "data" / "accelerate" / f"{gpus}gpu.yaml"), "--mixed_precision",
           args[args.index("--mixed_precision") + 1], "-m", "lpd.train", *args, *flags, "--output_dir", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"run {name} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {"gpus": gpus, "flags": flags, "wall_s": round(time.perf_counter() - t0, 1),
            "global_step": metrics["global_step"], "samples_per_s": samples_per_s(log, warmup, gpus),
            "peak_gib": metrics.get("peak_gpu_memory_gib"), "final_loss": metrics["final_loss"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--runs", default="on_the_fly,cached", help=f"comma-separated, of {', '.join(RUNS)}")
    p.add_argument("--scale", default="sd35_medium")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--work", default=None)
    a = p.parse_args()
    runs = [r for r in a.runs.split(",") if r]
    if unknown := [r for r in runs if r not in RUNS]:
        sys.exit(f"train_from_cache.py: unknown --runs {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    work = Path(a.work or tempfile.mkdtemp())
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    t0 = time.perf_counter()
    pipe = build_pipeline(a.scale, device, torch.bfloat16 if cuda else torch.float32)
    parts = {k: v for k, v in pipe.components.items() if k != "decomposer"}
    StableDiffusion3Pipeline(**parts).save_pretrained(work / "model")
    del pipe, parts
    free_memory()
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "gpus_here": torch.cuda.device_count(),
              "torch": torch.__version__, "scale": a.scale, "steps": a.steps, "warmup": a.warmup,
              "resolution": a.resolution, "batch_per_gpu": 1, "save_model_s": round(time.perf_counter() - t0, 1)}
    fixture = repo_root() / "data" / "fixtures" / "longalign"
    args = ["--pretrained_model_name_or_path", str(work / "model"), "--dataset_name", str(fixture), "--image_root",
            str(fixture), "--streaming", "false", "--source_filter", "*", "--resolution", str(a.resolution),
            "--center_crop", "true", "--train_batch_size", "1", "--max_train_steps", str(a.steps),
            "--checkpointing_steps", "100000", "--validation_steps", "0", "--report_to", "none",
            "--mixed_precision", "bf16" if cuda else "no", "--learning_rate", "1e-5", "--lr_warmup_steps", "0",
            "--seed", "0"]
    if any(CACHE in RUNS[r][1] for r in runs):
        t0 = time.perf_counter()
        info = cache_encodings(work / "cache", args, device=device)  # optimizer flags do not change encodings
        result["cache"] = {"seconds": round(time.perf_counter() - t0, 1), "captions": info["num_captions"],
                           "images": info["num_images"],
                           "mb": round(sum(f.stat().st_size for f in (work / "cache").iterdir()) / 1e6, 1)}
        free_memory()
    for name in runs:
        result[name] = train(name, args, work, a.warmup)
        print(json.dumps({name: result[name]}), flush=True)
    pairs = {"speedup": ("cached", "on_the_fly"), "speedup_vs_original": ("cached_adamw_compiled", "original"),
             "speedup_cached_adamw_vs_original": ("cached_adamw", "original"),
             "scaling_2gpu": ("cached_adamw_2gpu", "cached_adamw"),
             "scaling_2gpu_compiled": ("cached_adamw_compiled_2gpu", "cached_adamw_compiled")}
    for key, (a_run, b_run) in pairs.items():
        if a_run in result and b_run in result:
            result[key] = round(result[a_run]["samples_per_s"] / result[b_run]["samples_per_s"], 3)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
