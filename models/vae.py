"""Discrete VAE: V categorical latents with K categories, relaxed by any registered relaxation.

```none
x ─ encoder ─▶ params ─ DiscreteLatent(name) ─▶ ψ [V, K] ─ decoder ─▶ p(x | ψ)
loss (S = 1):  −ELBO = −log p(x | ψ) + KL(q(ψ | x) ‖ p(ψ))
loss (S > 1):  −log (1/S) Σ_s p(x | ψ_s) p(ψ_s) / q(ψ_s | x)      (importance weighted, k-sample)
```

The model never looks at which relaxation it holds: the latent layer gives samples and the KL term.

With `estimator=NAME` (any of `igr_tf.estimators.names()` that applies to K categories) the latent
is an `igr_tf.estimators.EstimatorLatent`: the loss is `surrogate(d ↦ −log p(x | d)) + KL` with d
exactly one-hot and KL the estimator's closed-form KL of its categorical to the uniform prior
(`EstimatorLatent` documents the exceptions: VIMCO's importance-weighted bound, the Gaussian KL of
st_igr_sb for K > 2 and st_igr_planar). The test log-likelihood uses the estimator's categorical.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf import evaluation
from igr_tf.estimators import EstimatorLatent, option_names
from igr_tf.layers import DiscreteLatent, work_dtype

__all__ = ["ARCHITECTURES", "DiscreteVAE", "LIKELIHOODS"]


# --- architectures: (encoder body, decoder body), each a list of layers -------------------------
def _dense_stack(units: tuple[int, ...]) -> Callable[[], list[keras.layers.Layer]]:
    return lambda: [keras.layers.Dense(u, activation="relu") for u in units]


def _conv_encoder() -> list[keras.layers.Layer]:
    return [
        keras.layers.Conv2D(32, 4, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 4, strides=2, padding="same", activation="relu"),
        keras.layers.Flatten(),
    ]


def _conv_decoder(image_shape: tuple[int, int, int]) -> list[keras.layers.Layer]:
    h, w, _ = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"arch='conv' needs image sides divisible by 4; got {image_shape}.")
    return [
        keras.layers.Dense((h // 4) * (w // 4) * 64, activation="relu"),
        keras.layers.Reshape((h // 4, w // 4, 64)),
        keras.layers.Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu"),
        keras.layers.Flatten(),
    ]


ARCHITECTURES: dict[str, tuple[Callable, Callable]] = {
    "linear": (_dense_stack(()), lambda shape: []),
    "nonlinear": (_dense_stack((512, 256)), lambda shape: _dense_stack((256, 512))()),
    "relax": (_dense_stack((200, 200)), lambda shape: _dense_stack((200, 200))()),
    "conv": (_conv_encoder, _conv_decoder),
}


# --- likelihoods: (outputs per pixel, log p(x | decoder outputs)) -------------------------------
def _bernoulli_log_prob(x: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    """Σ_pixels log Bernoulli(x; sigmoid(out)), x in [0, 1] (flattened)."""
    return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=out), -1)


def _gaussian_log_prob(x: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    """Σ_pixels log N(x; sigmoid(m), (1e-6 + softplus(s))²) with out = [m, s] (the FMNIST setup)."""
    m, s = tf.split(out, 2, axis=-1)
    mean, scale = tf.sigmoid(m), 1e-6 + tf.math.softplus(s)
    z = (x - mean) / scale
    return tf.reduce_sum(-0.5 * tf.square(z) - tf.math.log(scale) - 0.5 * math.log(2 * math.pi), -1)


LIKELIHOODS: dict[str, tuple[int, Callable]] = {
    "bernoulli": (1, _bernoulli_log_prob),
    "gaussian": (2, _gaussian_log_prob),
}


def _choice(value: str, options, name: str) -> str:
    if value not in options:
        raise ValueError(f"`{name}` must be one of {sorted(options)}; got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="models")
class DiscreteVAE(keras.Model):
    """VAE with `num_vars` categorical latents of `num_categories` categories.

    Args:
      relaxation: registered name: "igr_i", "igr_sb", "igr_planar" or "gs".
      num_vars, num_categories: V and K.
      temperature: τ of the relaxation: fixed, the initial value of a learned τ
        (`trainable_temperature`), or reassigned by `igr_tf.layers.TemperatureSchedule`.
      trainable_temperature: learn log τ with the other weights (relaxed samples only).
      arch: "linear", "nonlinear", "relax" or "conv" (SPEC §5).
      image_shape: input shape `(H, W, C)`, pixels in [0, 1].
      likelihood: "bernoulli" (binary data) or "gaussian" (continuous data, as for FMNIST).
      num_samples: S; S > 1 trains the importance-weighted (k-sample) bound, which needs the
        one-sample log-ratio, so it uses kl="sampled".
      relaxation_options: extra options of the relaxation (kl, stick_the_landing, adaptive, ...).
      hard: straight-through (as `gumbel_softmax(hard=True)`): forward one-hot, backward the
        relaxed gradient.
      seed: seed of the latent layer's sampling.
      estimator: None (the relaxed sample above) or a gradient estimator's name; its latent
        samples are exactly one-hot and `relaxation`, `relaxation_options` and `hard` are unused.
        The model's `temperature` is passed on to estimators that take one.
      estimator_options: further keyword options of `igr_tf.estimators.get`.
    """

    def __init__(
        self,
        relaxation: str = "igr_i",
        num_vars: int = 20,
        num_categories: int = 10,
        temperature: float = 1.0,
        arch: str = "nonlinear",
        image_shape: tuple[int, int, int] = (28, 28, 1),
        likelihood: str = "bernoulli",
        num_samples: int = 1,
        relaxation_options: dict[str, Any] | None = None,
        hard: bool = False,
        seed: int | None = None,
        estimator: str | None = None,
        estimator_options: dict[str, Any] | None = None,
        trainable_temperature: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.arch = _choice(arch, ARCHITECTURES, "arch")
        self.likelihood = _choice(likelihood, LIKELIHOODS, "likelihood")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_samples = int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"`num_samples` must be ≥ 1; got {num_samples}.")
        options = dict(relaxation_options or {})
        if self.num_samples > 1:
            if options.get("kl", "sampled") != "sampled":
                raise ValueError("num_samples > 1 (importance weighting) needs kl='sampled'.")
            options["kl"] = "sampled"
        if estimator is None:
            self.latent = DiscreteLatent(
                relaxation,
                num_vars,
                num_categories,
                temperature,
                trainable_temperature=trainable_temperature,
                hard=hard,
                relaxation_options=options,
                seed=seed,
                name="latent",
            )
        else:
            if trainable_temperature:
                raise ValueError(
                    "trainable_temperature is for the relaxed sample; an estimator's temperature "
                    "is its option (estimator_options['temperature'])."
                )
            if self.num_samples > 1:
                raise ValueError(
                    "num_samples > 1 is for the relaxed bound; with `estimator` the number of "
                    "samples is the estimator's own option (estimator_options['num_samples'])."
                )
            est_options = (
                {"temperature": temperature} if "temperature" in option_names(estimator) else {}
            )
            est_options.update(estimator_options or {})
            self.latent = EstimatorLatent(
                estimator, num_vars, num_categories, est_options, seed=seed, name="latent"
            )
        encoder_body, decoder_body = ARCHITECTURES[self.arch]
        outputs_per_pixel, self._log_prob = LIKELIHOODS[self.likelihood]
        flat = [] if self.arch == "conv" else [keras.layers.Flatten()]
        self.encoder = keras.Sequential(
            flat + encoder_body() + [keras.layers.Dense(self.latent.params_size)], name="encoder"
        )
        self.decoder = keras.Sequential(
            [keras.layers.Flatten()]
            + decoder_body(self.image_shape)
            + [keras.layers.Dense(int(np.prod(self.image_shape)) * outputs_per_pixel)],
            name="decoder",
        )
        self._config = dict(
            relaxation=relaxation,
            num_vars=num_vars,
            num_categories=num_categories,
            temperature=temperature,
            arch=arch,
            image_shape=self.image_shape,
            likelihood=likelihood,
            num_samples=num_samples,
            relaxation_options=dict(relaxation_options or {}),
            hard=hard,
            seed=seed,
            estimator=estimator,
            estimator_options=dict(estimator_options or {}),
            trainable_temperature=bool(trainable_temperature),
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "recon", "kl", *self.latent.metric_names)
        }
        # Build now: the input shape is known, so weights exist for checkpoints and saving.
        self.build((None, *self.image_shape))

    def build(self, input_shape) -> None:
        self.encoder.build(input_shape)
        self.latent.build((None, self.latent.params_size))
        self.decoder.build((None, self.latent.num_vars, self.latent.num_categories))
        self.built = True

    # --- pieces ---------------------------------------------------------------------------------
    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def log_likelihood(self, x: tf.Tensor, latents: tf.Tensor) -> tf.Tensor:
        """`log p(x | latents)` for images `[B, H, W, C]` and latents `[B, V, K]` -> `[B]`.

        Computed in float32 (float64 for a float64 model) whatever the compute dtype, as Keras
        recommends for losses under mixed precision.
        """
        out = self.decoder(latents)
        dtype = work_dtype(out.dtype)
        flat_x = tf.cast(tf.reshape(x, [tf.shape(x)[0], -1]), dtype)
        return self._log_prob(flat_x, tf.cast(out, dtype))

    def call(self, x, training=None):
        """Decoder outputs (logits of the pixel means) for a relaxed draw of the latents."""
        return self.decoder(self.latent(self.encoder(x), training=training)["sample"])

    def objective(self, x: tf.Tensor, training=None) -> dict[str, tf.Tensor]:
        """Loss terms per example: "loss" (−ELBO or −IW bound), "recon", "kl" and diagnostics."""
        s = self.num_samples
        if isinstance(self.latent, EstimatorLatent):
            return self._estimator_objective(x, training)
        x_rep = tf.tile(x, [s] + [1] * (len(x.shape) - 1)) if s > 1 else x
        out = self.latent(self.encoder(x_rep, training=training), training=training)
        log_lik = self.log_likelihood(x_rep, out["sample"])
        terms = {k: out[k] for k in self.latent.metric_names}
        terms["recon"] = -log_lik
        terms["kl"] = out["kl"]
        if s == 1:
            terms["loss"] = -log_lik + out["kl"]
        else:
            log_w = tf.reshape(log_lik - out["kl"], [s, -1])
            terms["loss"] = -evaluation.log_mean_exp(log_w, axis=0)
        return terms

    def _estimator_objective(self, x: tf.Tensor, training=None) -> dict[str, tf.Tensor]:
        params = self.encoder(x, training=training)
        return self.latent.loss_terms(params, self._sample_log_likelihoods(x))

    def _sample_log_likelihoods(self, x: tf.Tensor) -> Callable[[tf.Tensor], tf.Tensor]:
        """d `[N, B, V, K]` -> `log p(x | d_n)` `[N, B]` (the N samples decoded as one batch)."""

        def log_lik(d):
            n = tf.shape(d)[0]
            flat_d = tf.reshape(d, tf.concat([[-1], tf.shape(d)[2:]], 0))
            x_rep = tf.tile(x, [n] + [1] * (len(x.shape) - 1))
            return tf.reshape(self.log_likelihood(x_rep, flat_d), [n, -1])

        return log_lik

    def _update(self, terms: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        # The loss scaling under tf.distribute and the XLA boundary are the same for every model.
        from igr_tf import training

        x = data[0] if isinstance(data, tuple) else data
        terms = training.minimize(self, lambda x: self.objective(x, training=True), x)
        return training.step_logs(self._update(terms))

    def test_step(self, data):
        from igr_tf import training

        x = data[0] if isinstance(data, tuple) else data
        objective = training.replica_step(self, lambda x: self.objective(x, training=False))
        return training.step_logs(self._update(objective(x)))

    # --- evaluation -------------------------------------------------------------------------------
    def loglik_terms(self, x: tf.Tensor, num_samples: int = 100, seed=(0, 0)) -> dict:
        """Per-example importance-sampled log-likelihood bound and the original code's quantity.

        Latents are one-hot draws from the categorical the encoder induces (exact for igr_i and
        gs; a Monte Carlo estimate for igr_sb and igr_planar, which keeps the bound valid).
        Deterministic given the weights, `x` and the stateless `seed` (shape [2] ints).
        """
        seed = tf.convert_to_tensor(seed, tf.int32)
        # Two streams split from `seed`: the proposal's Monte Carlo estimate (igr_sb, igr_planar)
        # and the importance samples. The result depends only on the weights, x and `seed`, not
        # on the latent layer's SeedGenerator, whose state moves with every call and is not
        # saved by `model.save`.
        proposal_seed, sample_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        q_log_probs = self.latent.categorical_log_probs(
            self.encoder(x, training=False), seed=proposal_seed
        )
        prior_log_probs = self.latent.prior_categorical_log_probs(q_log_probs.dtype)

        log_lik = self._sample_log_likelihoods(x)
        # One set of decoded latents serves both estimates (decoding is the expensive part).
        return evaluation.loglik_estimates(
            log_lik, q_log_probs, num_samples, prior_log_probs=prior_log_probs, seed=sample_seed
        )

    def evaluate_loglik(
        self, dataset: tf.data.Dataset, num_samples: int = 100, seed: int = 0
    ) -> dict:
        """Mean test log-likelihood (importance sampled, S = `num_samples`) over batched data."""
        # autograph=False: the evaluation has no Python control flow on tensors, and converting
        # it (and the quadrature it calls) took ~10 s per process, more than the evaluation.
        step = tf.function(lambda x, s: self.loglik_terms(x, num_samples, s), autograph=False)
        sums: dict[str, float] = {}
        count = 0
        for i, batch in enumerate(dataset):
            x = batch[0] if isinstance(batch, tuple) else batch
            terms = step(x, tf.constant([seed, i], tf.int32))
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
            count += int(x.shape[0])
        result = {f"test_{k}": v / count for k, v in sums.items()}
        exact = (
            self.latent.exact_categorical
            if isinstance(self.latent, EstimatorLatent)
            else self.latent.relaxation.exact_categorical
        )
        result["test_loglik_proposal"] = "exact" if exact else "monte_carlo"
        return result

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), **self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
