"""Shared fixtures. Everything runs offline on the tiny SD3 built by `lpd.tiny`."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402

from lpd.core import repo_root  # noqa: E402
from lpd.tiny import save_tiny, tiny_decomposer  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: subprocesses, papermill, torchrun or long runs; the fast tier is "
                                       "`pytest -m 'not slow'`")
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped without it); on a GPU machine "
                                       "`pytest tests/test_gpu.py`")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    "A tiny SD3 folder (diffusers layout) with a random decomposer in decomposer/."
    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-sd3")


@pytest.fixture(scope="session")
def long_prompts():
    import json

    lines = (repo_root() / "data" / "prompts" / "long_prompts.jsonl").read_text().splitlines()
    return {row["id"]: row["prompt"] for row in map(json.loads, lines)}


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


def identical_decomposer(num_components=4, num_tokens=16):
    "A tiny decomposer whose K query sets are equal, so its K components carry the same tokens."
    import torch

    dec = tiny_decomposer(num_components=num_components, num_tokens=num_tokens)
    with torch.no_grad():
        latents = dec.mask_head.connector.latents  # (K, N, D)
        latents[:] = latents[0].clone()
    return dec


@pytest.fixture(scope="session")
def readme_run(tmp_path_factory):
    "A fresh copy of the checkout where every shell block of the README ran (tests/readme_run.py)."
    from readme_run import run_readme

    dest = tmp_path_factory.mktemp("readme") / "checkout"
    proc = run_readme(dest)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dest
