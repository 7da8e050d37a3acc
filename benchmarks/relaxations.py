"""Cost of one "sample + KL + gradient" step of each relaxation, as a ratio to Gumbel-Softmax.

The step, for V = 20 variables with K = 10 categories, batch 100, float32, inside tf.function:

    params (tf.Variable [100, 20, P]) -> DiscreteLatent (draw, relaxed sample softmax(ℓ/τ), KL)
    loss = Σ sample ⊙ W + Σ kl        (W fixed random weights)
    gradient of loss w.r.t. params and the layer's trainable weights (planar flows)

timed with jit_compile=False and True, contenders interleaved round by round (see _common).

Two *floor* rows show how much of a target's allowance part of the relaxation's extra work
over IGR-I already takes, with these kernels: the same step with only that part (`FLOORS`):

    igr_sb floor       IGR-I's chain with log σ(z) = -softplus(-z) per stick before
                       softmax++ (the per-stick work every stick-breaking needs; no cumsum)
    igr_planar floor   IGR-Planar's flows without their invertibility constraint (û = u)

    python benchmarks/relaxations.py [--quick] [--rounds R] [--calls C] [--threads T]
"""

from __future__ import annotations

import sys

import _common

NAMES = ("gs", "igr_i", "igr_sb", "igr_planar")
TARGETS = {"gs": 1.0, "igr_i": 1.05, "igr_sb": 1.05, "igr_planar": 1.15}
#: Floor contenders: (relaxation whose layer is built, the map that replaces its h).
FLOORS = {"igr_sb floor": ("igr_i", "log_sigmoid"), "igr_planar floor": ("igr_planar", "bare")}


def floor_map(kind: str, relaxation):
    """The map h of a floor contender (see the module docstring), as `Relaxation.map`."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    from igr_tf._ops import softplus
    from igr_tf.bijectors import Planar

    tfb = tfp.bijectors

    class LogSigmoid(tfb.AutoCompositeTensorBijector):
        """z ↦ log σ(z) = -softplus(-z) (forward only: a closed-form KL needs no more)."""

        def __init__(self):
            super().__init__(forward_min_event_ndims=1, parameters={}, name="log_sigmoid")

        @classmethod
        def _parameter_properties(cls, dtype):
            return {}

        def _forward(self, z):
            return -softplus(-z)

    class BarePlanar(Planar):
        """A planar flow with û = u: no softplus, division or guards on its parameters."""

        def _constrain(self):
            w, u = tf.convert_to_tensor(self._w), tf.convert_to_tensor(self._u)
            m = tf.reduce_sum(w * u, axis=-1, keepdims=True)
            b = tf.convert_to_tensor(self._b)[..., tf.newaxis]
            return {"w": w, "u_hat": u, "b": b, "m": m, "one_plus_m": 1.0 + m}

    if kind == "log_sigmoid":
        return lambda weights=None: LogSigmoid()

    def bare(weights=None):
        flows = [
            BarePlanar(weights[f"planar_w{i}"], weights[f"planar_u{i}"], weights[f"planar_b{i}"])
            for i in range(relaxation.num_flows)
        ]
        return tfb.Chain(flows[::-1])

    return bare


def make_step(name: str, jit_compile: bool, *, batch=100, num_vars=20, num_categories=10, **opts):
    """A zero-argument tf.function running one sample + KL + gradient step of `name` (a
    relaxation or a key of `FLOORS`)."""
    import tensorflow as tf

    from igr_tf.layers import DiscreteLatent

    relaxation, floor = FLOORS.get(name, (name, None))
    layer = DiscreteLatent(
        relaxation, num_vars, num_categories, temperature=0.5, relaxation_options=opts, seed=1
    )
    if floor is not None:
        layer.relaxation.map = floor_map(floor, layer.relaxation)
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
        steps = {name: make_step(name, jit) for name in (*NAMES, *FLOORS)}
        times = _common.interleaved_times(steps, rounds=rounds, calls_per_round=calls)
        cpu = _common.ratio_stats(times["cpu"], "gs")
        wall = _common.ratio_stats(times["wall"], "gs")
        for name in (*NAMES, *FLOORS):
            target = f"≤ {TARGETS[name]:.2f}" if name in TARGETS and name != "gs" else "—"
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
