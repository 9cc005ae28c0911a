"""Run every shell block of the README, in order, on a fresh copy of the checkout. The only changes are the tiny
settings where a block names real weights, data, a placeholder or a GPU, all in SUBSTITUTIONS."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lpd.core import repo_root

VENV = Path(sys.executable).parent.parent
SUBSTITUTIONS = [  # (README text, what runs instead)
    ("make demo ", f"make demo VENV={VENV} -o {VENV}/.installed "),  # the environment is the one running this
    ("make test ", ": "),  # this file is part of `make test`
    ("make lab ", f"make -n lab VENV={VENV} -o {VENV}/.installed "),  # a server: its command is shown, not run
    ("huggingface-cli download stabilityai/stable-diffusion-3.5-medium --local-dir weights/sd3.5-medium",
     "lpd-tiny weights/sd3.5-medium"),  # the tiny SD3 where SD3.5 Medium would be
    ("wandb login", ":"),  # the tests run with WANDB_MODE=offline
    ("<YOUR_WANDB_ENTITY>", "lpd-tests"),  # a placeholder for the user's own
    ("--image_root data/longalign_images", "--image_root data/fixtures/longalign "
     "--dataset_name data/fixtures/longalign --no_streaming"),  # the fixture set in LongAlign's place
    ("--source_filter coco", "--source_filter fixture"),
    ("--resolution 512", "--resolution 64"),
    ("--max_train_steps 2000", "--max_train_steps 2"),
    ("--checkpointing_steps 200", "--checkpointing_steps 2"),
    ("--validation_steps 200", "--validation_steps 2"),
    ("checkpoint-2000", "checkpoint-2"),
    ("--device cuda", "--device cpu"),
    ("--num_scenes 20000", "--num_scenes 40"),
    ("--num_scenes 500", "--num_scenes 20"),
    ("--shapes_eval 200", "--shapes_eval 2"),
]


def readme_script() -> str:
    "The README's shell blocks, in order, with SUBSTITUTIONS applied."
    blocks = re.findall(r"```bash\n(.*?)```", (repo_root() / "README.md").read_text(), flags=re.S)
    script = "\n".join(blocks)
    for old, new in SUBSTITUTIONS:
        if old not in script:
            raise AssertionError(f"README no longer holds {old!r}: update SUBSTITUTIONS")
        script = script.replace(old, new)
    return script


def fresh_copy(dest: Path) -> Path:
    "The files a fresh clone of this checkout holds (tracked and untracked-but-not-ignored), nothing built."
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo_root(),
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        if (repo_root() / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root() / name, dest / name)
    return dest


def run_readme(dest: Path) -> subprocess.CompletedProcess:
    "Run the README's blocks in a fresh copy at `dest` (its lpd, this environment's commands), offline."
    copy = fresh_copy(dest)
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(copy),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", readme_script()], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=900)
