"""Shared fixtures. Everything runs offline on the tiny SD3 built by `lpd.tiny`."""
import gc
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402

from lpd.core import repo_root  # noqa: E402
from lpd.tiny import save_tiny  # noqa: E402

gc.freeze()  # the imports above (torch, diffusers, lpd) stay; see pytest_collection_finish


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: subprocesses, papermill, torchrun or long runs; the fast tier is "
                                       "`pytest -m 'not slow'`")
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped without it); on a GPU machine "
                                       "`pytest tests/test_gpu.py`")


def pytest_collection_modifyitems(config, items):
    """The notebook tests run in `NOTEBOOKS`' order, fastest first, whatever order their ids came in. mutmut passes a
    mutant's tests as a set; with its `-x`, a mutant 04_pipeline kills then stops there instead of after 07_train.
    `LPD_MUTATE_SKIP=07_train` (`make mutate SKIP=07_train`) leaves the named notebooks' tests out of the run."""
    from test_notebooks import NAMES, mutate_skip

    skip = set(mutate_skip())
    if skip:
        left_out = [item for item in items if getattr(item, "callspec", None) is not None
                    and item.callspec.params.get("name") in skip]
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
    at = [i for i, item in enumerate(items)
          if getattr(item, "originalname", None) == "test_notebook_tests_pass_on_the_package"]
    ranked = sorted((items[i] for i in at), key=lambda item: NAMES.index(item.callspec.params["name"]))
    for i, item in zip(at, ranked):
        items[i] = item


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


def pytest_collection_finish(session):
    """Everything imported so far (torch, transformers, diffusers, lpd, the test modules) lives until the end: frozen,
    Python's cyclic collector stops walking those millions of objects at every full collection. That walk was a
    quarter of the fast tier's time, most of it while tokenizer files were parsed."""
    gc.collect()
    gc.freeze()
