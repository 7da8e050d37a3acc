r"""IGR-I's Gaussian noise given the category it selects, reparameterised (for REBAR and RELAX).

IGR-I (δ = 1) draws z ~ N(μ, diag σ²) on R^{K-1} and selects b = argmax([z_1, …, z_{K-1}, 0]).
REBAR and RELAX need z̃ ~ p(z | b), written as a differentiable function of (μ, σ) and uniform
noise u ∈ (0, 1)^{K-1}:

- b = K (the last category, "all z_j < 0"): the z_j are independent normals truncated to
  (−∞, 0): z̃_j = μ_j + σ_j Φ⁻¹(u_j Φ(−μ_j/σ_j)).
- b = k < K: the winner t = z_k has density ∝ N(t; μ_k, σ_k²) Π_{j≠k} Φ((t − μ_j)/σ_j) on t > 0,
  and given t the others are independent normals truncated to (−∞, t). With the upper tail
  Q_k(t) = ∫_t^∞ N(s; μ_k, σ_k²) Π_{j≠k} Φ((s − μ_j)/σ_j) ds, t solves Q_k(t) = u_k Q_k(0).

Q_k is a 1-D integral, computed on tanh-sinh nodes in the conditional tail probability of z_k
(all in log space; `_tanh_sinh_nodes`) for one category and a lower limit t per variable, with
the light normal functions of `_normal` (fast to trace). log Q_k is concave in t (Q_k is the tail
integral of a log-concave function), so Newton's method started right of the root (from the
bound Q_k(t) ≤ Φ((μ_k − t)/σ_k)) decreases monotonically to it. The gradient of t is attached by
the implicit function theorem, dt/dθ = −(∂h/∂θ)/(∂h/∂t) for
h(t; θ) = log Q_k(t) − log Q_k(0) − log u_k, not by differentiating
the iterations. Everything runs in float64 and compiles with XLA.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from igr_tf._ops import plain_tensorflow as _plain
from igr_tf.estimators._normal import log_add_exp, log_ndtr, ndtri_log, ndtri_of_log

__all__ = ["conditional_igr_i", "log_upper_tail", "truncated_normal_below"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_F64 = tf.float64
_NUM_NODES = 64
_NEWTON_STEPS = 10
_LOG_BIG = 100.0  # caps Q/g (the inverse slope of log Q) at e^100: finite steps and gradients
# The nodes cover u in [-U, U] with pi sinh(U) = _TS_EXTENT: the conditional tail mass neglected
# at either end is about exp(-_TS_EXTENT) ~ 2e-16.
_TS_EXTENT = 36.0


@functools.cache
def _tanh_sinh_nodes(num_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Tanh-sinh rule on (0, 1) in log space: nodes `w(u) = sigmoid(π sinh u)` on an equispaced
    u-grid of step h, weights `h π cosh(u) w (1 - w)`; returns float64 (log w, log(1 - w),
    log weight), with log w and log(1 - w) accurate where w or 1 - w is below 1e-15. Computed
    once per node count in Python (cached), so tracing builds constants only.
    """
    u = np.linspace(-math.asinh(_TS_EXTENT / math.pi), math.asinh(_TS_EXTENT / math.pi), num_nodes)
    s = math.pi * np.sinh(u)
    log_w = -np.logaddexp(0.0, -s)
    log_1mw = -np.logaddexp(0.0, s)
    return log_w, log_1mw, np.log((u[1] - u[0]) * math.pi * np.cosh(u)) + log_w + log_1mw


@_plain
def truncated_normal_below(loc, scale, upper, u) -> tf.Tensor:
    """N(loc, scale²) truncated to (−∞, upper) by the inverse CDF at u ∈ (0, 1) (reparam.)."""
    log_mass = log_ndtr((upper - loc) / scale)
    x = ndtri_log(tf.math.log(u) + log_mass)
    return tf.minimum(loc + scale * x, upper)


