"""Stick-breaking bijectors: the map behind IGR-SB's countably infinite support."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import assert_util
from tensorflow_probability.python.internal import prefer_static as ps

from igr_tf._checks import simplex_assertions
from igr_tf._ops import cumsum_last, softplus
from igr_tf.bijectors._simplex_shape import OntoSimplexShape

tfb = tfp.bijectors

__all__ = ["StickBreaking", "LogitStickBreaking"]


class StickBreaking(OntoSimplexShape, tfb.AutoCompositeTensorBijector):
    """Breaks a unit stick: maps `(0, 1)^{K-1}` onto the open `K`-simplex.

    ```none
    η_k = v_k Π_{j<k} (1 - v_j)     for k < K   (the piece broken off at step k)
    η_K = Π_{j<K} (1 - v_j)                     (the remainder of the stick)
    ```

    Computed in O(K) time and memory with a cumulative sum of `log(1 - v)`. With `v = sigmoid(z)`
    and `K → ∞` this is the stick-breaking construction that gives IGR-SB countably infinite
    support; `igr_tf.distributions` truncates it adaptively.

    #### Example

    ```python
    StickBreaking().forward([0.5, 0.5])   # ==> [0.5, 0.25, 0.25]
    StickBreaking().inverse([0.5, 0.25, 0.25])  # ==> [0.5, 0.5]
    ```

    #### Jacobian

    ```none
    ∂η_k/∂v_j = 0 for j > k, so the Jacobian of η_{1..K-1} w.r.t. v is lower triangular with
    diagonal ∂η_k/∂v_k = Π_{j<k}(1 - v_j). Hence
      log|det J| = Σ_{k<K} Σ_{j<k} log(1 - v_j) = Σ_{j<K} (K - 1 - j) log(1 - v_j)   (1-based j),
    plus ½ log K, TFP's volume term for maps onto the simplex embedded in R^K (as in
    SoftmaxCentered), so that chains through the simplex cancel it consistently.
    ```
    """

    def __init__(self, validate_args: bool = False, name: str = "stick_breaking") -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            super().__init__(
                forward_min_event_ndims=1,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict()

    def _forward(self, v):
        with tf.control_dependencies(self._maybe_assert_valid_x(v)):
            v = tf.identity(v)
        log1m_v = tf.math.log1p(-v)
        log_left = tf.math.cumsum(log1m_v, axis=-1, exclusive=True)  # log Π_{j<k}(1 - v_j)
        pieces = v * tf.exp(log_left)
        remainder = tf.exp(tf.reduce_sum(log1m_v, axis=-1, keepdims=True))
        return tf.concat([pieces, remainder], axis=-1)

    def _inverse(self, eta):
        with tf.control_dependencies(self._maybe_assert_valid_y(eta)):
            eta = tf.identity(eta)
        # The stick left before step k is Σ_{j≥k} η_j: a reverse cumulative sum (no cancellation).
        left = tf.math.cumsum(eta, axis=-1, reverse=True)
        return eta[..., :-1] / left[..., :-1]

    def _forward_log_det_jacobian(self, v):
        with tf.control_dependencies(self._maybe_assert_valid_x(v)):
            v = tf.identity(v)
        k = ps.shape(v)[-1] + 1
        weights = ps.cast(k - 1 - ps.range(1, k), v.dtype)  # K-1-j for j = 1..K-1
        log1m_v = tf.math.log1p(-v)
        return 0.5 * tf.math.log(ps.cast(k, v.dtype)) + tf.reduce_sum(weights * log1m_v, axis=-1)

    def _inverse_log_det_jacobian(self, eta):
        # From η directly: the stick left before each break is a reverse sum of pieces, accurate
        # where recovering v first would round 1 - v to 0.
        with tf.control_dependencies(self._maybe_assert_valid_y(eta)):
            eta = tf.identity(eta)
        left = tf.math.cumsum(eta, axis=-1, reverse=True)
        log_left = tf.math.log(left)
        log1m_v = log_left[..., 1:] - log_left[..., :-1]  # 1 - v_j = left_{j+1} / left_j
        k = ps.shape(eta)[-1]
        weights = ps.cast(k - 1 - ps.range(1, k), eta.dtype)
        return -(
            0.5 * tf.math.log(ps.cast(k, eta.dtype)) + tf.reduce_sum(weights * log1m_v, axis=-1)
        )

    # Input checks: TFP runs none automatically, so the methods above wrap their inputs in them.
    def _maybe_assert_valid_x(self, v):
        if not self.validate_args:
            return []
        return [
            assert_util.assert_positive(v, message="Input must be in (0, 1)."),
            assert_util.assert_less(v, tf.ones([], v.dtype), message="Input must be in (0, 1)."),
        ]

    def _maybe_assert_valid_y(self, eta):
        return simplex_assertions(eta) if self.validate_args else []


class LogitStickBreaking(tfb.AutoCompositeTensorBijector):
    """Stick-breaking in log space: logits of the breaks to log-ratios of the pieces.

    ```none
    x_k = log η_k - log η_K,   η = StickBreaking(sigmoid(z)),   k = 1..K-1
        = log σ(z_k) - Σ_{j≥k} log σ(-z_j) = z_k + Σ_{j>k} softplus(z_j)
    ```

    It equals `Invert(SoftmaxCentered()) ∘ StickBreaking() ∘ Sigmoid()` but never forms η, so it is
    exact where that chain underflows (`|z|` of tens in float32 sends `1 - sigmoid(z)` to 0).
    `SoftmaxPlusPlus(τ)(x) = softmax(log η / τ)` is then the IGR-SB relaxation.

    The pieces themselves, in log space, are `log_pieces(z)`; the stick left after each break,
    `log_remainders(z)` (what adaptive truncation reads).

    #### Example

    ```python
    tfb.Chain([SoftmaxPlusPlus(temperature=0.1), LogitStickBreaking()])  # IGR-SB's map
    ```

    #### Jacobian

    ```none
    ∂x_k/∂z_k = 1,   ∂x_k/∂z_j = σ(z_j) for j > k,   0 for j < k.
    The Jacobian is unit upper triangular: log|det J| = 0 (volume preserving).
    Inverse: log η = log_softmax([x, 0]) and z_k = log η_k - log Σ_{j>k} η_j.
    ```
    """

    def __init__(self, validate_args: bool = False, name: str = "logit_stick_breaking") -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            super().__init__(
                forward_min_event_ndims=1,
                validate_args=validate_args,
                parameters=parameters,
                is_constant_jacobian=True,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict()

    @staticmethod
    def log_remainders(z) -> tf.Tensor:
        """`log r_k = -Σ_{j≤k} softplus(z_j)` `[..., K-1]`: the stick left after k breaks.

        `r_k = Π_{j≤k} (1 - σ(z_j))`, so `1 - r_k` is the mass broken off by the first k sticks.
        """
        return -cumsum_last(softplus(tf.convert_to_tensor(z)))

    @classmethod
    def log_pieces(cls, z, log_remainders=None) -> tf.Tensor:
        """`log η` `[..., K]`: `log η_k = z_k + log r_k` for k < K and `log η_K = log r_{K-1}`.

        `log_remainders`, if given, is `log_remainders(z)` already computed.
        """
        z = tf.convert_to_tensor(z)
        log_rest = cls.log_remainders(z) if log_remainders is None else log_remainders
        return tf.concat([z + log_rest, log_rest[..., -1:]], axis=-1)

    def _forward(self, z):
        return z + cumsum_last(softplus(z), exclusive=True, reverse=True)

    def _inverse(self, x):
        zeros = tf.zeros_like(x[..., :1])
        log_eta = tf.math.log_softmax(tf.concat([x, zeros], axis=-1), axis=-1)
        log_rest = tf.math.cumulative_logsumexp(log_eta, axis=-1, reverse=True, exclusive=True)
        return log_eta[..., :-1] - log_rest[..., :-1]

    def _forward_log_det_jacobian(self, z):
        return tf.zeros([], dtype=z.dtype)
