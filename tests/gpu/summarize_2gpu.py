"""Compare the runs of tests/gpu/train_2gpu.sh: data shards of the two ranks, loss curves, held-out loss.
Prints a table and writes OUT/summary.json."""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from lpd.data import fixture_heldout_batch
from lpd.decomposer import PromptDecomposer
from lpd.train import heldout_loss, load_frozen, parse_args


def jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main(out: Path) -> dict:
    runs = {name: jsonl(out / name / "train_log.jsonl") for name in ("1gpu_s0", "2gpu_s0", "1gpu_s1")}
    losses = {name: np.array([r["loss"] for r in log]) for name, log in runs.items()}
    # 1. the two ranks of the 2-GPU run never share a caption within a step, and cover the data each epoch
    r0, r1 = (jsonl(out / "2gpu_s0" / f"data_ids.rank{r}.jsonl") for r in (0, 1))
    overlap_steps = sum(bool(set(a["ids"]) & set(b["ids"])) for a, b in zip(r0, r1))
    first_epoch = {i for row in r0[:3] + r1[:3] for i in row["ids"]}
    # 2. loss curves: windows of 50 steps
    window = 50
    means = {n: v[: len(v) // window * window].reshape(-1, window).mean(1) for n, v in losses.items()}
    gap_2gpu = np.abs(means["2gpu_s0"] - means["1gpu_s0"])
    gap_seed = np.abs(means["1gpu_s1"] - means["1gpu_s0"])
    # 3. held-out loss of each final decomposer (the 2 `other` rows of the fixture set, fixed noise)
    cfg = parse_args(["--resolution", "64", "--output_dir", str(out)])
    frozen = load_frozen(cfg, Accelerator())
    batch = fixture_heldout_batch(64)
    batch["pixel_values"] = batch["pixel_values"].to(frozen.pipe.device)
    heldout = {n: heldout_loss(frozen, PromptDecomposer.from_pretrained(out / n).to(frozen.pipe.device), batch, cfg)
               for n in runs}
    summary = dict(
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        steps=len(losses["2gpu_s0"]), global_batch=8, num_processes_2gpu=jsonl(out / "2gpu_s0" / "train_log.jsonl")
        and json.loads((out / "2gpu_s0" / "metrics.json").read_text())["num_processes"],
        steps_where_ranks_shared_a_caption=int(overlap_steps), captions_seen_in_first_epoch=len(first_epoch),
        window=window, window_means={n: [round(float(x), 4) for x in m] for n, m in means.items()},
        mean_gap_2gpu_vs_1gpu=float(gap_2gpu.mean()), mean_gap_seed1_vs_seed0=float(gap_seed.mean()),
        per_step_loss_std=float(np.std(losses["1gpu_s0"])),
        heldout_loss=heldout)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"device: {summary['device']}; {summary['steps']} steps at global batch 8")
    print(f"2-GPU run: {summary['num_processes_2gpu']} processes; steps where the ranks shared a caption: "
          f"{overlap_steps}; captions seen in the first epoch (3 steps x 2 ranks x 4): {len(first_epoch)} of 24")
    print(f"{'steps':>10} | {'1 GPU s0':>9} | {'2 GPUs s0':>9} | {'1 GPU s1':>9}")
    for i in range(len(means["1gpu_s0"])):
        print(f"{i * window + 1:>4}-{(i + 1) * window:<5} | " + " | ".join(f"{means[n][i]:9.4f}" for n in runs))
    print(f"mean |window gap|: 2 GPUs vs 1 GPU {gap_2gpu.mean():.4f}; seed 1 vs seed 0 (noise) {gap_seed.mean():.4f}")
    print("held-out loss: " + ", ".join(f"{n} {v:.4f}" for n, v in heldout.items()))
    return summary


if __name__ == "__main__":
    main(Path(sys.argv[1]))
