"""Write reports/mutation/<module>.md from mutmut's results in mutants/ (after `make mutate`).

Usage: python .ci/mutation_report.py [MODULE ...]   (default: every module mutmut has results for)
Each report gives the command, the commit, the counts by status and every survivor's one-line diff, with the reason
it is equivalent (`.ci/mutation_equivalent.json`, or a docstring's text) or "not killed yet".
"""
import ast
import json
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


def is_docstring(diff: str) -> bool:
    "A mutant of a one-line docstring (or another bare string statement): no behaviour changes."
    old = diff.split("` -> `")[0].strip("`")
    return old.startswith('"') and old.endswith('"') and not old.startswith('f"')


def _call_shape(code: str, blank_text: bool) -> str | None:
    "The parsed line with `default=None` dropped and (if `blank_text`) help/description text blanked; None: no parse."
    try:
        tree = ast.parse(code.strip().rstrip(","))
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if not (k.arg == "default" and isinstance(k.value, ast.Constant)
                                                              and k.value.value is None)]
            if blank_text:
                node.keywords = [k for k in node.keywords if k.arg != "description"]
                for k in node.keywords:
                    if k.arg == "help" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str):
                        k.value = ast.Constant("")
    return ast.dump(tree)


def is_help_text(diff: str) -> bool:
    "A mutant of the words of a `help=` string or of the parser's `description` (--help's text), nothing else."
    old, new = (side.strip("`") for side in diff.split("` -> `"))
    return _call_shape(old, True) is not None and _call_shape(old, True) == _call_shape(new, True) \
        and _call_shape(old, False) != _call_shape(new, False)


def drops_default_none(diff: str) -> bool:
    "A mutant that drops an argument's `default=None`: argparse's default is None."
    old, new = (side.strip("`") for side in diff.split("` -> `"))
    return old != new and _call_shape(old, False) is not None and _call_shape(old, False) == _call_shape(new, False)


def report(module: str) -> Path:
    reasons = json.loads((ROOT / ".ci" / "mutation_equivalent.json").read_text())
    meta = json.loads((ROOT / "mutants" / "lpd" / f"{module}.py.meta").read_text())
    status = {name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()}
    counts = Counter(status.values())
    checked = sum(counts[s] for s in ("killed", "survived", "timeout", "suspicious", "segfault"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = [f"# Mutation testing of `lpd/{module}.py`", "",
             f"Command: `make mutate MODULE={module}` (mutmut, `setup.cfg`'s `[mutmut]`), commit {commit}.",
             "Tests: `tests/test_notebooks.py`, the notebook's own tests run against the package.", "",
             "| status | mutants |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    survivors = {name: one_line_diff(name) for name, s in sorted(status.items()) if s == "survived"}
    why = {name: "docstring text" if is_docstring(diff) else "help text" if is_help_text(diff)
           else "argparse's default is None" if drops_default_none(diff)
           else reasons.get(name, "**not killed yet**") for name, diff in survivors.items()}
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
                  "retraces)."]
    lines += ["", "## Survivors", ""]
    lines += [f"- `{name}`: {diff} ({why[name]})" for name, diff in survivors.items()]
    out = ROOT / "reports" / "mutation" / f"{module}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"{out}: {counts['killed']}/{checked} killed ({score:.1%}), {counts['survived']} survived")
    return out


if __name__ == "__main__":
    modules = sys.argv[1:] or sorted(p.name[:-len(".py.meta")] for p in (ROOT / "mutants" / "lpd").glob("*.py.meta"))
    for module in modules:
        report(module)
