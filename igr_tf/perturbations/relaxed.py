"""Relaxed (softmax) versions of the perturbation families: distributions on the simplex.

Every family of `families.py` picks the best of K perturbed scores s_k; replacing the argmax by
a tempered softmax, ψ = softmax(s / τ), gives a relaxed one-hot sample whose τ → 0 limit is the
exact categorical draw. With normalised probabilities π = softmax(logits) (so, as for
Gumbel-Softmax, adding a constant to the logits changes nothing) and T_k = E_k / π_k,
E_k ~ Exp(1):

| family | score s_k | log_prob |
| --- | --- | --- |
| `gumbel` | log π_k + G_k | closed form: Gumbel-Softmax (TFP's ExpRelaxedOneHotCategorical) |
| `exponential` | −T_k | closed form (below) |
| `weibull(α)` | −T_k^α | none (a one-dimensional integral with no closed form) |
| `frechet(α)` | T_k^{-α} | none (likewise) |

Scores on a log scale give nothing new: softmax(log F / τ) for a Fréchet score is Gumbel-Softmax at
temperature τ/α, and the same holds for every positive score's logarithm. The relaxations differ
from Gumbel-Softmax because the softmax acts on the scores themselves. The Pareto trick
(s_k = −e^{T_k}) and the tail trick (an indicator) are left out: e^{T_k} overflows for any small
π_k, and an indicator has no useful relaxation.

All distributions here are of y = log ψ (event shape [K], like TFP's ExpRelaxedOneHotCategorical;
wrap with `tfb.Exp()` for ψ itself), sampled in log space and fully reparameterised.

Density of the `exponential` family. y = s/τ − C with C the log-normaliser; integrating the shift
out of the joint density of s (T_k ~ Exp(π_k), so s_k = −T_k has density π_k e^{π_k s} on s < 0)
gives, in the same convention as TFP's ExpRelaxedOneHotCategorical (whose formula the same
computation reproduces for Gumbel scores):

    log p(y) = (K−1) log τ + Σ_k log π_k − τ Σ_k π_k (max_j y_j − y_k).

It is a density with respect to Lebesgue measure on the log-ratios t_k = y_k − y_K, k < K
(TFP's convention; on y_1..y_{K−1} it carries an extra factor e^{-y_K}).

Numerics: T_k / τ = exp(log E_k − log π_k − log τ) is capped below the dtype's largest finite
value, so logits of ±50 at τ = 0.01 give finite samples in float32; the cap only touches
components whose ψ_k underflows to 0 anyway.

In the relaxation registry: "perturb_exponential" (`igr_tf.distributions.get`), next to GS and
IGR; the Weibull and Fréchet relaxations have no density, so no KL, and are sampled here only.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    dtype_util,
    parameter_properties,
    reparameterization,
    samplers,
    tensor_util,
)

from igr_tf._checks import (
    check_num_categories,
    check_positive,
    logits_relaxation_assertions,
)
from igr_tf._ops import RNG_ALGORITHM

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "RELAXED_FAMILIES",
    "WITH_DENSITY",
    "ExpRelaxedPerturbation",
]

#: Families with a relaxed version (names of `families.FAMILIES` that make sense relaxed).
RELAXED_FAMILIES: tuple[str, ...] = ("gumbel", "exponential", "weibull", "frechet")
#: Families whose relaxation has a closed-form density (the others can only be sampled).
WITH_DENSITY: tuple[str, ...] = ("gumbel", "exponential")


def _check_family(family: str, alpha: float | None) -> float | None:
    if family not in RELAXED_FAMILIES:
        raise ValueError(f"`family` must be one of {RELAXED_FAMILIES}; got {family!r}.")
    if family in ("weibull", "frechet"):
        if alpha is None:
            raise ValueError(f"The relaxed {family} family needs a shape parameter `alpha`.")
        alpha = float(alpha)
        upper = np.inf if family == "weibull" else 1.0
        if not 0 < alpha < upper:
            raise ValueError(
                f"`alpha` of the {family} family must lie in (0, {upper:g}); got {alpha!r}."
            )
        return alpha
    if alpha is not None:
        raise ValueError(f"The {family} family takes no `alpha`; got {alpha!r}.")
    return None


def _log_max(dtype, num_categories) -> float:
    """Largest exponent whose exp stays finite after a K-term softmax shift."""
    return (
        float(np.log(np.finfo(dtype_util.as_numpy_dtype(dtype)).max)) - np.log(num_categories) - 1.0
    )


def perturbed_scores(
    family: str,
    alpha: float | None,
    logits: tf.Tensor,
    temperature: tf.Tensor,
    uniforms: tf.Tensor,
) -> tf.Tensor:
    """s / τ for the family, from uniforms in (0, 1) shaped like `logits` (log space, capped)."""
    log_pi = tf.math.log_softmax(logits, axis=-1)
    log_e = tf.math.log(-tf.math.log(uniforms))  # log of Exp(1) noise
    log_tau = tf.math.log(temperature)[..., None]
    cap = _log_max(logits.dtype, int(logits.shape[-1]))
    if family == "gumbel":
        return (log_pi - log_e) / temperature[..., None]
    log_t = log_e - log_pi  # log T_k
    if family == "exponential":
        return -tf.exp(tf.minimum(log_t - log_tau, cap))
    if family == "weibull":
        return -tf.exp(tf.minimum(alpha * log_t - log_tau, cap))
    return tf.exp(tf.minimum(-alpha * log_t - log_tau, cap))  # frechet


class ExpRelaxedPerturbation(tfd.AutoCompositeTensorDistribution):
    """y = log softmax(s / τ) for the scores s of one perturbation family (module docstring).

    Args:
      temperature: τ > 0, broadcastable to the batch shape.
      logits: `[..., K]` unnormalised log-probabilities (normalised internally).
      family: one of `RELAXED_FAMILIES`.
      alpha: shape of the weibull (α > 0) or frechet (0 < α < 1) family.
    """

    def __init__(
        self,
        temperature,
        logits,
        family: str = "exponential",
        alpha: float | None = None,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str = "ExpRelaxedPerturbation",
    ):
        parameters = dict(locals())
        self._family = family
        self._alpha = _check_family(family, alpha)
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([temperature, logits], dtype_hint=tf.float32)
            self._temperature = tensor_util.convert_nonref_to_tensor(
                temperature, dtype=dtype, name="temperature"
            )
            self._logits = tensor_util.convert_nonref_to_tensor(logits, dtype=dtype, name="logits")
            if self._logits.shape.rank == 0:
                raise ValueError("`logits` must have a category axis (shape [..., K]).")
            if self._logits.shape[-1] is not None:
                check_num_categories(int(self._logits.shape[-1]), "logits.shape[-1]")
            check_positive(self._temperature, "temperature")
            super().__init__(
                dtype=dtype,
                reparameterization_type=reparameterization.FULLY_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            temperature=parameter_properties.ParameterProperties(
                shape_fn=lambda sample_shape: sample_shape[:-1],
                default_constraining_bijector_fn=(lambda: tfb.Softplus(low=dtype_util.eps(dtype))),
            ),
            logits=parameter_properties.ParameterProperties(event_ndims=1),
        )

    @property
    def temperature(self):
        return self._temperature

    @property
    def logits(self):
        return self._logits

    @property
    def family(self) -> str:
        return self._family

    @property
    def alpha(self) -> float | None:
        return self._alpha

    def _event_shape(self):
        return tf.TensorShape(self._logits.shape[-1:])

    def _event_shape_tensor(self):
        return tf.shape(self._logits)[-1:]

    def _sample_n(self, n, seed=None):
        logits = tf.convert_to_tensor(self._logits)
        temperature = tf.convert_to_tensor(self._temperature)
        batch = tf.broadcast_dynamic_shape(tf.shape(temperature), tf.shape(logits)[:-1])
        logits = tf.broadcast_to(logits, tf.concat([batch, tf.shape(logits)[-1:]], 0))
        temperature = tf.broadcast_to(temperature, batch)
        shape = tf.concat([[n], tf.shape(logits)], axis=0)
        tiny = np.finfo(dtype_util.as_numpy_dtype(self.dtype)).tiny
        # Philox named explicitly, as in igr_tf.distributions.philox (XLA on CPU).
        uniforms = tf.random.stateless_uniform(
            shape,
            seed=samplers.sanitize_seed(seed),
            minval=tiny,
            maxval=1.0,
            dtype=self.dtype,
            alg=RNG_ALGORITHM,
        )
        scores = perturbed_scores(self._family, self._alpha, logits, temperature, uniforms)
        return tf.math.log_softmax(scores, axis=-1)

    def _log_prob(self, y):
        if self._family == "gumbel":
            return tfd.ExpRelaxedOneHotCategorical(self._temperature, logits=self._logits).log_prob(
                y
            )
        if self._family != "exponential":
            raise NotImplementedError(
                f"The relaxed {self._family} family has no closed-form density; use "
                "family='exponential' or 'gumbel' where a log_prob is needed."
            )
        logits = tf.convert_to_tensor(self._logits)
        temperature = tf.convert_to_tensor(self._temperature)
        log_pi = tf.math.log_softmax(logits, axis=-1)
        k = tf.cast(tf.shape(logits)[-1], self.dtype)
        gap = tf.reduce_max(y, axis=-1, keepdims=True) - y  # ≥ 0, zero at the largest
        positive = gap > 0
        safe_gap = tf.where(positive, gap, tf.ones_like(gap))
        log_terms = tf.math.log(temperature)[..., None] + log_pi + tf.math.log(safe_gap)
        penalty = tf.reduce_sum(tf.where(positive, tf.exp(log_terms), 0.0), axis=-1)
        return (k - 1.0) * tf.math.log(temperature) + tf.reduce_sum(log_pi, -1) - penalty

    def _default_event_space_bijector(self):
        return None

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        return logits_relaxation_assertions(self._temperature, self._logits, is_init)
