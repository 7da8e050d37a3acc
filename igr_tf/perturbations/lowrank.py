"""Low-rank (unary) perturbations of a discrete model: bounds on log Z and a sequential sampler.

Perturbing every configuration x of an n-variable model independently (the full-rank Gumbel
trick) needs K^n noise values. Low-rank perturbations add one Gumbel per variable and value,
Σ_i G_i(x_i), so a perturbed model is still a model of the same structure and any MAP solver
applies; the price is that the MAP value Y = max_x {φ(x) + Σ_i G_i(x_i)} no longer has a Gumbel
law, and the estimators become bounds. G_i(k) are standard Gumbel(0, 1) here (mean γ).

**Upper bounds U(α)** (Hazan & Jaakkola 2012 at α = 0; the Weibull/Fréchet family of Balog et al.
2017 for α ≠ 0):

    U(α) = n log Γ(1+α)/α − (1/α) log E[e^{-αY}],  α ∈ (−1, 0) ∪ (0, ∞);   U(0) = E[Y] − nγ,

and U(α) ≥ log Z. Proof by induction on n (n = 1: equality, the full-rank identity
E e^{-αY} = Γ(1+α) Z^{-α}). Condition on every perturbation but variable 1's: the max over x_1
of G_1(x_1) + W(x_1), W(x_1) = max_{x_rest}{φ + Σ_{i>1} G_i}, is a full-rank Gumbel trick, so
E[e^{-αY} | rest] = Γ(1+α) (Σ_{x_1} e^{W(x_1)})^{-α}. The power mean ‖X‖_p = (E X^p)^{1/p} with
p = −α < 1 is superadditive on positive variables (reverse Minkowski), hence
‖Σ_{x_1} e^{W(x_1)}‖_p ≥ Σ_{x_1} ‖e^{W(x_1)}‖_p, and each term is the (n−1)-variable bound of the
model with x_1 clamped. The same step shows the bounds are *self-reducible*:
e^{U(prefix)} ≥ Σ_v e^{U(prefix, v)}, which is what the sequential sampler needs.

**Lower bounds L(α)** (Hazan, Maji & Jaakkola 2013 at α = 0; derived here for α ≠ 0): with
perturbations scaled by 1/n, Y' = max_x {φ(x) + (1/n) Σ_i G_i(x_i)},

    L(α) = (n/α) log Γ(1 + α/n) − (1/α) log E[e^{-αY'}],  α > −n;   L(0) = E[Y'] − γ,

and L(α) ≤ (1/n) Σ_i log Z_i ≤ log Z, where Z_i = Σ_{x_i} exp(max_{x_{−i}} φ(x)). Proof: Y' ≤
(1/n) Σ_i Y_i with Y_i = max_x{φ(x) + G_i(x_i)} ~ Gumbel(log Z_i) independent across i; for
α > 0, E e^{-αY'} ≥ Π_i E e^{-(α/n) Y_i} = Π_i Γ(1+α/n) Z_i^{-α/n}; for α < 0 the inequalities
flip together. Because L(α) never exceeds (1/n) Σ_i log Z_i, the deterministic bound
`max_marginal_lower_bound` = max_i log Z_i (n·K MAP calls, no noise) is always at least as tight.

**Sequential sampler** (Hazan, Maji & Jaakkola 2013, with any U(α)): sample x_1, x_2, … in turn;
at step i pick value v with probability exp(U(x_{<i}, v) − U(x_{<i})) and stop (reject) with the
remaining probability. Self-reducibility makes these valid probabilities; the product telescopes
to e^{φ(x) − U(∅)}, so an accepted sample is an exact draw from the Gibbs distribution, and the
acceptance rate is Z e^{-U(∅)}. With U estimated by Monte Carlo the telescoping still holds
exactly (each step reuses the previous step's estimate), so the law of accepted samples stays
exact unless an estimate breaks self-reducibility at some visited prefix (the probabilities of a
step would sum above 1). The sampler counts such steps (`clipped`); samples from chains with no
clipped step are exact. The estimates integrate the last variable's perturbation exactly
(a Rao–Blackwellisation, so U is exact once a single variable is left free).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf._checks import check_positive_int
from igr_tf._ops import RNG_ALGORITHM
from igr_tf.perturbations.estimators import (
    as_float_tensor,
    certainty_equivalent,
    log_gamma_ratio,
    log_mean_exp,
    log_z,
)
from igr_tf.perturbations.families import stateless_seed
from igr_tf.perturbations.grid import GridModel

__all__ = [
    "Bound",
    "SequentialSamples",
    "log_mean_exp_standard_error",
    "lower_bound",
    "max_marginal_lower_bound",
    "sequential_sample",
    "unary_perturbed_map_values",
    "upper_bound",
]


_MAX_CHUNK_ELEMENTS = 2**24  # transfer-matrix messages held at once by one MAP batch


class Bound(NamedTuple):
    """A Monte Carlo estimate of a bound on log Z and its standard error (delta method)."""

    estimate: tf.Tensor
    standard_error: tf.Tensor


class SequentialSamples(NamedTuple):
    """Output of `sequential_sample` for `num_chains` independent attempts.

    Attributes:
      samples: `[num_chains, H, W]` int32 configurations (meaningful where `accepted`).
      accepted: `[num_chains]` bool: the chain was not rejected at any step.
      clipped: `[num_chains]` bool: some step's estimated probabilities summed above 1 (that
        chain's sample is not guaranteed exact; it is still returned, renormalised).
      log_upper: the estimate of U(∅) the chains started from.
    """

    samples: tf.Tensor
    accepted: tf.Tensor
    clipped: tf.Tensor
    log_upper: tf.Tensor


def _gumbel(shape, seed, dtype) -> tf.Tensor:
    tiny = np.finfo(np.dtype(dtype.as_numpy_dtype)).tiny
    u = tf.random.stateless_uniform(
        shape, seed=seed, minval=tiny, maxval=1.0, dtype=dtype, alg=RNG_ALGORITHM
    )
    return -tf.math.log(-tf.math.log(u))


def unary_perturbed_map_values(
    model: GridModel, num_samples: int, *, seed=0, scale: float = 1.0, clamp=None
) -> tf.Tensor:
    """[num_samples, ...]: max_x {φ(x) + scale · Σ_i G_i(x_i)}, G_i(k) iid standard Gumbel.

    Clamped variables (`clamp` ≥ 0) are not perturbed. `scale` = 1 gives the upper-bound family,
    1/n the lower-bound family. The MAP solves run in chunks of samples (bounded memory).
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    seed = stateless_seed(seed)
    batch = [] if clamp is None else list(np.shape(clamp)[:-2])
    shape = [num_samples, *batch, model.height, model.width, model.num_states]
    noise = scale * _gumbel(shape, seed, model.dtype)
    if clamp is not None:
        free = tf.cast(tf.convert_to_tensor(clamp) < 0, model.dtype)[..., None]
        noise *= free
    states = model.num_states**model.height
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (states * states * max(1, int(np.prod(batch)))))
    if num_samples <= chunk:
        return model.map_value(noise, clamp=clamp)
    parts = [
        model.map_value(noise[start : start + chunk], clamp=clamp)
        for start in range(0, num_samples, chunk)
    ]
    return tf.concat(parts, axis=0)


