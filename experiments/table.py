"""Summarise runs as a markdown table: `python experiments/table.py RUNS_DIR [--metrics m1,m2]`.

Reads every `results.json` below RUNS_DIR, groups runs that differ only in `seed`, and prints the
mean ± standard deviation (over seeds) of each metric per group.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT_METRICS = {
    "vae": ["test_elbo", "test_loglik", "test_loglik_original_formula"],
    "sop": ["test_nll"],
    "approx": ["final_loss", "total_variation"],
    "cbm": ["test_accuracy", "test_sparsity", "test_concept_accuracy", "encoder_test_accuracy"],
    "dlgmm": ["test_elbo", "test_loglik", "components_used", "assignment_entropy"],
}
# Flags that identify an experiment (everything else, e.g. out or verbose, is bookkeeping).
KEY_FLAGS = [
    "task",
    "mode",
    "dist",
    "estimator",
    "temperature_schedule",
    "dataset",
    "arch",
    "temperature",
    "num_vars",
    "num_categories",
    "components",
    "samples",
    "kl",
    "target",
    "categories",
    "epochs",
    "lr",
]


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.2f} ± {std:.2f}"


def collect(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]


def table(results: list[dict], metrics: list[str] | None = None) -> str:
    if not results:
        return "(no results)"
    task = results[0]["flags"]["task"]
    metrics = metrics or DEFAULT_METRICS[task]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        flags = dict(
            r["flags"], temperature=r["metrics"].get("temperature", r["flags"].get("temperature"))
        )
        groups[tuple((k, flags.get(k)) for k in KEY_FLAGS)].append(r)
    varying = [k for k in KEY_FLAGS if len({dict(g).get(k) for g in groups}) > 1] or ["task"]
    header = varying + ["seeds"] + metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in sorted(groups, key=lambda g: [str(v) for _, v in g]):
        runs = groups[key]
        row = [str(dict(key)[k]) for k in varying] + [str(len(runs))]
        row += [mean_std([r["metrics"].get(m) for r in runs]) for m in metrics]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", help="directory holding runs (searched recursively for results.json)")
    p.add_argument("--metrics", default=None, help="comma-separated metric names")
    args = p.parse_args(argv)
    if not Path(args.runs).is_dir():
        p.error(f"runs: no such directory: {args.runs}")
    metrics = args.metrics.split(",") if args.metrics else None
    print(table(collect(Path(args.runs)), metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
