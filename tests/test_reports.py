"""What reports/ and the README promise a reader who wants to reproduce a figure: every command, stage, template and
path they name exists, every committed result says how it was made, and reports/ holds results, not code."""
import ast
import importlib.util
import json
import re
import sys

import pytest

from helpers import ci_script, console_scripts
from lpd.core import repo_root

ROOT = repo_root()
DOCS = [ROOT / "README.md", *sorted((ROOT / "reports").rglob("*.md"))]
STUDY = ROOT / "nbs" / "experiments" / "toy_study.sh"
INSTALLED = {"lpd/assets"}  # made by `pip install .` (data/ inside the package), not in a checkout
COMMAND = re.compile(r"\blpd-[a-z]+|python3? -m lpd\.\w+|toy_study\.sh \w+|papermill nbs/experiments/\w+\.ipynb"
                     r"|python3? nbs/experiments/[\w/]+\.py|make [a-z]+")


def study_stages() -> set[str]:
    "The stages toy_study.sh's `case` accepts."
    return {s for labels in re.findall(r"^([\w|]+)\)", STUDY.read_text(), flags=re.M) for s in labels.split("|")}


def named(pattern: str) -> list[tuple[str, str]]:
    "(document, match) for every match of `pattern` in the README and reports/**/*.md."
    return [(str(doc.relative_to(ROOT)), m.group(1)) for doc in DOCS for m in re.finditer(pattern, doc.read_text())]


