"""IGR-SB with adaptive truncation (threshold 0.99): cost as the static cap K_max grows.

For K_max in {10, 100, 1000}: time of one sample + KL + gradient step (as in relaxations.py:
V = 20, batch 100, float32, DiscreteLatent in a tf.function; interleaved rounds), its ratio to
K_max = 10, the peak memory the step allocates, and the mean number of sticks used N.

Memory is TensorFlow's own CPU allocator count, `tf.config.experimental.get_memory_info("CPU:0")`:
the peak over the timed non-XLA steps (reset just before) minus what was allocated before them.
It counts tensors TF allocates (inputs, intermediates, gradients), not Python or XLA buffers, and,
with oneDNN on (TF's default on x86), not the small allocations its allocator serves from a pool
(about 256 KiB and less, measured: at K_max = 10 every tensor of the step is 80 KB and the count
stays 0). Those rows say "not counted"; one [100, 20, K_max] float32 tensor is listed as a unit.

The closed-form KL needs the prior's per-stick locations, which `fit_stick_breaking_prior` fits by
quadrature: ~1 s for K = 10, ~50 s for K = 50 on this machine, far longer for 1000. The step's cost
does not depend on their values, so here the prior is N(0, 1) per stick for every K_max (the
encoder outputs are random too): the timings hold, the KL values mean nothing.

    python benchmarks/sb_cap.py [--quick] [--rounds R] [--calls C] [--threads T]
"""

from __future__ import annotations

import sys

import _common

CAPS = (10, 100, 1000)
THRESHOLD = 0.99


def make_layer(k_max: int, batch=100, num_vars=20):
    """A built DiscreteLatent("igr_sb", adaptive) with a N(0, 1) prior, and its params variable."""
    from unittest import mock

    import numpy as np
    import tensorflow as tf

    from igr_tf import categorical
    from igr_tf.layers import DiscreteLatent

    options = {"adaptive": True, "threshold": THRESHOLD}
    # The relaxation fits its prior when built; here a N(0, 1) prior per stick stands in for it.
    with (
        mock.patch.object(categorical, "fit_stick_breaking_prior", lambda k, **kw: np.zeros(k - 1)),
        mock.patch.object(
            categorical, "stick_breaking_pmf", lambda loc, s: np.full(loc.size + 1, 1.0)
        ),
    ):
        layer = DiscreteLatent(
            "igr_sb", num_vars, k_max, temperature=0.15, relaxation_options=options, seed=1
        )
    p = layer.relaxation.num_params
    layer.build((batch, num_vars, p))
    rng = tf.random.Generator.from_seed(0)
    params = tf.Variable(rng.normal([batch, num_vars, p]), name="params")
    return layer, params


def make_step(layer, params, jit_compile: bool):
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(1)
    weights = tf.constant(rng.normal([*params.shape[:-1], layer.num_categories]))
    variables = [params, *layer.trainable_weights]

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            out = layer(params)
            loss = tf.reduce_sum(out["sample"] * weights) + tf.reduce_sum(out["kl"])
        return tape.gradient(loss, variables)

    return step


def mean_sticks(layer, params, draws: int) -> float:
    import tensorflow as tf

    n = tf.function(lambda: tf.reduce_mean(layer(params)["N"]))
    return sum(float(n()) for _ in range(draws)) / draws


def peak_bytes(step, calls: int) -> int | None:
    """Peak bytes TF's CPU allocator holds during `calls` steps, above what it held before."""
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        for _ in range(calls):
            step()[0].numpy()
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    except (ValueError, RuntimeError):  # no allocator stats on this device
        return None


def run(quick: bool = False, rounds: int | None = None, calls: int | None = None) -> str:
    rounds = rounds or (1 if quick else 11)
    calls = calls or (2 if quick else 10)
    layers = {k: make_layer(k) for k in CAPS}
    header = [
        "K_max",
        "mean N",
        "peak MiB/step (no XLA)",
        "one [B,V,K] f32 MiB",
        "CPU ms/step (no XLA)",
        "CPU ratio to K_max=10 [IQR]",
        "wall ratio to K_max=10 [IQR]",
    ]
    if not quick:
        header += ["CPU ms/step (XLA)", "CPU ratio to K_max=10 (XLA) [IQR]"]
    results = {}
    for jit in (False,) if quick else (False, True):
        steps = {k: make_step(*layers[k], jit) for k in CAPS}
        times = _common.interleaved_times(steps, rounds=rounds, calls_per_round=calls)
        results[jit] = (
            _common.ratio_stats(times["cpu"], CAPS[0]),
            _common.ratio_stats(times["wall"], CAPS[0]),
        )
        if not jit:
            memory = {k: peak_bytes(steps[k], 2) for k in CAPS}
    rows = []
    for k in CAPS:
        cpu, wall = results[False]
        mem = memory[k]
        row = [
            k,
            f"{mean_sticks(*layers[k], 2 if quick else 20):.2f}",
            "n/a" if mem is None else (f"{mem / 2**20:.1f}" if mem else "not counted"),
            f"{100 * 20 * k * 4 / 2**20:.2f}",
            f"{cpu[k]['us'] / 1e3:.2f}",
            _common.fmt_ratio(cpu[k]),
            _common.fmt_ratio(wall[k]),
        ]
        if not quick:
            xla_cpu, _ = results[True]
            row += [f"{xla_cpu[k]['us'] / 1e3:.2f}", _common.fmt_ratio(xla_cpu[k])]
        rows.append(row)
    description = (
        f"IGR-SB adaptive (threshold {THRESHOLD}), sample + KL + gradient step, V=20, "
        f"batch 100, float32, N(0, 1) prior per stick (see the docstring); {rounds} "
        f"interleaved rounds × {calls} calls; ratios are medians of per-round ratios "
        f"[25th, 75th percentile]; memory from TF's CPU allocator stats."
    )
    return _common.report(description, header, rows)


def main(argv=None) -> str:
    return _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
