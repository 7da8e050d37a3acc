r"""Discrete distributions with a continuous noise z behind them, for the unbiased estimators.

Each family turns parameters `[*batch, V, P]` into a reparameterised noise z, a discrete outcome
b = H(z) (an argmax), its relaxation σ_λ(z) on the simplex, the log pmf of b, the noise's own log
density, and (where it is known) z̃ ~ p(z | b) as a differentiable function of the parameters:

- "gs" (K logits θ): z = θ + G, G ~ Gumbel(0, 1)^K; H(z) = argmax z; σ_λ(z) = softmax(z/λ);
  z̃ | b by the exponential race (`conditional_gumbel`), differentiable in θ.
- "igr_i" (2(K-1) parameters, δ = 1): z ~ N(μ, σ²) on R^{K-1}; H(z) = argmax([z, 0]);
  σ_λ(z) = softmax([z, 0]/λ); log pmf by quadrature (`igr_tf.categorical.igr_i_log_pmf`);
  z̃ | b by `_igr_conditional.conditional_igr_i`.
- "igr_sb": z as IGR-I; H(z) = argmax η(z), η the stick-breaking pieces of sigmoid(z);
  σ_λ(z) = softmax(log η / λ). Its pmf has no differentiable closed form for K > 2, so neither the
  score of b nor z̃ | b is available there: REBAR/RELAX use the score of the noise z instead
  (`conditioning="noise"`). For K = 2 it coincides with IGR-I (b = 0 iff z > 0).
"""

from __future__ import annotations

import abc

import tensorflow as tf

from igr_tf import categorical
from igr_tf.bijectors import LogitStickBreaking
from igr_tf.estimators._base import gumbel, normal, uniform
from igr_tf.estimators._igr_conditional import conditional_igr_i
from igr_tf.estimators._igr_params import igr_loc_scale
from igr_tf.estimators.straight_through import conditional_gumbel

__all__ = ["FAMILIES", "family"]

_HALF_LOG_2PI = 0.9189385332046727


class Family(abc.ABC):
    """A discrete outcome b = H(z) of a reparameterised noise z (see the module docstring)."""

    name: str
    has_exact_pmf: bool = True
    has_conditional: bool = True

    def __init__(self, num_categories: int) -> None:
        self.num_categories = num_categories

    @property
    @abc.abstractmethod
    def num_params(self) -> int: ...

    @abc.abstractmethod
    def noise(self, params: tf.Tensor, seed) -> tf.Tensor:
        """Reparameterised z (differentiable in params)."""

    @abc.abstractmethod
    def logits(self, z: tf.Tensor) -> tf.Tensor:
        """`[*batch, V, K]` whose argmax is b and whose softmax(·/λ) is the relaxation."""

    def hard(self, z: tf.Tensor) -> tf.Tensor:
        """One-hot b = H(z) `[*batch, V, K]` (no gradient)."""
        logits = tf.stop_gradient(self.logits(z))
        return tf.one_hot(tf.argmax(logits, axis=-1), self.num_categories, dtype=logits.dtype)

    def relaxed(self, z: tf.Tensor, temperature: tf.Tensor) -> tf.Tensor:
        """σ_λ(z) = softmax(logits(z)/λ) `[*batch, V, K]`."""
        return tf.math.softmax(self.logits(z) / temperature, axis=-1)

    @abc.abstractmethod
    def log_pmf(self, params: tf.Tensor) -> tf.Tensor:
        """log p(b = k) `[*batch, V, K]`."""

    @abc.abstractmethod
    def conditional(
        self, params: tf.Tensor, one_hot: tf.Tensor, seed
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(z̃ ~ p(z | b), log p(b) `[*batch, V]`), both differentiable in params."""

    @abc.abstractmethod
    def noise_log_density(self, params: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """log p(z | params) summed over each variable's coordinates, `[*batch, V]`."""

    def sample(self, params: tf.Tensor, seed) -> tf.Tensor:
        """A one-hot sample of b `[*batch, V, K]` (no gradient)."""
        return self.hard(tf.stop_gradient(self.noise(params, seed)))


class _GumbelFamily(Family):
    name = "gs"

    @property
    def num_params(self) -> int:
        return self.num_categories

    def noise(self, params, seed):
        return params + gumbel(tf.shape(params), seed, params.dtype)

    def logits(self, z):
        return z

    def log_pmf(self, params):
        return tf.math.log_softmax(params, axis=-1)

    def conditional(self, params, one_hot, seed):
        exponentials = -tf.math.log(uniform(tf.shape(params), seed, params.dtype))
        log_prob = tf.reduce_sum(one_hot * self.log_pmf(params), axis=-1)
        return conditional_gumbel(params, one_hot, exponentials), log_prob

    def noise_log_density(self, params, z):
        # Gumbel(θ_k, 1) density: exp(−(z − θ) − e^{−(z − θ)}).
        x = z - params
        return tf.reduce_sum(-x - tf.exp(-x), axis=-1)


class _GaussianNoise(Family):
    """IGR noise: z = μ + σ ε on R^{K-1}."""

    @property
    def num_params(self) -> int:
        return 2 * (self.num_categories - 1)

    def noise(self, params, seed):
        loc, scale = igr_loc_scale(params)
        return loc + scale * normal(tf.shape(loc), seed, loc.dtype)

    def noise_log_density(self, params, z):
        loc, scale = igr_loc_scale(params)
        x = (z - loc) / scale
        return tf.reduce_sum(-0.5 * tf.square(x) - tf.math.log(scale) - _HALF_LOG_2PI, axis=-1)

    def log_pmf(self, params):
        loc, scale = igr_loc_scale(params)
        return categorical.igr_i_log_pmf(loc, scale)

    def conditional(self, params, one_hot, seed):
        loc, scale = igr_loc_scale(params)
        u = uniform(tf.shape(loc), seed, loc.dtype)
        return conditional_igr_i(loc, scale, tf.argmax(one_hot, axis=-1), u)


class _IGRIFamily(_GaussianNoise):
    name = "igr_i"

    def logits(self, z):
        return tf.concat([z, tf.zeros_like(z[..., :1])], axis=-1)


class _IGRSBFamily(_GaussianNoise):
    name = "igr_sb"

    def __init__(self, num_categories: int) -> None:
        super().__init__(num_categories)
        # For K = 2, argmax η = 0 iff z > 0: IGR-I's pmf and conditional apply.
        self.has_exact_pmf = self.has_conditional = num_categories == 2

    def logits(self, z):
        log_ratios = LogitStickBreaking().forward(z)  # log η_k − log η_K, k < K
        return tf.concat([log_ratios, tf.zeros_like(z[..., :1])], axis=-1)

    def log_pmf(self, params):
        if not self.has_exact_pmf:
            raise NotImplementedError("igr_sb has no differentiable exact pmf for K > 2.")
        return super().log_pmf(params)

    def conditional(self, params, one_hot, seed):
        if not self.has_conditional:
            raise NotImplementedError("igr_sb has no conditional z | b for K > 2.")
        return super().conditional(params, one_hot, seed)


FAMILIES: dict[str, type[Family]] = {
    cls.name: cls for cls in (_GumbelFamily, _IGRIFamily, _IGRSBFamily)
}


def family(name: str, num_categories: int) -> Family:
    """The family registered under `name` ("gs", "igr_i", "igr_sb")."""
    try:
        return FAMILIES[name](num_categories)
    except KeyError:
        raise ValueError(f"Unknown relaxation {name!r}; known: {', '.join(FAMILIES)}.") from None
