"""lpd-train from lpd-cache's encodings against encoding on the fly, at SD3.5-Medium size with random weights
(issue 11, item 3): samples/s after warm-up and peak GPU memory of each run, in one process on one GPU.

    python reports/bench/train_from_cache.py OUT.json [--scale sd35_medium|tiny] [--steps 25] [--work DIR]

The model is lpd.bench's true-size pipeline (random weights) saved as a diffusers folder under --work; the data
are the fixture set's images upscaled to --resolution; both runs use the default decomposer (4 x 128 tokens,
6 blocks), batch 1, Adafactor and gradient checkpointing (the lightest setup), bf16 on CUDA."""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from diffusers import StableDiffusion3Pipeline
from diffusers.training_utils import free_memory

from lpd.bench import build_pipeline
from lpd.core import repo_root
from lpd.train import cache_encodings, fit, parse_args


def samples_per_s(log: list[dict], warmup: int, batch: int) -> float:
    "Samples per second between step `warmup` and the last step (elapsed_s of the training log)."
    first, last = log[warmup - 1], log[-1]
    return round((last["step"] - first["step"]) * batch / (last["elapsed_s"] - first["elapsed_s"]), 3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--scale", default="sd35_medium")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--work", default=None)
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp())
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    t0 = time.perf_counter()
    pipe = build_pipeline(a.scale, device, torch.bfloat16 if cuda else torch.float32)
    parts = {k: v for k, v in pipe.components.items() if k != "decomposer"}
    StableDiffusion3Pipeline(**parts).save_pretrained(work / "model")
    del pipe, parts
    free_memory()
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "scale": a.scale, "steps": a.steps,
              "warmup": a.warmup, "resolution": a.resolution, "save_model_s": round(time.perf_counter() - t0, 1)}
    fixture = repo_root() / "data" / "fixtures" / "longalign"
    args = ["--pretrained_model_name_or_path", str(work / "model"), "--dataset_name", str(fixture), "--image_root",
            str(fixture), "--streaming", "false", "--source_filter", "*", "--resolution", str(a.resolution),
            "--center_crop", "true", "--train_batch_size", "1", "--max_train_steps", str(a.steps),
            "--checkpointing_steps", "100000", "--validation_steps", "0", "--report_to", "none",
            "--mixed_precision", "bf16" if cuda else "no", "--use_adafactor", "--gradient_checkpointing",
            "--learning_rate", "1e-5", "--lr_warmup_steps", "0", "--seed", "0"]
    t0 = time.perf_counter()
    info = cache_encodings(work / "cache", args, device=device)
    result["cache"] = {"seconds": round(time.perf_counter() - t0, 1), "captions": info["num_captions"],
                       "images": info["num_images"],
                       "mb": round(sum(f.stat().st_size for f in (work / "cache").iterdir()) / 1e6, 1)}
    free_memory()
    for name, extra in (("on_the_fly", []), ("cached", ["--encoding_cache", str(work / "cache")])):
        cuda and torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        metrics = fit(parse_args([*args, *extra, "--output_dir", str(work / name)]))
        log = [json.loads(line) for line in (work / name / "train_log.jsonl").read_text().splitlines()]
        result[name] = {"wall_s": round(time.perf_counter() - t0, 1), "global_step": metrics["global_step"],
                        "samples_per_s": samples_per_s(log, a.warmup, 1),
                        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                        "final_loss": metrics["final_loss"]}
        free_memory()
    result["speedup"] = round(result["cached"]["samples_per_s"] / result["on_the_fly"]["samples_per_s"], 3)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
