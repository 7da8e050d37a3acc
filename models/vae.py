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

With `continuous_dim=D > 0` (JointVAE-style mixed latents, Dupont 2018) the encoder also outputs
a diagonal Gaussian q(z | x) over D continuous latents with prior N(0, I) (`GaussianLatent`), the
decoder reads `[z, ψ flattened]`, and the KL (and, for S > 1, the log-ratio) adds z's term:

```none
−ELBO = −log p(x | z, ψ) + KL(q(ψ | x) ‖ p(ψ)) + KL(N(μ, σ²) ‖ N(0, I))
```
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf import evaluation
from igr_tf._ops import plain_tensorflow
from igr_tf.estimators import EstimatorLatent, option_names
from igr_tf.layers import DiscreteLatent, work_dtype
from models.gaussian_latent import GaussianLatent

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
      continuous_dim: D ≥ 0 continuous Gaussian latents next to the discrete ones (module
        docstring); 0 (the default) is the purely discrete model. Not with `estimator`.
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
        continuous_dim: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(continuous_dim, bool) or not isinstance(continuous_dim, int | np.integer):
            raise ValueError(f"`continuous_dim` must be an integer ≥ 0; got {continuous_dim!r}.")
        if continuous_dim < 0:
            raise ValueError(f"`continuous_dim` must be an integer ≥ 0; got {continuous_dim}.")
        if continuous_dim and estimator is not None:
            raise ValueError(
                f"`continuous_dim` > 0 is for the relaxed latents; with `estimator` "
                f"({estimator!r}) use continuous_dim=0."
            )
        self.continuous_dim = int(continuous_dim)
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
        self.continuous = (
            GaussianLatent(self.continuous_dim, seed=seed, name="continuous")
            if self.continuous_dim
            else None
        )
        encoder_body, decoder_body = ARCHITECTURES[self.arch]
        outputs_per_pixel, self._log_prob = LIKELIHOODS[self.likelihood]
        flat = [] if self.arch == "conv" else [keras.layers.Flatten()]
        self.encoder = keras.Sequential(
            flat + encoder_body() + [keras.layers.Dense(self._encoder_outputs)], name="encoder"
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
            continuous_dim=self.continuous_dim,
        )
        kl_continuous = ("kl_continuous",) if self.continuous_dim else ()
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "recon", "kl", *kl_continuous, *self.latent.metric_names)
        }
        # Build now: the input shape is known, so weights exist for checkpoints and saving.
        self.build((None, *self.image_shape))

    def build(self, input_shape) -> None:
        self.encoder.build(input_shape)
        self.latent.build((None, self.latent.params_size))
        v, k = self.latent.num_vars, self.latent.num_categories
        if self.continuous is None:
            self.decoder.build((None, v, k))
        else:
            self.continuous.build((None, self.continuous.params_size))
            self.decoder.build((None, self.continuous_dim + v * k))
        self.built = True

    # --- mixed latents (continuous_dim > 0) -------------------------------------------------------
    @property
    def _encoder_outputs(self) -> int:
        extra = 0 if self.continuous is None else self.continuous.params_size
        return self.latent.params_size + extra

    def _split(self, encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Encoder outputs -> (discrete parameters, continuous parameters or None)."""
        if self.continuous is None:
            return encoded, None
        p = self.latent.params_size
        return encoded[..., :p], encoded[..., p:]

    def decoder_inputs(self, latents: tf.Tensor, continuous: tf.Tensor | None = None) -> tf.Tensor:
        """What the decoder reads: the discrete latents `[..., V, K]`, or with continuous_dim > 0
        `[z, latents flattened]` `[..., D + V K]` (z `[..., D]` in the latents' dtype)."""
        if self.continuous is None:
            return latents
        flat = tf.reshape(latents, tf.concat([tf.shape(latents)[:-2], [-1]], 0))
        return tf.concat([tf.cast(continuous, flat.dtype), flat], -1)

    # --- pieces ---------------------------------------------------------------------------------
    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def log_likelihood(
        self, x: tf.Tensor, latents: tf.Tensor, continuous: tf.Tensor | None = None
    ) -> tf.Tensor:
        """`log p(x | latents[, z])` for images `[B, H, W, C]`, latents `[B, V, K]` (and, with
        continuous_dim > 0, z `[B, D]`) -> `[B]`.

        Computed in float32 (float64 for a float64 model) whatever the compute dtype, as Keras
        recommends for losses under mixed precision.
        """
        out = self.decoder(self.decoder_inputs(latents, continuous))
        dtype = work_dtype(out.dtype)
        flat_x = tf.cast(tf.reshape(x, [tf.shape(x)[0], -1]), dtype)
        return self._log_prob(flat_x, tf.cast(out, dtype))

    def call(self, x, training=None):
        """Decoder outputs (logits of the pixel means) for a relaxed draw of the latents."""
        params, continuous_params = self._split(self.encoder(x))
        sample = self.latent(params, training=training)["sample"]
        if self.continuous is None:
            return self.decoder(sample)
        z = self.continuous(continuous_params, training=training)["sample"]
        return self.decoder(self.decoder_inputs(sample, z))

    @plain_tensorflow  # also called directly inside users' tf.functions
    def objective(self, x: tf.Tensor, training=None) -> dict[str, tf.Tensor]:
        """Loss terms per example: "loss" (−ELBO or −IW bound), "recon", "kl" and diagnostics."""
        s = self.num_samples
        if isinstance(self.latent, EstimatorLatent):
            return self._estimator_objective(x, training)
        x_rep = tf.tile(x, [s] + [1] * (len(x.shape) - 1)) if s > 1 else x
        params, continuous_params = self._split(self.encoder(x_rep, training=training))
        out = self.latent(params, training=training)
        terms = {k: out[k] for k in self.latent.metric_names}
        if self.continuous is None:
            log_lik = self.log_likelihood(x_rep, out["sample"])
            kl = out["kl"]
        else:
            c = self.continuous(continuous_params, training=training)
            log_lik = self.log_likelihood(x_rep, out["sample"], c["sample"])
            # S = 1: z's closed-form KL; S > 1: its one-sample log-ratio (as the discrete kl).
            terms["kl_continuous"] = c["kl"] if s == 1 else c["log_ratio"]
            kl = out["kl"] + tf.cast(terms["kl_continuous"], out["kl"].dtype)
        terms["recon"] = -log_lik
        terms["kl"] = kl
        if s == 1:
            terms["loss"] = -log_lik + kl
        else:
            log_w = tf.reshape(log_lik - kl, [s, -1])
            terms["loss"] = -evaluation.log_mean_exp(log_w, axis=0)
        return terms

    def _estimator_objective(self, x: tf.Tensor, training=None) -> dict[str, tf.Tensor]:
        params = self.encoder(x, training=training)
        return self.latent.loss_terms(params, self._sample_log_likelihoods(x))

    def _sample_log_likelihoods(self, x: tf.Tensor) -> Callable[..., tf.Tensor]:
        """d `[N, B, V, K]` (and z `[N, B, D]`) -> `log p(x | d_n[, z_n])` `[N, B]` (the N
        samples decoded as one batch)."""

        def log_lik(d, z=None):
            n = tf.shape(d)[0]
            flat_d = tf.reshape(d, tf.concat([[-1], tf.shape(d)[2:]], 0))
            flat_z = None if z is None else tf.reshape(z, [-1, self.continuous_dim])
            x_rep = tf.tile(x, [n] + [1] * (len(x.shape) - 1))
            return tf.reshape(self.log_likelihood(x_rep, flat_d, flat_z), [n, -1])

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
    def loglik_terms(
        self, x: tf.Tensor, num_samples: int = 100, seed=(0, 0), prior_log_probs=None
    ) -> dict:
        """Per-example importance-sampled log-likelihood bound and the original code's quantity.

        Latents are one-hot draws from the categorical the encoder induces (exact for igr_i and
        gs; a Monte Carlo estimate for igr_sb and igr_planar, which keeps the bound valid).
        With continuous_dim > 0 the proposal is that categorical times the encoder's Gaussian
        q(z | x) and the prior p(d) N(z; 0, I) (`evaluation.mixed_loglik_estimates`).
        Deterministic given the weights, `x` and the stateless `seed` (shape [2] ints).
        `prior_log_probs` `[K]`: the prior's induced categorical, if already computed (it depends
        only on the weights, so `evaluate_loglik` computes it once, not in every traced step).
        """
        seed = tf.convert_to_tensor(seed, tf.int32)
        # Two streams split from `seed`: the proposal's Monte Carlo estimate (igr_sb, igr_planar)
        # and the importance samples. The result depends only on the weights, x and `seed`, not
        # on the latent layer's SeedGenerator, whose state moves with every call and is not
        # saved by `model.save`.
        proposal_seed, sample_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        params, continuous_params = self._split(self.encoder(x, training=False))
        q_log_probs = self.latent.categorical_log_probs(params, seed=proposal_seed)
        if prior_log_probs is None:
            prior_log_probs = self.latent.prior_categorical_log_probs(q_log_probs.dtype)
        prior_log_probs = tf.cast(prior_log_probs, q_log_probs.dtype)

        log_lik = self._sample_log_likelihoods(x)
        if self.continuous is not None:
            loc, scale = self.continuous.loc_scale(continuous_params)
            return evaluation.mixed_loglik_estimates(
                log_lik,
                q_log_probs,
                tf.cast(loc, q_log_probs.dtype),
                tf.cast(scale, q_log_probs.dtype),
                num_samples,
                prior_log_probs=prior_log_probs,
                seed=sample_seed,
            )
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
        # The prior's categorical once, eagerly: traced into the step, IGR-I's quadrature for it
        # cost ~3 s of tracing and graph optimization per process (it is a constant there).
        prior = self.latent.prior_categorical_log_probs(work_dtype(self.latent.compute_dtype))
        step = tf.function(
            lambda x, s: self.loglik_terms(x, num_samples, s, prior_log_probs=prior),
            autograph=False,
        )
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

    def cluster_log_probs(self, x: tf.Tensor, seed=(0, 0)) -> tf.Tensor:
        """`log q(c | x)` `[B, K]` of the single discrete variable (num_vars = 1): the categorical
        the encoder induces (exact for igr_i and gs, a Monte Carlo estimate otherwise)."""
        if self.latent.num_vars != 1:
            raise ValueError(f"clusters need num_vars=1; this model has {self.latent.num_vars}.")
        params, _ = self._split(self.encoder(x, training=False))
        seed = tf.convert_to_tensor(seed, tf.int32)
        return self.latent.categorical_log_probs(params, seed=seed)[:, 0, :]

    def predict_clusters(self, images: np.ndarray, batch_size: int = 100, seed: int = 0):
        """Predicted cluster `argmax_c q(c | x)` of each image (num_vars = 1), `[N]` int64."""
        step = tf.function(lambda x, s: tf.argmax(self.cluster_log_probs(x, s), -1),
                           autograph=False)  # fmt: skip
        return np.concatenate(
            [
                step(images[i : i + batch_size], tf.constant([seed, i], tf.int32)).numpy()
                for i in range(0, len(images), batch_size)
            ]
        )

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), **self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)
