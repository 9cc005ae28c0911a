"""`lpd-infer` end to end on the tiny SD3: the files it writes and one-line errors for every bad input."""
import os
import subprocess
import sys

import pytest
from PIL import Image

from lpd.core import repo_root
from lpd.infer import main


def base_args(tiny_dir, out_dir, prompt="a red lighthouse on a rocky shore"):
    return ["--pretrained_model_name_or_path", str(tiny_dir), "--decomposer_ckpt", str(tiny_dir / "decomposer"),
            "--prompt", prompt, "--output_dir", str(out_dir), "--num_inference_steps", "2",
            "--height", "64", "--width", "64", "--device", "cpu"]


@pytest.mark.slow
def test_module_entry_point_writes_composite_and_components(tiny_dir, tmp_path, long_prompts):
    "python -m lpd.infer with a 300+ word prompt writes compose.png and component_0..3.png."
    prompt = long_prompts["city_festival"]
    assert len(prompt.split()) >= 300
    args = base_args(tiny_dir, tmp_path / "out", prompt) + ["--save_decompose", "--guidance_scale", "4.5",
                                                             "--max_sequence_length", "512", "--dtype", "fp32"]
    proc = subprocess.run([sys.executable, "-m", "lpd.infer", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["component_0.png", "component_1.png", "component_2.png", "component_3.png", "compose.png"]
    assert Image.open(tmp_path / "out" / "compose.png").size == (64, 64)
    assert "T5 tokens; only the first 512 are encoded" in proc.stderr  # the tiny T5 needs > 512 tokens for it


def test_seed_flags_and_extras(tiny_dir, tmp_path, capsys):
    args = base_args(tiny_dir, tmp_path, "a red circle") + ["--save_decompose", "--contact_sheet", "--seed", "3",
                                                           "--compose_filename", "all.png", "--guidance_scale", "1"]
    assert main(args) == 0
    assert {"all.png", "component_3.png", "contact_sheet.png"} <= set(os.listdir(tmp_path))
    assert Image.open(tmp_path / "contact_sheet.png").width > 5 * 64


def test_flags_not_given_come_from_the_config(tiny_dir, tmp_path):
    "The tiny decomposer has 2 layers and 4 heads: no flag is needed, and matching flags are accepted."
    args = base_args(tiny_dir, tmp_path) + ["--decomposer_layers", "2", "--decomposer_heads", "4",
                                            "--num_components", "4", "--num_tokens", "16"]
    assert main(args) == 0


def corrupt_ckpt(tmp_path, tiny_dir):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_dir / "decomposer" / "config.json").read_text())
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    return folder


def not_a_model(tmp_path, tiny_dir):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


BAD_INPUTS = {  # name -> (flags to change, text the one-line error must contain)
    "missing model": (["--pretrained_model_name_or_path", "/nonexistent/sd35"], "model directory not found"),
    "invalid model": (["--pretrained_model_name_or_path", not_a_model], "no model_index.json"),
    "missing checkpoint": (["--decomposer_ckpt", "/nonexistent/ckpt"], "decomposer checkpoint not found"),
    "corrupt checkpoint": (["--decomposer_ckpt", corrupt_ckpt], "corrupt decomposer checkpoint"),
    "hyperparameter mismatch": (["--decomposer_heads", "8"], "expected num_heads (--decomposer_heads)=8"),
    "height not divisible": (["--height", "100"], "--height 100 is not a positive multiple of 8"),
    "width not divisible": (["--width", "36"], "--width 36 is not a positive multiple of 8"),
    "non-positive steps": (["--num_inference_steps", "0"], "--num_inference_steps must be positive"),
    "unknown dtype": (["--dtype", "int4"], "unknown dtype 'int4'"),
    "no prompt": (["--prompt", None], "give exactly one of --prompt and --prompt_file"),
    "missing prompt file": (["--prompt", None, "--prompt_file", "/nonexistent/prompts.txt"], "prompt file not found"),
    "unknown prompt id": (["--prompt", None, "--prompt_file", str(repo_root() / "data/prompts/long_prompts.jsonl"),
                           "--prompt_id", "nope"], "--prompt_id 'nope' not in"),
}


