"""Uniform IGR-SB prior fit time as K grows, and IGR-I's exact pmf: new quadrature against the old.

1. `fit_stick_breaking_prior(K)` for K in {10, 100, 1000, 10000}, each in a fresh Python process
   (cold cache), timed inside it after the imports: CPU and wall seconds, and the achieved
   max_k |K q_k - 1| on the fit's own quadrature.
2. `igr_i_log_pmf` on a [100, 20, 9] batch (mu ~ N(0, 2^2), sigma = exp(N(0, 0.5^2))), both
   compiled with XLA, in interleaved rounds: the current five-panel Gauss-Legendre rule (default
   nodes, 45, igr_tf._ndtr's log Phi) against the tanh-sinh rule it replaced (64 nodes per category,
   Newton-solved quantiles; frozen below as `baseline_igr_i_log_pmf`). Also the time for a
   10k-image test set (10,000 x 20 variables, K = 10, in batches of 100 images) and the largest
   difference between the two.

    python benchmarks/priors.py [--quick] [--rounds R] [--calls C] [--threads T]
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import time

import _common

FIT_SIZES = (10, 100, 1000, 10000)
QUICK_FIT_SIZES = (10, 30)
BATCH = (100, 20, 9)
TEST_SET_IMAGES = 10_000
NEW_RULE = "new (5-panel GL, default nodes)"

_FIT_SCRIPT = """
import json, sys, time
from igr_tf import categorical
k = int(sys.argv[1])
cpu, wall = time.process_time(), time.perf_counter()
loc = categorical.fit_stick_breaking_prior(k)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
from igr_tf import _stick_breaking
_, achieved = _stick_breaking.fit_uniform_prior(k, 1.0)
print(json.dumps({"cpu": cpu, "wall": wall, "achieved": achieved, "first": float(loc[0])}))
"""


def fit_in_fresh_process(num_categories: int) -> dict:
    env = dict(os.environ, PYTHONPATH=_common._ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", _FIT_SCRIPT, str(num_categories)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the tanh-sinh quadrature igr_i_log_pmf used before issue 10 (frozen baseline) -------------


@functools.lru_cache(maxsize=4)
def _baseline_nodes(num_nodes: int):
    import numpy as np

    big_u = math.asinh(36.0 / math.pi)
    u = np.linspace(-big_u, big_u, num_nodes)
    s = math.pi * np.sinh(u)
    log_w = -np.logaddexp(0.0, -s)
    log_1mw = -np.logaddexp(0.0, s)
    log_weight = np.log((u[1] - u[0]) * math.pi * np.cosh(u)) + log_w + log_1mw
    return log_w, log_1mw, log_weight


def _baseline_log_ndtr(x):
    import tensorflow as tf
    import tensorflow_probability as tfp

    @tf.custom_gradient
    def log_ndtr(x):
        x_lo, x_hi = tf.minimum(x, -1.0), tf.maximum(x, -1.0)
        lo = tf.math.log(0.5 * tfp.math.erfcx(-x_lo / math.sqrt(2.0))) - 0.5 * tf.square(x_lo)
        hi = tf.math.log1p(-0.5 * tf.math.erfc(x_hi / math.sqrt(2.0)))
        value = tf.where(x < -1.0, lo, hi)

        def grad(dy):
            return dy * tf.exp(-0.5 * tf.square(x) - 0.5 * math.log(2 * math.pi) - value)

        return value, grad

    return log_ndtr(x)


def _baseline_ndtri_of_log(log_p):
    import tensorflow as tf

    lp = tf.stop_gradient(log_p)
    r = tf.sqrt(-2.0 * lp)
    x = -(
        r
        - (2.515517 + r * (0.802853 + r * 0.010328))
        / (1.0 + r * (1.432788 + r * (0.189269 + r * 0.001308)))
    )
    for _ in range(4):
        log_cdf = _baseline_log_ndtr(x)
        x = x - (log_cdf - lp) * tf.exp(log_cdf + 0.5 * tf.square(x) + 0.5 * math.log(2 * math.pi))
    slope = tf.exp(_baseline_log_ndtr(x) + 0.5 * tf.square(x) + 0.5 * math.log(2 * math.pi))
    return x + (log_p - lp) * slope


def baseline_igr_i_log_pmf(loc, scale, delta=1.0, num_nodes=64):
    """The pre-issue-10 igr_i_log_pmf (tanh-sinh in the conditional tail probability)."""
    import numpy as np
    import tensorflow as tf

    f64 = tf.float64
    mu = tf.cast(loc, f64)
    sigma = tf.cast(scale, f64)
    log_delta = tf.math.log(tf.cast(delta, f64))
    log_w, log_1mw, log_weight = (tf.constant(a, f64) for a in _baseline_nodes(num_nodes))
    alpha = (log_delta - mu) / sigma
    log_p = _baseline_log_ndtr(-alpha)
    log_below = _baseline_log_ndtr(alpha)
    log_up = log_p[..., None] + log_w
    a, b = log_below[..., None], log_p[..., None] + log_1mw
    log_lo = tf.maximum(a, b) + tf.math.log1p(tf.exp(-tf.abs(a - b)))
    half = tf.constant(math.log(0.5), f64)
    x = tf.where(
        log_lo < log_up,
        _baseline_ndtri_of_log(tf.minimum(log_lo, half)),
        -_baseline_ndtri_of_log(tf.minimum(log_up, half)),
    )
    t = mu[..., None] + sigma[..., None] * x
    log_cdfs = _baseline_log_ndtr(
        (t[..., None] - mu[..., None, None, :]) / sigma[..., None, None, :]
    )
    num = mu.shape[-1]
    diag = tf.constant(np.eye(num, dtype=bool)[:, None, :])
    log_prod = tf.reduce_sum(tf.where(diag, tf.zeros_like(log_cdfs), log_cdfs), axis=-1)
    log_q = log_p + tf.reduce_logsumexp(log_prod + log_weight, axis=-1)
    log_pmf = tf.concat([log_q, tf.reduce_sum(log_below, axis=-1, keepdims=True)], axis=-1)
    return tf.cast(tf.nn.log_softmax(log_pmf, axis=-1), loc.dtype)


# --- the runs ----------------------------------------------------------------------------------


def batch_parameters(shape, seed: int):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    loc = tf.constant(rng.normal(0.0, 2.0, shape), tf.float32)
    scale = tf.constant(np.exp(rng.normal(0.0, 0.5, shape)), tf.float32)
    return loc, scale


def pmf_contenders(jit_compile: bool = True):
    import tensorflow as tf

    from igr_tf.categorical import igr_i_log_pmf

    return {
        NEW_RULE: tf.function(igr_i_log_pmf, jit_compile=jit_compile),
        "old (tanh-sinh, 64 nodes)": tf.function(baseline_igr_i_log_pmf, jit_compile=jit_compile),
    }


def test_set_seconds(fn, images: int, batch_images: int) -> tuple[float, float, list]:
    """CPU and wall seconds to evaluate `images` images (20 variables each), batch by batch."""
    out = []
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(images // batch_images):
        loc, scale = batch_parameters((batch_images, *BATCH[1:]), seed=1000 + i)
        out.append(fn(loc, scale).numpy())
    return time.process_time() - cpu, time.perf_counter() - wall, out


def run(quick: bool = False, rounds: int | None = None, calls: int | None = None) -> str:
    import numpy as np

    rounds = rounds or (1 if quick else 9)
    calls = calls or (1 if quick else 3)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"

    fit_rows = []
    for k in QUICK_FIT_SIZES if quick else FIT_SIZES:
        r = fit_in_fresh_process(k)
        fit_rows.append([k, f"{r['cpu']:.2f}", f"{r['wall']:.2f}", f"{r['achieved']:.1e}"])

    contenders = pmf_contenders(jit_compile=not quick)  # --quick: no XLA compile (~1 min)
    loc, scale = batch_parameters(BATCH, seed=0)
    calls_ = {name: functools.partial(fn, loc, scale) for name, fn in contenders.items()}
    times = _common.interleaved_times(calls_, rounds=rounds, calls_per_round=calls, warmup=1)
    reference = "old (tanh-sinh, 64 nodes)"
    cpu = _common.ratio_stats(times["cpu"], reference)
    wall = _common.ratio_stats(times["wall"], reference)
    images = 200 if quick else TEST_SET_IMAGES
    sets = {name: test_set_seconds(fn, images, 100) for name, fn in contenders.items()}
    gap = max(
        float(np.max(np.abs(np.exp(a) - np.exp(b))))
        for a, b in zip(sets[NEW_RULE][2], sets[reference][2], strict=True)
    )
    pmf_rows = [
        [
            name,
            f"{cpu[name]['us'] / 1e3:.1f}",
            _common.fmt_ratio(cpu[name]),
            _common.fmt_ratio(wall[name]),
            f"{sets[name][0]:.1f}",
            f"{sets[name][1]:.1f}",
        ]
        for name in contenders
    ]
    fit_table = _common.markdown_table(
        ["K", "fit CPU s", "fit wall s", "achieved max|Kq-1|"], fit_rows
    )
    mode = "eager (--quick)" if quick else "XLA"
    description = (
        f"Load average at start: {' '.join(load)}. (1) fit_stick_breaking_prior(K), scale 1, one "
        f"fresh process per K.\n\n{fit_table}\n\n(2) igr_i_log_pmf, {mode}, [100, 20, 9] batch, "
        f"{rounds} interleaved rounds x {calls} calls; ratios to the old rule are medians of "
        f"per-round ratios [25th, 75th percentile]; test set: {images} images x 20 variables, "
        f"K = 10, batches of 100 images; largest |pmf difference| new vs old over the test set: "
        f"{gap:.1e}."
    )
    header = [
        "pmf rule",
        "CPU ms/batch",
        "CPU ratio to old [IQR]",
        "wall ratio to old [IQR]",
        f"test set CPU s ({images} images)",
        "test set wall s",
    ]
    return _common.report(description, header, pmf_rows)


def main(argv=None) -> str:
    return _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
