"""Perturb-and-MAP for a categorical: the Gumbel trick and its relatives (Balog et al., 2017).

A categorical with log-potentials φ_k (unnormalised log-probabilities, `logits`), p̃_k = e^{φ_k},
Z = Σ_k p̃_k, is sampled exactly by perturbing every category independently and taking the best
one. Each family uses its own noise and its own way of combining noise with the potential:

| family | noise per category | perturbed value | select | its extreme value |
| --- | --- | --- | --- | --- |
| `gumbel` | G ~ Gumbel(0, 1) | φ_k + G_k | max | Gumbel(log Z, 1) |
| `exponential` | E ~ Exp(1) | E_k / p̃_k | min | T ~ Exp(rate Z) |
| `weibull(α)` | W = E^α ~ Weibull(1/α) | W_k p̃_k^{-α} | min | T^α ~ Weibull(1/α, Z^{-α}) |
| `frechet(α)` | F = E^{-α} ~ Fréchet(1/α) | F_k p̃_k^{α} | max | T^{-α} ~ Fréchet(1/α, Z^{α}) |
| `pareto` | U ~ Uniform(0, 1) | U_k^{-1/p̃_k} ~ Pareto(p̃_k) | min | e^T ~ Pareto(shape Z) |

(Weibull(k, λ) and Fréchet(k, λ): shape k, scale λ; Pareto(a): shape a, scale 1.)

Why they are exact: P(E_k / p̃_k > t) = e^{-p̃_k t}, so T = min_k E_k / p̃_k ~ Exp(Z) and
P(argmin = k) = p̃_k / Z (competing exponential clocks). Every other row is a strictly monotone
map of the same T_k = E_k / p̃_k (−log for Gumbel, t ↦ t^α for Weibull, t ↦ t^{-α} for Fréchet,
t ↦ e^t for Pareto), so every family returns the same argmin/argmax and differs only in the law
of its extreme value, hence in the estimators of Z and log Z it supports (`estimators.py`).
Given the same uniforms, all families return the *same* sample.

Everything is computed in log space (log E_k − φ_k, never E_k / p̃_k itself), so logits of ±50
stay finite in float32. Each call also returns `gumbel_value`: the extreme value mapped to the
Gumbel scale, −log T = max_k (φ_k + G_k), which is what the estimators take (the paper's code
stores the same quantity).

There is no Gamma(k ≠ 1) perturbation in the list: min_k Γ_k / p̃_k with Gamma noise is *not* an
exact sampler (tests/test_perturbations.py shows the chi-square test rejecting it). Gamma laws
enter through the estimators instead: the sum of M exponential minima is Gamma(M, Z).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf._ops import RNG_ALGORITHM

__all__ = [
    "FAMILIES",
    "Family",
    "PerturbAndMap",
    "family",
    "perturb_and_map",
    "stateless_seed",
    "uniform_noise",
]

#: The perturbation families (names accepted by `family(...)` and `perturb_and_map`).
FAMILIES: tuple[str, ...] = ("gumbel", "exponential", "weibull", "frechet", "pareto")


class PerturbAndMap(NamedTuple):
    """One perturb-and-MAP solve per draw.

    Attributes:
      sample: int32 category index `[sample_shape, batch]`: an exact draw from softmax(logits).
      value: the family's extreme value (the perturbed MAP value) in its own scale (table above).
        It can overflow or underflow where the family's law does (e.g. Pareto when Z << 1).
      gumbel_value: the same extreme value on the Gumbel scale, −log T; always finite.
    """

    sample: tf.Tensor
    value: tf.Tensor
    gumbel_value: tf.Tensor


@dataclasses.dataclass(frozen=True)
class Family:
    """A perturbation family: its name and shape parameter (Weibull and Fréchet only).

    `alpha` is the shape parameter as in the table of the module docstring: Weibull(α) uses
    α > 0 and Fréchet(α) uses 0 < α < 1 (the mean of the Fréchet extreme value is finite only for
    α < 1, its variance for α < 1/2). In the paper's signed convention (one α for the whole
    family of estimators) Fréchet(α) here is the paper's α_paper = −α.
    """

    name: str
    alpha: float | None = None

    def __post_init__(self):
        if self.name not in FAMILIES:
            raise ValueError(f"`family` must be one of {FAMILIES}; got {self.name!r}.")
        if self.name in ("weibull", "frechet"):
            if self.alpha is None:
                raise ValueError(f"The {self.name} family needs a shape parameter `alpha`.")
            alpha = float(self.alpha)
            if self.name == "weibull" and not (alpha > 0 and np.isfinite(alpha)):
                raise ValueError(f"`alpha` of the weibull family must be > 0; got {self.alpha!r}.")
            if self.name == "frechet" and not 0 < alpha < 1:
                raise ValueError(
                    f"`alpha` of the frechet family must lie in (0, 1); got {self.alpha!r}."
                )
            object.__setattr__(self, "alpha", alpha)
        elif self.alpha is not None:
            raise ValueError(f"The {self.name} family takes no `alpha`; got {self.alpha!r}.")

    def solve(self, logits: tf.Tensor, uniforms: tf.Tensor) -> PerturbAndMap:
        """Perturbs `logits` [..., K] with noise made from `uniforms` (same shape, in (0, 1))."""
        # log of standard exponential noise, log(-log U): finite for U in [tiny, 1).
        log_exp_noise = tf.math.log(-tf.math.log(uniforms))
        if self.name == "gumbel":
            perturbed = logits - log_exp_noise  # φ + G with G = -log(-log U) ~ Gumbel(0, 1)
            y = tf.reduce_max(perturbed, axis=-1)
            return PerturbAndMap(_argmax(perturbed), y, y)
        if self.name == "exponential":
            log_t = log_exp_noise - logits  # log(E / p̃)
            log_min = tf.reduce_min(log_t, axis=-1)
            return PerturbAndMap(_argmin(log_t), tf.exp(log_min), -log_min)
        if self.name == "weibull":
            alpha = tf.constant(self.alpha, logits.dtype)
            log_noise = alpha * log_exp_noise  # log W, W = E^α ~ Weibull(shape 1/α)
            log_perturbed = log_noise - alpha * logits  # log(W p̃^{-α})
            log_min = tf.reduce_min(log_perturbed, axis=-1)
            return PerturbAndMap(_argmin(log_perturbed), tf.exp(log_min), -log_min / alpha)
        if self.name == "frechet":
            alpha = tf.constant(self.alpha, logits.dtype)
            log_noise = -alpha * log_exp_noise  # log F, F = E^{-α} ~ Fréchet(shape 1/α)
            log_perturbed = log_noise + alpha * logits  # log(F p̃^{α})
            log_max = tf.reduce_max(log_perturbed, axis=-1)
            return PerturbAndMap(_argmax(log_perturbed), tf.exp(log_max), log_max / alpha)
        # pareto: P_k = U_k^{-1/p̃_k}; compare log log P_k = log(-log U_k) - φ_k (monotone in P_k).
        log_log_p = log_exp_noise - logits
        log_log_min = tf.reduce_min(log_log_p, axis=-1)
        return PerturbAndMap(_argmin(log_log_p), tf.exp(tf.exp(log_log_min)), -log_log_min)


def family(name: str | Family, alpha: float | None = None) -> Family:
    """The family called `name` (`FAMILIES`), with shape `alpha` for weibull and frechet."""
    if isinstance(name, Family):
        if alpha is not None:
            raise ValueError("Pass `alpha` inside the Family, not next to it.")
        return name
    return Family(name, alpha)


def stateless_seed(seed) -> tf.Tensor:
    """A stateless seed pair: an int gives the same pair every time, a pair passes through.

    (TFP's `sanitize_seed` turns an int into a pair with a stateful op, so the same int gives
    different pairs on different calls in eager mode; `None` still means "fresh randomness".)
    """
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return tf.constant([int(seed) % 2**31, 0x5EED], tf.int32)
    return tfp.random.sanitize_seed(seed)


def uniform_noise(shape, seed, dtype=tf.float32) -> tf.Tensor:
    """Stateless Uniform[tiny, 1) noise, the source of every family's perturbation."""
    tiny = np.finfo(np.dtype(tf.as_dtype(dtype).as_numpy_dtype)).tiny
    return tf.random.stateless_uniform(
        shape, seed=stateless_seed(seed), minval=tiny, maxval=1.0, dtype=dtype, alg=RNG_ALGORITHM
    )


