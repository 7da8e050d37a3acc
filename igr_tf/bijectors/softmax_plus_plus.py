"""softmax++ (IGR's "modified softmax") as TFP bijectors, onto the simplex and onto its logarithm.

Both bijectors share one definition of the logits, `[x/τ, log δ]`:

- `SoftmaxPlusPlus`: `ψ = softmax([x/τ, log δ])`, a point of the open K-simplex.
- `LogSoftmaxPlusPlus`: `y = log ψ = log_softmax([x/τ, log δ])`, finite where ψ underflows.

and one definition of the *hard logits* `ℓ = [x, τ log δ]` (`hard_logits`): `argmax ℓ` is the
discrete outcome that ψ relaxes, and `softmax(ℓ / τ) = ψ`.
"""

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

from igr_tf._checks import (
    as_parameter,
    cast_like,
    check_positive,
    finite_assertions,
    positive_finite_assertions,
    simplex_assertions,
)
from igr_tf.bijectors._simplex_shape import OntoSimplexShape

tfb = tfp.bijectors

__all__ = ["LogSoftmaxPlusPlus", "SoftmaxPlusPlus"]


class _SoftmaxPlusPlusBase(OntoSimplexShape, tfb.AutoCompositeTensorBijector):
    """Parameters, logits and checks shared by `SoftmaxPlusPlus` and `LogSoftmaxPlusPlus`."""

    def __init__(self, temperature, delta, validate_args, parameters, name) -> None:
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
                event_ndims=_scalar_event_ndims("_temperature"),
                default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED,
            ),
            delta=parameter_properties.ParameterProperties(
                event_ndims=_scalar_event_ndims("_delta"),
                default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED,
            ),
        )

    @property
    def temperature(self):
        """τ > 0."""
        return self._temperature

    @property
    def delta(self):
        """δ > 0, the unnormalised weight of the K-th category."""
        return self._delta

    @classmethod
    def _is_increasing(cls):
        return False

    def _tau(self, like: tf.Tensor) -> tf.Tensor:
        return cast_like(self._temperature, like)[..., tf.newaxis]

    def _log_delta(self, like: tf.Tensor) -> tf.Tensor:
        return tf.math.log(cast_like(self._delta, like))[..., tf.newaxis]

    def logits(self, x) -> tf.Tensor:
        """`[x/τ, log δ]` `[..., K]`: `softmax` of these is ψ, `log_softmax` is log ψ."""
        x = tf.convert_to_tensor(x, dtype_hint=self.dtype)
        # Times 1/τ, not divided by τ: under XLA a division by a run-time τ (a variable, a
        # schedule) stays a division per entry, forward and backward, which measured ~0.8 ms
        # per step at [100, 20, 9] on CPU; the reciprocal is computed once per parameter.
        scaled = x * tf.math.reciprocal(self._tau(x))  # broadcasts x against batched params
        return tf.concat([scaled, self._last_like(scaled, self._log_delta(x))], axis=-1)

    def hard_logits(self, x) -> tf.Tensor:
        """The hard logits `ℓ = [x, τ log δ]` `[..., K]` of the relaxed sample ψ = forward(x).

        `argmax ℓ` is the discrete outcome that ψ relaxes (ψ → one_hot(argmax ℓ) as τ → 0 with
        ℓ fixed) and `softmax(ℓ / τ) = ψ`. So a straight-through or rounded sample is
        `one_hot(argmax ℓ)`, and with δ ≠ 1 the last category wins when every `x_k < τ log δ`.
        """
        x = tf.convert_to_tensor(x, dtype_hint=self.dtype)
        tau = self._tau(x)
        x = x * tf.ones_like(tau)  # exact; broadcasts x against batched parameters
        return tf.concat([x, self._last_like(x, tau * self._log_delta(x))], axis=-1)

    @staticmethod
    def _last_like(x: tf.Tensor, last: tf.Tensor) -> tf.Tensor:
        return tf.broadcast_to(last, ps.concat([ps.shape(x)[:-1], [1]], axis=0))

    def _inverse_from_log(self, log_y: tf.Tensor) -> tf.Tensor:
        # x_k = τ (log ψ_k − log ψ_K + log δ): only differences of logs, never log of a sum.
        return self._tau(log_y) * (log_y[..., :-1] - log_y[..., -1:] + self._log_delta(log_y))

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        assertions = []
        for value, label in ((self._temperature, "temperature"), (self._delta, "delta")):
            if is_init != tensor_util.is_ref(value):
                assertions += positive_finite_assertions(value, label)
        return assertions

    def _x_assertions(self, x):
        if not self.validate_args:
            return []
        return [
            assert_util.assert_greater_equal(
                ps.shape(x)[-1], 1, message="Input must have at least one coordinate (K ≥ 2)."
            ),
            *finite_assertions(x, "x"),
        ]


def _scalar_event_ndims(attribute: str):
    """event_ndims of a scalar-per-batch parameter, except that a Python float (kept
    dtype-agnostic, so one bijector serves float32 and float64) has no batch: TFP's batch
    slicing then leaves it as it is instead of converting it to a float32 tensor."""

    def event_ndims(bijector, x_event_ndims=None):
        if isinstance(getattr(bijector, attribute), float):
            return parameter_properties.NO_EVENT_NDIMS
        if x_event_ndims is None:
            return 0
        extra = bijector.forward_min_event_ndims
        return tf.nest.map_structure(lambda nd: nd - extra, x_event_ndims)

    return event_ndims


