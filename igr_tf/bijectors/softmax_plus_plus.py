"""SoftmaxPlusPlus: the tempered softmax with an extra fixed category (IGR's "softmax++")."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    assert_util,
    dtype_util,
    parameter_properties,
    tensor_util,
)
from tensorflow_probability.python.internal import (
    prefer_static as ps,
)

from igr_tf._checks import as_parameter, cast_like, check_positive, simplex_assertions
from igr_tf.bijectors._simplex_shape import OntoSimplexShape

tfb = tfp.bijectors

__all__ = ["SoftmaxPlusPlus"]


class SoftmaxPlusPlus(OntoSimplexShape, tfb.AutoCompositeTensorBijector):
    """Maps `R^{K-1}` onto the open `K`-simplex with a temperature and a fixed last logit.

    ```none
    softmax++_{τ,δ}(x) = softmax([x_1 / τ, ..., x_{K-1} / τ, log δ])
    ψ_k = exp(x_k / τ) / (Σ_j exp(x_j / τ) + δ),   k < K
    ψ_K = δ / (Σ_j exp(x_j / τ) + δ)
    ```

    It is the TFP chain `SoftmaxCentered() ∘ Shift(-log δ) ∘ Scale(1/τ)`, computed in one
    numerically stable step (log-sum-exp with the maximum subtracted). As `τ → 0` the output
    tends to `one_hot(argmax([x, τ·log δ]))`, which is the relaxation IGR builds on: a Gaussian
    `x` pushed through this map is a relaxed one-hot sample whose `τ → 0` limit is categorical.

    The temperature may be a Python float, a tensor or a `tf.Variable` (annealed or learned).

    #### Example

    ```python
    bij = SoftmaxPlusPlus(temperature=0.5)
    bij.forward([0., 1., -1.])   # a point in the interior of the 4-simplex
    bij.inverse(bij.forward([0., 1., -1.]))  # ==> [0., 1., -1.]
    ```

    #### Jacobian

    ```none
    Let u = x / τ - log δ, so that ψ = SoftmaxCentered(u). With ψ' = ψ_{1..K-1},
      ∂ψ'/∂u = diag(ψ') - ψ' ψ'^T,   det = Π_{k<K} ψ_k · (1 - Σ_{k<K} ψ_k) = Π_{k≤K} ψ_k
    (matrix determinant lemma). TFP's SoftmaxCentered measures volume on the simplex embedded in
    R^K, which adds ½ log K (the simplex's volume element relative to its first K-1 coordinates).
    The scaling contributes (K-1)·log(1/τ). Hence
      log|det J| = ½ log K + Σ_{k≤K} log ψ_k - (K-1) log τ,
    with log ψ = log_softmax([x/τ, log δ]) evaluated from x, never from a rounded ψ.
    ```
    """

    def __init__(
        self,
        temperature: float | tf.Tensor = 1.0,
        delta: float | tf.Tensor = 1.0,
        validate_args: bool = False,
        name: str = "softmax_plus_plus",
    ) -> None:
        """Builds the bijector.

        Args:
          temperature: τ > 0, float or float tensor (broadcasts against the batch).
          delta: δ > 0, the unnormalised weight of the extra K-th category (default 1).
          validate_args: check parameters and inputs at run time.
          name: name scope for the ops.
        """
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            # Python numbers stay dtype-agnostic (the bijector then serves float32 and float64);
            # tensors and variables fix the dtype, as in TFP's own bijectors.
            dtype = dtype_util.common_dtype([temperature, delta], dtype_hint=None)
            self._temperature = as_parameter(temperature, dtype, "temperature")
            self._delta = as_parameter(delta, dtype, "delta")
            check_positive(self._temperature, "temperature")
            check_positive(self._delta, "delta")
            super().__init__(
                forward_min_event_ndims=1,
                validate_args=validate_args,
                parameters=parameters,
                dtype=dtype,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(
            temperature=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED
            ),
            delta=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED
            ),
        )

    @property
    def temperature(self):
        return self._temperature

    @property
    def delta(self):
        return self._delta

    @classmethod
    def _is_increasing(cls):
        return False

    def _logits(self, x):
        """[x/τ, log δ]: the K logits whose softmax is the output."""
        tau = cast_like(self._temperature, x)[..., tf.newaxis]
        log_delta = tf.math.log(cast_like(self._delta, x))[..., tf.newaxis]
        scaled = x / tau
        last = tf.broadcast_to(log_delta, ps.concat([ps.shape(scaled)[:-1], [1]], axis=0))
        return tf.concat([scaled, last], axis=-1)

    def _forward(self, x):
        with tf.control_dependencies(self._maybe_assert_valid_x(x)):
            return tf.math.softmax(self._logits(x), axis=-1)

    def _inverse(self, y):
        with tf.control_dependencies(self._maybe_assert_valid_y(y)):
            y = tf.identity(y)
        # x_k = τ (log ψ_k - log ψ_K + log δ).
        tau = cast_like(self._temperature, y)[..., tf.newaxis]
        log_delta = tf.math.log(cast_like(self._delta, y))[..., tf.newaxis]
        log_y = tf.math.log(y)
        return tau * (log_y[..., :-1] - log_y[..., -1:] + log_delta)

    def _forward_log_det_jacobian(self, x):
        with tf.control_dependencies(self._maybe_assert_valid_x(x)):
            x = tf.identity(x)
        k = ps.cast(ps.shape(x)[-1] + 1, x.dtype)
        log_psi = tf.math.log_softmax(self._logits(x), axis=-1)
        log_tau = tf.math.log(cast_like(self._temperature, x))
        return 0.5 * tf.math.log(k) + tf.reduce_sum(log_psi, axis=-1) - (k - 1.0) * log_tau

    def _inverse_log_det_jacobian(self, y):
        with tf.control_dependencies(self._maybe_assert_valid_y(y)):
            y = tf.identity(y)
        k = ps.cast(ps.shape(y)[-1], y.dtype)
        log_tau = tf.math.log(cast_like(self._temperature, y))
        return (
            -(0.5 * tf.math.log(k) + tf.reduce_sum(tf.math.log(y), axis=-1)) + (k - 1.0) * log_tau
        )

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        assertions = []
        if is_init != tensor_util.is_ref(self._temperature):
            assertions.append(
                assert_util.assert_positive(
                    self._temperature, message="`temperature` must be > 0 (got a value ≤ 0)."
                )
            )
        if is_init != tensor_util.is_ref(self._delta):
            assertions.append(
                assert_util.assert_positive(
                    self._delta, message="`delta` must be > 0 (got a value ≤ 0)."
                )
            )
        return assertions

    # Input checks. TFP has no hook that runs these for us (only parameter checks are automatic),
    # so every method that takes an x or a y wraps its body in them.
    def _maybe_assert_valid_y(self, y):
        return simplex_assertions(y) if self.validate_args else []

    def _maybe_assert_valid_x(self, x):
        if not self.validate_args:
            return []
        return [
            assert_util.assert_greater_equal(
                ps.shape(x)[-1], 1, message="Input must have at least one coordinate (K ≥ 2)."
            )
        ]
