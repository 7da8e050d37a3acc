"""IGR-SB with adaptive truncation (threshold 0.99): cost as the static cap K_max grows.

For K_max in {10, 100, 1000, 10000}: CPU time of one sample + KL + gradient step (V = 20,
batch 100, float32, DiscreteLatent in a tf.function; interleaved rounds, medians), its ratio to
K_max = 10, the peak memory, and the mean number of sticks used N, for two routes of the same law:

- "bucketed" (the default): the sticks are drawn in static buckets (16, 64, 256, ..., K_max - 1)
  chosen per batch, so the work follows the sticks used;
- "masked" (the route before buckets, kept for this comparison through the relaxation's private
  `_buckets = ()`): all K_max - 1 sticks are computed and those beyond the cut masked;
- "floor" (no relaxation, a bound for any route): the same variables, output width and loss with
  the least work on the first bucket's sticks (slice, softplus, log-softmax, exp, one padded
  write; `make_floor_step`). What it costs above its own K_max = 10 step is the full-width
  traffic of the step's contract (encoder outputs and loss as wide as K_max), measured with
  TensorFlow's kernels: a route's cost can approach it, not go below it.

Peak memory is the process's maximum resident set size (`VmHWM` in /proc/self/status; not
`getrusage(...).ru_maxrss`, which on Linux keeps the parent's peak across `execve`), measured in a
fresh subprocess per (K_max, route): "max RSS" is the whole process
(Python, TensorFlow, the variables), "step peak" the growth of that maximum over the steps (3
calls), above its value once the step is built and traced. TensorFlow's own allocator counter
(`tf.config.experimental.get_memory_info`) has no CPU support, and tracemalloc does not see
TensorFlow's buffers. The step's outputs and gradients are O(K_max) by construction (the encoder
outputs 2(K_max - 1) numbers per variable), so the step peak keeps a K_max term on both routes.

The closed-form KL needs the prior's per-stick locations, fitted by quadrature when the
relaxation is built (far too slow for K in the thousands here). The step's cost does not depend on
their values, so here the prior is N(0, 1) per stick for every K_max (the encoder outputs are
random too): the timings hold, the KL values mean nothing.

    python benchmarks/sb_cap.py [--quick] [--rounds R] [--calls C] [--threads T]
                                [--caps 10,100,1000,10000] [--no-xla]
"""

from __future__ import annotations

import subprocess
import sys

import _common

CAPS = (10, 100, 1000, 10000)
QUICK_CAPS = (10, 100, 1000)
ROUTES = {"bucketed": None, "masked": ()}
FLOOR = "floor"
THRESHOLD = 0.99
BATCH, NUM_VARS = 100, 20
QUICK_BATCH, QUICK_VARS = 4, 2
MEMORY_CALLS = 3
#: Set from the command line (--caps, --no-xla) before `run`.
_SELECTED = {"caps": None, "xla": True}


def make_layer(k_max: int, route: str, batch: int = BATCH, num_vars: int = NUM_VARS):
    """A built DiscreteLatent("igr_sb", adaptive) with a N(0, 1) prior on the given route, and
    its params variable."""
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
    layer.relaxation._buckets = ROUTES[route]
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


def make_floor_step(k_max: int, jit_compile: bool, batch: int = BATCH, num_vars: int = NUM_VARS):
    """The step's full-width traffic alone: `make_step`'s variables, output width and loss, with
    the relaxation replaced by the least work on the first bucket's sticks (a slice of both
    rows, a softplus, a log-softmax with the remainder, exp, one padded write to K_max)."""
    import tensorflow as tf

    from igr_tf.distributions.adaptive import bucket_sizes

    width = bucket_sizes(k_max - 1)[0]
    rng = tf.random.Generator.from_seed(0)
    params = tf.Variable(rng.normal([batch, num_vars, 2 * (k_max - 1)]), name="params")
    weights = tf.constant(tf.random.Generator.from_seed(1).normal([batch, num_vars, k_max]))

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            rows = tf.reshape(params, [batch, num_vars, 2, k_max - 1])
            loc, raw = tf.unstack(tf.slice(rows, [0, 0, 0, 0], [-1, -1, -1, width]), axis=-2)
            x = loc + tf.math.softplus(raw)
            y = tf.math.log_softmax(tf.concat([x, tf.zeros_like(x[..., :1])], axis=-1))
            sample = tf.pad(tf.exp(y), [[0, 0], [0, 0], [0, k_max - width - 1]])
            loss = tf.reduce_sum(sample * weights) + tf.reduce_sum(x)
        return tape.gradient(loss, [params])

    return step


def mean_sticks(layer, params, draws: int) -> float:
    import tensorflow as tf

    n = tf.function(lambda: tf.reduce_mean(layer(params)["N"]))
    return sum(float(n()) for _ in range(draws)) / draws


