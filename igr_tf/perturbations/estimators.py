"""Estimators of Z and log Z from perturb-and-MAP values, with their bias and variance.

All estimators take the MAP values on the Gumbel scale, y_m = max_x {φ(x) + G_m(x)} with standard
Gumbel(0, 1) perturbations (`PerturbAndMap.gumbel_value`; −log of the exponential minimum T_m),
M of them along `axis`. With full-rank perturbations (one independent perturbation per
configuration) y_m ~ Gumbel(log Z, 1), T_m = e^{-y_m} ~ Exp(Z), and:

- **α-family** (the paper's single parameter α; Gumbel α = 0, Exponential α = 1, Weibull α > 0,
  Fréchet −1/2 < α < 0): E[e^{-α y}] = Γ(1+α) Z^{-α} for α > −1, so

      Ŝ_α = mean_m e^{-α y_m} / Γ(1+α)                    is unbiased for Z^{-α},
      log Ẑ_α = −(1/α) log Ŝ_α                            (α = 0: mean_m y_m − γ, γ = Euler),
      Ẑ_α = exp(log Ẑ_α).

  Var Ŝ_α = Z^{-2α} (Γ(1+2α)/Γ(1+α)² − 1) / M (finite for α > −1/2); the log Z estimator's exact
  moments have closed forms only at α = 0 (unbiased, variance π²/6M) and α = 1 (bias
  log M − ψ(M), variance ψ'(M)); otherwise its delta-method variance is
  (Γ(1+2α)/Γ(1+α)² − 1)/(α² M), smallest at α = 1 (value 1/M, against π²/6M ≈ 1.645/M for
  Gumbel): the Exponential trick needs ~40% fewer samples for the same asymptotic MSE.
- **Exponential trick, Gamma form**: Σ_m T_m ~ Gamma(M, rate Z), which gives the unbiased
  (M−1)/ΣT for Z (variance Z²/(M−2)) and ψ(M) − log ΣT for log Z (variance ψ'(M)); the α = 1
  estimators above are the maximum-likelihood ones, M/ΣT and log M − log ΣT.
- **Pareto trick**: e^{T_m} ~ Pareto(shape Z, scale 1), whose mean Z/(Z−1) (Z > 1) the sample mean
  estimates without bias (variance Z/((Z−1)²(Z−2)M), Z > 2).
- **Tail trick**: 1{T_m > t} ~ Bernoulli(e^{-tZ}): the fraction is unbiased for e^{-tZ}.

With unary (low-rank) perturbations of an n-variable model, y_m is no longer Gumbel; the same
formula with n in place of 1 is the paper's upper bound U(α) on log Z (see `lowrank.py`):
`log_z(y, alpha, num_variables=n)` = n log Γ(1+α)/α − (1/α) log mean_m e^{-α y_m}.

Closed-form moments (`*_moments`) are scale-free: for log Z estimators they do not depend on Z;
for Z estimators they are in units of Z (mean/Z, variance/Z²).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

__all__ = [
    "EULER_GAMMA",
    "Moments",
    "alpha_log_z_asymptotic_variance",
    "as_float_tensor",
    "certainty_equivalent",
    "exponential_log_z_moments",
    "exponential_z_moments",
    "gumbel_log_z_moments",
    "gumbel_z_moments",
    "log_gamma_ratio",
    "log_mean_exp",
    "log_z",
    "log_z_unbiased_exponential",
    "pareto_estimate",
    "pareto_moments",
    "power_estimate",
    "power_moments",
    "standard_error",
    "tail_estimate",
    "tail_moments",
    "z",
    "z_unbiased_exponential",
]

#: Euler–Mascheroni constant γ, the mean of a standard Gumbel.
EULER_GAMMA: float = 0.57721566490153286061
_ZETA_3 = 1.2020569031595942854  # Apéry's constant ζ(3)


class Moments(NamedTuple):
    """Bias, variance (and MSE) of an estimator, scale-free.

    For log Z estimators: bias in nats and variance in nats², whatever Z is. For estimators of a
    positive quantity f(Z) (Z, Z^{-α}, ...): relative bias E[f̂]/f − 1 and relative variance
    Var f̂ / f².
    """

    bias: float
    variance: float

    @property
    def mse(self) -> float:
        return self.bias**2 + self.variance


def _check_alpha(alpha: float, lower: float = -1.0) -> float:
    alpha = float(alpha)
    if not (alpha > lower and math.isfinite(alpha)):
        raise ValueError(f"`alpha` must be a finite number > {lower}; got {alpha!r}.")
    return alpha


def _check_num_samples(m: int, minimum: int, what: str) -> int:
    if isinstance(m, bool) or int(m) != m or m < minimum:
        raise ValueError(f"`num_samples` must be an integer >= {minimum} {what}; got {m!r}.")
    return int(m)


def _count(y: tf.Tensor, axis: int) -> tf.Tensor:
    return tf.cast(tf.shape(y)[axis], y.dtype)


def as_float_tensor(x) -> tf.Tensor:
    """`x` as a floating tensor, keeping its dtype (NumPy float64 stays float64)."""
    x = x if tf.is_tensor(x) else tf.convert_to_tensor(np.asarray(x, dtype=np.result_type(x, 1.0)))
    if not x.dtype.is_floating:
        raise ValueError(f"Expected floating-point values; got {x.dtype.name}.")
    return x


def log_gamma_ratio(alpha: float) -> float:
    """log Γ(1+α)/α in float64 (−γ at α = 0, its limit; a Taylor series for |α| < 1e-4)."""
    alpha = float(alpha)
    if abs(alpha) < 1e-4:  # log Γ(1+α) = −γα + ζ(2)α²/2 − ζ(3)α³/3 + …
        return -EULER_GAMMA + (math.pi**2 / 12) * alpha - (_ZETA_3 / 3) * alpha**2
    return math.lgamma(1.0 + alpha) / alpha


def certainty_equivalent(y, alpha: float, *, axis: int = 0) -> tf.Tensor:
    """−(1/α) log mean_m e^{-α y_m} along `axis` (the mean of y at α = 0).

    Computed around the sample mean, ȳ − (1/α) log mean e^{-α(y − ȳ)}, so that it is continuous
    in α down to α = 0 in float32 (no 1/α cancellation).
    """
    y = as_float_tensor(y)
    center = tf.reduce_mean(y, axis=axis)
    if alpha == 0:
        return center
    a = tf.constant(float(alpha), y.dtype)
    return center - log_mean_exp(-a * (y - tf.expand_dims(center, axis)), axis=axis) / a


def log_mean_exp(s, *, axis: int = 0) -> tf.Tensor:
    """log mean e^{s} along `axis`, accurate both for large spreads and for s near 0.

    max(s) + log1p(mean(expm1(s − max s))): unlike logsumexp(s) − log M, it does not cancel when
    every s is tiny (which is what the α → 0 limit of the α-trick produces).
    """
    s = as_float_tensor(s)
    top = tf.stop_gradient(tf.reduce_max(s, axis=axis, keepdims=True))
    rest = tf.math.log1p(tf.reduce_mean(tf.math.expm1(s - top), axis=axis))
    return tf.squeeze(top, axis) + rest


def log_z(y, alpha: float = 0.0, *, num_variables: int = 1, axis: int = 0) -> tf.Tensor:
    """The α-trick estimate of log Z from Gumbel-scale MAP values `y` (M along `axis`).

    log Ẑ = n log Γ(1+α)/α − (1/α) log mean_m e^{-α y_m}, and mean_m y_m − n γ at α = 0; n =
    `num_variables` (1 for full-rank perturbations; with unary perturbations of n variables this
    is the Monte Carlo estimate of the upper bound U(α)). Continuous in α through α = 0.
    """
    alpha = _check_alpha(alpha)
    y = as_float_tensor(y)
    return num_variables * log_gamma_ratio(alpha) + certainty_equivalent(y, alpha, axis=axis)


def z(y, alpha: float = 0.0, *, axis: int = 0) -> tf.Tensor:
    """The α-trick estimate of Z: exp(log Ẑ_α) (α = 1: the Exponential MLE M / Σ_m T_m)."""
    return tf.exp(log_z(y, alpha, axis=axis))


def power_estimate(y, alpha: float, *, axis: int = 0) -> tf.Tensor:
    """Unbiased estimate of Z^{-α}: mean_m e^{-α y_m} / Γ(1+α) (Weibull α > 0, Fréchet α < 0)."""
    alpha = _check_alpha(alpha)
    y = as_float_tensor(y)
    a = tf.constant(alpha, y.dtype)
    log_mean = tf.reduce_logsumexp(-a * y, axis=axis) - tf.math.log(_count(y, axis))
    return tf.exp(log_mean - math.lgamma(1.0 + alpha))


def log_z_unbiased_exponential(y, *, axis: int = 0) -> tf.Tensor:
    """ψ(M) − log Σ_m T_m, unbiased for log Z (Σ T ~ Gamma(M, Z)); variance ψ'(M)."""
    y = as_float_tensor(y)
    return tf.math.digamma(_count(y, axis)) - tf.reduce_logsumexp(-y, axis=axis)


