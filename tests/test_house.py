"""The package's layering: each module imports only modules whose notebooks come earlier, so there is no circle and
the notebooks read in import order (issue 20). Imports inside functions count too: a lazy import is still a circle.
And the notebooks as documents: small export cells, each a definition before its check."""
import ast
import json
import re
import statistics

from lpd.core import repo_root


def notebook_of(module: str) -> str:
    "`lpd/<module>.py`'s notebook, from the line nbdev writes at its top (`02_tiny`, ...)."
    text = (repo_root() / "lpd" / f"{module}.py").read_text()
    return re.search(r"File to edit: \.\./nbs/(\S+)\.ipynb", text).group(1)


def lpd_imports(module: str) -> set[str]:
    "The lpd modules `lpd/<module>.py` imports, at the top or in a function (`from .x`, `from lpd.x`, `import lpd.x`)."
    tree = ast.parse((repo_root() / "lpd" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lpd":
            found |= {node.module.split(".")[1]} if "." in node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lpd.")}
    return {name.split(".")[0] for name in found} - {module}


def modules() -> list[str]:
    return sorted(p.stem for p in (repo_root() / "lpd").glob("*.py") if not p.stem.startswith("_"))


def test_modules_import_only_earlier_notebooks():
    later = {m: sorted(d for d in lpd_imports(m) if notebook_of(d) >= notebook_of(m)) for m in modules()}
    assert {m: d for m, d in later.items() if d} == {}, "imports of a later notebook (a circle, or out of order)"


def test_the_import_reader_sees_each_spelling():
    "The reader finds relative and absolute imports, and those inside functions (report's evaluate, explore's core)."
    assert lpd_imports("cache") == {"core", "text"}
    assert lpd_imports("judge") == {"shapes"}
    assert "evaluate" in lpd_imports("report") and "core" in lpd_imports("explore")


def export_cell_lengths(notebook) -> list[int]:
    "Lines of each `#| export` cell of a notebook, its `#|` directives left out."
    cells = json.loads(notebook.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [sum(not line.startswith("#|") for line in s.splitlines()) for s in sources
            if re.search(r"^#\|\s*export\b", s, re.M)]


def test_export_cells_are_small():
    "Every notebook's median export cell is at most 12 lines: a definition, then its check (issue 20)."
    lengths = {nb.stem: export_cell_lengths(nb) for nb in sorted((repo_root() / "nbs").glob("*.ipynb"))}
    medians = {name: statistics.median(cells) for name, cells in lengths.items() if cells}
    assert len(medians) >= 20, sorted(medians)  # every module's notebook was read
    assert {name: m for name, m in medians.items() if m > 12} == {}


def test_export_cell_lengths_count_code_lines_only(tmp_path):
    cell = {"cell_type": "code", "source": ["#| export\n", "def f():\n", "    return 1\n"]}
    hidden = {"cell_type": "code", "source": ["#| hide\n", "x = 1\n"]}
    note = {"cell_type": "markdown", "source": ["#| export\n", "prose\n"]}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": [cell, hidden, note, {**cell, "source": ["#|export\n", "y = 2\n"]}]}))
    assert export_cell_lengths(path) == [2, 1]
