"""Strip outputs from the notebooks before committing them (they are kept output-free in git).

    python notebooks/strip_outputs.py            # strip every notebooks/*.ipynb in place
    python notebooks/strip_outputs.py --check    # exit 1 and list notebooks that have outputs

Stripping clears outputs and execution counts and drops execution timing metadata; the cell
sources, their tags (the first cell is tagged "parameters") and the notebook metadata stay.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent
_VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled")


def problems(nb) -> list[str]:
    """What keeps a notebook from being stripped: one line per offending cell."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i}: has outputs")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i}: has an execution count")
        if any(key in cell.metadata for key in _VOLATILE_CELL_METADATA):
            found.append(f"cell {i}: has execution metadata")
    return found


def strip(nb):
    """Clears outputs, execution counts and volatile metadata in place; returns the notebook."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in _VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all here)")
    parser.add_argument("--check", action="store_true", help="report, do not modify")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    dirty = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        found = problems(nb)
        if not found:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: " + "; ".join(found))
        else:
            nbformat.write(strip(nb), path)
            print(f"stripped {path}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
