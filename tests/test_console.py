"""A console a user can read: each command prints lpd's own lines (progress bars, one-line reports, where outputs
went) and no library warning that does not apply; nothing prints a prompt's text unasked."""
import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import console_scripts
from lpd.core import repo_root
from lpd.text import read_prompts

PROMPTS = repo_root() / "data" / "prompts" / "long_prompts.jsonl"
COMMANDS = {  # a run of each command on the embedded tiny model, with a prompt longer than CLIP and T5 allow
    "lpd-infer": ["lpd.infer", "--prompt_file", str(PROMPTS), "--prompt_id", "city_festival", "--save_decompose",
                  "--num_inference_steps", "2", "--output_dir", "{out}"],
    "lpd-eval": ["lpd.evaluate", "--shapes_eval", "4", "--num_inference_steps", "2", "--output_dir", "{out}"],
    "lpd-train": ["lpd.train", "--profile", str(repo_root() / "data" / "profiles" / "tiny.yaml"),
                  "--max_train_steps", "2", "--validation_steps", "2", "--checkpointing_steps", "2",
                  "--output_dir", "{out}"],
    "lpd-cache": [None, "{out}", "--profile", str(repo_root() / "data" / "profiles" / "tiny.yaml")],  # None: script
}


def foreign_lines(stderr: str) -> list[str]:
    "stderr lines that are neither lpd's (reports, errors) nor a progress bar."
    lines = [line for chunk in stderr.splitlines() for line in chunk.split("\r") if line.strip()]
    return [line for line in lines if "it/s]" not in line and "%|" not in line
            and not line.startswith(("lpd-", "prompt "))]


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_print_no_library_warnings(command, tmp_path):
    module, *args = COMMANDS[command]
    args = [a.replace("{out}", str(tmp_path / "out")) for a in args]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    launcher = [sys.executable, "-m", module] if module else [str(Path(sys.executable).parent / command)]
    proc = subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=300,
                          cwd=repo_root(), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert foreign_lines(proc.stderr) == [], foreign_lines(proc.stderr)[:5]
    echoed = [run for run in word_runs(used_prompts(command, tmp_path / "out")) if run in proc.stderr + proc.stdout]
    assert echoed == [], echoed[:3]  # no prompt text on the console


def used_prompts(command: str, out) -> list[str]:
    if command == "lpd-infer":
        return [row["prompt"] for row in read_prompts(PROMPTS) if row["id"] == "city_festival"]
    if command == "lpd-eval":
        return [row["prompt"] for row in read_prompts(out / "prompts.jsonl")]
    return [row["prompt"] for row in read_prompts(repo_root() / "data" / "fixtures" / "longalign" / "captions.jsonl")]


def word_runs(prompts: list[str], n: int = 6) -> list[str]:
    "Every run of n consecutive words of the prompts, from their second sentence on (the first may be a title)."
    runs = []
    for prompt in prompts:
        words = prompt.split(". ", 1)[-1].split()
        runs += [" ".join(words[i:i + n]) for i in range(0, max(len(words) - n, 0), n)]
    return runs


def test_the_filter_drops_only_what_does_not_apply():
    "A library warning lpd does not know about still reaches the user."
    import io

    import diffusers.utils.logging

    handler = diffusers.utils.logging.get_logger().handlers[0]
    stream, old = io.StringIO(), handler.stream
    handler.stream = stream
    try:
        log = diffusers.utils.logging.get_logger("diffusers.pipelines.stable_diffusion_3")
        log.warning("The following part of your input was truncated because CLIP can only handle ...: ['text']")
        log.warning("something new that a user should read")
    finally:
        handler.stream = old
    assert stream.getvalue().strip().splitlines() == ["something new that a user should read"]


def test_every_console_script_is_a_callable_the_install_provides():
    "settings.ini's console_scripts (the README's commands): each target imports and is callable, and is installed."
    declared = console_scripts()
    for name, target in declared.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function, None)), f"{name}={target}"
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")
                 if ep.dist is not None and ep.dist.name == "lpd"}
    assert installed == declared, "the installed lpd differs from settings.ini: reinstall it (make env)"
