"""IGR-SB's XLA step with each route of `igr_tf._ops.cumsum_last`: where the masked sum pays.

Under XLA, `cumsum_last` sums a short last axis (≤ `_XLA_MASKED_CUMSUM_MAX` entries) as a masked
broadcast-and-reduce, which XLA fuses with its neighbours, and a longer one as a dot with a
triangular matrix of ones. This times the sample + KL + gradient step of benchmarks/relaxations.py
(V=20, batch 100, float32, jit_compile=True) with each route forced, for several K, as CPU-time
ratios to GS at the same K (contenders interleaved), to check the threshold on an idle machine.

    python benchmarks/cumsum_routes.py [--quick] [--rounds R] [--calls C] [--threads T]
"""

from __future__ import annotations

import sys

import _common

KS = (10, 17, 20, 40)
ROUTES = {"masked": 10**6, "dot": 0}  # the threshold each route is traced with


def _traced(name: str, num_categories: int, threshold: int | None):
    """The relaxations.py step, traced (first call) with `_XLA_MASKED_CUMSUM_MAX = threshold`."""
    from relaxations import make_step

    from igr_tf import _ops

    step = make_step(name, True, num_categories=num_categories)
    saved = _ops._XLA_MASKED_CUMSUM_MAX
    _ops._XLA_MASKED_CUMSUM_MAX = saved if threshold is None else threshold
    try:
        step()
    finally:
        _ops._XLA_MASKED_CUMSUM_MAX = saved
    return step


def run(quick: bool = False, rounds: int | None = None, calls: int | None = None) -> str:
    rounds = rounds or (3 if quick else 15)
    calls = calls or (2 if quick else 10)
    header = ["K", "route", "CPU µs/step", "CPU ratio to gs [IQR]"]
    rows = []
    for k in KS[:1] if quick else KS:
        steps = {"gs": _traced("gs", k, None)}
        for route, threshold in ROUTES.items():
            steps[route] = _traced("igr_sb", k, threshold)
        cpu = _common.ratio_stats(
            _common.interleaved_times(steps, rounds=rounds, calls_per_round=calls)["cpu"], "gs"
        )
        rows += [[k, r, f"{cpu[r]['us']:.0f}", _common.fmt_ratio(cpu[r])] for r in ROUTES]
    description = (
        f"IGR-SB sample + KL + gradient step under XLA, V=20, batch 100, float32, per cumsum "
        f"route; {rounds} interleaved rounds × {calls} calls; ratios to GS at the same K."
    )
    return _common.report(description, header, rows)


def main(argv=None) -> str:
    return _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