def test_the_commands_stages_and_paths_the_docs_name_exist():
    scripts, stages = console_scripts(), study_stages()
    bad = [(d, f"lpd-{c}") for d, c in named(r"\blpd-([a-z]+)\b") if f"lpd-{c}" not in scripts]
    bad += [(d, m) for d, m in named(r"python3? -m (lpd\.\w+)") if importlib.util.find_spec(m) is None]
    bad += [(d, f"toy_study.sh {s}") for d, s in named(r"toy_study\.sh (\w+)") if s not in stages]
    paths = named(r"(?<![\w/.-])((?:nbs|tests|lpd|data/profiles|\.ci)/[\w./*<>{}-]*[\w*])")
    bad += [(d, p) for d, p in paths if p not in INSTALLED and not any(c in p for c in "<>{")
            and not (any(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    assert not bad, f"named in the docs but missing: {bad}"
    assert {"rows", "open_study", "route", "pack"} <= stages and "lpd-eval" in scripts  # the parsers read something


def result_files():
    "Committed results: lpd-eval's and the toy's metrics.json, the benchmarks' JSON."
    reports = ROOT / "reports"
    return sorted([*reports.rglob("metrics.json"), *(reports / "bench").glob("*.json")])


def test_every_committed_result_says_how_it_was_made():
    """A result records the command that made it (`made_by`, since issue 20) or sits below a README that names one
    (older results); the command's program exists (the test above checks the READMEs')."""
    scripts, unexplained = console_scripts(), []
    results = result_files()
    for path in results:
        record = json.loads(path.read_text())
        command = record.get("made_by", {}).get("command") if isinstance(record, dict) else None
        if command:
            program = command.split()[0] if command.split()[0] != "python" else command.split()[2]
            assert program in scripts or importlib.util.find_spec(program) is not None, (path, command)
            continue
        readmes = [d / "README.md" for d in path.parents if d.is_relative_to(ROOT / "reports")]
        if not any(r.exists() and COMMAND.search(r.read_text()) for r in readmes):
            unexplained.append(str(path.relative_to(ROOT)))
    assert len(results) > 100 and not unexplained, unexplained


def test_reports_hold_results_not_code():
    code = [str(p.relative_to(ROOT)) for p in (ROOT / "reports").rglob("*") if p.suffix in (".py", ".sh")]
    assert not code, f"code in reports/ (its home is a command or nbs/experiments/): {code}"


@pytest.mark.parametrize("stage", ["rows", "open_decomposers"])
def test_the_stage_parser_notices_a_missing_stage(stage, tmp_path, monkeypatch):
    "The check above would catch a stage renamed in toy_study.sh: the parser stops listing it."
    renamed = tmp_path / "toy_study.sh"
    renamed.write_text(STUDY.read_text().replace(f"\n{stage})", f"\n{stage}_renamed)"))
    monkeypatch.setattr(sys.modules[__name__], "STUDY", renamed)
    assert stage not in study_stages() and f"{stage}_renamed" in study_stages()


def test_the_mutation_table_says_what_each_module_report_says():
    "reports/mutation/README.md is `.ci/mutation_summary.py`'s table of the reports beside it, number for number."
    summary = ci_script("mutation_summary")
    assert (ROOT / "reports" / "mutation" / "README.md").read_text() == summary.summary()
    for module, report in summary.module_reports().items():  # the counts, against each report's status table
        text = report.read_text()
        c, table = summary.counts(text), {s: int(n) for s, n in re.findall(r"^\| ([a-z ]+) \| (\d+) \|$", text, re.M)}
        assert c["killed"] == table["killed"] and c["survivors"] == table.get("survived", 0), module
        run = ("killed", "survived", "timeout", "suspicious", "segfault")  # what .ci/mutation_report.py counts checked
        assert c["checked"] == sum(table.get(s, 0) for s in run), module
        assert c["docstrings"] == text.count("(docstring text)\n"), module


def mutmut_names(module: str) -> set[str]:
    "mutmut's names of `lpd/<module>.py`'s functions and methods: `x_f`, `xǁClassǁmethod`."
    tree = ast.parse((ROOT / "lpd" / f"{module}.py").read_text())
    names = {f"x_{n.name}" for n in tree.body if isinstance(n, ast.FunctionDef)}
    return names | {f"xǁ{c.name}ǁ{n.name}" for c in tree.body if isinstance(c, ast.ClassDef)
                    for n in c.body if isinstance(n, ast.FunctionDef)}


def test_every_equivalent_mutant_names_a_function_that_exists():
    "A function renamed or moved (into a mixin, out of a class) leaves its equivalents behind: each names a live one."
    reasons = json.loads((ROOT / ".ci" / "mutation_equivalent.json").read_text())
    stale = []
    for key in set(reasons) - {"_"}:
        _, module, mutant = key.split(".", 2)  # lpd.<module>.<function>__mutmut_<n>
        if mutant.split("__mutmut_")[0] not in mutmut_names(module):
            stale.append(key)
    assert stale == []
    assert "x_fit" in mutmut_names("train") and "xǁDecomposeTextsMixinǁtext_embeds" in mutmut_names("pipeline")


def test_a_mutation_report_refuses_docstring_mutants_marked_killed():
    "No test reads a docstring: a run that kills a mutant changing only one is broken, and its report is not written."
    pytest.importorskip("mutmut")
    mutation_report = ci_script("mutation_report")
    source = '''
def x_f__mutmut_orig(a):
    "Add one."
    return a + 1
def x_f__mutmut_1(a):
    "XXAdd one.XX"
    return a + 1
def x_f__mutmut_2(a):
    "Add one."
    return a - 1
'''
    functions = {node.name: node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    status = {"lpd.m.x_f__mutmut_1": "killed", "lpd.m.x_f__mutmut_2": "killed"}
    assert mutation_report.killed_docstrings(status, functions) == ["lpd.m.x_f__mutmut_1"]
    status["lpd.m.x_f__mutmut_1"] = "survived"
    assert mutation_report.killed_docstrings(status, functions) == []


def test_a_mutation_report_note_stands_under_its_command_and_tests():
    "`--note` says how results not made by one `make mutate` were made, right under the command and the tests."
    mutation_report = ci_script("mutation_report")
    plain = mutation_report.header("train", "04_pipeline", "abc1234")
    assert plain[2] == ("Command: `make mutate MODULE=train SKIP=04_pipeline` (mutmut, `setup.cfg`'s `[mutmut]`), "
                        "commit abc1234.")
    assert plain[3].startswith("Tests: ") and "without 04_pipeline's" in plain[3] and plain[4:] == [""]
    selection = ("tests/test_notebooks.py", "tests/test_train_options.py", "tests/test_train.py")  # setup.cfg's
    assert all(f"`{path}`" in plain[3] for path in selection)
    noted = mutation_report.header("train", "04_pipeline", "abc1234", note="Two passes.")
    assert noted == plain[:4] + ["Two passes.", ""]


def test_a_partial_mutation_report_says_which_functions_ran():
    "With mutants not run, the report names the functions run whole, begun (how far) and not begun."
    mutation_report = ci_script("mutation_report")
    status = {"lpd.m.x_f__mutmut_1": "killed", "lpd.m.x_f__mutmut_2": "survived", "lpd.m.x_g__mutmut_1": "killed",
              "lpd.m.x_g__mutmut_2": "not checked", "lpd.m.x__h__mutmut_1": "no tests"}
    assert mutation_report.progress(status) == ("Complete: `f`. Begun: `g` (1 of 2 run). Not run yet: `_h` (1).")
