"""A guard: every flag of lpd-train, lpd-infer and lpd-eval and every argument of the pipeline is set by some test.

An option is set when a test or a notebook spells it (`--flag`, or `name=` as a keyword or a replaced setting). One
that no test can set is listed in UNSET with the reason (none is now); a new option without a test, or a listed one
that a test now sets, fails. Which tests pin what (against a value computed another way) is in the closing notes of
issue 24.
"""
import inspect
import json
import re
from pathlib import Path

import pytest

from lpd import evaluate, infer, train
from lpd.core import repo_root
from lpd.pipeline import PromptDecomposePipeline

UNSET: dict[str, str] = {}  # an option no test sets yet, with the reason (none now: every option is set)


def options() -> list[str]:
    "Each command's flags (the first spelling of each) and the pipeline's arguments."
    flags = [a.option_strings[0] for m in (train, infer, evaluate) for a in m.build_parser()._actions
             if a.option_strings and a.dest != "help"]
    args = [n for n in inspect.signature(PromptDecomposePipeline.__call__).parameters if n != "self"]
    return sorted(set(flags)) + args


def corpus() -> str:
    "The tests' source and the notebooks' cells that are not exported (tests, examples), as one text."
    root = repo_root()
    texts = [f.read_text() for f in Path(root, "tests").glob("*.py") if f.name != Path(__file__).name]
    for nb in Path(root, "nbs").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        texts += [src for c in cells if c["cell_type"] == "code"
                  and not (src := "".join(c["source"])).startswith("#| export")]
    return "\n".join(texts)


@pytest.fixture(scope="module")
def text():
    return corpus()


def is_set(option: str, text: str) -> bool:
    "`--flag` as a whole word, or `name=` (a keyword argument or a replaced setting)."
    flag = option.startswith("--") and re.search(rf"{re.escape(option)}(?![\w-])", text)
    return bool(flag or re.search(rf"\b{option.removeprefix('--')}=", text))


def test_every_option_is_set_by_a_test(text):
    missing = [o for o in options() if not is_set(o, text) and o not in UNSET]
    assert missing == [], f"options no test sets: {missing}"


def test_the_unset_list_is_current(text):
    assert set(UNSET) <= set(options()), set(UNSET) - set(options())
    now_set = [o for o in UNSET if is_set(o, text)]
    assert now_set == [], f"tests set these now: take them off UNSET: {now_set}"
