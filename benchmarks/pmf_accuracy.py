"""Accuracy of `igr_i_log_pmf` against scipy's adaptive quadrature (the docstring's numbers).

Random cases as in the docstring: K-1 in 1..11, mu ~ N(0, 2^2), log sigma ~ N(0, 0.5^2); one
set with a = log delta = 0 (seed 2026) and one with delta cycling through 0.5, 1, 2 (seed 99).
Reference: q(k) by scipy.integrate.quad (epsrel 1e-13) over x = (z_k - mu_k)/sigma_k, split at
the competitors' steps, log Phi from scipy.special.log_ndtr. Prints the max |q - q_ref| of the
raw (not renormalized) quadrature per node count. Accuracy does not depend on the load.

    python benchmarks/pmf_accuracy.py [--cases N] [--nodes 40 50 80]
"""

from __future__ import annotations

import argparse
import math

import _common  # noqa: F401  (puts this checkout first on the path)
import numpy as np
from scipy import integrate, special


def scipy_reference(loc: np.ndarray, scale: np.ndarray, delta: float) -> np.ndarray:
    a = math.log(delta)
    out = np.empty(loc.size + 1)
    for k in range(loc.size):
        others = np.arange(loc.size) != k
        r, b = scale[k] / scale[others], (loc[k] - loc[others]) / scale[others]
        x_a = max((a - loc[k]) / scale[k], -40.0)

        def f(x, r=r, b=b):
            return math.exp(-0.5 * x * x + float(np.sum(special.log_ndtr(r * x + b))))

        cuts = sorted({x_a, *[c for c in list(-b / r) + [0.0] if c > x_a]})
        cuts.append(max(cuts[-1], 0.0) + 40.0)
        total = sum(
            integrate.quad(f, x0, x1, epsabs=1e-16, epsrel=1e-13, limit=400)[0]
            for x0, x1 in zip(cuts[:-1], cuts[1:], strict=True)
        )
        out[k] = total / math.sqrt(2.0 * math.pi)
    out[-1] = math.exp(float(np.sum(special.log_ndtr((a - loc) / scale))))
    return out


def cases(n: int, seed: int, deltas: tuple[float, ...]):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k1 = int(rng.integers(1, 12))
        loc, scale = rng.normal(0.0, 2.0, k1), np.exp(rng.normal(0.0, 0.5, k1))
        yield loc, scale, deltas[i % len(deltas)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--nodes", type=int, nargs="+", default=[40, 50, 80])
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
