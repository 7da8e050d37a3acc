"""The Gumbel trick's relatives (Balog et al., ICML 2017): the paper's comparisons, reproduced.

    python experiments/gumbel_relatives.py [--quick] [--out results.json]

Prints two markdown tables (the ones in docs/results.md):

1. Full-rank perturbations: MSE of every family's log Z estimator against the number of MAP
   samples M, by Monte Carlo over independent estimates, next to the closed forms (Gumbel,
   Exponential). The MSE does not depend on the model (scale invariance), only on the family.
2. Low-rank (unary) perturbations on Ising grids with exact log Z (transfer matrices; checked
   against enumeration on 4 × 4 in the tests): the MSE of the M = 100 estimate of the upper
   bound U(α) as an estimate of log Z (the paper's Figure 4), its gap, the lower bounds' gaps and
   the sequential sampler's acceptance rate e^{log Z − U(α)}.

`--quick` runs a few seconds' worth (numbers noisy).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from igr_tf.perturbations import compare, grid  # noqa: E402

ALPHAS = (-0.4, -0.3, -0.2, -0.125, -0.05, 0.0, 0.5, 1.0)
COUPLINGS = (0.0, 1.0, 2.0, 3.0)


def full_rank_table(results: dict, sample_sizes) -> str:
    head = "| estimator | how | " + " | ".join(f"M = {m}" for m in sample_sizes) + " |"
    lines = [head, "|" + "---|" * (len(sample_sizes) + 2)]
    for name, row in results.items():
        how = compare.LOG_Z_ESTIMATORS[name][3]
        cells = []
        for mse, se, exact in zip(row["mse"], row["mse_se"], row["closed_form"], strict=True):
            cell = f"{mse:.4f} ± {se:.4f}"
            if exact is not None:
                cell += f" ({exact:.4f})"
            cells.append(cell)
        lines.append(f"| {name} | {how} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def low_rank_table(entries: list[dict]) -> str:
    """One row per model: U(α) at α = 0 (Gumbel / Hazan–Jaakkola), at its best α, at α = 1."""
    lines = [
        "| grid | couplings | C | log Z | MSE of U: α = 0 | best α | MSE at best α | α = 1 "
        "| U − log Z: α = 0 | best α | acceptance: α = 0 | best α "
        "| L(0) − log Z | max-marginal − log Z |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        rows = {r["alpha"]: r for r in e["rows"]}
        best = min(e["rows"], key=lambda r: r["upper_mse"])
        zero, one = rows[0.0], rows[1.0]
        lines.append(
            f"| {e['shape']} | {e['interaction']} | {e['coupling']:g} | {e['log_z']:.2f} "
            f"| {_pm(zero, 'upper_mse')} | {best['alpha']:g} | {_pm(best, 'upper_mse')} "
            f"| {_pm(one, 'upper_mse')} | {_pm(zero, 'pooled_upper_gap')} "
            f"| {_pm(best, 'pooled_upper_gap')} | {zero['acceptance']:.3f} "
            f"| {best['acceptance']:.3f} | {zero['lower_gap']:.3f} "
            f"| {e['max_marginal_gap']:.3f} |"
        )
    return "\n".join(lines)


def _pm(row: dict, key: str) -> str:
    return f"{row[key]:.3f} ± {row[key + '_se']:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (noisy numbers)")
    parser.add_argument("--out", type=Path, help="write the raw numbers as JSON here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    sample_sizes = (1, 2, 4, 16, 64) if args.quick else (1, 2, 4, 8, 16, 32, 64, 128)
    replicates = 500 if args.quick else 20_000
    logits = np.linspace(-1.0, 1.0, 10)
    full = compare.full_rank_log_z_mse(logits, sample_sizes, replicates=replicates, seed=args.seed)
    print(f"## Full rank: MSE of log Z estimators ({replicates} estimates each)\n")
    print(full_rank_table(full, sample_sizes))

    shapes = ((4, 4),) if args.quick else ((4, 4), (6, 6))
    couplings = (0.0, 3.0) if args.quick else COUPLINGS
    reps = 20 if args.quick else 1000
    entries = []
    for shape in shapes:
        for interaction in ("attractive", "mixed"):
            for c in couplings:
                if c == 0 and interaction == "mixed":
                    continue  # the same model as attractive at C = 0
                model = grid.ising_grid(
                    *shape, field=1.0, coupling=c, interaction=interaction, seed=args.seed
                )
                gaps = compare.low_rank_gaps(
                    model, ALPHAS, num_samples=100, replicates=reps, seed=args.seed
                )
                entries.append(
                    {
                        "shape": f"{shape[0]}×{shape[1]}",
                        "interaction": interaction,
                        "coupling": c,
                        **gaps,
                    }
                )
    print(f"\n## Low rank: bounds on Ising grids ({reps} estimates of M = 100 each)\n")
    print(low_rank_table(entries))
    elapsed = time.perf_counter() - start
    print(f"\n({elapsed:.0f} s)")
    if args.out:
        payload = {
            "full_rank": {
                "sample_sizes": list(sample_sizes),
                "replicates": replicates,
                "results": full,
            },
            "low_rank": entries,
            "seconds": elapsed,
        }
        args.out.write_text(json.dumps(payload, indent=1, default=_jsonable))
    return 0


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    raise TypeError(type(x))


if __name__ == "__main__":
    raise SystemExit(main())