@_plain
def _gather(x: tf.Tensor, one_hot: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(x * one_hot, axis=-1)


@_plain
def log_upper_tail(t, loc, scale, one_hot, num_nodes: int = _NUM_NODES) -> tf.Tensor:
    r"""log Q_k(t) = log ∫_t^∞ N(s; μ_k, σ_k²) Π_{j≠k} Φ((s − μ_j)/σ_j) ds, `[...]`.

    `t` `[...]`; `loc`, `scale` `[..., K-1]`; `one_hot` `[..., K-1]` marks k. The integral is
    P(z_k > t) times the mean of the product over z_k's conditional tail, in
    w = P(z_k > s | z_k > t)
    on tanh-sinh nodes (`_tanh_sinh_nodes`).
    """
    log_w, log_1mw, log_weight = (tf.constant(a, _F64) for a in _tanh_sinh_nodes(num_nodes))
    mu_k, sigma_k = _gather(loc, one_hot), _gather(scale, one_hot)
    beta = (t - mu_k) / sigma_k
    if loc.shape[-1] == 1:  # K = 2: no other coordinate, the integral is the normal tail
        return log_ndtr(-beta)
    log_p = log_ndtr(-beta)[..., None]  # log P(z_k > t)
    log_below = log_ndtr(beta)[..., None]
    log_up = log_p + log_w  # [..., N]
    log_lo = log_add_exp(log_below, log_p + log_1mw)
    # The node's quantile from the smaller of its lower and upper probabilities (both sum to 1).
    x = ndtri_of_log(tf.minimum(log_lo, log_up))
    x = tf.where(log_lo < log_up, x, -x)
    s = mu_k[..., None] + sigma_k[..., None] * x  # [..., N]
    log_cdfs = log_ndtr((s[..., None] - loc[..., None, :]) / scale[..., None, :])  # [..., N, K-1]
    others = tf.reduce_sum(log_cdfs * (1.0 - one_hot[..., None, :]), axis=-1)
    return log_p[..., 0] + tf.reduce_logsumexp(others + log_weight, axis=-1)


@_plain
def _log_winner_density(t, loc, scale, one_hot) -> tf.Tensor:
    """log of N(t; μ_k, σ_k²) Π_{j≠k} Φ((t − μ_j)/σ_j), `[...]` (the integrand of Q_k)."""
    mu_k, sigma_k = _gather(loc, one_hot), _gather(scale, one_hot)
    beta = (t - mu_k) / sigma_k
    log_cdfs = log_ndtr((t[..., None] - loc) / scale)
    return (
        -0.5 * tf.square(beta)
        - _HALF_LOG_2PI
        - tf.math.log(sigma_k)
        + tf.reduce_sum(log_cdfs * (1.0 - one_hot), axis=-1)
    )


@_plain
def _solve_winner(loc, scale, one_hot, log_u, log_q0, steps: int) -> tf.Tensor:
    """t ≥ 0 with log Q_k(t) = log u + log Q_k(0), by Newton from the right (no gradient)."""
    log_target = log_u + log_q0
    mu_k, sigma_k = _gather(loc, one_hot), _gather(scale, one_hot)
    # Q_k(t) ≤ P(z_k > t): the t where that bound equals the target is right of the root, and the
    # iterates stay in [0, t_right] (the clip only matters where the quadrature is inexact, for
    # parameters that make category k all but impossible).
    t_right = tf.maximum(mu_k - sigma_k * ndtri_log(log_target), 0.0)

    def newton(i, t):
        log_q = log_upper_tail(t, loc, scale, one_hot)
        log_ratio = tf.minimum(log_q - _log_winner_density(t, loc, scale, one_hot), _LOG_BIG)
        return i + 1, tf.clip_by_value(t + (log_q - log_target) * tf.exp(log_ratio), 0.0, t_right)

    if steps == 0:
        return t_right
    # A while loop, not a Python loop: one copy of the quadrature in the graph (fast tracing).
    _, t = tf.while_loop(lambda i, t: i < steps, newton, (tf.constant(0), t_right))
    return t


@_plain
def conditional_igr_i(
    loc, scale, index, u, newton_steps: int = _NEWTON_STEPS
) -> tuple[tf.Tensor, tf.Tensor]:
    """(z̃ ~ N(loc, diag scale²) given argmax([z, 0]) = index `[..., K-1]`, log P(index) `[...]`).

    log P(index) comes from the same quadrature (Q_k(0), or a product of normal CDFs for the
    last category); both outputs are differentiable in loc and scale.

    Args:
      loc, scale: `[..., K-1]` (any float dtype; computed in float64, returned in loc's dtype).
      index: int `[...]` in 0..K-1 (K-1 is the last category, all z_j < 0).
      u: uniforms in (0, 1), `[..., K-1]`.
    z̃ is reparameterised (differentiable in loc and scale, not in u).
    """
    dtype = loc.dtype
    loc, scale, u = (tf.cast(a, _F64) for a in (loc, scale, u))
    d = loc.shape[-1]
    index = tf.cast(index, tf.int32)
    last = index >= d  # the δ category won: every z_j < 0
    winner = tf.one_hot(tf.where(last, 0, index), d, dtype=_F64)  # dummy k = 0 when last
    # Rows where the last category won need no winner t: give them benign parameters, so that no
    # extreme value there can reach a gradient (the where sits on the inputs).
    w_loc = tf.where(last[..., None], tf.ones_like(loc), loc)
    w_scale = tf.where(last[..., None], tf.ones_like(scale), scale)
    log_u_k = tf.math.log(_gather(u, winner))
    fixed = [tf.stop_gradient(a) for a in (w_loc, w_scale)]
    log_q0 = log_upper_tail(tf.zeros_like(log_u_k), w_loc, w_scale, winner)
    # K = 2: no other coordinate, Q_k is the normal tail and the starting bound is the root.
    steps = 0 if d == 1 else newton_steps
    t_star = tf.stop_gradient(
        _solve_winner(*fixed, winner, log_u_k, tf.stop_gradient(log_q0), steps)
    )
    # Implicit gradient: h(t; θ) = log Q_k(t) − log Q_k(0) − log u, ∂h/∂t = −g(t)/Q_k(t).
    log_qt = log_upper_tail(t_star, w_loc, w_scale, winner)
    h = log_qt - log_q0 - log_u_k
    log_slope = tf.stop_gradient(log_qt) - _log_winner_density(t_star, *fixed, winner)
    slope = tf.stop_gradient(tf.exp(tf.minimum(log_slope, _LOG_BIG)))
    t = t_star + (h - tf.stop_gradient(h)) * slope
    upper = tf.where(last, tf.zeros_like(t), t)
    others = truncated_normal_below(loc, scale, upper[..., None], u)
    z = tf.where((winner > 0) & ~last[..., None], t[..., None] + tf.zeros_like(loc), others)
    # log P(b): Q_k(0) for a winner k (already computed), Π_j Φ(−μ_j/σ_j) for the last category.
    log_prob = tf.where(last, tf.reduce_sum(log_ndtr(-loc / scale), axis=-1), log_q0)
    return tf.cast(z, dtype), tf.cast(log_prob, dtype)
