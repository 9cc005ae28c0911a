"""Throughput of the shapes world on this machine: render + caption N scenes, judge M images.
Prints a table and writes reports/shapes_throughput.json (or OUT). tests/test_bench.py runs it small.

    python tests/bench/shapes_throughput.py [N_SCENES] [N_JUDGED] [OUT]
"""
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

from lpd.core import repo_root
from lpd.judge import judge_row
from lpd.shapes import DEFAULT_RESOLUTION, make_row, render_scene, sample_scene, t5_counter
from lpd.tiny import t5_tokenizer


def main(n_scenes: int = 100_000, n_judged: int = 10_000, out: str | None = None) -> dict:
    rng = random.Random(0)
    count = t5_counter(t5_tokenizer())
    t0 = time.perf_counter()
    rows, images = [], []
    for i in range(n_scenes):
        scene = sample_scene(rng, (1, 9))
        kind = "short" if len(scene.objects) <= 3 and i % 2 else "long"
        row = make_row(scene, rng, kind, "train", count)
        image = render_scene(scene, DEFAULT_RESOLUTION)
        if i < n_judged:
            rows.append(row)
            images.append(image)
    render_caption_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = [judge_row(image, row) for image, row in zip(images, rows)]
    judge_s = time.perf_counter() - t0
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "resolution": DEFAULT_RESOLUTION, "scenes": n_scenes, "render_and_caption_s": round(render_caption_s, 1),
        "scenes_per_s": round(n_scenes / render_caption_s, 1), "judged": n_judged, "judge_s": round(judge_s, 1),
        "judged_per_s": round(n_judged / judge_s, 1),
        "clean_presence": sum(s["presence"] for s in scores) / len(scores),
    }
    print(f"{'task':<32} {'count':>8} {'seconds':>9} {'per second':>11}")
    task = "render + caption (T5 lengths)"
    print(f"{task:<32} {n_scenes:>8} {render_caption_s:>9.1f} {result['scenes_per_s']:>11.1f}")
    print(f"{'judge':<32} {n_judged:>8} {judge_s:>9.1f} {result['judged_per_s']:>11.1f}")
    out = Path(out) if out else repo_root() / "reports" / "shapes_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]), *sys.argv[3:4])
