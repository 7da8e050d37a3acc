"""GumBolt runs as a markdown table, RBM prior against the factorial one: `python
experiments/gumbolt_table.py RUNS_DIR`.

Groups the `results.json` of `train.py gumbolt` runs below RUNS_DIR by (dist, prior) and prints,
over seeds, the mean ± standard deviation of the test log-likelihood (importance sampled with
discrete latents, AIS log Z), the AIS log Z with its largest standard error, the largest
|AIS − exact| log Z, and the relaxed training bound on the test set. Then, per posterior, how far
the RBM prior's mean log-likelihood is above the factorial prior's, in nats and in seed standard
deviations (pooled: sqrt((sd_rbm² + sd_factorial²) / 2)), and the seed-paired differences.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def collect(root: Path) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(root.rglob("results.json")):
        result = json.loads(path.read_text())
        flags = result["flags"]
        if flags.get("task") == "gumbolt":
            groups[(flags["dist"], flags["prior"])].append(result)
    return groups


def _mean_sd(values: list[float]) -> tuple[float, float]:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.fmean(values), sd


def _fmt(values: list[float]) -> str:
    mean, sd = _mean_sd(values)
    return f"{mean:.2f}" if math.isnan(sd) else f"{mean:.2f} ± {sd:.2f}"


def table(groups: dict[tuple[str, str], list[dict]]) -> str:
    header = ["dist", "prior", "seeds", "epochs", "test log-lik.", "AIS log Z", "max AIS SE",
              "max abs(AIS − exact)", "relaxed bound (test)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (dist, prior), runs in sorted(groups.items()):
        m = [r["metrics"] for r in runs]
        gaps = [abs(x["log_z_ais"] - x["log_z_exact"]) for x in m if "log_z_exact" in x]
        row = [
            dist,
            prior,
            str(len(runs)),
            ",".join(sorted({str(r["epochs_completed"]) for r in runs})),
            _fmt([x["test_loglik"] for x in m]),
            _fmt([x["log_z_ais"] for x in m]),
            f"{max(x['log_z_ais_se'] for x in m):.2g}",
            f"{max(gaps):.2g}" if gaps else "–",
            _fmt([x["test_relaxed_bound"] for x in m]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def comparison(groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    """One line per posterior with both priors: the RBM's advantage in nats and in seed SDs."""
    lines = []
    for dist in sorted({d for d, _ in groups}):
        if (dist, "rbm") not in groups or (dist, "factorial") not in groups:
            continue
        by_seed = {
            prior: {r["seed"]: r["metrics"]["test_loglik"] for r in groups[(dist, prior)]}
            for prior in ("rbm", "factorial")
        }
        rbm, fac = list(by_seed["rbm"].values()), list(by_seed["factorial"].values())
        (m1, s1), (m0, s0) = _mean_sd(rbm), _mean_sd(fac)
        pooled = math.sqrt((s1**2 + s0**2) / 2)
        paired = [by_seed["rbm"][s] - by_seed["factorial"][s] for s in sorted(by_seed["rbm"])
                  if s in by_seed["factorial"]]  # fmt: skip
        lines.append(
            f"{dist}: RBM − factorial = {m1 - m0:+.2f} nats = {(m1 - m0) / pooled:+.1f} seed SDs "
            f"(pooled SD {pooled:.2f}); per seed: {', '.join(f'{d:+.2f}' for d in paired)}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", help="directory holding gumbolt runs (searched recursively)")
    args = p.parse_args(argv)
    groups = collect(Path(args.runs))
    if not groups:
        print("(no gumbolt results)")
        return 0
    print(table(groups))
    print()
    for line in comparison(groups):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
