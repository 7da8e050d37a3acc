"""Structured output prediction (SOP): the lower half of an MNIST digit from its upper half.

A sigmoid belief net with binary stochastic layers of 240 units each; every stochastic layer is
an `igr_tf.layers.DiscreteLatent(binary=True, num_categories=2)` for the chosen relaxation, so the
model is the same code for IGR-I, IGR-SB, IGR-Planar and the Gumbel-Softmax.

With `x_u` the upper and `x_l` the lower 14×28 half (392 pixels each) and `b = (b_1, …, b_L)`
the binary units, the model is

    p(x_l | x_u) = Σ_b p(x_l | b_L) Π_l p(b_l | b_{l-1}),   b_0 = x_u,
    p(x_l | b_L) = Π_i Bernoulli(x_{l,i}; sigmoid(W b_L + c)_i).

There is no KL term: the objective is the conditional likelihood, estimated with S samples

    loss = −E_b[ log (1/S) Σ_s p(x_l | b_s) ],

where in training the `b_s` are relaxed (continuous, reparameterised) samples and in testing
they are rounded (`argmax`, exactly binary) samples. By Jensen the S-sample estimate is an upper
bound on −log p(x_l | x_u) that tightens as S grows.

With `estimator=NAME` (a hard-sample estimator of `igr_tf.estimators`: one that needs no
objective) every stochastic layer is an `igr_tf.estimators.EstimatorLatent(binary=True)`: in
training the `b_s` are exactly binary samples whose gradient is the estimator's, and in testing
they are drawn from the estimator's categorical. Each layer has the estimator's parameters per
unit (K = 2 logits for the logit estimators, IGR's (μ, ξ) for st_igr_*).

Architectures ("Dense → stochastic" is a Dense producing the latent's parameters, then the
`DiscreteLatent`):

- "double_linear": 392 → 240 → 240 → 392 (two stochastic layers, linear maps between them);
- "triple_linear": 392 → 240 → 240 → 240 → 392;
- "nonlinear": a Dense 240 tanh before each of two stochastic layers,
  392 → 240 (tanh) → 240 → 240 (tanh) → 240 → 392.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from igr_tf.estimators import EstimatorLatent, option_names
from igr_tf.evaluation import log_mean_exp
from igr_tf.layers import DiscreteLatent, work_dtype

# The SOP learning-rate schedule, imported so that it is registered with Keras wherever this model
# is: a model saved with its optimizer names it, and `keras.models.load_model` must find it.
from igr_tf.training import InverseTimeDecayFloor  # noqa: F401

__all__ = ["ARCHITECTURES", "StructuredOutputPredictor", "split_halves"]

ARCHITECTURES: dict[str, tuple[int, bool]] = {
    # name: (number of stochastic layers, Dense tanh before each stochastic layer)
    "double_linear": (2, False),
    "triple_linear": (3, False),
    "nonlinear": (2, True),
}
HALF_PIXELS = 14 * 28


def split_halves(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Images `[B, 28, 28, 1]` (or `[B, 28, 28]`) -> (upper, lower) halves, each `[B, 392]`.

    The upper half is rows 0..13, the lower half rows 14..27, flattened row-major.
    """
    images = tf.convert_to_tensor(images)
    flat = tf.reshape(images, [-1, 28 * 28])
    return flat[:, :HALF_PIXELS], flat[:, HALF_PIXELS:]


