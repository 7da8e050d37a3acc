"""Accuracy of `igr_i_log_pmf` against scipy's adaptive quadrature (the docstring's numbers).

Random cases as in the docstring: K-1 in 1..11, mu ~ N(0, 2^2), log sigma ~ N(0, 0.5^2); one
set with a = log delta = 0 (seed 2026) and one with delta cycling through 0.5, 1, 2 (seed 99).
Reference: q(k) by scipy.integrate.quad (epsrel 1e-13) over x = (z_k - mu_k)/sigma_k, split at
the competitors' steps, log Phi from scipy.special.log_ndtr. Prints the max |q - q_ref| of the
raw (not renormalized) quadrature per node count. Accuracy does not depend on the load.

    python benchmarks/pmf_accuracy.py [--cases N] [--nodes 40 45 50 80]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common  # noqa: F401  (puts this checkout first on the path)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import igr_i_pmf_by_quad as scipy_reference  # noqa: E402  (the tests' reference)


def cases(n: int, seed: int, deltas: tuple[float, ...]):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k1 = int(rng.integers(1, 12))
        loc, scale = rng.normal(0.0, 2.0, k1), np.exp(rng.normal(0.0, 0.5, k1))
        yield loc, scale, deltas[i % len(deltas)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--nodes", type=int, nargs="+", default=[40, 45, 50, 80])
    args = parser.parse_args()
    from igr_tf.categorical import igr_i_log_pmf

    rows = []
    sets = [("a = 0", 2026, (1.0,)), ("delta in {0.5, 1, 2}", 99, (0.5, 1.0, 2.0))]
    for label, seed, deltas in sets:
        worst = dict.fromkeys(args.nodes, 0.0)
        for loc, scale, delta in cases(args.cases, seed, deltas):
            ref = scipy_reference(loc, scale, delta)
            for n in args.nodes:
                log_q = igr_i_log_pmf(loc, scale, delta=delta, num_nodes=n, renormalize=False)
                worst[n] = max(worst[n], float(np.max(np.abs(np.exp(log_q.numpy()) - ref))))
        rows.append([label, args.cases] + [f"{worst[n]:.1e}" for n in args.nodes])
    header = ["cases", "count"] + [f"max err, {n} nodes" for n in args.nodes]
    print(_common.markdown_table(header, rows))


if __name__ == "__main__":
    main()