def _alpha(alpha: float, lower: float) -> float:
    alpha = float(alpha)
    if not (alpha > lower and math.isfinite(alpha)):
        raise ValueError(f"`alpha` must be a finite number > {lower}; got {alpha!r}.")
    return alpha


def log_mean_exp_standard_error(values, alpha: float) -> tf.Tensor:
    """Delta-method standard error of −(1/α) log mean e^{-α v} (sd(v)/√M at α = 0), axis 0."""
    values = as_float_tensor(values)
    m = tf.cast(tf.shape(values)[0], values.dtype)
    if alpha == 0:
        return tf.math.reduce_std(values, axis=0) / tf.sqrt(m)
    a = tf.constant(alpha, values.dtype)
    shifted = -a * (values - tf.reduce_mean(values, axis=0))
    log_mean = log_mean_exp(shifted)
    log_second = log_mean_exp(2.0 * shifted)
    rel_var = tf.maximum(tf.math.expm1(log_second - 2.0 * log_mean), 0.0)  # Var X / (E X)²
    return tf.sqrt(rel_var / m) / abs(alpha)


def upper_bound(model: GridModel, alpha: float = 0.0, *, num_samples: int = 1000, seed=0) -> Bound:
    """Monte Carlo estimate of U(α) ≥ log Z from `num_samples` unary-perturbed MAP values.

    α > −1 (α > −1/2 for a finite-variance estimate). The estimate itself is a consistent,
    slightly biased estimate of the bound (log of a mean); compare it with log Z up to its
    standard error.
    """
    alpha = _alpha(alpha, -1.0)
    y = unary_perturbed_map_values(model, num_samples, seed=seed)
    estimate = log_z(y, alpha, num_variables=model.num_variables)
    return Bound(estimate, log_mean_exp_standard_error(y, alpha))