def with_flags(args, changes, tmp_path, tiny_dir):
    args = list(args)
    for flag, value in zip(changes[::2], changes[1::2]):
        value = value(tmp_path, tiny_dir) if callable(value) else value
        i = args.index(flag) if flag in args else None
        if value is None:
            del args[i : i + 2]
        elif i is None:
            args += [flag, str(value)]
        else:
            args[i + 1] = str(value)
    return args


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(case, tiny_dir, tmp_path, capsys):
    changes, expected = BAD_INPUTS[case]
    args = with_flags(base_args(tiny_dir, tmp_path / "out"), changes, tmp_path, tiny_dir)
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lpd-infer")]
    assert len(err) == 1 and err[0].startswith("lpd-infer: error: ") and expected in err[0], err
    assert not (tmp_path / "out" / "compose.png").exists()


@pytest.mark.slow
def test_bad_input_from_the_shell_has_no_traceback(tiny_dir, tmp_path):
    args = base_args(tiny_dir, tmp_path) + ["--decomposer_layers", "3"]
    proc = subprocess.run([sys.executable, "-m", "lpd.infer", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [errors[0]] and "expected num_layers (--decomposer_layers)=3" in errors[0]
    assert "holds num_layers=2" in errors[0]


def test_half_precision_on_cpu_falls_back_with_a_warning(tiny_dir, tmp_path, caplog):
    assert main(base_args(tiny_dir, tmp_path) + ["--dtype", "bf16"]) == 0
    assert "dtype bf16 requested on CPU: using fp32 instead" in caplog.text
    assert (tmp_path / "compose.png").exists()


@pytest.mark.parametrize("flags, settings", [
    ([], dict(composition="sum", component_clip="empty", guidance_scale=2.0, sub_prompt_length=64)),
    (["--composition", "mean", "--component_clip", "own", "--guidance_scale", "3", "--sub_prompt_length", "32"],
     dict(composition="mean", component_clip="own", guidance_scale=3.0, sub_prompt_length=32)),
])
@pytest.mark.slow  # lpd-infer renders: ~2 s each
def test_split_renders_the_pipelines_sentence_composition(tiny_dir, tmp_path, flags, settings):
    """`--split sentences` is the pipeline composing the prompt's sentences: by default T5-only components, the sum
    rule at guidance 2 and 64 T5 tokens each; the flags change each of those (one ignored would change the image)."""
    import numpy as np
    import torch

    from lpd.pipeline import PromptDecomposePipeline, load_pipeline
    from lpd.text import sentences

    prompt = "A red circle at the top. A blue square below it. The background is white."
    args = base_args(tiny_dir, tmp_path, prompt)[4:] + ["--pretrained_model_name_or_path", str(tiny_dir),
                                                         "--split", "sentences", "--seed", "7", *flags]
    assert main(args) == 0
    pipe = PromptDecomposePipeline(**load_pipeline(tiny_dir, None, "cpu", "fp32").components)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(sub_prompts=[sentences(prompt)], generator=torch.Generator("cpu").manual_seed(7), num_inference_steps=2,
               height=64, width=64, max_sequence_length=512, **settings).images[0]
    ours = np.asarray(Image.open(tmp_path / "compose.png"), dtype=int)
    assert np.abs(ours - np.asarray(ref, dtype=int)).max() <= 1
    other = pipe(sub_prompts=[sentences(prompt)], generator=torch.Generator("cpu").manual_seed(7),
                 num_inference_steps=2, height=64, width=64,
                 **{**settings, "guidance_scale": settings["guidance_scale"] + 2}).images[0]
    assert np.abs(ours - np.asarray(other, dtype=int)).max() > 1  # the comparison can tell settings apart
