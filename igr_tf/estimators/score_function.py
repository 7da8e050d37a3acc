r"""Score-function estimators: REINFORCE with a leave-one-out baseline, VIMCO, and DisARM.

With S samples b_s ~ q(b | θ) (V variables; log q(b) the sum over variables):

- `reinforce_loo` (Kool, van Hoof, Welling 2019): ĝ = 1/(S−1) Σ_s (f(b_s) − f̄) ∇ log q(b_s),
  f̄ = mean_s f(b_s): each sample's baseline is the mean of the other S−1. Unbiased for S ≥ 2.
- `vimco` (Mnih & Rezende 2016), for the multi-sample objective L = log (1/S) Σ_s exp f(b_s)
  (f = a log weight): ĝ = Σ_s w̃_s ∇ f(b_s) + Σ_s (L − L_{−s}) ∇ log q(b_s), where w̃ are the
  normalised weights and L_{−s} is L with f(b_s) replaced by the mean of the others. Unbiased for
  ∇ E[L].
- `disarm` (Dong, Mnih, Tucker 2020), binary (K = 2, b = sample[..., 0], Bernoulli logit
  α = θ₀ − θ₁): one antithetic pair b = 1[u < σ(α)], b̃ = 1[u > σ(−α)] shared by all variables,
  ĝ_α = ½ (f(b) − f(b̃)) (−1)^{b̃} 1[b ≠ b̃] σ(|α|) per variable. Unbiased; the categorical
  extensions (Dong et al. 2021) are not implemented.

Samples come from a family ("gs": K logits, categorical softmax(θ); "igr_i": IGR-I's induced
categorical with its exact quadrature pmf). Any dependence of f on θ itself (a log q term) is
differentiated directly, as the estimators require.
"""

from __future__ import annotations

from typing import Any, ClassVar

import tensorflow as tf

from igr_tf.estimators._base import (
    Estimator,
    Objective,
    call_objective,
    check_num_samples,
    check_params,
    uniform,
)
from igr_tf.estimators._families import family

__all__ = ["VIMCO", "DisARM", "ReinforceLOO"]


class _ScoreFunction(Estimator):
    unbiased: ClassVar[bool] = True
    needs_objective: ClassVar[bool] = True

    def __init__(self, num_categories: int, *, num_samples: int = 2, distribution: str = "gs"):
        super().__init__(num_categories)
        self.num_samples = check_num_samples(num_samples, 2, self.name)
        self.family = family(distribution, self.num_categories)
        if not self.family.has_exact_pmf:
            raise ValueError(
                f"{self.name} needs an exact pmf; {distribution!r} has none for K = "
                f"{self.num_categories} (use 'gs' or 'igr_i')."
            )
        self.distribution = distribution

    @property
    def num_params(self) -> int:
        return self.family.num_params

    def log_pmf(self, params) -> tf.Tensor:
        return self.family.log_pmf(check_params(params, self.num_params, self.name))

    def _draw(self, params, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """(S one-hot samples `[S, *batch, V, K]`, their log q `[S, *batch]`)."""
        tiled = tf.broadcast_to(params, tf.concat([[self.num_samples], tf.shape(params)], 0))
        samples = self.family.sample(tiled, seed)
        log_q = tf.reduce_sum(samples * self.family.log_pmf(params)[tf.newaxis], axis=[-2, -1])
        return samples, log_q

    def get_config(self) -> dict[str, Any]:
        return dict(
            super().get_config(), num_samples=self.num_samples, distribution=self.distribution
        )


def _score_term(coefficient: tf.Tensor, log_q: tf.Tensor) -> tf.Tensor:
    """Zero in value; gradient `stop_gradient(coefficient) · ∇ log_q`."""
    return tf.stop_gradient(coefficient) * (log_q - tf.stop_gradient(log_q))


class ReinforceLOO(_ScoreFunction):
    """REINFORCE with the leave-one-out baseline; the value is mean_s f(b_s)."""

    name = "reinforce_loo"

    def surrogate(self, f: Objective, params, seed=None) -> tf.Tensor:
        params = check_params(params, self.num_params, self.name)
        samples, log_q = self._draw(params, seed)
        values = call_objective(f, samples, self.name)
        s = float(self.num_samples)
        mean = tf.reduce_mean(values, axis=0)
        # f_s − mean of the others = S/(S−1) (f_s − f̄); the 1/S of the average is applied below.
        advantage = (values - mean) * (s / (s - 1.0))
        return mean + tf.reduce_mean(_score_term(advantage, log_q), axis=0)


class VIMCO(_ScoreFunction):
    """VIMCO for L = log mean_s exp f(b_s) (f a log weight); the value is L."""

    name = "vimco"
    objective_kind: ClassVar[str] = "log_mean_exp"

    def surrogate(self, f: Objective, params, seed=None) -> tf.Tensor:
        params = check_params(params, self.num_params, self.name)
        samples, log_q = self._draw(params, seed)
        values = call_objective(f, samples, self.name)
        s = self.num_samples
        log_s = tf.math.log(tf.constant(float(s), values.dtype))
        bound = tf.reduce_logsumexp(values, axis=0) - log_s
        # L_{−s}: sample s's log weight replaced by the mean of the others ([S (left out), S]).
        others_mean = (tf.reduce_sum(values, axis=0) - values) / float(s - 1)
        eye = tf.reshape(tf.eye(s, dtype=tf.bool), [s, s] + [1] * (values.shape.rank - 1))
        replaced = tf.where(eye, others_mean[:, tf.newaxis], values[tf.newaxis])
        left_out = tf.reduce_logsumexp(replaced, axis=1) - log_s
        return bound + tf.reduce_sum(_score_term(bound - left_out, log_q), axis=0)


class DisARM(Estimator):
    """DisARM for binary variables (K = 2 logits per variable; b = sample[..., 0])."""

    name = "disarm"
    unbiased: ClassVar[bool] = True
    needs_objective: ClassVar[bool] = True

    def __init__(self, num_categories: int = 2) -> None:
        super().__init__(num_categories)
        if self.num_categories != 2:
            raise ValueError(
                f"disarm is for binary variables (num_categories=2); got {num_categories}."
            )

    @property
    def num_params(self) -> int:
        return 2

    def surrogate(self, f: Objective, params, seed=None) -> tf.Tensor:
        params = check_params(params, self.num_params, self.name)
        alpha = params[..., 0] - params[..., 1]  # Bernoulli logit of b = first category
        u = uniform(tf.shape(alpha), seed, alpha.dtype)
        fixed = tf.stop_gradient(alpha)
        on = tf.cast(u < tf.sigmoid(fixed), alpha.dtype)
        on_anti = tf.cast(u > tf.sigmoid(-fixed), alpha.dtype)  # 1 − u < σ(α)
        pair = tf.stack(
            [tf.stack([on, 1.0 - on], -1), tf.stack([on_anti, 1.0 - on_anti], -1)], axis=0
        )
        values = call_objective(f, pair, self.name)
        half_diff = 0.5 * (values[0] - values[1])[..., tf.newaxis]
        sign = 1.0 - 2.0 * on_anti  # (−1)^{b̃}
        differ = tf.cast(tf.not_equal(on, on_anti), alpha.dtype)
        coefficient = half_diff * sign * differ * tf.sigmoid(tf.abs(fixed))
        score = tf.reduce_sum(_score_term(coefficient, alpha), axis=-1)
        return tf.reduce_mean(values, axis=0) + score
