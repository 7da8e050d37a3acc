"""Run an experiment grid: `python experiments/grid.py GRID [--runs DIR] [--ray [ADDRESS]] ...`.

A grid file (`experiments/grids/NAME.json`) names a base config (`experiments/configs/*.json`, flags
of train.py) and lists flag values whose product (or union of products) is the set of runs. Each run
writes to `RUNS/GRID/<flag=value,...>` and is skipped when its `results.json` exists, so re-running
the grid after an interruption finishes it (train.py itself resumes a half-finished run).

Without `--ray` the runs go one after another on this machine. With `--ray` each run is a Ray task
(`pip install -e ".[cluster]"`): on the cluster at ADDRESS (`auto` for the one this machine belongs
to, or `ray://HOST:10001`), or, with no ADDRESS, on a local Ray instance started for the grid and
stopped after it. A task asks for one GPU where the cluster has GPUs, and none otherwise. On a
cluster, the repository and RUNS must be at the same paths on every node (a shared file system):
the runs' checkpoints are how an interrupted grid resumes. Each finished run's results.json is also
copied back to RUNS on this machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from igr_tf.cli import fail

HERE = Path(__file__).resolve().parent
TRAIN = HERE.parent / "train.py"


def load_grid(name_or_path: str) -> tuple[str, dict]:
    path = Path(name_or_path)
    if not path.exists():
        path = HERE / "grids" / f"{name_or_path}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in (HERE / "grids").glob("*.json")))
        fail(f"no grid {name_or_path!r}; known grids: {known}", "grid.py")
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


def run_local(cmd: list[str]) -> tuple[int, str, str | None]:
    """Runs one train.py command here; returns (exit status, last stderr line, results text)."""
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr)
    return proc.returncode, _last_line(proc.stderr), _results_text(cmd)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _out(cmd: list[str]) -> Path:
    return Path(cmd[cmd.index("--out") + 1])


def _results_text(cmd: list[str]) -> str | None:
    out = _out(cmd)
    return (out / "results.json").read_text() if (out / "results.json").is_file() else None


def _ray_task(cmd: list[str]) -> tuple[int, str, str | None]:
    """The body of a Ray task: train.py with the worker's own Python interpreter."""
    cmd = [sys.executable, *cmd[1:]]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc.returncode, _last_line(proc.stderr), _results_text(cmd)


def run_ray(commands: list[list[str]], address: str | None) -> list[tuple[int, str, str | None]]:
    """Runs the commands as Ray tasks (one GPU each where the cluster has GPUs), in any order;
    returns their outcomes in the commands' order."""
    if address is None:
        # A local instance is one node: keep Ray on the loopback address (by default it binds the
        # machine's network address; this variable makes it use 127.0.0.1, as on macOS/Windows).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        fail("--ray needs Ray; install it with: pip install -e '.[cluster]'", "grid.py")
    for attempt in range(3):
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            break
        except Exception as e:  # Ray gives a node 30 s to start: a loaded machine may need more
            ray.shutdown()
            if address is not None or "timed out during startup" not in str(e) or attempt == 2:
                raise
            print(f"Ray did not start in time ({e}); trying again.", file=sys.stderr)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(num_gpus=1 if gpus >= 1 else 0, max_retries=0)(_ray_task)
        refs = [task.remote(cmd) for cmd in commands]
        index = {ref: i for i, ref in enumerate(refs)}
        outcomes: list = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            outcomes[i] = ray.get(done[0])
            status = "done" if outcomes[i][0] == 0 else f"failed: {outcomes[i][1]}"
            finished = len(refs) - len(pending)
            print(f"[{finished}/{len(refs)}] {_out(commands[i])}: {status}", flush=True)
        return outcomes
    finally:
        ray.shutdown()


def _pairs(items: list[str], flag: str, p: argparse.ArgumentParser) -> dict[str, str]:
    bad = [item for item in items if "=" not in item]
    if bad:
        p.error(f"{flag} takes KEY=VALUE; got {bad[0]!r}")
    return dict(item.split("=", 1) for item in items)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", help="grid name in experiments/grids or a path to a grid file")
    p.add_argument("--runs", default="runs", help="root directory of the runs")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run each configuration as a Ray task on the cluster at ADDRESS (auto, "
        "ray://HOST:10001), or on a local Ray instance when no ADDRESS is given",
    )
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
    only, extra = _pairs(args.only, "--only", p), _pairs(args.set, "--set", p)
    runs = [r for r in expand(grid) if all(str(r.get(k)) == v for k, v in only.items())]
    todo = []
    for i, run in enumerate(runs, 1):
        out = Path(args.runs) / name / run_name(run)
        if (out / "results.json").exists():
            continue
        cmd = command(grid["config"], {**run, **extra}, out)
        print(f"[{i}/{len(runs)}] {' '.join(cmd)}", flush=True)
        todo.append(cmd)
    done = len(runs) - len(todo)
    if args.dry_run or not todo:
        outcomes = []
    elif args.ray is not None:
        outcomes = run_ray(todo, args.ray or None)
    else:
        outcomes = [run_local(cmd) for cmd in todo]
    for cmd, (_, _, results) in zip(todo if outcomes else [], outcomes, strict=True):
        local = _out(cmd) / "results.json"
        if results is not None and not local.exists():  # a cluster without a shared file system
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(results)
    failed = sum(1 for code, _, _ in outcomes if code != 0)
    print(f"{len(runs)} runs: {done} already finished, {failed} failed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
