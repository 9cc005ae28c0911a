"""The notebooks' own tests, run against the `lpd` package instead of the notebooks' definitions.

`nbdev_test` runs a notebook whole: its tests check the functions its export cells define in the kernel. Here each
notebook's test cells run in a namespace that starts as its module's (`lpd.<default_exp>`), and its export cells are
skipped, so a change made in `lpd/` that those tests would notice fails here. That is what mutation testing of
`lpd/` needs (`make mutate`): mutmut changes the package's files and runs pytest.
"""
import importlib
import os
import sys

import pytest
from execnb.shell import CaptureShell
from nbdev.frontmatter import FrontmatterProc
from nbdev.process import NBProcessor

from lpd.core import repo_root

SKIP = {"export", "exporti", "exports", "default_exp", "notest", "slow", "cuda"}  # nbdev's and settings.ini's flags
# `make mutate`'s modules; their `slow` cells (renders through a command) run under `make test`'s nbdev_test
NOTEBOOKS = ["01_decomposer", "03_text", "06_data", "06e_routing", "06c_judge",
             pytest.param("06d_evaluate", marks=pytest.mark.slow),  # evaluations on the tiny SD3: ~10 s
             pytest.param("04_pipeline", marks=pytest.mark.slow),  # renders: ~7 s
             pytest.param("07_train", marks=pytest.mark.slow)]  # training steps on the tiny SD3: ~25 s


def skipped(cell) -> bool:
    "A cell that defines the module (or that nbdev_test would not run)."
    if cell.cell_type != "code" or "nbdev_export" + "(" in cell.source:
        return True
    flags = getattr(cell, "directives_", {}) or {}
    return bool(SKIP & flags.keys()) or flags.get("eval:", [""])[0].lower() == "false"


def mutate_skip() -> list[str]:
    "`LPD_MUTATE_SKIP`'s entries (`make mutate SKIP=...`, comma- or space-separated): notebooks, `<nb>#<cell id>`."
    return os.environ.get("LPD_MUTATE_SKIP", "").replace(",", " ").split()


def cells_left_out(name: str) -> set[str]:
    """The ids of notebook `name`'s cells that `LPD_MUTATE_SKIP` names as `<name>#<cell id>`: a cheaper first pass of
    `make mutate` (what such a pass kills, the whole notebook kills too; rerun its survivors without the entries)."""
    return {e.split("#", 1)[1] for e in mutate_skip() if e.startswith(f"{name}#")}


def run_against_package(name: str) -> None:
    "Run notebook `nbs/<name>.ipynb`'s test cells in its module's namespace; raise on the first failing cell."
    path = repo_root() / "nbs" / f"{name}.ipynb"
    left_out = cells_left_out(name)
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb
    module = next(c.directives_["default_exp"][0] for c in nb.cells if "default_exp" in (c.directives_ or {}))
    shell = CaptureShell(path)
    names = {k: v for k, v in vars(importlib.import_module(f"lpd.{module}")).items() if not k.startswith("__")}
    shell.user_ns.update(names)
    cwd = os.getcwd()
    os.chdir(path.parent)  # as nbdev_test runs it
    try:
        for cell in nb.cells:
            if skipped(cell) or cell.get("id") in left_out:
                continue
            shell.cell(cell)
            if shell.exc:
                raise AssertionError(f"{name}.ipynb, cell {cell.idx_}:\n{cell.source}\n{shell.prettytb(fname=path)}")
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_tests_pass_on_the_package(name):
    run_against_package(name)


NAMES = [n if isinstance(n, str) else n.values[0] for n in NOTEBOOKS]  # the names, without pytest.param


def collected(*args) -> list[str]:
    "The notebook names a collection-only pytest run of `args` gives, in the order the tests would run."
    class Collected:
        def pytest_collection_finish(self, session):
            self.names = [item.callspec.params["name"] for item in session.items]

    plugin = Collected()
    assert pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *args], plugins=[plugin]) == 0
    return plugin.names


def test_notebook_tests_run_fastest_first_whatever_order_they_are_named_in(monkeypatch):
    "mutmut names a mutant's tests as a set; conftest puts them back in `NOTEBOOKS`' order (with `-x`: cheapest first)"
    monkeypatch.delenv("LPD_MUTATE_SKIP", raising=False)
    named = ["07_train", "06d_evaluate", "04_pipeline", "01_decomposer"]
    ids = [f"{__file__}::test_notebook_tests_pass_on_the_package[{n}]" for n in named]
    assert collected(*ids) == ["01_decomposer", "06d_evaluate", "04_pipeline", "07_train"]


def test_a_mutation_run_can_leave_named_notebooks_out(monkeypatch):
    "`LPD_MUTATE_SKIP` (make mutate SKIP=...) deselects those notebooks' tests, and only those."
    monkeypatch.setenv("LPD_MUTATE_SKIP", "07_train,03_text")
    assert collected("-m", "slow or not slow", f"{__file__}::test_notebook_tests_pass_on_the_package") == [
        n for n in NAMES if n not in ("07_train", "03_text")]


def test_mutate_skip_names_cells_of_one_notebook(monkeypatch):
    monkeypatch.setenv("LPD_MUTATE_SKIP", "03_text,07_train#389e6c42 07_train#5e0f5d42,06_data#389e6c43")
    assert cells_left_out("07_train") == {"389e6c42", "5e0f5d42"}
    assert cells_left_out("03_text") == set()


def test_a_cell_left_out_does_not_run(tmp_path, monkeypatch):
    "A notebook whose second cell fails passes once that cell is named, and fails while another cell is."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("#| default_exp core", id="c0"),
                                         nbformat.v4.new_code_cell("assert False, 'ran'", id="c1"),
                                         nbformat.v4.new_code_cell("assert repo_root", id="c2")])  # lpd.core's names
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "x.ipynb")
    monkeypatch.setattr(sys.modules[__name__], "repo_root", lambda: tmp_path)
    for skip in ("", "x#c2"):  # another notebook's cell of that id: test_mutate_skip_names_cells_of_one_notebook
        monkeypatch.setenv("LPD_MUTATE_SKIP", skip)
        with pytest.raises(AssertionError, match="x.ipynb, cell 1"):
            run_against_package("x")
    monkeypatch.setenv("LPD_MUTATE_SKIP", "x#c1")
    run_against_package("x")
