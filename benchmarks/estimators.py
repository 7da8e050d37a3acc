"""Cost of one training-gradient step with each gradient estimator, as a ratio to relaxed GS.

The step: a VAE-shaped encoder/decoder (784 → 256 → V·P encoder outputs, V = 20 variables with
K = 10 categories; decoder V·K → 256 → 784 Bernoulli logits), batch 100, float32, on a fixed
random binary batch; the loss is the mean of the estimator's surrogate of the reconstruction loss
(VIMCO: of the log weights −loss), and the step returns its gradient with respect to every
variable (encoder, decoder, control variates, planar flows). The reference "relaxed_gs" feeds the
decoder the relaxed Gumbel-Softmax sample softmax((θ + G)/τ) (no straight-through). REBAR and
RELAX use the GS relaxation, and "rebar_igr_i"/"relax_igr_i" IGR-I's (its conditional sampler is a
quadrature with a Newton solve: expect it to be much slower, and its XLA compile to take minutes).

    python benchmarks/estimators.py [--quick] [--rounds R] [--calls C] [--threads T]
                                    [--no-jit] [--jit-only] [--only NAME,NAME]
"""

from __future__ import annotations

import argparse
import sys

import _common

BATCH, NUM_VARS, NUM_CATEGORIES, PIXELS, HIDDEN = 100, 20, 10, 784, 256
REFERENCE = "relaxed_gs"


def contenders() -> dict[str, tuple[str, dict]]:
    """Contender name -> (estimator name, options)."""
    from igr_tf import estimators

    out: dict[str, tuple[str, dict]] = {}
    for name in estimators.names():
        if name == "disarm":
            continue  # binary only: not this model
        out[name] = (name, {})
    out["rebar"] = ("rebar", {"relaxation": "gs"})
    out["relax"] = ("relax", {"relaxation": "gs"})
    out["rebar_igr_i"] = ("rebar", {"relaxation": "igr_i"})
    out["relax_igr_i"] = ("relax", {"relaxation": "igr_i"})
    return out


def make_step(contender: str, jit_compile: bool, batch: int = BATCH):
    """A zero-argument tf.function: one gradient of the surrogate loss for `contender`."""
    import keras
    import tensorflow as tf

    from igr_tf import estimators

    keras.utils.set_random_seed(0)
    v, k = NUM_VARS, NUM_CATEGORIES
    if contender == REFERENCE:
        est, num_params = None, k
    else:
        name, options = contenders()[contender]
        if name not in ("reinforce_loo", "vimco"):
            options = {"temperature": 0.5, **options}
        est = estimators.get(name, k, **options)
        num_params = est.num_params
        if hasattr(est, "build"):
            est.build(v)
    encoder = [keras.layers.Dense(HIDDEN, "relu"), keras.layers.Dense(v * num_params)]
    decoder = [keras.layers.Dense(HIDDEN, "relu"), keras.layers.Dense(PIXELS)]
    for layers, width in ((encoder, PIXELS), (decoder, v * k)):
        for layer in layers:
            layer.build((None, width))
            width = layer.units

    def apply(layers, h):  # Dense layers take any leading axes (the sample axis S)
        for layer in layers:
            h = layer(h)
        return h

    flows = {}
    if est is not None:
        rng = tf.random.Generator.from_seed(1)
        flows = {
            n: tf.Variable(0.05 * rng.normal(spec.shape), name=n)
            for n, spec in est.weight_specs(v).items()
        }
    x = tf.cast(tf.random.stateless_uniform([batch, PIXELS], [0, 1]) < 0.3, tf.float32)
    variables = [w for layer in encoder + decoder for w in layer.trainable_variables]
    variables += list(flows.values())
    if est is not None:
        variables += list(getattr(est, "trainable_variables", []))
    counter = tf.Variable(0, dtype=tf.int32)
    vimco = contender == "vimco"

    def loss_of(samples):  # [S, B, V, K] -> [S, B]
        flat = tf.reshape(samples, tf.concat([tf.shape(samples)[:-2], [v * k]], 0))
        logits = apply(decoder, flat)
        labels = tf.broadcast_to(x, tf.shape(logits))
        nll = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), -1)
        return -nll if vimco else nll

    @tf.function(jit_compile=jit_compile)
    def step():
        seed = tf.stack([counter.assign_add(1), 7])
        with tf.GradientTape() as tape:
            params = tf.reshape(apply(encoder, x), [batch, v, num_params])
            if est is None:
                g = -tf.math.log(
                    -tf.math.log(tf.random.stateless_uniform(tf.shape(params), seed, 1e-20, 1.0))
                )
                loss = tf.reduce_mean(loss_of(tf.math.softmax((params + g) / 0.5)[None])[0])
            else:
                kwargs = {"weights": flows} if flows else {}
                loss = tf.reduce_mean(est.surrogate(loss_of, params, seed=seed, **kwargs))
        return tape.gradient(loss, variables)

    return step


def run(
    quick: bool = False,
    rounds: int | None = None,
    calls: int | None = None,
    jit_modes=(False, True),
    only=None,
) -> str:
    rounds = rounds or (2 if quick else 15)
    calls = calls or (2 if quick else 10)
    names = [REFERENCE, *(only or contenders())]
    if quick:  # the IGR-I control variates trace for tens of seconds: not in a smoke run
        names = [n for n in names if n not in ("rebar_igr_i", "relax_igr_i")]
        jit_modes = (False,)
    header = [
        "estimator",
        "jit_compile",
        "CPU ms/step",
        "CPU ratio [IQR]",
        "wall ms/step",
        "wall ratio [IQR]",
    ]
    rows = []
    for jit in jit_modes:
        steps = {name: make_step(name, jit, batch=10 if quick else BATCH) for name in names}
        times = _common.interleaved_times(steps, rounds=rounds, calls_per_round=calls, warmup=2)
        cpu = _common.ratio_stats(times["cpu"], REFERENCE)
        wall = _common.ratio_stats(times["wall"], REFERENCE)
        for name in names:
            rows.append(
                [
                    name,
                    jit,
                    f"{cpu[name]['us'] / 1e3:.2f}",
                    _common.fmt_ratio(cpu[name]),
                    f"{wall[name]['us'] / 1e3:.2f}",
                    _common.fmt_ratio(wall[name]),
                ]
            )
    description = (
        f"Encoder/decoder gradient step with each estimator, V={NUM_VARS}, K={NUM_CATEGORIES}, "
        f"batch {10 if quick else BATCH}, float32, τ = 0.5; {rounds} interleaved rounds × {calls} "
        f"calls; ratios to {REFERENCE} (medians of per-round ratios [25th, 75th percentile])."
    )
    return _common.report(description, header, rows)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    parser.add_argument("--no-jit", action="store_true", help="only jit_compile=False")
    parser.add_argument("--jit-only", action="store_true", help="only jit_compile=True")
    parser.add_argument("--only", default=None, help="comma-separated contenders")
    _common.add_publish_arg(parser)
    args = parser.parse_args(argv)
    before = _common.check_publish_load(args.publish)
    _common.set_threads(args.threads)
    modes = (False,) if args.no_jit else (True,) if args.jit_only else (False, True)
    only = args.only.split(",") if args.only else None
    if only:
        unknown = sorted(set(only) - set(contenders()))
        if unknown:
            parser.error(f"--only: unknown {', '.join(unknown)}; known: {', '.join(contenders())}")
    table = run(args.quick, args.rounds, args.calls, jit_modes=modes, only=only)
    return _common.finish(table, before, "estimators", args.publish)


if __name__ == "__main__":
    main(sys.argv[1:])
