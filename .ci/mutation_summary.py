"""Write reports/mutation/README.md: one row per module, read from the reports `.ci/mutation_report.py` wrote.

Usage: python .ci/mutation_summary.py   (`make mutate` runs it; tests/test_reports.py checks it matches the reports)
mutmut 3.8 also mutates docstrings, which no test can observe; the last score leaves those mutants out.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "reports" / "mutation"
HEADER = ["module", "commit", "killed", "checked", "score", "docstring mutants", "score without them",
          "survivors equivalent", "not killed yet", "not run"]


def counts(report: str) -> dict:
    "The numbers one module's report states."
    killed, checked = map(int, re.search(r"^Score: (\d+) killed of (\d+) checked", report, re.M).groups())
    equivalent = int(re.search(r"; (\d+) of the \d+ survivors are equivalent", report).group(1))
    survivors = re.findall(r"^- `lpd\.[^`]+`: .*$", report, re.M)
    docstrings = sum(line.endswith("(docstring text)") for line in survivors)
    waiting = re.search(r"^Not in the score: (\d+) mutants not run", report, re.M)
    return dict(commit=re.search(r"commit (\w+)\.", report).group(1), killed=killed, checked=checked,
                docstrings=docstrings, equivalent=equivalent, survivors=len(survivors),
                pending=sum("**not killed yet**" in line for line in survivors),
                not_run=int(waiting.group(1)) if waiting else 0)


def row(module: str, c: dict) -> str:
    cells = [f"`lpd/{module}.py`", c["commit"], c["killed"], c["checked"], f"{c['killed'] / c['checked']:.1%}",
             c["docstrings"], f"{c['killed'] / (c['checked'] - c['docstrings']):.1%}",
             f"{c['equivalent']} of {c['survivors']}", c["pending"], c["not_run"]]
    return "| " + " | ".join(map(str, cells)) + " |"


def module_reports() -> dict[str, Path]:
    "Each module's report in reports/mutation/, by module name."
    return {p.stem: p for p in sorted(FOLDER.glob("*.md")) if p.name != "README.md"}


def summary() -> str:
    reports = {m: counts(p.read_text()) for m, p in module_reports().items()}
    return "\n".join([
        "# Mutation scores", "",
        "One row per module, from its report in this folder (written by `make mutate MODULE=<module>`, which runs "
        "`.ci/mutation_report.py`, then `.ci/mutation_summary.py` for this table). *score*: killed of checked. "
        "mutmut 3.8 also mutates docstrings, which no test can observe; *score without them* leaves those mutants "
        "out of checked. Every survivor is listed in its report with the reason it is equivalent, or as not killed "
        "yet; *not run*: mutants no run has reached (not in either score).", "",
        "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
        *(row(m, c) for m, c in reports.items()), ""])


if __name__ == "__main__":
    (FOLDER / "README.md").write_text(summary())
    print((FOLDER / "README.md").read_text())
