"""Small tensor operations shared by the bijectors and distributions."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["cumsum_last"]

# Up to this many entries, a cumulative sum over the last axis is a matmul with a triangular
# matrix of ones: TF's CPU Cumsum kernel (and its gradient, another Cumsum) costs ~16 ns per
# element on a short last axis, 3-8x the matmul for 9 to 99 entries, and XLA lowers Cumsum to a
# reduce-window that is O(n²) as well. Past it, the matmul's O(n²) work loses to the O(n) scan.
_MATMUL_CUMSUM_MAX = 128


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
    flat = tf.reshape(x, [-1, d])
    out = tf.linalg.matmul(flat, tf.constant(keep.astype(np.float64), x.dtype))
    return tf.reshape(out, tf.shape(x))
