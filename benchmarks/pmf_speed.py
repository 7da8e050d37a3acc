"""IGR-I's exact pmf alone: the current rule at a few node counts against the frozen baseline.

A quicker, pmf-only companion of `benchmarks/priors.py` part 2 (no prior fits, no test set):
`igr_i_log_pmf` on the same [100, 20, 9] batch (mu ~ N(0, 2^2), sigma = exp(N(0, 0.5^2)),
float32 in, float64 inside), compiled with XLA, interleaved in one process against the
pre-issue-10 tanh-sinh rule (`priors.baseline_igr_i_log_pmf`, 64 nodes). CPU time per call;
ratios are medians of per-round ratios [25th, 75th percentile]. Issue 10 asks for >= 20x
(ratio <= 0.05). Accuracy at each node count: `benchmarks/pmf_accuracy.py`.

    python benchmarks/pmf_speed.py [--quick] [--rounds R] [--calls C] [--threads T]
"""

from __future__ import annotations

import functools
import sys

import _common

NODE_COUNTS = (40, 45, 50)
REFERENCE = "old (tanh-sinh, 64 nodes)"


def run(quick: bool = False, rounds: int | None = None, calls: int | None = None) -> str:
    import tensorflow as tf
    from priors import BATCH, baseline_igr_i_log_pmf, batch_parameters

    from igr_tf.categorical import _DEFAULT_NODES, igr_i_log_pmf

    rounds = rounds or (3 if quick else 7)
    calls = calls or (1 if quick else 2)
    loc, scale = batch_parameters(BATCH, seed=0)
    contenders = {REFERENCE: tf.function(baseline_igr_i_log_pmf, jit_compile=True)}
    for n in NODE_COUNTS:
        label = f"5-panel GL, {n} nodes" + (" (default)" if n == _DEFAULT_NODES else "")
        fn = tf.function(functools.partial(igr_i_log_pmf, num_nodes=n), jit_compile=True)
        contenders[label] = fn
    calls_ = {name: functools.partial(fn, loc, scale) for name, fn in contenders.items()}
    times = _common.interleaved_times(calls_, rounds=rounds, calls_per_round=calls, warmup=1)
    cpu = _common.ratio_stats(times["cpu"], REFERENCE)
    rows = [
        [
            name,
            f"{cpu[name]['us'] / 1e3:.1f}",
            _common.fmt_ratio(cpu[name]),
            f"{1.0 / cpu[name]['ratio']:.1f}x",
        ]
        for name in contenders
    ]
    description = (
        f"igr_i_log_pmf, XLA, [100, 20, 9] batch, {rounds} interleaved rounds x {calls} calls, "
        "CPU time."
    )
    header = ["pmf rule", "CPU ms/batch", "CPU ratio to old [IQR]", "speed-up"]
    return _common.report(description, header, rows)


def main(argv=None) -> str:
    return _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
