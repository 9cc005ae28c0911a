"""Write README.md from nbs/index.ipynb (nbdev_readme needs quarto, which cannot be installed here).

Markdown cells are copied; code cells become ```python blocks without their `#|` directives; `#| hide`
cells are left out. Run by `make readme` and checked by `make test` (.ci/check_sync.sh).
"""
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def cell_text(cell) -> str | None:
    if cell.cell_type == "markdown":
        return cell.source.strip()
    lines = cell.source.splitlines()
    directives = [line for line in lines if line.startswith("#|")]
    if any(d.replace(" ", "") in ("#|hide", "#|export", "#|exporti") for d in directives):
        return None
    code = "\n".join(line for line in lines if not line.startswith("#|")).strip()
    return f"```python\n{code}\n```" if code else None


def main() -> None:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    parts = [t for t in map(cell_text, nb.cells) if t]
    header = "<!-- generated from nbs/index.ipynb by `make readme`; edit the notebook, not this file -->\n\n"
    (ROOT / "README.md").write_text(header + "\n\n".join(parts) + "\n")
    print("README.md written")


if __name__ == "__main__":
    main()