def _max_rss_bytes() -> int:
    """Peak resident set size of this process's memory (`VmHWM`, /proc/self/status).

    Not `getrusage(RUSAGE_SELF).ru_maxrss`: on Linux that maximum survives `execve`, so a child
    started from the (large) benchmark process would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def memory_child(k_max: int, route: str, batch: int, num_vars: int, threads: int) -> None:
    """Run in a fresh process: prints `max_rss_bytes step_peak_bytes` of the non-XLA step."""
    _common.set_threads(threads)
    step = make_step(*make_layer(k_max, route, batch, num_vars), jit_compile=False)
    step.get_concrete_function()  # traced, not run
    built = _max_rss_bytes()
    for _ in range(MEMORY_CALLS):
        _common._sync(step())
    peak = _max_rss_bytes()
    print(f"{peak} {peak - built}")


def peak_memory(k_max: int, route: str, batch: int, num_vars: int) -> tuple[int, int]:
    """(max RSS, step peak) in bytes, from `memory_child` in a fresh subprocess."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(k_max), route, str(batch), str(num_vars)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, step = out.stdout.split()[-2:]
    return int(peak), int(step)


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def run(quick: bool = False, rounds: int | None = None, calls: int | None = None) -> str:
    rounds = rounds or (1 if quick else 7)
    calls = calls or (2 if quick else 3)
    caps = _SELECTED["caps"] or (QUICK_CAPS if quick else CAPS)
    xla = _SELECTED["xla"] and not quick
    batch, num_vars = (QUICK_BATCH, QUICK_VARS) if quick else (BATCH, NUM_VARS)
    loadavg_start = _loadavg()
    routed = [(k, route) for k in caps for route in ROUTES]
    contenders = [c for k in caps for c in [*((k, r) for r in ROUTES), (k, FLOOR)]]
    layers = {c: make_layer(*c, batch=batch, num_vars=num_vars) for c in routed}
    reference = (caps[0], "bucketed")
    results = {}
    for jit in (False, True) if xla else (False,):
        steps = {
            c: make_step(*layers[c], jit)
            if c in layers
            else make_floor_step(c[0], jit, batch=batch, num_vars=num_vars)
            for c in contenders
        }
        times = _common.interleaved_times(steps, rounds=rounds, calls_per_round=calls)
        results[jit] = _common.ratio_stats(times["cpu"], reference)
    # A fresh process per row; --quick measures the first row only (the code path, not a number).
    measured = routed[:1] if quick else routed
    memory = {c: peak_memory(*c, batch, num_vars) for c in measured}
    header = [
        "K_max",
        "route",
        "mean N",
        "CPU ms/step",
        f"CPU ratio to K_max={caps[0]} [IQR]",
        "max RSS MiB",
        "step peak MiB",
    ]
    if xla:
        header += ["CPU ms/step (XLA)", f"CPU ratio to K_max={caps[0]} (XLA) [IQR]"]
    rows = []
    for c in contenders:
        cpu = results[False][c]
        rss = [f"{b / 2**20:.0f}" for b in memory[c]] if c in memory else ["-", "-"]
        row = [
            c[0],
            c[1],
            f"{mean_sticks(*layers[c], 2 if quick else 10):.2f}" if c in layers else "-",
            f"{cpu['us'] / 1e3:.2f}",
            _common.fmt_ratio(cpu),
            *rss,
        ]
        if xla:
            compiled = results[True][c]
            row += [f"{compiled['us'] / 1e3:.2f}", _common.fmt_ratio(compiled)]
        rows.append(row)
    description = (
        f"IGR-SB adaptive (threshold {THRESHOLD}), sample + KL + gradient step, V={num_vars}, "
        f"batch {batch}, float32, N(0, 1) prior per stick (see the docstring); {rounds} "
        f"interleaved rounds × {calls} calls; CPU time of the process; ratios are medians of "
        f"per-round ratios [25th, 75th percentile] to the bucketed K_max={caps[0]} step; memory "
        f"from the peak RSS (VmHWM) of a fresh subprocess per row, without XLA.\n"
        f"/proc/loadavg at the start: {loadavg_start}; at the end: {_loadavg()}."
    )
    return _common.report(description, header, rows)


def main(argv=None) -> str | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    original = list(argv)
    if argv[:1] == ["--memory-child"]:
        k_max, route, batch, num_vars = argv[1:5]
        memory_child(int(k_max), route, int(batch), int(num_vars), threads=1)
        return None
    _SELECTED.update(caps=None, xla=True)
    if "--no-xla" in argv:
        argv.remove("--no-xla")
        _SELECTED["xla"] = False
    if "--caps" in argv:
        i = argv.index("--caps")
        _SELECTED["caps"] = tuple(int(k) for k in argv[i + 1].split(","))
        del argv[i : i + 2]
    return _common.main(run, __doc__, argv, child_argv=original)


if __name__ == "__main__":
    main(sys.argv[1:])
