"""Relaxed binary posteriors by registry name: the one place that calls the relaxations.

A binary latent is a K = 2 categorical whose first category means "on". From encoder outputs
`params` `[..., n, P]` (`P = num_params(name, learn_scale)`) this gives, per unit:

- `relaxed`: ζ ∈ [0, 1], the first coordinate of the relaxed one-hot sample ψ (reparameterized);
- `log_prob_on`, `log_prob_off`: `log q(z = 1)`, `log q(z = 0)` of the discrete posterior that the
  relaxation tends to as τ → 0 (the law of `argmax ψ`), in closed form.

| name     | P    | ζ                                                 | q(z = 1)   |
|----------|------|---------------------------------------------------|------------|
| "gs"     | 2    | Binary Concrete: σ((ℓ₁ − ℓ₂ + L)/τ), L ~ Logistic | σ(ℓ₁ − ℓ₂) |
| "igr_i"  | 1, 2 | softmax++ of z ~ N(μ, σ²): σ(z/τ) (δ = 1)         | Φ(μ/σ)     |
| "igr_sb" | 1, 2 | softmax(log η/τ), η = (σ(z), 1 − σ(z)): σ(z/τ)    | Φ(μ/σ)     |

For K = 2 the stick-breaking map is the identity on the log-ratio (log η₁ − log η₂ = z), so
"igr_sb" and "igr_i" are the same distribution; both are offered because both are registry names.

**The IGR scale is fixed at σ = 1 by default** (`learn_scale=False`, P = 1: the encoder gives μ).
The discrete law depends on μ/σ only, the relaxed sample on μ/τ and σ/τ: with a learned σ, σ → 0
makes q(z) deterministic while ζ = σ(μ/τ) stays inside (0, 1), and GumBolt's proxy posterior
`q̆(ζ) = Π q^ζ (1 − q)^{1−ζ}` then rewards it without bound (−log q̆ ≈ (1 − ζ) μ²/2σ²). That is what
training with `learn_scale=True` does (docs/results.md). GS has no such freedom (its noise scale
is fixed), and neither has IGR with σ = 1, a Gaussian-noise Binary Concrete.

Samples come from TFP distributions: `tfd.Logistic` noise for GS (the Binary Concrete of
`tfd.RelaxedBernoulli`, whose own sampler has NaN gradients at low τ), and
`igr_tf.distributions`' `igr_i` / `igr_sb` for IGR.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf import distributions as igrd

tfd = tfp.distributions

__all__ = ["BINARY_RELAXATIONS", "RelaxedBinary", "bernoulli_log_probs", "num_params", "relaxed"]

#: Registry names with a binary (K = 2) form here.
BINARY_RELAXATIONS: tuple[str, ...] = ("gs", "igr_i", "igr_sb")


class RelaxedBinary(NamedTuple):
    """ζ `[..., n]` and the discrete posterior's `log q(z = 1)`, `log q(z = 0)` `[..., n]`."""

    relaxed: tf.Tensor
    log_prob_on: tf.Tensor
    log_prob_off: tf.Tensor


def check_name(name: str) -> str:
    if name not in BINARY_RELAXATIONS:
        raise ValueError(
            f"Unknown binary relaxation {name!r}; the binary relaxations are "
            f"{', '.join(BINARY_RELAXATIONS)}."
        )
    return name


def _recipe(name: str):
    return igrd.get(check_name(name), 2)


def num_params(name: str, learn_scale: bool = False) -> int:
    """Encoder outputs per binary unit: the registry's K = 2 count (GS: 2 logits; IGR: μ and the
    raw scale), or 1 (μ) for IGR with the scale fixed at 1."""
    recipe = _recipe(name)
    return recipe.num_params if name == "gs" or learn_scale else 1


def _gs_logit(params: tf.Tensor) -> tf.Tensor:
    return params[..., 0] - params[..., 1]  # log α₁ − log α₂: the Binary Concrete logit


def _loc_scale(name: str, params: tf.Tensor, learn_scale: bool):
    """IGR's Gaussian `(loc, scale)`, each `[..., n, 1]` (K − 1 = 1)."""
    if learn_scale:
        return _recipe(name).loc_scale(params)
    if params.shape[-1] is not None and params.shape[-1] != 1:
        raise ValueError(
            f"{name} with a fixed scale takes 1 parameter per unit (μ); got shape {params.shape}."
        )
    return params, tf.ones_like(params)


def _checked(name: str, params, learn_scale: bool) -> tf.Tensor:
    params = tf.convert_to_tensor(params)
    if name == "gs" or learn_scale:
        return _recipe(name).split(params)
    check_name(name)
    return params


def bernoulli_log_probs(name: str, params, learn_scale: bool = False):
    """`(log q(z = 1), log q(z = 0))`, each `[..., n]`, of the discrete (τ → 0) posterior."""
    params = _checked(name, params, learn_scale)
    if name == "gs":
        logit = _gs_logit(params)
        return tf.math.log_sigmoid(logit), tf.math.log_sigmoid(-logit)
    loc, scale = _loc_scale(name, params, learn_scale)
    t = (loc / scale)[..., 0]
    std_normal = tfd.Normal(tf.zeros([], t.dtype), tf.ones([], t.dtype))
    return std_normal.log_cdf(t), std_normal.log_cdf(-t)  # log Φ(±μ/σ), stable in the tails


def relaxed(name: str, params, temperature, seed, learn_scale: bool = False) -> RelaxedBinary:
    """One reparameterized relaxed draw per unit, with the discrete posterior's log pmf.

    Args:
      name: "gs", "igr_i" or "igr_sb".
      params: encoder outputs `[..., n, P]`, `P = num_params(name, learn_scale)`.
      temperature: τ > 0.
      seed: stateless seed (shape [2] ints).
      learn_scale: IGR only: take σ from the parameters (the registry's softplus) instead of 1.
    """
    params = _checked(name, params, learn_scale)
    tau = tf.cast(temperature, params.dtype)
    if name == "gs":
        # Binary Concrete from Logistic noise. Not tfd.RelaxedBernoulli(τ, logits).sample():
        # its Sigmoid bijector has a NaN gradient once (logit + L)/τ exceeds ~88 (float32),
        # which at τ = 0.01 is most samples of a confident unit (TFP 0.25).
        logit = _gs_logit(params)
        std_logistic = tfd.Logistic(tf.zeros([], logit.dtype), tf.ones([], logit.dtype))
        zeta = tf.sigmoid((logit + std_logistic.sample(tf.shape(logit), seed=seed)) / tau)
    else:
        loc, scale = _loc_scale(name, params, learn_scale)
        make = igrd.igr_i if name == "igr_i" else igrd.igr_sb
        zeta = make(loc, scale, tau).sample(seed=seed)[..., 0]
    log_on, log_off = bernoulli_log_probs(name, params, learn_scale)
    return RelaxedBinary(zeta, log_on, log_off)
