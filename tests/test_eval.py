"""lpd-eval on the tiny SD3: the baseline and the decomposer pipeline on shapes-world prompts, and generation-only
for an external prompt file."""
import json
import shlex

import pytest

from lpd.core import repo_root
from lpd.evaluate import main

from helpers import tiny_train_args


@pytest.mark.slow
@pytest.mark.parametrize("with_decomposer", [False, True])
def test_tiny_on_32_long_prompts(tmp_path, tiny_dir, with_decomposer, capsys):
    "32 long shapes-world prompts: metrics near zero for random weights (the judge is not fooled by noise)."
    args = ["--pretrained_model_name_or_path", str(tiny_dir), "--shapes_eval", "32", "--output_dir", str(tmp_path),
            "--num_inference_steps", "4", "--batch_size", "8"]
    if with_decomposer:
        args += ["--decomposer_ckpt", str(tiny_dir / "decomposer")]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_prompts"] == 32 and metrics["overall"]["n"] == 32
    print(f"\n{'decomposer' if with_decomposer else 'baseline'} (tiny, random weights), 32 prompts: "
          + json.dumps({k: round(metrics["overall"][k], 3) for k in ("presence", "attributes", "location",
                                                                     "scene", "spatial")}))
    assert metrics["overall"]["presence"] < 0.1 and metrics["overall"]["location"] < 0.1
    bins = {b["bin"] for b in metrics["by_num_objects"]}
    assert bins <= set(range(4, 10)) and len(bins) >= 4
    assert sum(b["n"] for b in metrics["by_t5_tokens"]) == 32
    assert (tmp_path / "metrics_by_bin.png").stat().st_size > 0
    table = (tmp_path / "metrics_by_bin.md").read_text()
    assert "| num_objects 4 |" in table and "| t5_tokens " in table
    assert len((tmp_path / "per_prompt.jsonl").read_text().splitlines()) == 32


def test_external_prompt_file_is_only_generated(tmp_path, tiny_dir):
    prompts = repo_root() / "data" / "prompts" / "long_prompts.jsonl"
    args = ["--pretrained_model_name_or_path", str(tiny_dir), "--prompts", str(prompts), "--output_dir",
            str(tmp_path), "--num_inference_steps", "2", "--seeds", "0,3"]
    assert main(args) == 0
    ids = [json.loads(line)["id"] for line in prompts.read_text().splitlines()]
    for i in ids:
        assert sorted(p.name for p in (tmp_path / "images" / i).iterdir()) == ["seed0.png", "seed3.png"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_judged"] == 0 and "overall" not in metrics
    made = metrics["made_by"]  # the command that made it, pasted back as it was typed; commit and versions beside
    assert made["command"] == shlex.join(["lpd-eval", *args])
    assert made["packages"]["diffusers"] and made["packages"]["transformers"] and made["device"].startswith("cpu")


def test_missing_or_unknown_prompts_are_one_line_errors(tmp_path, capsys):
    assert main(["--output_dir", str(tmp_path)]) == 2
    assert "exactly one of --prompts and --shapes_eval" in capsys.readouterr().err
    assert main(["--prompts", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path)]) == 2
    assert "prompt file not found" in capsys.readouterr().err


@pytest.mark.parametrize("flag, message", [("--fp8", "fp8 matmuls need a GPU with fp8 tensor cores"),
                                           ("--cuda_graphs", "CUDA graphs need the transformer on a CUDA device")])
def test_gpu_only_speedups_on_the_cpu_are_refused_in_one_line(tmp_path, tiny_dir, capsys, flag, message):
    "`--fp8` (a GPU with fp8 tensor cores) and `--cuda_graphs` on the CPU stop before rendering, naming the device."
    args = ["--pretrained_model_name_or_path", str(tiny_dir), "--shapes_eval", "2", "--output_dir", str(tmp_path),
            "--device", "cpu", flag]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lpd-eval: error: {message}") and "not cpu" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow  # an lpd-train run: ~2 s
