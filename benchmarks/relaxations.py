"""Cost of one "sample + KL + gradient" step of each relaxation, as a ratio to Gumbel-Softmax.

The step, for V = 20 variables with K = 10 categories, batch 100, float32, inside tf.function:

    params (tf.Variable [100, 20, P]) -> DiscreteLatent (draw, relaxed sample softmax(ℓ/τ), KL)
    loss = Σ sample ⊙ W + Σ kl        (W fixed random weights)
    gradient of loss w.r.t. params and the layer's trainable weights (planar flows)

timed with jit_compile=False and True, contenders interleaved round by round (see _common).

    python benchmarks/relaxations.py [--quick] [--rounds R] [--calls C] [--threads T]
"""

from __future__ import annotations

import sys

import _common

NAMES = ("gs", "igr_i", "igr_sb", "igr_planar")
TARGETS = {"gs": 1.0, "igr_i": 1.05, "igr_sb": 1.05, "igr_planar": 1.15}


def make_step(name: str, jit_compile: bool, *, batch=100, num_vars=20, num_categories=10, **opts):
    """A zero-argument tf.function running one sample + KL + gradient step of `name`."""
    import tensorflow as tf

    from igr_tf.layers import DiscreteLatent

    layer = DiscreteLatent(
        name, num_vars, num_categories, temperature=0.5, relaxation_options=opts, seed=1
    )
    p = layer.relaxation.num_params
    layer.build((batch, num_vars, p))
    rng = tf.random.Generator.from_seed(0)
    params = tf.Variable(rng.normal([batch, num_vars, p]), name="params")
    weights = tf.constant(rng.normal([batch, num_vars, num_categories]))
    variables = [params, *layer.trainable_weights]

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            out = layer(params)
            loss = tf.reduce_sum(out["sample"] * weights) + tf.reduce_sum(out["kl"])
        return tape.gradient(loss, variables)

    return step


def run(quick: bool = False, rounds: int | None = None, calls: int | None = None) -> str:
    rounds = rounds or (3 if quick else 21)
    calls = calls or (3 if quick else 20)
    header = [
        "relaxation",
        "jit_compile",
        "CPU µs/step",
        "CPU ratio to gs [IQR]",
        "wall µs/step",
        "wall ratio to gs [IQR]",
        "target",
    ]
    rows = []
    # --quick skips XLA: compiling every contender alone takes longer than the smoke budget.
    for jit in (False,) if quick else (False, True):
        steps = {name: make_step(name, jit) for name in NAMES}
        times = _common.interleaved_times(steps, rounds=rounds, calls_per_round=calls)
        cpu = _common.ratio_stats(times["cpu"], "gs")
        wall = _common.ratio_stats(times["wall"], "gs")
        for name in NAMES:
            target = "—" if name == "gs" else f"≤ {TARGETS[name]:.2f}"
            rows.append(
                [
                    name,
                    jit,
                    f"{cpu[name]['us']:.0f}",
                    _common.fmt_ratio(cpu[name]),
                    f"{wall[name]['us']:.0f}",
                    _common.fmt_ratio(wall[name]),
                    target,
                ]
            )
    description = (
        f"Sample + KL + gradient step, V=20, K=10, batch 100, float32; "
        f"{rounds} interleaved rounds × {calls} calls; medians, ratios are medians of "
        f"per-round ratios [25th, 75th percentile]."
    )
    return _common.report(description, header, rows)


def main(argv=None) -> str:
    return _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
