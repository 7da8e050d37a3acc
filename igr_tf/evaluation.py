"""Evaluation math for discrete latent variable models: importance-sampled log-likelihoods.

For a model `p(x, d) = p(d) p(x | d)` over one-hot latents `d` (V variables, K categories) and a
proposal `q(d | x) = Π_v Cat(d_v; π_v(x))` (the categorical the relaxation induces):

```none
log p(x) ≥ E_q[ log (1/S) Σ_s p(x | d_s) p(d_s) / q(d_s | x) ],   d_s ~ q(d | x)   (IWAE bound)
```

The bound holds for any proposal with full support, so where `q` is only a Monte Carlo estimate
(IGR-SB, IGR-Planar) it is still a valid bound, just a looser one. The original IGR code reported
`mean_s[...]`-style `logmeanexp_s log p(x | d_s) - KL(q ‖ p)`, which is not a bound and can exceed
`log p(x)`; `original_loglik` computes that quantity, under its own name, for comparison only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

__all__ = [
    "categorical_kl",
    "importance_sampled_loglik",
    "log_mean_exp",
    "loglik_estimates",
    "original_loglik",
    "uniform_log_prior",
]


def log_mean_exp(x: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """`log mean exp(x)` along `axis`, stably."""
    n = tf.cast(tf.shape(x)[axis], x.dtype)
    return tf.reduce_logsumexp(x, axis=axis) - tf.math.log(n)


def uniform_log_prior(num_vars: int, num_categories: int) -> float:
    """`log p(d) = -V log K` for V independent uniform categoricals (every IGR/GS prior here)."""
    return -num_vars * math.log(num_categories)


def categorical_kl(q_log_probs: tf.Tensor, p_log_probs: tf.Tensor) -> tf.Tensor:
    """`Σ_v Σ_k q log(q/p)` for per-variable categoricals `[..., V, K]` -> `[...]`."""
    q = tf.exp(q_log_probs)
    return tf.reduce_sum(q * (q_log_probs - p_log_probs), axis=[-2, -1])


def _sample_one_hot(q_log_probs: tf.Tensor, num_samples: int, seed) -> tf.Tensor:
    """`num_samples` one-hot draws `[S, B, V, K]` from per-variable categoricals `[B, V, K]`."""
    shape = tf.shape(q_log_probs)
    flat = tf.reshape(q_log_probs, [-1, shape[-1]])
    idx = tf.random.stateless_categorical(flat, num_samples, seed=seed)  # [B*V, S]
    idx = tf.reshape(tf.transpose(idx), tf.concat([[num_samples], shape[:-1]], 0))
    return tf.one_hot(idx, shape[-1], dtype=q_log_probs.dtype)


def _decode(log_likelihood, q_log_probs, num_samples, seed, chunk_size):
    """Draws S one-hot latents from q and decodes them in chunks: (d, log p(x|d) [S, B])."""
    d = _sample_one_hot(q_log_probs, num_samples, seed)
    log_lik = tf.concat(
        [log_likelihood(d[i : i + chunk_size]) for i in range(0, num_samples, chunk_size)], 0
    )
    return d, log_lik


def _log_prior(d, q_log_probs, prior_log_probs):
    if prior_log_probs is None:
        v, k = q_log_probs.shape[-2], q_log_probs.shape[-1]
        return tf.fill(tf.shape(d)[:2], tf.constant(uniform_log_prior(v, k), d.dtype))
    return tf.reduce_sum(d * prior_log_probs, axis=[-2, -1])


def loglik_estimates(
    log_likelihood: Callable[[tf.Tensor], tf.Tensor],
    q_log_probs: tf.Tensor,
    num_samples: int = 100,
    prior_log_probs: tf.Tensor | None = None,
    seed=(0, 0),
    chunk_size: int = 100,
) -> dict[str, tf.Tensor]:
    """Both estimates from ONE set of S decoded latents (the decoding is the expensive part).

    Returns {"loglik": importance_sampled_loglik, "loglik_original_formula": original_loglik},
    each `[B]`; arguments as for `importance_sampled_loglik`.
    """
    d, log_lik = _decode(log_likelihood, q_log_probs, num_samples, seed, chunk_size)
    log_q = tf.reduce_sum(d * q_log_probs, axis=[-2, -1])  # [S, B]
    log_p = _log_prior(d, q_log_probs, prior_log_probs)
    if prior_log_probs is None:
        k = q_log_probs.shape[-1]
        prior_log_probs = tf.fill(tf.shape(q_log_probs), -tf.math.log(tf.cast(k, d.dtype)))
    return {
        "loglik": log_mean_exp(log_lik + log_p - log_q, axis=0),
        "loglik_original_formula": log_mean_exp(log_lik, axis=0)
        - categorical_kl(q_log_probs, prior_log_probs),
    }


def importance_sampled_loglik(
    log_likelihood: Callable[[tf.Tensor], tf.Tensor],
    q_log_probs: tf.Tensor,
    num_samples: int = 100,
    prior_log_probs: tf.Tensor | None = None,
    seed=(0, 0),
    chunk_size: int = 100,
) -> tf.Tensor:
    """Importance-sampled lower bound on `log p(x)` per example, `[B]`.

    Args:
      log_likelihood: maps one-hot latents `[N, B, V, K]` to `log p(x | d)` `[N, B]` (the
        decoder's log-likelihood of the batch's own x).
      q_log_probs: proposal log pmf `[B, V, K]` (the encoder's induced categorical).
      num_samples: S, the number of importance samples.
      prior_log_probs: prior log pmf `[V, K]` or `[B, V, K]`; uniform when None.
      seed: stateless seed (shape [2] ints).
      chunk_size: latents decoded at a time (bounds memory for large S).
    """
    return loglik_estimates(
        log_likelihood, q_log_probs, num_samples, prior_log_probs, seed, chunk_size
    )["loglik"]


def original_loglik(
    log_likelihood: Callable[[tf.Tensor], tf.Tensor],
    q_log_probs: tf.Tensor,
    num_samples: int = 100,
    prior_log_probs: tf.Tensor | None = None,
    seed=(0, 0),
    chunk_size: int = 100,
) -> tf.Tensor:
    """The original IGR code's "log-likelihood": `logmeanexp_s log p(x|d_s) - KL(q ‖ p)`, `[B]`.

    Not a bound on `log p(x)` (it can exceed it); reported only to compare with published numbers
    produced by that code.
    """
    return loglik_estimates(
        log_likelihood, q_log_probs, num_samples, prior_log_probs, seed, chunk_size
    )["loglik_original_formula"]
