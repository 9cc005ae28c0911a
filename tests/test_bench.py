"""The benchmark scripts under tests/ run: the shapes-world throughput script, small (its full run wrote
reports/shapes_throughput.json). The two-GPU training script runs in tests/test_gpu.py."""
import json
import shlex
import subprocess
import sys

import pytest

from lpd.core import repo_root


@pytest.mark.slow
def test_shapes_throughput_script(tmp_path):
    out = tmp_path / "throughput.json"
    proc = subprocess.run([sys.executable, str(repo_root() / "tests" / "bench" / "shapes_throughput.py"), "60", "20",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert (result["scenes"], result["judged"], result["clean_presence"]) == (60, 20, 1.0)
    assert "render + caption" in proc.stdout and result["scenes_per_s"] > 0


@pytest.mark.slow
def test_lpd_bench_runs_small_on_the_cpu(tmp_path):
    "lpd-bench at lpd.tiny's sizes: every measurement, the table on stdout, JSON + Markdown under --output_dir."
    args = ["--scale", "tiny", "--sizes", "64", "--train_batches", "2", "--no_compile", "--warmup", "1", "--iters",
            "2", "--device", "cpu", "--output_dir", str(tmp_path), "--long_generation", "5", "--long_batch", "2",
            "--long_size", "64", "--encode_batches", "1", "--train_setups", "adamw,adafactor+checkpointing",
            "--layouts", "shared,components"]
    proc = subprocess.run([sys.executable, "-m", "lpd.bench", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert [w.split("-cpu-")[1] for w in written] == ["tiny-memory.png", "tiny.json", "tiny.md"]
    written.pop(0)
    result = json.loads((tmp_path / written[0]).read_text())
    assert result["made_by"]["command"] == shlex.join(["lpd-bench", *args])  # and commit, versions, device
    rows = {r["name"]: r for r in result["records"]}
    assert rows["step original"]["rows"] == 2 * rows["step shared"]["rows"] - 2  # 2K versus K + 1, K = 4
    assert "| step shared | eager | 64 | 5 |" in proc.stdout
    every2 = (rows["step shared"]["ms"] + rows["step components"]["ms"]) / 2  # K + 1 rows, then K (4 rows)
    assert rows["step components"]["rows"] == 4 and rows["step shared, negative every 2nd"]["ms"] == round(every2, 3)
    late = (3 * rows["step shared"]["ms"] + rows["step components"]["ms"]) / 4  # negative_every_start=0.5
    assert rows["step shared, negative every 2nd after half the steps"]["ms"] == round(late, 3)
    train = [r for r in result["records"] if r["name"] == "training step"]
    assert [r["setup"] for r in train] == ["adamw", "adafactor+checkpointing"] and all(r["ms"] > 0 for r in train)
    assert train[1]["gflop"] > train[0]["gflop"]  # checkpointing recomputes the transformer's forward pass
    assert rows["encode on the fly"]["batch"] == 1 and rows["encode on the fly"]["ms"] > 0
    assert [t["images"] for t in result["long_generation"]["trace"]] == [2, 5]  # the first batch, then the end
    bad = subprocess.run([sys.executable, "-m", "lpd.bench", "--sizes", "512,big"], capture_output=True, text=True)
    assert bad.returncode == 2 and "got '512,big'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "lpd.bench", "--layouts", "shared,every2"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown --layouts every2" in bad.stderr
    for flags in (["--cuda_graphs"], ["--long_generation", "5", "--long_mode", "cuda_graphs"]):
        bad = subprocess.run([sys.executable, "-m", "lpd.bench", "--device", "cpu", *flags], capture_output=True,
                             text=True)
        assert bad.returncode == 2 and bad.stderr == "lpd-bench: error: CUDA graphs need a CUDA device, not cpu\n"


@pytest.mark.slow
def test_training_from_the_cache_script_runs_small(tmp_path):
    "nbs/experiments/bench/train_from_cache.py at lpd.tiny's sizes: both runs train, from the cache to the same loss."
    out, script = tmp_path / "result.json", repo_root() / "nbs" / "experiments" / "bench" / "train_from_cache.py"
    proc = subprocess.run([sys.executable, str(script), str(out),
                           "--scale", "tiny", "--resolution", "64", "--steps", "4", "--warmup", "2", "--work",
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["on_the_fly"]["global_step"] == result["cached"]["global_step"] == 4
    assert abs(result["on_the_fly"]["final_loss"] - result["cached"]["final_loss"]) < 1e-5
    assert result["cache"]["images"] > 0 and result["cached"]["samples_per_s"] > 0
