"""Straight-through IGR relaxations: forward one_hot(argmax ψ), backward the gradient of ψ.

ψ is a reparameterised sample of `igr_tf.distributions.igr_i / igr_sb / igr_planar` (a Gaussian
z ~ N(loc, scale²) on R^{K-1} pushed through the relaxation's bijector); the forward value is the
exact one-hot of its argmax (the τ → 0 limit of ψ: argmax([z, τ log δ]) for IGR-I, argmax η for
IGR-SB), so the model sees discrete samples while the gradient is that of the relaxed sample.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from igr_tf import categorical
from igr_tf._checks import check_positive, check_positive_int
from igr_tf.distributions import igr
from igr_tf.distributions import relaxations as _relaxations
from igr_tf.estimators._base import HardSampleEstimator, forward_value
from igr_tf.estimators._igr_params import igr_loc_scale

__all__ = ["STIGRI", "STIGRPlanar", "STIGRStickBreaking"]


class _STIGR(HardSampleEstimator):
    """Shared: split the parameters, sample ψ from the TFP distribution, keep its gradient."""

    #: The relaxation (in `igr_tf.distributions`) whose prior and induced categorical the latent
    #: terms use where no exact pmf is known.
    relaxation_name: str = "igr_i"

    @property
    def num_params(self) -> int:
        return 2 * (self.num_categories - 1)

    def _relaxation_options(self) -> dict[str, Any]:
        return {}

    def _relaxation(self) -> _relaxations.Relaxation:
        return _relaxations.get(
            self.relaxation_name, self.num_categories, **self._relaxation_options()
        )

    def _has_exact_pmf(self) -> bool:
        return True

    @property
    def exact_categorical(self) -> bool:
        return self._has_exact_pmf()

    def kl(self, params, weights=None) -> tf.Tensor:
        """`[*batch]`: with an exact pmf, Σ_V KL(Cat(q) ‖ uniform) in closed form. Without one
        (st_igr_sb for K > 2, st_igr_planar): Σ_V KL(N(μ, σ²) ‖ N(μ₀, σ₀²)), the closed-form KL
        of the Gaussian noise to the prior Gaussian of the relaxation
        (`igr_tf.distributions.get(name).prior_loc_scale`, whose induced categorical is
        `prior_log_pmf`). For IGR-SB it is an upper bound on the discrete KL (data processing:
        the same map takes both Gaussians to the categoricals); for IGR-Planar the posterior's
        map has flows the prior's lacks, so it is a regulariser, not a bound."""
        if self._has_exact_pmf():
            return super().kl(params, weights)
        loc, scale = igr_loc_scale(tf.convert_to_tensor(params))
        loc0, scale0 = self._relaxation().prior_loc_scale(self.temperature, loc.dtype)
        kl = (
            tf.math.log(scale0 / scale)
            + (tf.square(scale) + tf.square(loc - loc0)) / (2.0 * tf.square(scale0))
            - 0.5
        )
        return tf.reduce_sum(kl, axis=[-2, -1])

    def categorical_log_probs(self, params, weights=None, seed=None) -> tf.Tensor:
        """Exact log pmf where known; else the relaxation's Monte Carlo estimate (from `seed`)."""
        if self._has_exact_pmf():
            return self.log_pmf(params)
        return self._relaxation().categorical_log_probs(
            params, weights, temperature=self.temperature, seed=seed
        )

    def prior_log_pmf(self, dtype=tf.float32) -> tf.Tensor:
        """Uniform with an exact pmf; else the categorical the relaxation's prior induces."""
        if self._has_exact_pmf():
            return super().prior_log_pmf(dtype)
        return self._relaxation().prior_categorical_log_probs(self.temperature, dtype)

    def _distribution(self, loc, scale, tau, weights):
        raise NotImplementedError

    def _sample(self, params, tau, seed, weights):
        loc, scale = igr_loc_scale(params)
        psi = self._distribution(loc, scale, tau, weights).sample(seed=seed)
        hard = tf.one_hot(tf.argmax(psi, axis=-1), self.num_categories, dtype=psi.dtype)
        return forward_value(psi, tf.stop_gradient(hard))