def lower_bound(model: GridModel, alpha: float = 0.0, *, num_samples: int = 1000, seed=0) -> Bound:
    """Monte Carlo estimate of L(α) ≤ log Z, perturbations scaled by 1/n (α > −n)."""
    n = model.num_variables
    alpha = _alpha(alpha, -float(n))
    y = unary_perturbed_map_values(model, num_samples, seed=seed, scale=1.0 / n)
    # (n/α) log Γ(1 + α/n) = log Γ(1+β)/β with β = α/n; −γ at α = 0.
    estimate = log_gamma_ratio(alpha / n) + certainty_equivalent(y, alpha)
    return Bound(estimate, log_mean_exp_standard_error(y, alpha))


def max_marginal_lower_bound(model: GridModel) -> tf.Tensor:
    """max_i log Σ_{x_i} exp(max_{x_{−i}} φ(x)) ≤ log Z: deterministic, n·K MAP calls."""
    h, w, k = model.height, model.width, model.num_states
    clamps = -np.ones([h * w, k, h, w], np.int32)
    for i in range(h * w):
        clamps[i, :, i // w, i % w] = np.arange(k)
    per_value = model.map_value(clamp=clamps)  # [n, K]
    return tf.reduce_max(tf.reduce_logsumexp(per_value, axis=-1))


def _rao_blackwell_upper(
    model: GridModel, alpha: float, clamp, free_count: int, noise: tf.Tensor
) -> tf.Tensor:
    """Estimate of U(α) for clamped sub-models whose free variables are the last `free_count`.

    The last variable's perturbation is integrated exactly: E[e^{-αY}] =
    Γ(1+α) E[exp(−α log Σ_v e^{W_v})], W_v the perturbed MAP value with the last variable at v;
    the other free variables take their perturbations from `noise` `[S, H, W, K]` (the same draws
    for every sub-model: common random numbers). With one free variable the estimate is exact,
    log Σ_v e^{φ(…, v)}; with none it is φ(x).
    """
    h, w, k = model.height, model.width, model.num_states
    clamp = tf.convert_to_tensor(clamp, tf.int32)  # [B, H, W], the last variable free
    if free_count == 0:
        return model.map_value(clamp=clamp)
    last = tf.reshape(tf.one_hot(h * w - 1, h * w, on_value=True, off_value=False), [h, w])
    values = tf.reshape(tf.range(k, dtype=tf.int32), [k, 1, 1])
    extended = tf.where(last, values, clamp[:, None])  # [B, K, H, W]
    if free_count == 1:
        return tf.reduce_logsumexp(model.map_value(clamp=extended), axis=-1)
    free = tf.cast(extended < 0, model.dtype)[..., None]  # [B, K, H, W, 1]
    per_value = model.map_value(noise[:, None, None] * free, clamp=extended)  # [S, B, K]
    return log_z(tf.reduce_logsumexp(per_value, axis=-1), alpha, num_variables=free_count - 1)


def sequential_sample(
    model: GridModel,
    alpha: float = 0.0,
    *,
    num_chains: int = 1000,
    num_samples: int = 2000,
    margin: float = 0.1,
    seed=0,
) -> SequentialSamples:
    """Exact Gibbs samples by the sequential sampler with upper bounds U(α) (raster order).

    Each of `num_chains` independent chains samples the variables in raster order and is
    rejected at a step with the probability the bounds leave over (see the module docstring).
    The bounds are one deterministic function of the prefix for the whole call: Monte Carlo
    estimates from the same `num_samples` perturbations for every prefix (common random
    numbers, computed once per distinct prefix), plus `margin` nats per free variable. The
    margin absorbs estimation error in the self-reducibility inequalities (it raises every
    parent over its children by `margin`); the telescoping, hence exactness, holds for any
    values used consistently. Acceptance rate: Z e^{-Ũ(∅)} with Ũ(∅) ≈ U(α) + n·margin.
    Accepted chains with no clipped step are exact draws from p(x) = e^{φ(x)}/Z.
    """
    alpha = _alpha(alpha, -1.0)
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"`margin` must be a finite number >= 0; got {margin!r}.")
    num_chains = check_positive_int(num_chains, "num_chains")
    num_samples = check_positive_int(num_samples, "num_samples")
    h, w, k = model.height, model.width, model.num_states
    n = h * w
    if n * math.log2(k) > 62:
        raise ValueError(
            f"The sequential sampler encodes prefixes in 62 bits: {n} variables are too many."
        )
    seeds = tfp.random.split_seed(stateless_seed(seed), n=n + 1)
    noise = _gumbel([num_samples, h, w, k], seeds[0], model.dtype)
    dtype = model.dtype

    def bound(clamps, free_count):
        estimate = _rao_blackwell_upper(model, alpha, clamps, free_count, noise)
        return estimate + margin * free_count

    clamp = -tf.ones([num_chains, h, w], tf.int32)
    log_upper0 = bound(clamp[:1], n)[0]
    log_prev = tf.fill([num_chains], log_upper0)
    accepted = tf.ones([num_chains], tf.bool)
    clipped = tf.zeros([num_chains], tf.bool)
    code = tf.zeros([num_chains], tf.int64)  # the prefix as a base-K number
    values = tf.reshape(tf.range(k, dtype=tf.int32), [1, k, 1, 1])
    for i in range(n):
        here = tf.reshape(tf.one_hot(i, n, on_value=True, off_value=False), [h, w])
        # One bound per distinct prefix, shared by the chains that reached it.
        unique_codes, index = tf.unique(code)
        first = tf.math.unsorted_segment_min(tf.range(num_chains), index, tf.shape(unique_codes)[0])
        children = tf.where(here, values, tf.gather(clamp, first)[:, None])  # [U, K, H, W]
        flat = tf.reshape(children, [-1, h, w])
        log_children = tf.reshape(bound(flat, n - i - 1), [-1, k])
        log_children = tf.gather(log_children, index)  # [B, K]
        log_p = log_children - log_prev[:, None]
        log_total = tf.reduce_logsumexp(log_p, axis=-1)
        over = log_total > 0.0
        clipped |= over
        log_p = tf.where(over[:, None], log_p - log_total[:, None], log_p)
        log_stop = tf.where(
            over, tf.constant(-np.inf, dtype), _log1mexp(tf.minimum(log_total, 0.0))
        )
        choice = tf.random.stateless_categorical(
            tf.concat([log_p, log_stop[:, None]], axis=-1),
            1,
            seed=seeds[i + 1],
            dtype=tf.int32,
        )[:, 0]
        accepted &= choice < k
        chosen = tf.minimum(choice, k - 1)
        clamp = tf.where(here, chosen[:, None, None], clamp)
        code = code * k + tf.cast(chosen, tf.int64)
        log_prev = tf.gather(log_children, chosen, axis=1, batch_dims=1)
    return SequentialSamples(clamp, accepted, clipped & accepted, log_upper0)


def _log1mexp(x: tf.Tensor) -> tf.Tensor:
    """log(1 − e^x) for x ≤ 0 (−inf at 0), stable at both ends."""
    return tf.where(
        x > -0.6931471805599453, tf.math.log(-tf.math.expm1(x)), tf.math.log1p(-tf.exp(x))
    )