def z_unbiased_exponential(y, *, axis: int = 0) -> tf.Tensor:
    """(M − 1) / Σ_m T_m, unbiased for Z (M ≥ 2); variance Z²/(M − 2) (M ≥ 3)."""
    y = as_float_tensor(y)
    return tf.exp(tf.math.log(_count(y, axis) - 1.0) - tf.reduce_logsumexp(-y, axis=axis))


def pareto_estimate(y, *, axis: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """Pareto trick: (mean_m P_m, plug-in Ẑ) with P_m = e^{T_m} ~ Pareto(shape Z, scale 1).

    mean_m P_m is unbiased for Z/(Z−1) when Z > 1 (infinite mean otherwise, and then the
    estimate is large or inf); the plug-in Ẑ = m/(m−1) inverts it (biased, consistent).
    """
    y = as_float_tensor(y)
    mean_p = tf.reduce_mean(tf.exp(tf.exp(-y)), axis=axis)
    return mean_p, mean_p / (mean_p - 1.0)


def tail_estimate(y, t: float, *, axis: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """Tail trick: (fraction of T_m > t, plug-in Ẑ = −log(fraction)/t).

    The fraction is unbiased for e^{-tZ}; Ẑ is inf when no T_m exceeds t.
    """
    t = float(t)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"`t` must be a finite number > 0; got {t!r}.")
    y = as_float_tensor(y)
    frac = tf.reduce_mean(tf.cast(-y > math.log(t), y.dtype), axis=axis)
    return frac, -tf.math.log(frac) / t


def standard_error(values, *, axis: int = 0) -> tf.Tensor:
    """Standard error of the mean of `values` along `axis` (sample sd / sqrt(count))."""
    values = as_float_tensor(values)
    n = _count(values, axis)
    var = tf.reduce_sum(tf.square(values - tf.reduce_mean(values, axis, keepdims=True)), axis)
    return tf.sqrt(var / (n - 1.0) / n)


# Closed-form moments (scale-free, float64 Python numbers).


def gumbel_log_z_moments(num_samples: int) -> Moments:
    """Gumbel trick, log Z: mean_m y_m − γ is unbiased with variance π²/(6M)."""
    m = _check_num_samples(num_samples, 1, "")
    return Moments(0.0, math.pi**2 / (6 * m))


def gumbel_z_moments(num_samples: int) -> Moments:
    """Gumbel trick, Z: exp(mean y − γ) has mean Γ(1−1/M)^M e^{-γ} Z, finite variance for M > 2.

    E[e^{k(G−γ)/M}] = Γ(1 − k/M) e^{-kγ/M} for a standard Gumbel G, raised to the M-th power.
    """
    m = _check_num_samples(num_samples, 3, "(the Gumbel Z estimator has infinite variance below)")
    mean = math.exp(m * math.lgamma(1 - 1 / m) - EULER_GAMMA)
    second = math.exp(m * math.lgamma(1 - 2 / m) - 2 * EULER_GAMMA)
    return Moments(mean - 1.0, second - mean**2)


def exponential_z_moments(num_samples: int, *, unbiased: bool = False) -> Moments:
    """Exponential trick, Z: M/ΣT (MLE; mean M/(M−1), variance M²/((M−1)²(M−2))) or (M−1)/ΣT.

    From 1/ΣT with ΣT ~ Gamma(M, Z): E[1/ΣT] = Z/(M−1), E[1/(ΣT)²] = Z²/((M−1)(M−2)).
    """
    m = _check_num_samples(num_samples, 3, "(finite variance needs M > 2)")
    if unbiased:
        return Moments(0.0, 1.0 / (m - 2))
    mean = m / (m - 1)
    return Moments(mean - 1.0, m**2 / ((m - 1) ** 2 * (m - 2)))


def exponential_log_z_moments(num_samples: int, *, unbiased: bool = False) -> Moments:
    """Exponential trick, log Z: log M − log ΣT (bias log M − ψ(M)) or ψ(M) − log ΣT (unbiased).

    log ΣT = log Gamma(M, 1) − log Z has mean ψ(M) − log Z and variance ψ'(M).
    """
    m = _check_num_samples(num_samples, 1, "")
    mf = tf.constant(float(m), tf.float64)
    variance = float(tf.math.polygamma(tf.constant(1.0, tf.float64), mf))
    bias = 0.0 if unbiased else math.log(m) - float(tf.math.digamma(mf))
    return Moments(bias, variance)


def power_moments(alpha: float, num_samples: int) -> Moments:
    """The unbiased Ŝ_α for Z^{-α}, in units of Z^{-α}: mean 1, variance (Γ(1+2α)/Γ(1+α)² − 1)/M.

    Needs α > −1/2 for a finite variance.
    """
    alpha = _check_alpha(alpha, lower=-0.5)
    m = _check_num_samples(num_samples, 1, "")
    ratio = math.exp(math.lgamma(1 + 2 * alpha) - 2 * math.lgamma(1 + alpha))
    return Moments(0.0, (ratio - 1.0) / m)


def alpha_log_z_asymptotic_variance(alpha: float, num_samples: int) -> float:
    """Delta-method variance of log Ẑ_α: (Γ(1+2α)/Γ(1+α)² − 1)/(α² M); π²/(6M) at α = 0."""
    alpha = _check_alpha(alpha, lower=-0.5)
    m = _check_num_samples(num_samples, 1, "")
    if alpha == 0:
        return math.pi**2 / (6 * m)
    ratio = math.exp(math.lgamma(1 + 2 * alpha) - 2 * math.lgamma(1 + alpha))
    return float(np.expm1(np.log(ratio)) / (alpha**2 * m))


def pareto_moments(log_partition: float, num_samples: int) -> Moments:
    """mean_m P_m for f(Z) = Z/(Z−1), in units of f(Z): mean 1, variance 1/(Z(Z−2)M) (Z > 2)."""
    zv = math.exp(float(log_partition))
    m = _check_num_samples(num_samples, 1, "")
    if not zv > 2:
        raise ValueError(f"The Pareto trick has finite variance only for Z > 2; got Z = {zv:g}.")
    # Var P = Z/((Z−1)²(Z−2)); divided by f(Z)² = Z²/(Z−1)².
    return Moments(0.0, 1.0 / (zv * (zv - 2) * m))


def tail_moments(log_partition: float, t: float, num_samples: int) -> Moments:
    """Fraction of T_m > t for f(Z) = e^{-tZ}, in units of f: mean 1, variance (e^{tZ} − 1)/M."""
    zv = math.exp(float(log_partition))
    m = _check_num_samples(num_samples, 1, "")
    return Moments(0.0, math.expm1(float(t) * zv) / m)