def _as_images(data: Any) -> tf.Tensor:
    """Unpacks what `fit`/`evaluate` pass to a step: `x`, `(x,)`, `(x, y)` or `(x, y, w)`."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


@keras.saving.register_keras_serializable(package="models")
class StructuredOutputPredictor(keras.Model):
    """Sigmoid belief net predicting the lower half of a binary digit from the upper half.

    Args:
      relaxation: name of the relaxation of every stochastic layer ("igr_i", "igr_sb",
        "igr_planar", "gs"); see `igr_tf.distributions.relaxations.get`.
      architecture: one of `ARCHITECTURES`.
      temperature: τ of every stochastic layer (the SPEC uses τ = 1).
      num_units: binary units per stochastic layer (240).
      num_train_samples: S for the training objective (relaxed samples; batch tiled S times).
      num_test_samples: S for the test NLL in `test_step` (rounded samples).
      relaxation_options: keyword options of the relaxation (e.g. `{"delta": 1.0}`).
      seed: seed of the stochastic layers (layer l gets `seed + l`); `None` for a random one.
      estimator: None (relaxed samples) or the name of a hard-sample estimator; `temperature`
        is passed on where it takes one, and `relaxation`, `relaxation_options` are unused.
      estimator_options: further keyword options of `igr_tf.estimators.get`.

    `call(images)` returns the Bernoulli logits `[B, 392]` of the lower half given one relaxed
    sample (`discrete=True`: one rounded sample). The trackers are "loss" (the S-sample relaxed
    objective, train and test) and "nll" (the test NLL with `num_test_samples` rounded samples,
    test only).
    """

    def __init__(
        self,
        relaxation: str = "igr_i",
        architecture: str = "double_linear",
        temperature: float = 1.0,
        num_units: int = 240,
        num_train_samples: int = 1,
        num_test_samples: int = 100,
        relaxation_options: dict[str, Any] | None = None,
        seed: int | None = None,
        estimator: str | None = None,
        estimator_options: dict[str, Any] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"Unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}."
            )
        for value, label in (
            (num_train_samples, "num_train_samples"),
            (num_test_samples, "num_test_samples"),
            (num_units, "num_units"),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"`{label}` must be an integer ≥ 1; got {value!r}.")
        self.relaxation_name = relaxation
        self.architecture = architecture
        self.temperature = float(temperature)
        self.num_units = int(num_units)
        self.num_train_samples = int(num_train_samples)
        self.num_test_samples = int(num_test_samples)
        self.relaxation_options = dict(relaxation_options or {})
        self.seed = seed
        self.estimator = estimator
        self.estimator_options = dict(estimator_options or {})

        num_layers, nonlinear = ARCHITECTURES[architecture]
        self.hidden: list[keras.layers.Dense] = []
        self.to_params: list[keras.layers.Dense] = []
        self.latents: list[DiscreteLatent] = []
        for i in range(num_layers):
            if nonlinear:
                self.hidden.append(
                    keras.layers.Dense(self.num_units, activation="tanh", name=f"hidden_{i}")
                )
            layer_seed = None if seed is None else seed + i
            if estimator is None:
                latent = DiscreteLatent(
                    relaxation,
                    num_vars=self.num_units,
                    num_categories=2,
                    temperature=self.temperature,
                    binary=True,
                    relaxation_options=self.relaxation_options,
                    seed=layer_seed,
                    name=f"latent_{i}",
                )
            else:
                latent = self._estimator_latent(estimator, layer_seed, f"latent_{i}")
            self.to_params.append(keras.layers.Dense(latent.params_size, name=f"params_{i}"))
            self.latents.append(latent)
        self.decoder = keras.layers.Dense(HALF_PIXELS, name="lower_logits")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.nll_tracker = keras.metrics.Mean(name="nll")
        # The input shape is fixed, so build now: the custom steps never go through __call__,
        # and an unbuilt model would save no weights.
        self.build((None, 28, 28, 1))

    def _estimator_latent(self, estimator: str, seed, name: str) -> EstimatorLatent:
        options = (
            {"temperature": self.temperature} if "temperature" in option_names(estimator) else {}
        )
        options.update(self.estimator_options)
        latent = EstimatorLatent(estimator, self.num_units, 2, options, binary=True, seed=seed,
                                 name=name)  # fmt: skip
        if latent.needs_objective:
            raise ValueError(
                f"`estimator` {estimator!r} evaluates the objective itself; the SOP's stacked "
                "stochastic layers take hard-sample estimators (needs_objective False)."
            )
        return latent

    # --- network -------------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        shape = (None, HALF_PIXELS)
        for i, (to_params, latent) in enumerate(zip(self.to_params, self.latents, strict=True)):
            if self.hidden:
                self.hidden[i].build(shape)
                shape = (None, self.num_units)
            to_params.build(shape)
            latent.build((None, latent.params_size))
            shape = (None, self.num_units)
        self.decoder.build(shape)
        self.built = True

    def lower_logits(self, upper: tf.Tensor, discrete: bool = False) -> tf.Tensor:
        """Bernoulli logits `[B, 392]` of the lower half given the upper half `[B, 392]`.

        One sample of every stochastic layer: relaxed, or rounded (exactly 0/1) with `discrete`.
        Computed in float32 (float64 for a float64 model), whatever the compute dtype.
        """
        h = upper
        for i, (to_params, latent) in enumerate(zip(self.to_params, self.latents, strict=True)):
            if self.hidden:
                h = self.hidden[i](h)
            params = to_params(h)
            if isinstance(latent, EstimatorLatent):
                # Training: the estimator's sample; testing: a draw from its categorical.
                h = latent(params)["sample"] if discrete else latent.sample(params)
                h = tf.cast(h, params.dtype)
            else:
                h = latent(params, discrete=discrete)["sample"]
        out = self.decoder(h)
        return tf.cast(out, work_dtype(out.dtype))

    def call(self, inputs, training=None, discrete: bool = False) -> tf.Tensor:
        upper, _ = split_halves(inputs)
        return self.lower_logits(upper, discrete=discrete)

    # --- objective -----------------------------------------------------------------------------
    def sample_log_likelihoods(
        self, images: tf.Tensor, num_samples: int, discrete: bool = False
    ) -> tf.Tensor:
        """`log p(x_l | x_u, b_s)` for S samples `b_s`: `[S, B]` (the batch tiled S times)."""
        upper, lower = split_halves(images)
        batch = tf.shape(upper)[0]
        logits = self.lower_logits(tf.tile(upper, [num_samples, 1]), discrete=discrete)
        labels = tf.tile(tf.cast(lower, logits.dtype), [num_samples, 1])
        log_lik = -tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=-1
        )
        return tf.reshape(log_lik, [num_samples, batch])

    def nll(self, images: tf.Tensor, num_samples: int, discrete: bool = False) -> tf.Tensor:
        """Per-example `−log (1/S) Σ_s p(x_l | x_u, b_s)`: `[B]`."""
        return -log_mean_exp(self.sample_log_likelihoods(images, num_samples, discrete), axis=0)

    def train_step(self, data):
        # The loss scaling under tf.distribute and the XLA boundary are the same for every model.
        from igr_tf import training

        images = _as_images(data)
        terms = training.minimize(
            self, lambda x: {"loss": self.nll(x, self.num_train_samples)}, images
        )
        self.loss_tracker.update_state(tf.reduce_mean(terms["loss"]))
        return training.step_logs({"loss": self.loss_tracker.result()})

    def test_step(self, data):
        from igr_tf import training

        def losses(images):
            return (
                tf.reduce_mean(self.nll(images, self.num_train_samples)),
                self.nll(images, self.num_test_samples, discrete=True),
            )

        loss, nll = training.replica_step(self, losses)(_as_images(data))
        self.loss_tracker.update_state(loss)
        self.nll_tracker.update_state(nll)
        return training.step_logs(
            {"loss": self.loss_tracker.result(), "nll": self.nll_tracker.result()}
        )

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.nll_tracker]

    def test_nll(
        self,
        dataset: tf.data.Dataset,
        num_samples: int | None = None,
        *,
        seed: int | None = None,
        max_rows: int = 20_000,
    ) -> float:
        """Mean test NLL `−log (1/S) Σ_s p(x_l | x_u, b_s)` with S rounded samples (nats).

        `dataset` yields batches of images `[B, 28, 28, 1]` (or `(images, ...)` tuples). The S
        samples of a batch are drawn in chunks of at most `max_rows / B` so memory stays bounded
        (S = 1000 at B = 100 would otherwise be 10⁵ rows); chunks are combined by
        log-sum-exp, which gives exactly the S-sample estimate.

        With `seed`, the stochastic layers' random streams restart from `seed` for this
        evaluation (and are put back afterwards), so the result is a deterministic function of
        the weights and the seed: e.g. equal before saving and after `load_model`. (The layers'
        seed-generator states are not part of a saved `.keras` file.)
        """
        num_samples = self.num_test_samples if num_samples is None else int(num_samples)
        if seed is None:
            return self._test_nll(dataset, num_samples, max_rows)
        generators = [latent.seed_generator for latent in self.latents]
        saved = [g.state.numpy() for g in generators]
        for i, g in enumerate(generators):
            g.state.assign(tf.constant([seed + i, 0], dtype=g.state.dtype))
        try:
            return self._test_nll(dataset, num_samples, max_rows)
        finally:
            for g, state in zip(generators, saved, strict=True):
                g.state.assign(state)

    def _test_nll(self, dataset: tf.data.Dataset, num_samples: int, max_rows: int) -> float:
        total, count = 0.0, 0
        for data in dataset:
            images = tf.convert_to_tensor(_as_images(data))
            batch = int(images.shape[0])
            chunk = max(1, min(num_samples, max_rows // max(batch, 1)))
            parts, remaining = [], num_samples
            while remaining > 0:
                s = min(chunk, remaining)
                parts.append(self._rounded_log_likelihoods(images, tf.constant(s)))
                remaining -= s
            log_liks = tf.concat(parts, axis=0)
            total += float(tf.reduce_sum(-log_mean_exp(log_liks, axis=0)))
            count += batch
        if count == 0:
            raise ValueError("test_nll got an empty dataset.")
        return total / count

    @tf.function(reduce_retracing=True, autograph=False)  # no Python control flow on tensors
    def _rounded_log_likelihoods(self, images: tf.Tensor, num_samples: tf.Tensor) -> tf.Tensor:
        return self.sample_log_likelihoods(images, num_samples, discrete=True)

    # --- serialization -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            relaxation=self.relaxation_name,
            architecture=self.architecture,
            temperature=self.temperature,
            num_units=self.num_units,
            num_train_samples=self.num_train_samples,
            num_test_samples=self.num_test_samples,
            relaxation_options=self.relaxation_options,
            seed=self.seed,
            estimator=self.estimator,
            estimator_options=self.estimator_options,
        )
        return config
