r"""`EstimatorLatent`: a Keras layer that gives a model discrete latents trained by an estimator.

The layer owns what an estimator needs (its flow weights, REBAR/RELAX's control variate, a seed
stream) and gives a model the latent terms of its loss without the model knowing which estimator
it holds. For encoder outputs `params` `[B, V·P]` and a per-sample log-likelihood
`log p(x | d)` (`d` one-hot `[S, B, V, K]` -> `[S, B]`), `loss_terms` returns per example:

- estimators of a mean (`objective_kind == "mean"`):
  `loss = surrogate(d ↦ −log p(x | d)) + KL`, with KL = `estimator.kl(params)` (closed form
  KL(Cat(q) ‖ uniform) for the estimators with an exact pmf; see each estimator's `kl`);
- VIMCO (`objective_kind == "log_mean_exp"`): `loss = −surrogate(d ↦ log p(x | d) + log p(d) −
  log q(d))`, the negative S-sample importance-weighted bound, whose KL is inside the weights.

"recon" is `loss − kl` in both cases (the reconstruction part of the loss as reported).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from igr_tf._seed_state import SavesSeedState

__all__ = ["EstimatorLatent"]


@keras.saving.register_keras_serializable(package="igr_tf")
class EstimatorLatent(SavesSeedState, keras.layers.Layer):
    """V discrete latents with K categories whose gradients come from a named estimator.

    Args:
      estimator: a name in `igr_tf.estimators.names()`.
      num_vars, num_categories: V and K.
      estimator_options: keyword options of `igr_tf.estimators.get` (e.g. temperature).
      binary: `sample` returns `b = one_hot[..., 0]` `[B, V]` (needs K = 2).
      seed: seed of the layer's stateless random stream.
    """

    def __init__(
        self,
        estimator: str,
        num_vars: int,
        num_categories: int,
        estimator_options: dict[str, Any] | None = None,
        binary: bool = False,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from igr_tf import estimators

        self.estimator_name = estimator
        self.estimator_options = dict(estimator_options or {})
        self.estimator = estimators.get(estimator, num_categories, **self.estimator_options)
        self.num_vars = int(num_vars)
        self.num_categories = self.estimator.num_categories
        if binary and self.num_categories != 2:
            raise ValueError(f"`binary=True` needs num_categories=2; got {num_categories}.")
        self.binary = bool(binary)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # REBAR/RELAX's control variate (a Keras layer: tracked, trained, saved with the model).
        self.control = self.estimator.build(self.num_vars)
        self.flow_weights: dict[str, Any] = {}  # created in build (st_igr_planar's flows)

    @property
    def params_size(self) -> int:
        return self.num_vars * self.estimator.num_params

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ()

    @property
    def needs_objective(self) -> bool:
        """True when the estimator must evaluate the objective itself (no `sample`)."""
        return self.estimator.needs_objective

    def build(self, input_shape) -> None:
        self.flow_weights = {
            name: self.add_weight(
                name=name, shape=spec.shape, initializer=spec.initializer, autocast=False
            )
            for name, spec in self.estimator.weight_specs(self.num_vars).items()
        }

    def _params(self, inputs) -> tf.Tensor:
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype != tf.float64:
            inputs = tf.cast(inputs, tf.float32)
        return tf.reshape(inputs, [-1, self.num_vars, self.estimator.num_params])

    def _seed(self) -> tf.Tensor:
        return tf.cast(self.seed_generator.next(), tf.int32)

    def _weights(self) -> dict[str, Any]:
        return {"weights": self.flow_weights} if self.flow_weights else {}

    def kl(self, inputs) -> tf.Tensor:
        """`[B]`: the estimator's KL term (see its `kl`)."""
        return self.estimator.kl(self._params(inputs), self.flow_weights or None)

    def loss_terms(
        self, inputs, log_likelihood: Callable[[tf.Tensor], tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        """Per-example "loss", "recon", "kl" `[B]` (see the module docstring)."""
        params = self._params(inputs)
        est = self.estimator
        kl = est.kl(params, self.flow_weights or None)
        if est.objective_kind == "log_mean_exp":
            log_q = est.log_pmf(params)
            log_ratio = est.prior_log_pmf(log_q.dtype) - log_q

            def log_weight(d):
                return log_likelihood(d) + tf.reduce_sum(d * log_ratio, axis=[-2, -1])

            loss = -est.surrogate(log_weight, params, seed=self._seed())
        else:
            neg_log_lik = est.surrogate(
                lambda d: -log_likelihood(d), params, seed=self._seed(), **self._weights()
            )
            loss = neg_log_lik + kl
        return {"loss": loss, "recon": loss - kl, "kl": kl}

    def sample(self, inputs) -> tf.Tensor:
        """An exact one-hot `[B, V, K]` (binary: `[B, V]`) with the estimator's gradient
        (hard-sample estimators only)."""
        if self.needs_objective:
            raise ValueError(
                f"Estimator {self.estimator_name!r} evaluates the objective itself and has no "
                "sample; use loss_terms."
            )
        one_hot = self.estimator.sample(self._params(inputs), seed=self._seed(), **self._weights())
        return one_hot[..., 0] if self.binary else one_hot

    def categorical_log_probs(self, inputs, seed=None) -> tf.Tensor:
        """Log pmf `[B, V, K]` of the discrete sample (exact where the estimator has one)."""
        return self.estimator.categorical_log_probs(
            self._params(inputs), self.flow_weights or None, self._seed() if seed is None else seed
        )

    def prior_categorical_log_probs(self, dtype=tf.float32) -> tf.Tensor:
        return self.estimator.prior_log_pmf(dtype)

    @property
    def exact_categorical(self) -> bool:
        """Whether `categorical_log_probs` is exact (False: a Monte Carlo estimate)."""
        return self.estimator.exact_categorical

    def call(self, inputs, training=None) -> dict[str, tf.Tensor]:
        """A discrete draw (no gradient) from the estimator's categorical: {"sample"}."""
        log_probs = self.categorical_log_probs(inputs)
        flat = tf.reshape(log_probs, [-1, self.num_categories])
        idx = tf.random.stateless_categorical(flat, 1, seed=self._seed())[:, 0]
        one_hot = tf.reshape(
            tf.one_hot(idx, self.num_categories, dtype=log_probs.dtype), tf.shape(log_probs)
        )
        one_hot = tf.stop_gradient(one_hot)
        return {"sample": one_hot[..., 0] if self.binary else one_hot}

    def get_config(self) -> dict[str, Any]:
        return dict(
            super().get_config(),
            estimator=self.estimator_name,
            num_vars=self.num_vars,
            num_categories=self.num_categories,
            estimator_options=self.estimator_options,
            binary=self.binary,
            seed=self.seed,
        )
