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

With a continuous latent z next to d (JointVAE-style mixed latents, `mixed_loglik_estimates`), the
proposal is `q(d | x) N(z; μ(x), diag σ(x)²)` and the prior `p(d) N(z; 0, I)`: both densities enter
the weight. `cluster_accuracy` scores a discrete latent as an unsupervised classifier (clusters
matched one-to-one to labels by an exact assignment, the Hungarian algorithm).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from igr_tf._ops import RNG_ALGORITHM

__all__ = [
    "categorical_kl",
    "cluster_accuracy",
    "importance_sampled_loglik",
    "log_mean_exp",
    "loglik_estimates",
    "match_clusters",
    "mixed_loglik_estimates",
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


# --- mixed continuous + discrete latents ----------------------------------------------------------
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mixed_loglik_estimates(
    log_likelihood: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    q_log_probs: tf.Tensor,
    loc: tf.Tensor,
    scale: tf.Tensor,
    num_samples: int = 100,
    prior_log_probs: tf.Tensor | None = None,
    seed=(0, 0),
    chunk_size: int = 100,
) -> dict[str, tf.Tensor]:
    """Importance-sampled bound for a model with one-hot latents d and Gaussian latents z.

    ```none
    log p(x) ≥ E[ log (1/S) Σ_s p(x | d_s, z_s) p(d_s) N(z_s; 0, I) / (q(d_s | x) N(z_s; μ, σ²)) ]
    d_s ~ q(d | x) one-hot (as `loglik_estimates`),  z_s = μ + σ ε_s, ε_s ~ N(0, I), independent
    ```

    The d draws are those `loglik_estimates` makes with the same `seed` (z's noise comes from
    `fold_in(seed, 1)`), so a decoder that ignores z gives the discrete-only bound up to the
    Monte Carlo error of the z weights `N(z; 0, I) / N(z; μ, σ²)` (mean 1 under q).

    Args:
      log_likelihood: `(d [N, B, V, K], z [N, B, D]) -> log p(x | d, z)` `[N, B]`.
      q_log_probs: `[B, V, K]`, the discrete proposal; loc, scale: `[B, D]`, the Gaussian one.
      num_samples, prior_log_probs, seed, chunk_size: as for `importance_sampled_loglik`.

    Returns {"loglik": the bound's estimate, "loglik_original_formula":
    `logmeanexp_s log p(x | d_s, z_s) − KL_d − KL_z` (not a bound; for comparison)}, each `[B]`.
    """
    seed = tf.convert_to_tensor(seed, tf.int32)
    d = _sample_one_hot(q_log_probs, num_samples, seed)
    z_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    shape = tf.concat([[num_samples], tf.shape(loc)], 0)
    eps = tf.random.stateless_normal(shape, seed=z_seed, dtype=loc.dtype, alg=RNG_ALGORITHM)
    z = loc + scale * eps  # [S, B, D]
    log_lik = tf.concat(
        [
            log_likelihood(d[i : i + chunk_size], z[i : i + chunk_size])
            for i in range(0, num_samples, chunk_size)
        ],
        0,
    )
    log_q = tf.reduce_sum(d * q_log_probs, axis=[-2, -1]) + tf.reduce_sum(
        -0.5 * tf.square(eps) - tf.math.log(scale) - _HALF_LOG_2PI, -1
    )
    log_p = _log_prior(d, q_log_probs, prior_log_probs) + tf.reduce_sum(
        -0.5 * tf.square(z) - _HALF_LOG_2PI, -1
    )
    if prior_log_probs is None:
        k = q_log_probs.shape[-1]
        prior_log_probs = tf.fill(tf.shape(q_log_probs), -tf.math.log(tf.cast(k, d.dtype)))
    gaussian_kl = 0.5 * tf.reduce_sum(
        tf.square(loc) + tf.square(scale) - 1.0 - 2.0 * tf.math.log(scale), -1
    )
    return {
        "loglik": log_mean_exp(log_lik + log_p - log_q, axis=0),
        "loglik_original_formula": log_mean_exp(log_lik, axis=0)
        - categorical_kl(q_log_probs, prior_log_probs)
        - gaussian_kl,
    }


# --- unsupervised classification accuracy ---------------------------------------------------------
def _min_cost_assignment(cost: np.ndarray) -> np.ndarray:
    """Exact minimum-cost perfect matching of a square cost matrix (the Hungarian algorithm with
    row and column potentials, O(n³)): `col[i]` is the column given to row i."""
    n = cost.shape[0]
    u = np.zeros(n + 1)  # row potentials (1-based; index 0 is the virtual start)
    v = np.zeros(n + 1)  # column potentials
    owner = np.zeros(n + 1, dtype=np.int64)  # owner[j]: the row matched to column j (0: none)
    way = np.zeros(n + 1, dtype=np.int64)
    for row in range(1, n + 1):
        owner[0] = row
        j0 = 0
        min_slack = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:  # grow an alternating tree until it reaches a free column
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            slack = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (slack < min_slack[1:])
            min_slack[1:][better] = slack[better]
            way[1:][better] = j0
            candidates = np.where(free, min_slack[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            min_slack[~used] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    col = np.empty(n, dtype=np.int64)
    col[owner[1:] - 1] = np.arange(n)
    return col


def _check_labels(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D array; got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        raise ValueError(f"`{name}` must hold integers ≥ 0; got dtype {array.dtype}.")
    return array.astype(np.int64)


def match_clusters(labels, clusters) -> dict[int, int]:
    """The one-to-one map cluster → label that maximizes the number of agreeing examples.

    Exact (Hungarian algorithm on the confusion matrix, padded square with zero counts): every
    cluster that holds an example gets at most one label and every label at most one cluster;
    with more clusters than labels, some clusters get no label (absent from the map).
    """
    labels, clusters = _check_labels(labels, "labels"), _check_labels(clusters, "clusters")
    if labels.shape != clusters.shape:
        raise ValueError(
            f"`labels` and `clusters` must have the same length; got {labels.size} and "
            f"{clusters.size}."
        )
    n = int(max(labels.max(), clusters.max())) + 1
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (clusters, labels), 1)
    col = _min_cost_assignment((counts.max() - counts).astype(np.float64))
    used_clusters, used_labels = set(clusters.tolist()), set(labels.tolist())
    return {
        int(c): int(col[c]) for c in range(n) if c in used_clusters and int(col[c]) in used_labels
    }


def cluster_accuracy(labels, clusters) -> float:
    """Unsupervised classification accuracy: the fraction of examples whose cluster's matched
    label (`match_clusters`, the best one-to-one map) is their label."""
    mapping = match_clusters(labels, clusters)
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    hits = sum(int(np.sum((clusters == c) & (labels == y))) for c, y in mapping.items())
    return hits / labels.size
