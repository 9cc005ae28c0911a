"""Helpers the tests import (`from helpers import ...`); fixtures live in conftest.py."""
import configparser
import importlib.util

from lpd.core import repo_root
from lpd.tiny import tiny_decomposer

TINY_PROFILE = repo_root() / "data" / "profiles" / "tiny.yaml"


def tiny_train_args(**overrides) -> list[str]:
    "The one tiny profile as lpd-train flags, its relative paths made absolute, then `overrides` (later flags win)."
    from lpd.train import _read_profile

    argv = _read_profile(str(TINY_PROFILE))
    for i, token in enumerate(argv):
        if i and argv[i - 1] in ("--dataset_name", "--image_root") and not token.startswith("/"):
            argv[i] = str(repo_root() / token)
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return argv



def run_args(tiny_dir, out, steps, *extra) -> list[str]:
    "The tiny training flags for a run of `steps` steps into `out`, no validation (no checkpoint unless `extra` asks)."
    return tiny_train_args(validation_steps=0, validation_inference_steps=2) + [
        "--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(out), "--max_train_steps", str(steps),
        "--checkpointing_steps", "100", *extra]

def identical_decomposer(num_components=4, num_tokens=16):
    "A tiny decomposer whose K query sets are equal, so its K components carry the same tokens."
    import torch

    dec = tiny_decomposer(num_components=num_components, num_tokens=num_tokens)
    with torch.no_grad():
        latents = dec.mask_head.connector.latents  # (K, N, D)
        latents[:] = latents[0].clone()
    return dec


def console_scripts() -> dict[str, str]:
    "The `lpd-*` commands an install provides, each with its `module:function` (settings.ini's console_scripts)."
    ini = configparser.ConfigParser()
    ini.read(repo_root() / "settings.ini")
    return dict(entry.split("=") for entry in ini["DEFAULT"]["console_scripts"].split())


def ci_script(name: str):
    "`.ci/<name>.py` as a module (the scripts are not a package)."
    spec = importlib.util.spec_from_file_location(name, repo_root() / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
