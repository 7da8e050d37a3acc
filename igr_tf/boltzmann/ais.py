"""Annealed importance sampling (AIS) estimate of an RBM's log-partition function.

Salakhutdinov & Murray (2008), "On the quantitative analysis of deep belief networks": anneal from
a tractable base RBM to the target through intermediate RBMs, with one group summed out
analytically. Here the base is the target's own biases with the couplings switched off, and the
intermediate RBMs scale the couplings: `E_β = −aᵀz1 − bᵀz2 − β z1ᵀWz2`, `0 = β_0 < … < β_K = 1`.
With `f_β(z1) = Σ_{z2} exp(−E_β) = exp(aᵀz1) Π_j (1 + exp(b_j + β (Wᵀz1)_j))`:

```none
z1 ~ p_0 = Bernoulli(σ(a)),     log Z_0 = Σ softplus(a) + Σ softplus(b)
for k = 1..K:  log w += log f_{β_k}(z1) − log f_{β_{k−1}}(z1);  z1 ← Gibbs sweep at β_k
log Ẑ = log Z_0 + log (1/M) Σ_m w_m                       (M independent runs)
```

`Ẑ` is unbiased for `Z` (so `log Ẑ` is, on average, slightly low: Jensen). Its standard error is
the delta-method one, `se(log Ẑ) ≈ sd(w) / (√M · mean(w))`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from igr_tf._checks import check_positive_int
from igr_tf.boltzmann import sampling
from igr_tf.boltzmann.rbm import RBMParams, factorial_log_partition

__all__ = ["AISResult", "ais_log_partition", "linear_betas"]


class AISResult(NamedTuple):
    """`log_z`: the AIS estimate; `stderr`: its standard error; `log_weights` `[M]`."""

    log_z: tf.Tensor
    stderr: tf.Tensor
    log_weights: tf.Tensor


def linear_betas(num_betas: int) -> np.ndarray:
    """`num_betas + 1` equally spaced coupling scales from 0 to 1."""
    return np.linspace(0.0, 1.0, check_positive_int(num_betas, "num_betas") + 1)


def _softplus_sum(logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.math.softplus(logits), axis=-1)


def ais_log_partition(
    params: RBMParams,
    num_chains: int = 100,
    num_betas: int = 1000,
    seed=(0, 0),
    betas=None,
) -> AISResult:
    """AIS estimate of `log Z` with `num_chains` independent runs over `num_betas` steps.

    Args:
      params: the RBM (`RBMParams`).
      num_chains: M, independent annealing runs (their spread gives the standard error).
      num_betas: K, intermediate distributions (linear in β) when `betas` is not given.
      seed: stateless seed (shape [2] ints); the result is a deterministic function of it.
      betas: optional increasing schedule from 0 to 1 (overrides `num_betas`).

    Returns:
      `AISResult(log_z, stderr, log_weights)`.
    """
    num_chains = check_positive_int(num_chains, "num_chains")
    schedule = linear_betas(num_betas) if betas is None else np.asarray(betas, np.float64)
    if (
        schedule.ndim != 1
        or len(schedule) < 2
        or schedule[0] != 0.0
        or schedule[-1] != 1.0
        or np.any(np.diff(schedule) <= 0)
    ):
        raise ValueError("`betas` must increase strictly from 0 to 1 (at least two values).")
    dtype = params.bias1.dtype
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    init_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    log_weights = _anneal(params, tf.constant(schedule, dtype), num_chains, init_seed, chain_seed)
    log_z = (
        factorial_log_partition(params) + tf.reduce_logsumexp(log_weights) - math.log(num_chains)
    )
    # Delta method on the normalized weights (their max is 1, so nothing overflows).
    w = tf.exp(log_weights - tf.reduce_max(log_weights))
    mean = tf.reduce_mean(w)
    var = tf.reduce_sum(tf.square(w - mean)) / max(num_chains - 1, 1)
    stderr = tf.sqrt(var / num_chains) / mean
    return AISResult(log_z, stderr, log_weights)


# No autograph: the loop is an explicit tf.while_loop, and converting the code costs more
# than the rest of the trace.
@tf.function(reduce_retracing=True, autograph=False)
def _anneal(params, betas, num_chains, init_seed, chain_seed):
    z1 = sampling.initial_state(num_chains, params, init_seed)
    num_steps = tf.shape(betas)[0] - 1
    # f_β(z1) / f_β'(z1) only involves Σ_j softplus(b_j + β (Wᵀz1)_j): the aᵀz1 terms cancel.
    coupled = tf.einsum("ci,ij->cj", z1, params.coupling)  # Wᵀz1, kept up to date with z1

    def body(k, z1, coupled, log_w):
        b = params.bias2
        increment = _softplus_sum(b + betas[k] * coupled) - _softplus_sum(
            b + betas[k - 1] * coupled
        )
        log_w = log_w + increment
        step_seed = tf.random.experimental.stateless_fold_in(chain_seed, k)
        z1, _ = sampling.gibbs_sweep(z1, params, step_seed, beta=betas[k])
        return k + 1, z1, tf.einsum("ci,ij->cj", z1, params.coupling), log_w

    log_w0 = tf.zeros([num_chains], betas.dtype)
    _, _, _, log_w = tf.while_loop(
        lambda k, *_: k <= num_steps, body, (tf.constant(1), z1, coupled, log_w0)
    )
    return log_w
