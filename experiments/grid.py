"""Run an experiment grid: `python experiments/grid.py GRID [--runs DIR] [--dry-run] [--only k=v]`.

A grid file (`experiments/grids/NAME.json`) names a base config (`experiments/configs/*.json`, flags
of train.py) and lists flag values whose product (or union of products) is the set of runs. Each run
writes to `RUNS/GRID/<flag=value,...>` and is skipped when its `results.json` exists, so re-running
the grid after an interruption finishes it (train.py itself resumes a half-finished run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = HERE.parent / "train.py"


def load_grid(name_or_path: str) -> tuple[str, dict]:
    path = Path(name_or_path)
    if not path.exists():
        path = HERE / "grids" / f"{name_or_path}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in (HERE / "grids").glob("*.json")))
        raise SystemExit(f"grid.py: error: no grid {name_or_path!r}; known grids: {known}")
    return path.stem, json.loads(path.read_text())


def expand(grid: dict) -> list[dict]:
    """All runs of a grid: the product of each block's value lists, blocks in order."""
    blocks = grid["grid"] if isinstance(grid["grid"], list) else [grid["grid"]]
    runs = []
    for block in blocks:
        keys = list(block)
        for values in itertools.product(*(block[k] for k in keys)):
            runs.append(dict(zip(keys, values, strict=True)))
    return runs


def run_name(run: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in run.items())


def command(config: str, run: dict, out: Path) -> list[str]:
    cmd = [sys.executable, str(TRAIN), "--config", config, "--out", str(out), "--verbose", "2"]
    for key, value in run.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", help="grid name in experiments/grids or a path to a grid file")
    p.add_argument("--runs", default="runs", help="root directory of the runs")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run only the runs whose flag KEY has VALUE (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="extra train.py flag for every run, e.g. --set epochs=2",
    )
    args = p.parse_args(argv)
    name, grid = load_grid(args.grid)
    only = dict(item.split("=", 1) for item in args.only)
    extra = dict(item.split("=", 1) for item in args.set)
    runs = [r for r in expand(grid) if all(str(r.get(k)) == v for k, v in only.items())]
    done = failed = 0
    for i, run in enumerate(runs, 1):
        out = Path(args.runs) / name / run_name(run)
        if (out / "results.json").exists():
            done += 1
            continue
        cmd = command(grid["config"], {**run, **extra}, out)
        print(f"[{i}/{len(runs)}] {' '.join(cmd)}", flush=True)
        if args.dry_run:
            continue
        if subprocess.call(cmd) != 0:
            failed += 1
    print(f"{len(runs)} runs: {done} already finished, {failed} failed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
