"""Relaxed binary posteriors by registry name: the one place that calls the relaxations.

A binary latent is a K = 2 categorical whose first category means "on". From encoder outputs
`params` `[..., n, P]` (`P = num_params(name)`, 2 for every name here) this gives, per unit:

- `relaxed`: ζ ∈ [0, 1], the first coordinate of the relaxed one-hot sample ψ (reparameterized);
- `log_prob_on`, `log_prob_off`: `log q(z = 1)`, `log q(z = 0)` of the discrete posterior that the
  relaxation tends to as τ → 0 (the law of `argmax ψ`), in closed form.

| name     | ζ                                          | q(z = 1)        |
|----------|--------------------------------------------|-----------------|
| "gs"     | Binary Concrete: σ((ℓ₁ − ℓ₂ + L)/τ), L ~ Logistic | σ(ℓ₁ − ℓ₂)   |
| "igr_i"  | softmax++ of z ~ N(μ, σ²): σ(z/τ) (δ = 1)      | Φ(μ/σ)          |
| "igr_sb" | softmax(log η/τ), η = (σ(z), 1 − σ(z)): σ(z/τ) | Φ(μ/σ)          |

For K = 2 the stick-breaking map is the identity on the log-ratio (log η₁ − log η₂ = z), so
"igr_sb" and "igr_i" are the same distribution; both are offered because both are registry names.
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


def num_params(name: str) -> int:
    """Encoder outputs per binary unit (the registry's K = 2 parameter count)."""
    return _recipe(name).num_params


def _gs_logit(params: tf.Tensor) -> tf.Tensor:
    return params[..., 0] - params[..., 1]  # log α₁ − log α₂: the Binary Concrete logit


def bernoulli_log_probs(name: str, params) -> tuple[tf.Tensor, tf.Tensor]:
    """`(log q(z = 1), log q(z = 0))`, each `[..., n]`, of the discrete (τ → 0) posterior."""
    recipe = _recipe(name)
    params = recipe.split(tf.convert_to_tensor(params))
    if name == "gs":
        logit = _gs_logit(params)
        return tf.math.log_sigmoid(logit), tf.math.log_sigmoid(-logit)
    loc, scale = recipe.loc_scale(params)  # [..., n, 1] each: K − 1 = 1
    t = (loc / scale)[..., 0]
    std_normal = tfd.Normal(tf.zeros([], t.dtype), tf.ones([], t.dtype))
    return std_normal.log_cdf(t), std_normal.log_cdf(-t)  # log Φ(±μ/σ), stable in the tails


def relaxed(name: str, params, temperature, seed) -> RelaxedBinary:
    """One reparameterized relaxed draw per unit, with the discrete posterior's log pmf.

    Args:
      name: "gs", "igr_i" or "igr_sb".
      params: encoder outputs `[..., n, 2]`.
      temperature: τ > 0.
      seed: stateless seed (shape [2] ints).
    """
    recipe = _recipe(name)
    params = recipe.split(tf.convert_to_tensor(params))
    tau = tf.cast(temperature, params.dtype)
    if name == "gs":
        # Binary Concrete from Logistic noise. Not tfd.RelaxedBernoulli(τ, logits).sample():
        # its Sigmoid bijector has a NaN gradient once (logit + L)/τ exceeds ~88 (float32),
        # which at τ = 0.01 is most samples of a confident unit (TFP 0.25).
        logit = _gs_logit(params)
        std_logistic = tfd.Logistic(tf.zeros([], logit.dtype), tf.ones([], logit.dtype))
        zeta = tf.sigmoid((logit + std_logistic.sample(tf.shape(logit), seed=seed)) / tau)
    else:
        loc, scale = recipe.loc_scale(params)
        make = igrd.igr_i if name == "igr_i" else igrd.igr_sb
        zeta = make(loc, scale, tau).sample(seed=seed)[..., 0]
    log_on, log_off = bernoulli_log_probs(name, params)
    return RelaxedBinary(zeta, log_on, log_off)