def perturb_and_map(
    logits,
    family_name: str | Family = "gumbel",
    *,
    sample_shape=(),
    seed=None,
    alpha: float | None = None,
) -> PerturbAndMap:
    """Exact categorical draws from softmax(`logits`) by perturb-and-MAP under one family.

    Args:
      logits: log-potentials φ `[..., K]` (any offset: Z = Σ_k e^{φ_k} need not be 1).
      family_name: a name from `FAMILIES` or a `Family`.
      sample_shape: leading shape of independent draws.
      seed: stateless seed (shape [2] ints, or an int: the same int gives the same draws).
      alpha: shape parameter of the weibull / frechet family.

    Returns:
      `PerturbAndMap(sample, value, gumbel_value)`, each of shape `sample_shape + batch`.
    """
    fam = family(family_name, alpha)
    logits = logits if tf.is_tensor(logits) else tf.convert_to_tensor(np.asarray(logits))
    if not logits.dtype.is_floating:
        raise ValueError(f"`logits` must be floating point; got {logits.dtype.name}.")
    if logits.shape.rank == 0:
        raise ValueError("`logits` must have a category axis (shape [..., K]).")
    shape = tf.concat([tf.cast(sample_shape, tf.int32), tf.shape(logits)], axis=0)
    uniforms = uniform_noise(shape, seed, logits.dtype)
    return fam.solve(logits, uniforms)


def _argmax(x: tf.Tensor) -> tf.Tensor:
    return tf.argmax(x, axis=-1, output_type=tf.int32)


def _argmin(x: tf.Tensor) -> tf.Tensor:
    return tf.argmin(x, axis=-1, output_type=tf.int32)