class STIGRI(_STIGR):
    """ST-IGR-I: ψ = softmax([z/τ, log δ]); forward one_hot(argmax([z, τ log δ]))."""

    name = "st_igr_i"

    def __init__(self, num_categories: int, *, temperature: float = 1.0, delta: float = 1.0):
        super().__init__(num_categories, temperature=temperature)
        check_positive(delta, "delta")
        self.delta = float(delta)

    def _distribution(self, loc, scale, tau, weights):
        return igr.igr_i(loc, scale, tau, self.delta)

    def log_pmf(self, params, temperature=None) -> tf.Tensor:
        """Exact log pmf `[..., V, K]` of the forward sample (quadrature; threshold δ^τ)."""
        params = tf.convert_to_tensor(params)
        loc, scale = igr_loc_scale(params)
        tau = self._tau(temperature, params.dtype)
        threshold = tf.exp(tau * tf.math.log(tf.constant(self.delta, params.dtype)))
        return categorical.igr_i_log_pmf(loc, scale, delta=threshold)

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), delta=self.delta)


class STIGRStickBreaking(_STIGR):
    """ST-IGR-SB: ψ = softmax(log η / τ), η the sticks of sigmoid(z); forward one_hot(argmax η)."""

    name = "st_igr_sb"
    relaxation_name = "igr_sb"

    def _has_exact_pmf(self) -> bool:
        return self.num_categories == 2

    def _distribution(self, loc, scale, tau, weights):
        return igr.igr_sb(loc, scale, tau)

    def log_pmf(self, params, temperature=None) -> tf.Tensor:
        """Exact log pmf for K = 2 (argmax η = 0 iff z > 0, as IGR-I with δ = 1); K > 2 has no
        closed form here (`igr_tf.categorical.stick_breaking_pmf` is a numpy quadrature)."""
        if self.num_categories != 2:
            raise NotImplementedError("st_igr_sb: no differentiable exact pmf for K > 2.")
        loc, scale = igr_loc_scale(tf.convert_to_tensor(params))
        return categorical.igr_i_log_pmf(loc, scale)


class STIGRPlanar(_STIGR):
    """ST-IGR-Planar: ψ = softmax++(h(z)/τ) with planar flows h (global weights, `weight_specs`)."""

    name = "st_igr_planar"
    relaxation_name = "igr_planar"

    def _has_exact_pmf(self) -> bool:
        return False

    def _relaxation_options(self) -> dict[str, Any]:
        return {"delta": self.delta, "num_flows": self.num_flows}

    def __init__(
        self,
        num_categories: int,
        *,
        temperature: float = 1.0,
        delta: float = 1.0,
        num_flows: int = 2,
    ):
        super().__init__(num_categories, temperature=temperature)
        check_positive(delta, "delta")
        self.delta = float(delta)
        self.num_flows = check_positive_int(num_flows, "num_flows")

    def weight_specs(self, num_vars: int) -> dict[str, Any]:
        """The flow weights `planar_w{i}`, `planar_u{i}` `[V, K-1]`, `planar_b{i}` `[V]`."""
        recipe = _relaxations.get("igr_planar", self.num_categories, num_flows=self.num_flows)
        return recipe.weight_specs(num_vars)

    def log_pmf(self, params, temperature=None) -> tf.Tensor:
        raise NotImplementedError("st_igr_planar: no exact pmf (the flows have no closed form).")

    def _distribution(self, loc, scale, tau, weights):
        if not weights:
            raise ValueError(
                "st_igr_planar needs its flow weights (`weights`, a dict with planar_w{i}, "
                "planar_u{i}, planar_b{i}; see weight_specs())."
            )
        r = range(self.num_flows)
        flows = igr.planar_flows(
            [weights[f"planar_w{i}"] for i in r],
            [weights[f"planar_u{i}"] for i in r],
            [weights[f"planar_b{i}"] for i in r],
        )
        return igr.igr_planar(loc, scale, flows, tau, self.delta)

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), delta=self.delta, num_flows=self.num_flows)