class SoftmaxPlusPlus(_SoftmaxPlusPlusBase):
    """Maps `R^{K-1}` onto the open `K`-simplex with a temperature and a fixed last logit.

    ```none
    softmax++_{τ,δ}(x) = softmax([x_1 / τ, ..., x_{K-1} / τ, log δ])
    ψ_k = exp(x_k / τ) / (Σ_j exp(x_j / τ) + δ),   k < K
    ψ_K = δ / (Σ_j exp(x_j / τ) + δ)
    ```

    It is the TFP chain `SoftmaxCentered() ∘ Shift(-log δ) ∘ Scale(1/τ)`, computed in one
    numerically stable step (softmax with the maximum subtracted). As `τ → 0` the output tends
    to `one_hot(argmax(hard_logits(x)))`, `hard_logits(x) = [x, τ log δ]`: a Gaussian `x` pushed
    through this map is a relaxed one-hot sample whose `τ → 0` limit is categorical (IGR).

    The temperature may be a Python float, a tensor or a `tf.Variable` (annealed or learned).
    For densities of fresh samples at low τ, where float32 ψ underflows to exact zeros, use
    `LogSoftmaxPlusPlus` (the same map onto log ψ).

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
    with log ψ = log_softmax([x/τ, log δ]) evaluated from x, never from a rounded ψ. (The
    inverse log-det is left to TFP, which takes `-fldj(inverse(y))`; on a sample TFP cached,
    that is exact however small ψ is.)
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
          validate_args: check parameters (τ, δ > 0 and finite) and inputs at run time.
          name: name scope for the ops.
        """
        parameters = dict(locals())
        super().__init__(temperature, delta, validate_args, parameters, name)

    def _forward(self, x):
        with tf.control_dependencies(self._x_assertions(x)):
            return tf.math.softmax(self.logits(x), axis=-1)

    def _inverse(self, y):
        with tf.control_dependencies(simplex_assertions(y) if self.validate_args else []):
            return self._inverse_from_log(tf.math.log(y))

    def _forward_log_det_jacobian(self, x):
        with tf.control_dependencies(self._x_assertions(x)):
            x = tf.identity(x)
        k = ps.cast(ps.shape(x)[-1] + 1, x.dtype)
        log_psi = tf.math.log_softmax(self.logits(x), axis=-1)
        log_tau = tf.math.log(cast_like(self._temperature, x))
        return 0.5 * tf.math.log(k) + tf.reduce_sum(log_psi, axis=-1) - (k - 1.0) * log_tau


class LogSoftmaxPlusPlus(_SoftmaxPlusPlusBase):
    """softmax++ onto the logarithm of the simplex: `y = log ψ = log_softmax([x/τ, log δ])`.

    The same relaxation as `SoftmaxPlusPlus`, in log space: `exp(y)` is ψ, but `y` stays finite
    where ψ underflows (at τ = 0.01 most entries of a float32 ψ are exact zeros). A Gaussian
    pushed through it is the distribution of log ψ, IGR's counterpart of TFP's
    `ExpRelaxedOneHotCategorical` (log Gumbel-Softmax): sample and evaluate densities here, and
    exponentiate only what a network consumes.

    ```none
    forward:  y = log_softmax([x/τ, log δ])           (y_K ≤ 0, Σ_k exp(y_k) = 1)
    inverse:  x_k = τ (y_k - y_K + log δ)             (finite for any finite y)
    ```

    #### Density convention and Jacobian

    ```none
    Points y of the log-simplex are measured by their log-ratio coordinates
    u_k = y_k - y_K (k < K), Lebesgue on R^{K-1}: the convention of TFP's
    ExpRelaxedOneHotCategorical, so log-densities of both families are on the same footing.
    u = x/τ - log δ, hence  log|det J| = -(K-1) log τ   (constant in x).
    ```
    """

    def __init__(
        self,
        temperature: float | tf.Tensor = 1.0,
        delta: float | tf.Tensor = 1.0,
        validate_args: bool = False,
        name: str = "log_softmax_plus_plus",
    ) -> None:
        """Builds the bijector; arguments as for `SoftmaxPlusPlus`."""
        parameters = dict(locals())
        super().__init__(temperature, delta, validate_args, parameters, name)

    def _forward(self, x):
        with tf.control_dependencies(self._x_assertions(x)):
            return tf.math.log_softmax(self.logits(x), axis=-1)

    def _inverse(self, y):
        with tf.control_dependencies(self._y_assertions(y)):
            return self._inverse_from_log(y)

    def _forward_log_det_jacobian(self, x):
        with tf.control_dependencies(self._x_assertions(x)):
            x = tf.identity(x)
        k_minus_1 = ps.cast(ps.shape(x)[-1], x.dtype)
        log_tau = tf.math.log(cast_like(self._temperature, x))
        return -k_minus_1 * log_tau + tf.zeros(ps.shape(x)[:-1], x.dtype)

    def _y_assertions(self, y):
        if not self.validate_args:
            return []
        tol = 1e-4 if y.dtype == tf.float32 else 1e-10
        return [
            assert_util.assert_near(
                tf.reduce_logsumexp(y, axis=-1),
                tf.zeros([], y.dtype),
                atol=tol * ps.cast(ps.shape(y)[-1], y.dtype),
                message="Input must be the log of a point of the simplex (logsumexp = 0).",
            )
        ]
