"""Shared fixtures. Everything runs offline on the tiny SD3 built by `lpd.tiny`."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402

from lpd.core import repo_root  # noqa: E402
from lpd.tiny import save_tiny  # noqa: E402


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


@pytest.fixture(scope="session")
def readme_run(tmp_path_factory):
    "A fresh copy of the checkout where every shell block of the README ran (tests/readme_run.py)."
    from readme_run import run_readme

    dest = tmp_path_factory.mktemp("readme") / "checkout"
    proc = run_readme(dest)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dest
