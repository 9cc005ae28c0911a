"""Write reports/mutation/<module>.md from mutmut's results in mutants/ (after `make mutate`).

Usage: python .ci/mutation_report.py [MODULE ...] [--skip NOTEBOOKS]   (default: every module mutmut has results for)
Each report gives the command, the commit, the counts by status and every survivor's one-line diff, with the reason
it is equivalent (`.ci/mutation_equivalent.json`, or text only: a docstring, --help's words) or "not killed yet".
"""
import argparse
import ast
import configparser
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parents[1]


def one_line_diff(name: str) -> str:
    "The mutant's changed line, `old -> new`, from `mutmut show` (whitespace squeezed)."
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True,
                           text=True).stdout.splitlines()
    old = [line[1:].strip() for line in shown if line.startswith("-") and not line.startswith("---")]
    new = [line[1:].strip() for line in shown if line.startswith("+") and not line.startswith("+++")]
    return f"`{' '.join(old)}` -> `{' '.join(new)}`"


TEXT_KEYWORDS = ("help", "description", "metavar")  # what --help shows; the parsed values do not depend on them


def _functions(module: str) -> dict[str, ast.FunctionDef]:
    "Every function of mutmut's copy of the module (each mutant and each original), by name."
    tree = ast.parse((ROOT / "mutants" / "lpd" / f"{module}.py").read_text())
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def _shape(fn: ast.FunctionDef, text: bool, default_none: bool) -> str:
    "The function without docstrings (and, if asked, without --help's text or `default=None`), as a string."
    fn = ast.parse(ast.unparse(fn)).body[0]
    fn.name = "f"
    for node in ast.walk(fn):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if not (text and k.arg in TEXT_KEYWORDS) and not (
                default_none and k.arg == "default" and isinstance(k.value, ast.Constant) and k.value.value is None)]
    return ast.dump(fn)


def text_only(name: str, functions: dict[str, ast.FunctionDef]) -> str | None:
    """Why a mutant changes no behaviour, when it changes only a docstring, --help's text (help, description,
    metavar) or drops a `default=None` (argparse's own default); None otherwise."""
    short = name.split(".", 2)[-1]
    mutant, orig = functions.get(short), functions.get(re.sub(r"__mutmut_\d+$", "__mutmut_orig", short))
    if mutant is None or orig is None:
        return None
    for reason, text, default_none in (("docstring text", False, False), ("help text", True, False),
                                       ("argparse's default is None", True, True)):
        if _shape(mutant, text, default_none) == _shape(orig, text, default_none):
            return reason
    return None


def killed_docstrings(status: dict[str, str], functions: dict[str, ast.FunctionDef]) -> list[str]:
    """The mutants marked killed that change only a docstring. No test reads one, so the run that marked them did not
    run the tests it claims (2026-12-05: a GPU machine's runs came back all killed, docstring mutants included)."""
    return [name for name, s in sorted(status.items())
            if s == "killed" and text_only(name, functions) == "docstring text"]


def selected_tests() -> list[str]:
    "The test files mutmut runs: `setup.cfg`'s `[mutmut] pytest_add_cli_args_test_selection`."
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser["mutmut"]["pytest_add_cli_args_test_selection"].split()


def header(module: str, skip: str, commit: str, note: str = "") -> list[str]:
    "The report's title, command, tests and, where given, the note on how this run's results were made."
    command = f"make mutate MODULE={module}" + (f" SKIP={skip}" if skip else "")
    named = {"tests/test_notebooks.py": "the notebooks' own tests run against the package"}
    tests = "; ".join(f"`{path}`" + (f", {named[path]}" if path in named else "") for path in selected_tests()) + (
        f"; without {skip}'s (a lower bound: those tests could only kill more)" if skip else "")
    return [f"# Mutation testing of `lpd/{module}.py`", "",
            f"Command: `{command}` (mutmut, `setup.cfg`'s `[mutmut]`), commit {commit}.", f"Tests: {tests}.",
            *([note] if note else []), ""]


def progress(status: dict[str, str]) -> str:
    "Which functions every mutant of has run, some, or none (in source order), for a report with mutants not run."
    ran, total = Counter(), Counter()
    for name, s in status.items():
        function = name.rsplit("__mutmut_", 1)[0].split(".x_", 1)[1]
        total[function] += 1
        ran[function] += s not in ("not checked", "no tests")
    complete = [f"`{f}`" for f in total if ran[f] == total[f]]
    begun = [f"`{f}` ({ran[f]} of {total[f]} run)" for f in total if 0 < ran[f] < total[f]]
    none = [f"`{f}` ({total[f]})" for f in total if ran[f] == 0]
    return (f"Complete: {', '.join(complete) or 'none'}. Begun: {', '.join(begun) or 'none'}. "
            f"Not run yet: {', '.join(none) or 'none'}.")


def report(module: str, skip: str = "", note: str = "") -> Path:
    reasons = json.loads((ROOT / ".ci" / "mutation_equivalent.json").read_text())
    meta = json.loads((ROOT / "mutants" / "lpd" / f"{module}.py.meta").read_text())
    status = {name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()}
    counts = Counter(status.values())
    checked = sum(counts[s] for s in ("killed", "survived", "timeout", "suspicious", "segfault"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = header(module, skip, commit, note) + ["| status | mutants |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    functions = _functions(module)
    broken = killed_docstrings(status, functions)
    if broken:
        raise SystemExit(f"{module}: {len(broken)} mutants that change only a docstring are marked killed "
                         f"({broken[0]}, ...): the run that marked them is broken; set them to not run and rerun them")
    survivors = {name: one_line_diff(name) for name, s in sorted(status.items()) if s == "survived"}
    why = {name: text_only(name, functions) or reasons.get(name, "**not killed yet**") for name in survivors}
    equivalent = sum(1 for reason in why.values() if reason != "**not killed yet**")
    score = counts["killed"] / checked if checked else float("nan")
    kept = counts["killed"] / (checked - equivalent) if checked > equivalent else float("nan")
    lines += ["", f"Score: {counts['killed']} killed of {checked} checked = **{score:.1%}**; {equivalent} of the "
              f"{len(survivors)} survivors are equivalent (below), so {kept:.1%} of the mutants that change "
              "behaviour are killed."]
    waiting = counts["not checked"] + counts["no tests"]
    if waiting:
        lines += ["", f"Not in the score: {waiting} mutants not run (`not checked`; `no tests`: no test reached them "
                  "when mutmut last traced the tests, so `rm mutants/mutmut-stats.json` before `make mutate` "
                  "retraces).", "", progress(status)]
    lines += ["", "## Survivors", ""]
    lines += [f"- `{name}`: {diff} ({why[name]})" for name, diff in survivors.items()]
    out = ROOT / "reports" / "mutation" / f"{module}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"{out}: {counts['killed']}/{checked} killed ({score:.1%}), {counts['survived']} survived")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="reports/mutation/<module>.md from mutmut's results")
    parser.add_argument("modules", nargs="*", help="default: every module mutmut has results for")
    parser.add_argument("--skip", default="", help="the notebooks `make mutate SKIP=...` left out")
    parser.add_argument("--note", default="", help="a paragraph under the command: where and how the results were "
                        "made when it was not one `make mutate` (several passes, another machine)")
    args = parser.parse_args()
    ran = sorted(p.name[:-len(".py.meta")] for p in (ROOT / "mutants" / "lpd").glob("*.py.meta"))
    for module in args.modules or ran:
        report(module, args.skip, args.note)
