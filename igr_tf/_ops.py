"""Small tensor operations shared by the bijectors and distributions."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import control_flow_util

__all__ = ["RNG_ALGORITHM", "cumsum_last", "in_xla_context", "plain_tensorflow", "softplus"]

#: The stateless RNG algorithm every draw in this package names (`alg=`). TF's default,
#: "auto_select", is Philox on CPU and GPU, but under `jit_compile=True` on CPU with a run-time
#: seed it compiles to a path 5-60x slower for the same numbers (igr_tf.distributions.philox);
#: tests/test_ops.py fails on a draw that does not name it.
RNG_ALGORITHM = "philox"

# Up to this many entries, a cumulative sum over the last axis is O(n²) work with a triangular
# mask of ones instead of a scan: a matmul. TF's CPU Cumsum kernel (and its gradient, another
# Cumsum) costs ~16 ns per element on a short last axis, 3-8x the matmul for 9 to 99 entries.
# Past it, the matmul's O(n²) work loses to the O(n) scan.
_MATMUL_CUMSUM_MAX = 128
# Under XLA, up to this many entries, a broadcast product and a reduction instead
# (`_masked_cumsum`): XLA fuses it with the elementwise ops around it (forward and backward),
# where a dot is a kernel of its own that splits those fusions. IGR-SB's XLA sample + KL +
# gradient step (V=20, batch 100, CPU) as a ratio to GS, against the dot: K=10 1.44 -> 1.31-1.34,
# K=20 equal, K=40 2.6x slower, K=100 5x slower (the fused loop is not vectorised like the
# dot); provisional, load 3.5-7. tf.math.cumsum (an unfused reduce-window) and a log₂ n
# shifted-add scan were no better than the dot at K=10.
_XLA_MASKED_CUMSUM_MAX = 16


def plain_tensorflow(fn):
    """Marks `fn` as one that autograph must not convert (`do_not_convert`), as autograph already
    treats TensorFlow Probability's and Keras's code.

    For this package's functions that users (and Keras steps) call inside their own `tf.function`:
    they are plain TensorFlow, with no Python control flow on tensors (loops are static or explicit
    `tf.while_loop`s), so converting them changes nothing but the tracing time. Measured on this
    package's tests (one process, a loaded 2-core machine): 5.6 s of CPU for two REBAR/RELAX toy
    steps, 17.7 s for one toy step holding 12 estimators, 5.8 s for the VAE objectives of all 13
    estimators. The function then behaves the same eagerly, in `tf.function` and under XLA.
    """
    return tf.autograph.experimental.do_not_convert(fn)


def cumsum_last(x: tf.Tensor, exclusive: bool = False, reverse: bool = False) -> tf.Tensor:
    """Cumulative sum over the last axis, as `tf.math.cumsum(x, -1, exclusive, reverse)`.

    `S_k = Σ_{j ≤ k} x_j` (inclusive), `Σ_{j < k}` (exclusive); `reverse` sums from the end.
    """
    d = x.shape[-1]
    if d is None or d > _MATMUL_CUMSUM_MAX:
        return tf.math.cumsum(x, axis=-1, exclusive=exclusive, reverse=reverse)
    # S = x @ M with M[j, k] = 1 where entry j enters sum k; as one 2-D matmul (any rank).
    j, k = np.meshgrid(np.arange(d), np.arange(d), indexing="ij")
    keep = (j >= k) if reverse else (j <= k)
    if exclusive:
        keep &= j != k
    if d <= _XLA_MASKED_CUMSUM_MAX and in_xla_context():
        return _masked_cumsum(x, keep)
    flat = tf.reshape(x, [-1, d])
    out = tf.linalg.matmul(flat, tf.constant(keep.astype(np.float64), x.dtype))
    return tf.reshape(out, tf.shape(x))


def _masked_cumsum(x: tf.Tensor, keep: np.ndarray) -> tf.Tensor:
    """`S_k = Σ_j keep[j, k] x_j` as a broadcast product and a reduction over the last axis."""
    mask = tf.constant(keep.T.astype(np.float64), x.dtype)  # [k, j]
    return tf.reduce_sum(x[..., tf.newaxis, :] * mask, axis=-1)


def in_xla_context() -> bool:
    """Whether the ops being built will be compiled by XLA (`tf.function(jit_compile=True)`, also
    when nested in one), as TensorFlow's own cond/while/gather lowerings ask."""
    return control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())


def softplus(x) -> tf.Tensor:
    """`softplus(x) = log(1 + eˣ)` and its gradient `σ(x)`, the cheaper way for the compiler.

    TensorFlow's kernels run `tf.math.softplus` and its gradient as two fused kernels, so that
    is what runs without XLA. XLA expands both into scalar polynomials and evaluates `eˣ` twice
    (once for the value, once for the sigmoid): under XLA the value and gradient share one
    `e^{-|x|}` instead (`_softplus_sharing_exp`), which took ~12% off IGR-SB's sample + KL +
    gradient step on CPU (two softplus per stick: the scale and the stick). Forced without
    XLA it cost ~4-15% (more, smaller kernels), hence the switch. Both routes give softplus to
    float rounding, for any finite x.

    Under XLA it is also computed on the tensor seen flat (a reshape, free): XLA on CPU emits a
    kernel's loops over its shape, and over a short last axis (IGR's K-1 = 9) the vector loop
    runs mostly in its remainder. Flat, the `log1p` kernels of IGR-SB's compiled step took 32
    -> 19 µs each and its stick's `exp` 39 -> 27 µs ([100, 20, 9], profiler), the whole step
    0.94x (IGR-I 0.98x) in a one-process A/B (V=20, K=10, batch 100, CPU).
    """
    x = tf.convert_to_tensor(x)
    if not in_xla_context():
        return tf.math.softplus(x)
    if x.shape.rank == 1:
        return _softplus_sharing_exp(x)
    return tf.reshape(_softplus_sharing_exp(tf.reshape(x, [-1])), tf.shape(x))


@tf.custom_gradient
def _softplus_sharing_exp(x: tf.Tensor):
    """`max(x, 0) + log1p(e^{-|x|})` with the gradient `σ(x)` computed from the same `e^{-|x|}`:
    `1/(1 + e^{-|x|})` for x ≥ 0 and `e^{-|x|}/(1 + e^{-|x|})` for x < 0. The gradient is itself
    differentiable (second derivatives are those of softplus)."""
    x = tf.convert_to_tensor(x)
    # e^{-|x|} as exp(min(-x, x)): at x = 0 the minimum's gradient takes its first argument, so
    # the second derivative there is σ'(0) = 1/4 (tf.abs's gradient would give 0).
    e = tf.math.exp(tf.minimum(-x, x))
    y = tf.nn.relu(x) + tf.math.log1p(e)

    def grad(dy):
        inverse = tf.math.reciprocal(1.0 + e)
        return dy * tf.where(x >= 0, inverse, e * inverse)

    return y, grad
