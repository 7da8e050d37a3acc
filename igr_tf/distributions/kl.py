"""KL divergences and log-densities used by the relaxations, all in log space."""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = ["exp_concrete_log_prob", "gaussian_kl", "gaussian_log_prob"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_kl(loc, scale, prior_loc, prior_scale) -> tf.Tensor:
    """Elementwise `KL(N(loc, scale²) ‖ N(prior_loc, prior_scale²))` (sum over axes yourself).

    ```none
    KL = ½ [ (σ/σ0)² - 1 + ((μ - μ0)/σ0)² ] + log σ0 - log σ
    ```
    """
    ratio = scale / prior_scale
    mahalanobis = tf.square((loc - prior_loc) / prior_scale)
    return 0.5 * (tf.square(ratio) - 1.0 + mahalanobis) - tf.math.log(ratio)


def gaussian_log_prob(x, loc, scale) -> tf.Tensor:
    """Elementwise `log N(x; loc, scale²)`."""
    return -0.5 * tf.square((x - loc) / scale) - tf.math.log(scale) - _HALF_LOG_2PI


def exp_concrete_log_prob(y, logits, temperature) -> tf.Tensor:
    """Log density of the ExpConcrete (log Gumbel-Softmax) distribution at `y = log ψ`.

    ```none
    log p(y) = log Γ(K) + (K-1) log τ + Σ_k (log α_k - τ y_k) - K · LSE_k(log α_k - τ y_k)
    ```
    (Maddison et al. 2017, eq. 26). `logits` are unnormalised `log α`; shapes `[..., K]`. Evaluating
    it on `y` (never on an underflowed `ψ = exp(y)`) keeps it finite at τ = 0.01.
    """
    k = tf.cast(tf.shape(y)[-1], y.dtype)
    logits = logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
    terms = logits - temperature * y
    return (
        tf.math.lgamma(k)
        + (k - 1.0) * tf.math.log(temperature)
        + tf.reduce_sum(terms, axis=-1)
        - k * tf.reduce_logsumexp(terms, axis=-1)
    )
