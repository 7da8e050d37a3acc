r"""The straight-through family on logits θ `[*batch, V, K]`: one-hot forward, surrogate backward.

With π = softmax(θ), `D` a one-hot sample from π, `g = ∂f/∂D` the upstream gradient and
`J(p) g = p ⊙ g − p (pᵀg)` the softmax Jacobian-vector product at probabilities p:

- `st` (straight-through): D ~ π (Gumbel-max); backward `J(softmax(θ/τ)) g / τ`, the gradient of
  softmax(θ/τ) (τ = 1: the classic ST, Bengio et al. 2013).
- `st_gs` (straight-through Gumbel-Softmax, Jang et al. 2017): D = one_hot(argmax(θ + G)),
  backward the gradient of softmax((θ + G)/τ) at the same Gumbel noise G.
- `gumbel_rao` (Paulus, Maddison, Krause 2021): D as for ST-GS; backward the average of the ST-GS
  gradient over M Gumbel vectors drawn from their law *given* argmax(θ + G) = D, i.e. a Monte
  Carlo estimate of E[ST-GS gradient | D]. The conditional noise does not depend on θ.
- `gst` (gapped straight-through, Fan et al. 2022): D ~ π; backward the gradient of
  softmax((θ + m)/τ) with a deterministic (stop-gradient) perturbation m that makes D's logit the
  largest, equal to max θ, and pushes every other logit to at least a gap κ below it.
  κ = 1 by default ("GST-1.0"); `gap="adaptive"` uses κ = −log(1 − π_D)/π_D ("GST-p").
- `reinmax` (Liu et al. 2023): D ~ π; backward `2 J(π₁) g − ½ J(π) g` with
  π₁ = (D + softmax(θ/τ))/2,
  Heun's (second-order) correction of ST. The temperature gets no gradient.

All are biased; their bias is measured on the toys (see `igr_tf.toys`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from igr_tf._checks import check_positive_int
from igr_tf.estimators._base import HardSampleEstimator, forward_value, gumbel, split_seed, uniform
from igr_tf.estimators._normal import log_add_exp

__all__ = [
    "GappedStraightThrough",
    "GumbelRao",
    "ReinMax",
    "StraightThrough",
    "StraightThroughGumbelSoftmax",
    "conditional_gumbel",
]


def _one_hot_argmax(x: tf.Tensor) -> tf.Tensor:
    return tf.one_hot(tf.argmax(x, axis=-1), tf.shape(x)[-1], dtype=x.dtype)


def _gumbel_max(logits: tf.Tensor, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """(D one-hot sample from softmax(logits), the perturbed logits θ + G)."""
    perturbed = logits + gumbel(tf.shape(logits), seed, logits.dtype)
    return tf.stop_gradient(_one_hot_argmax(perturbed)), perturbed


def _jvp_softmax(p: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
    """`J(p) g = p ⊙ g − p (pᵀg)`: the softmax Jacobian (at probabilities p) times g."""
    pg = p * g
    return pg - p * tf.reduce_sum(pg, axis=-1, keepdims=True)


def conditional_gumbel(logits: tf.Tensor, one_hot: tf.Tensor, exponentials: tf.Tensor) -> tf.Tensor:
    r"""Perturbed logits θ + G with G ~ Gumbel(0, 1)^K conditioned on argmax(θ + G) = D.

    With E ~ Exp(1)^K (`exponentials`, broadcastable against `logits`) and L = logsumexp(θ): the
    maximum of θ + G is Gumbel(L) independent of the argmax, so the winner k gets
    `L − log E_k`, and every other j, a Gumbel(θ_j) truncated below that maximum:
    `−log(E_j e^{−θ_j} + E_k e^{−L})` (the exponential race: E_j/e^{θ_j} = E_k/e^{L} + fresh
    E_j/e^{θ_j} by memorylessness). Computed in log space.
    """
    lse = tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
    log_e = tf.math.log(exponentials)
    log_e_winner = tf.reduce_sum(log_e * one_hot, axis=-1, keepdims=True)
    top = lse - log_e_winner
    others = -log_add_exp(log_e - logits, log_e_winner - lse)
    return tf.where(one_hot > 0, top, others)


class StraightThrough(HardSampleEstimator):
    """Plain straight-through: D ~ softmax(θ), gradient of softmax(θ/τ) (τ = 1 by default)."""

    name = "st"

    def _sample(self, params, tau, seed, weights):
        hard, _ = _gumbel_max(params, seed)
        return forward_value(tf.math.softmax(params / tau, axis=-1), hard)


class StraightThroughGumbelSoftmax(HardSampleEstimator):
    """ST-GS: D = one_hot(argmax(θ + G)), gradient of softmax((θ + G)/τ)."""

    name = "st_gs"

    def _sample(self, params, tau, seed, weights):
        hard, perturbed = _gumbel_max(params, seed)
        return forward_value(tf.math.softmax(perturbed / tau, axis=-1), hard)


class GumbelRao(HardSampleEstimator):
    """Gumbel-Rao: the ST-GS gradient averaged over M conditional Gumbel draws given D."""

    name = "gumbel_rao"

    def __init__(self, num_categories: int, *, temperature: float = 1.0, num_draws: int = 100):
        super().__init__(num_categories, temperature=temperature)
        self.num_draws = check_positive_int(num_draws, "num_draws")

    def _sample(self, params, tau, seed, weights):
        sample_seed, noise_seed = split_seed(seed, 2)
        hard, _ = _gumbel_max(params, sample_seed)
        shape = tf.concat([[self.num_draws], tf.shape(params)], 0)
        exponentials = -tf.math.log(uniform(shape, noise_seed, params.dtype))
        fixed = tf.stop_gradient(params)
        noise = tf.stop_gradient(conditional_gumbel(fixed, hard, exponentials) - fixed)
        soft = tf.reduce_mean(tf.math.softmax((params + noise) / tau, axis=-1), axis=0)
        return forward_value(soft, hard)

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), num_draws=self.num_draws)


def gst_perturbation(logits: tf.Tensor, one_hot: tf.Tensor, gap) -> tf.Tensor:
    """GST's shift m (no gradient): D's logit raised to max θ, the others at least `gap` below."""
    logits = tf.stop_gradient(logits)
    top = tf.reduce_max(logits, axis=-1, keepdims=True)
    raise_sampled = (top - logits) * one_hot
    lower_others = tf.nn.relu(logits - top + gap) * (1.0 - one_hot)
    return tf.stop_gradient(raise_sampled - lower_others)


def adaptive_gap(logits: tf.Tensor, one_hot: tf.Tensor) -> tf.Tensor:
    """GST-p's gap κ = −log(1 − π_D)/π_D, π_D the sampled category's probability ([..., 1])."""
    eps = np.finfo(logits.dtype.as_numpy_dtype).eps
    log_p = tf.reduce_sum(tf.math.log_softmax(logits, axis=-1) * one_hot, axis=-1, keepdims=True)
    p = tf.minimum(tf.exp(log_p), 1.0 - eps)
    return tf.stop_gradient(-tf.math.log1p(-p) / p)


class GappedStraightThrough(HardSampleEstimator):
    """GST: D ~ softmax(θ), gradient of softmax((θ + m)/τ), m the shift of `gst_perturbation`."""

    name = "gst"

    def __init__(self, num_categories: int, *, temperature: float = 1.0, gap: float | str = 1.0):
        super().__init__(num_categories, temperature=temperature)
        if gap != "adaptive":
            gap = float(gap)
            if not gap > 0:
                raise ValueError(f"`gap` must be > 0 or 'adaptive'; got {gap!r}.")
        self.gap = gap

    def _sample(self, params, tau, seed, weights):
        hard, _ = _gumbel_max(params, seed)
        gap = adaptive_gap(params, hard) if self.gap == "adaptive" else self.gap
        shifted = params + gst_perturbation(params, hard, gap)
        return forward_value(tf.math.softmax(shifted / tau, axis=-1), hard)

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), gap=self.gap)


class ReinMax(HardSampleEstimator):
    """ReinMax: D ~ softmax(θ), gradient `2 J(π₁) g − ½ J(π₀) g`, π₁ = (D + softmax(θ/τ))/2.

    The authors recommend τ ≥ 1 (unlike ST-GS).
    """

    name = "reinmax"

    def _sample(self, params, tau, seed, weights):
        hard, _ = _gumbel_max(params, seed)
        pi1 = tf.stop_gradient(0.5 * (hard + tf.math.softmax(params / tau, axis=-1)))

        @tf.custom_gradient
        def reinmax(logits):
            def grad(g):
                pi0 = tf.math.softmax(logits, axis=-1)
                return 2.0 * _jvp_softmax(pi1, g) - 0.5 * _jvp_softmax(pi0, g)

            return tf.identity(hard), grad

        return reinmax(params)