def test_shapes_dataset_trains_unchanged(tmp_path, tiny_dir):
    "lpd-shapes writes LongAlign-schema rows that lpd.train consumes as they are; eval rows keep out of training."
    from lpd.shapes import main as shapes_main
    from lpd.train import main as train_main

    data = tmp_path / "shapes"
    assert shapes_main([str(data), "--num_scenes", "8", "--resolution", "64", "--holdout", "circle:red"]) == 0
    assert shapes_main([str(data), "--num_scenes", "4", "--split", "eval", "--resolution", "64"]) == 0
    rows = [json.loads(line) for line in (data / "captions.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["train"] * 8 + ["eval"] * 4
    assert [r["source"] for r in rows] == ["shapes"] * 8 + ["shapes_eval"] * 4  # --source_filter shapes: train only
    assert not any('"shape": "circle", "colour": "red"' in r["scene"] for r in rows[:8])
    args = tiny_train_args(pretrained_model_name_or_path=tiny_dir, dataset_name=data / "captions.jsonl",
                           image_root=data, source_filter="shapes", max_train_steps=2, output_dir=tmp_path / "run",
                           validation_steps=0, checkpointing_steps=100)
    assert train_main(args) == 0
    assert shapes_main([str(data), "--num_scenes", "1", "--holdout", "star:red"]) == 2


@pytest.mark.slow  # over 5 s on 2 cores
def test_compiled_blocks_render_what_eager_renders(tmp_path, tiny_dir):
    "`--compile` compiles the transformer's blocks (regional compilation), a speed option: the images stay the same."
    import numpy as np
    from PIL import Image

    from lpd.evaluate import build_parser, run
    from lpd.pipeline import load_pipeline

    pipe = load_pipeline(tiny_dir, tiny_dir / "decomposer", "cpu", "fp32")
    pipe.set_progress_bar_config(disable=True)
    base = ["--shapes_eval", "2", "--num_inference_steps", "3", "--negative_branch", "shared", "--decomposer_ckpt",
            str(tiny_dir / "decomposer")]
    run(build_parser().parse_args([*base, "--output_dir", str(tmp_path / "eager")]), pipe)
    assert all(block._compiled_call_impl is None for block in pipe.transformer.transformer_blocks)
    run(build_parser().parse_args([*base, "--output_dir", str(tmp_path / "compiled"), "--compile"]), pipe)
    made = json.loads((tmp_path / "compiled" / "metrics.json").read_text())["made_by"]["command"]
    assert build_parser().parse_args(shlex.split(made)[1:]) == build_parser().parse_args(  # without a command line:
        [*base, "--output_dir", str(tmp_path / "compiled"), "--compile"])  # flags that give the same settings
    assert all(block._compiled_call_impl is not None for block in pipe.transformer.transformer_blocks)
    eager = sorted((tmp_path / "eager" / "images").rglob("*.png"))
    assert len(eager) == 2
    for path in eager:
        a = np.asarray(Image.open(path), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "compiled" / path.relative_to(tmp_path / "eager")), dtype=np.int16)
        assert np.abs(a - b).max() <= 2, path.name


@pytest.mark.parametrize("budget", [48])
def test_leading_tokens_keeps_the_leading_sentences_within_the_budget(tmp_path, tiny_dir, monkeypatch, budget):
    "--baseline leading --leading_tokens N: each prompt becomes its most leading sentences within N T5 tokens."
    import lpd.evaluate
    from lpd.text import read_prompts, sentences

    seen = {}

    def rows_only(pipe, rows, *args, **kwargs):  # what lpd-eval would render
        seen.update(rows=rows, tokenizer=pipe.tokenizer_3)
        return {"num_prompts": len(rows), "seeds": [0], "num_judged": 0}

    monkeypatch.setattr(lpd.evaluate, "evaluate", rows_only)
    prompts = repo_root() / "data" / "prompts" / "long_prompts.jsonl"
    assert main(["--pretrained_model_name_or_path", str(tiny_dir), "--prompts", str(prompts), "--output_dir",
                 str(tmp_path), "--baseline", "leading", "--leading_tokens", str(budget)]) == 0
    whole = {r["id"]: sentences(r["prompt"]) for r in read_prompts(prompts)}

    def tokens(parts):
        return len(seen["tokenizer"](" ".join(parts)).input_ids)

    assert len(seen["rows"]) == len(whole)
    for row in seen["rows"]:
        full, kept = whole[row["id"]], sentences(row["prompt"])
        assert kept == full[:len(kept)] and kept
        assert len(kept) == 1 or tokens(kept) <= budget
        assert len(kept) == len(full) or tokens(full[:len(kept) + 1]) > budget
