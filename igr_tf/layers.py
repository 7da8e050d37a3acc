"""Keras 3 layers for discrete latent variables, one class for every relaxation (chosen by name).

```python
latent = igr_tf.layers.DiscreteLatent("igr_sb", num_vars=20, num_categories=10, temperature=0.15)
h = keras.layers.Dense(latent.params_size)(features)     # the encoder's last layer
out = latent(h)            # {"sample": [B, 20, 10] relaxed one-hot, "kl": [B], "N": [B]}
```

The layer holds no math of its own: each call is one `Relaxation.draw`, i.e. a sample of the
relaxation's TFP distribution and its KL to the prior (see `igr_tf.distributions.relaxations`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability.python.internal import assert_util

from igr_tf._checks import check_positive, check_positive_int
from igr_tf._seed_state import SavesSeedState
from igr_tf.distributions import relaxations

__all__ = ["DiscreteLatent", "TemperatureSchedule", "exponential_annealing"]


def work_dtype(dtype) -> tf.DType:
    """The dtype relaxations compute in: float64 stays, everything else (16-bit too) is float32.

    Under `mixed_float16`/`mixed_bfloat16` the relaxation, its log-space sample and its KL are
    computed in float32 (softmax++ at τ = 0.01 and log-densities need float32's range), and only
    the sample handed to the next layer is cast to the compute dtype.
    """
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


@keras.saving.register_keras_serializable(package="igr_tf")
class DiscreteLatent(SavesSeedState, keras.layers.Layer):
    """Relaxed discrete latent variables: V variables with K categories from encoder outputs.

    Input: encoder outputs `[B, V * P]` (or `[B, V, P]`), where `P = relaxation.num_params`
    (`params_size = V * P` is what the encoder's last Dense layer must output).

    Output: a dict with
      - "sample": `[B, V, K]`: the relaxed one-hot sample ψ (in the layer's compute dtype).
        With `hard=True` (the constructor's default, or per call) it is straight-through, as in
        `torch.nn.functional.gumbel_softmax(hard=True)`: the forward value is exactly
        `one_hot(argmax ψ)` and the gradient is ψ's. With `discrete=True` in the call it is
        `one_hot(argmax ψ)` with no gradient (rounded samples, for evaluation). With
        `binary=True` (K = 2) the sample is `[B, V]`, the first coordinate: a relaxed Bernoulli.
      - "kl": `[B]`: the KL to the relaxation's prior summed over variables (closed form or a
        one-sample estimate, see the relaxation's `kl` option), float32 (float64 for a float64
        layer).
      - one entry per relaxation diagnostic (e.g. "N", sticks used by IGR-SB), `[B]`.

    The temperature is a layer weight: fixed, assigned by `TemperatureSchedule`, or trainable
    (`trainable_temperature=True` learns log τ). `validate=True` checks at run time (eagerly and
    inside `tf.function`; XLA compiles assertions away) that the encoder outputs are finite and
    the temperature is positive and finite, and validates the relaxation's TFP objects
    (`validate_args=True`). Checked always, at construction: names, sizes, a positive initial
    temperature, the input's last axis.
    """

    def __init__(
        self,
        relaxation: str = "igr_i",
        num_vars: int = 20,
        num_categories: int = 10,
        temperature: float = 1.0,
        *,
        trainable_temperature: bool = False,
        hard: bool = False,
        binary: bool = False,
        relaxation_options: dict[str, Any] | None = None,
        validate: bool = False,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        # The relaxation computes in float32 under a mixed policy (see `work_dtype`): Keras must
        # neither cast the inputs down to float16 (autocast=False) nor hand `call` the float32
        # weights cast to float16 (each weight is created with autocast=False: a top-level layer
        # call opens an autocast scope whatever the layer's own flag).
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        check_positive(temperature, "temperature")
        self.num_vars = check_positive_int(num_vars, "num_vars")
        self.relaxation_name = relaxation
        self.relaxation_options = dict(relaxation_options or {})
        self.validate = bool(validate)
        options = dict(self.relaxation_options)
        if self.validate:
            options["validate_args"] = True
        self.relaxation = relaxations.get(relaxation, num_categories, **options)
        self.num_categories = self.relaxation.num_categories
        if binary and self.num_categories != 2:
            raise ValueError(f"`binary=True` needs num_categories=2; got {num_categories}.")
        self.initial_temperature = float(temperature)
        self._unbuilt_temperature = self.initial_temperature  # set_temperature before build
        self.trainable_temperature = bool(trainable_temperature)
        self.hard = bool(hard)
        self.binary = bool(binary)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def params_size(self) -> int:
        """Encoder outputs the layer needs per example: V × (parameters per variable)."""
        return self.num_vars * self.relaxation.num_params

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Names of the per-example diagnostics the layer returns besides sample and kl."""
        return self.relaxation.metric_names

    def build(self, input_shape) -> None:
        rank = len(input_shape)
        expected = self.params_size if rank == 2 else self.relaxation.num_params
        if (
            rank not in (2, 3)
            or input_shape[-1] not in (None, expected)
            or (rank == 3 and input_shape[1] not in (None, self.num_vars))
        ):
            raise ValueError(
                f"DiscreteLatent({self.relaxation_name!r}, num_vars={self.num_vars}, "
                f"num_categories={self.num_categories}) needs inputs [B, {self.params_size}]"
                f" or [B, {self.num_vars}, {self.relaxation.num_params}]; got shape "
                f"{tuple(input_shape)} (rank {rank})."
            )
        init = (
            np.log(self.initial_temperature)
            if self.trainable_temperature
            else self._unbuilt_temperature
        )
        self._temperature_weight = self.add_weight(
            name="log_temperature" if self.trainable_temperature else "temperature",
            shape=(),
            initializer=keras.initializers.Constant(init),
            trainable=self.trainable_temperature,
            autocast=False,
        )
        self.flow_weights = {
            name: self.add_weight(
                name=name, shape=spec.shape, initializer=spec.initializer, autocast=False
            )
            for name, spec in self.relaxation.weight_specs(self.num_vars).items()
        }

    @property
    def temperature(self) -> tf.Tensor:
        """The current temperature τ (a tensor)."""
        w = tf.convert_to_tensor(self._temperature_weight)
        return tf.exp(w) if self.trainable_temperature else w

    def set_temperature(self, value: float) -> None:
        """Assigns a new temperature (for schedules); not for trainable temperatures."""
        check_positive(value, "temperature")
        if self.trainable_temperature:
            raise ValueError("The temperature is trainable; it cannot be assigned a schedule.")
        if not self.built:
            # E.g. TemperatureSchedule at the start of fit(), before a subclassed model has
            # built its layers: the weight is created with this value.
            self._unbuilt_temperature = float(value)
            return
        self._temperature_weight.assign(value)

    def _params(self, inputs) -> tf.Tensor:
        inputs = tf.convert_to_tensor(inputs)
        params = tf.cast(inputs, work_dtype(inputs.dtype))
        if params.shape.rank == 2:
            params = tf.reshape(params, [-1, self.num_vars, self.relaxation.num_params])
        elif params.shape[1] is None:  # V unknown when traced: checked when run
            params = tf.ensure_shape(params, [None, self.num_vars, self.relaxation.num_params])
        if not self.validate:
            return params
        check = assert_util.assert_less(
            tf.abs(params),  # NaN fails this comparison too
            tf.constant(np.inf, params.dtype),
            message=f"{self.name}: the encoder outputs (the layer's inputs) must be finite.",
        )
        with tf.control_dependencies([check]):
            return tf.identity(params)

    def _temperature_as(self, dtype) -> tf.Tensor:
        tau = tf.cast(self.temperature, dtype)
        if not self.validate:
            return tau
        checks = [
            assert_util.assert_positive(tau, message=f"{self.name}: `temperature` must be > 0."),
            assert_util.assert_less(
                tau,
                tf.constant(np.inf, dtype),
                message=f"{self.name}: `temperature` must be finite.",
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(tau)

    def _seed(self) -> tf.Tensor:
        return tf.cast(self.seed_generator.next(), tf.int32)

    def call(
        self, inputs, training=None, hard: bool | None = None, discrete: bool = False
    ) -> dict[str, tf.Tensor]:
        params = self._params(inputs)
        tau = self._temperature_as(params.dtype)
        draw = self.relaxation.draw(params, tau, self.flow_weights, seed=self._seed())
        if discrete:
            sample = tf.stop_gradient(draw.one_hot())
        else:
            sample = draw.sample
            if self.hard if hard is None else hard:
                # (ψ - sg(ψ)) is exactly 0 in value, so the forward value is exactly one-hot;
                # `one_hot + ψ - sg(ψ)` rounds `1 + ψ` first and is off by an ulp.
                sample = draw.one_hot() + (sample - tf.stop_gradient(sample))
        if self.binary:
            sample = sample[..., 0]
        out = {
            "sample": tf.cast(sample, self.compute_dtype),
            "kl": tf.reduce_sum(draw.kl, axis=-1),
        }
        out.update({k: tf.reduce_mean(v, axis=-1) for k, v in draw.metrics.items()})
        return out

    def categorical_log_probs(self, inputs, seed=None) -> tf.Tensor:
        """Log pmf `[B, V, K]` of the induced categorical of each variable given encoder outputs.

        Exact for "igr_i" (quadrature) and "gs"; a Monte Carlo estimate otherwise
        (`self.relaxation.exact_categorical` tells which), drawn from the stateless `seed`
        (default: the layer's seed generator).
        """
        params = self._params(inputs)
        return self.relaxation.categorical_log_probs(
            params,
            self.flow_weights,
            temperature=self._temperature_as(params.dtype),
            seed=self._seed() if seed is None else seed,
        )

    def prior_categorical_log_probs(self, dtype=tf.float32) -> tf.Tensor:
        """Log pmf `[K]` of the categorical the prior induces (the same for every variable)."""
        return self.relaxation.prior_categorical_log_probs(self.temperature, dtype)

    def compute_output_spec(self, inputs, training=None, hard=None, discrete=False):
        batch = inputs.shape[0]
        shape = (batch, self.num_vars) + (() if self.binary else (self.num_categories,))
        loss_dtype = work_dtype(self.compute_dtype).name
        out = {
            "sample": keras.KerasTensor(shape, dtype=self.compute_dtype),
            "kl": keras.KerasTensor((batch,), dtype=loss_dtype),
        }
        for name in self.metric_names:
            out[name] = keras.KerasTensor((batch,), dtype=loss_dtype)
        return out

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            relaxation=self.relaxation_name,
            num_vars=self.num_vars,
            num_categories=self.num_categories,
            temperature=self.initial_temperature,
            trainable_temperature=self.trainable_temperature,
            hard=self.hard,
            binary=self.binary,
            relaxation_options=self.relaxation_options,
            validate=self.validate,
            seed=self.seed,
        )
        return config


class TemperatureSchedule(keras.callbacks.Callback):
    """Sets the temperature of every `DiscreteLatent` in the model from a schedule.

    `schedule(t) -> τ`, where t is the epoch (`per="epoch"`, assigned at the start of each epoch)
    or the global training step, the optimizer's `iterations` (`per="step"`, assigned before each
    step), e.g. `exponential_annealing(**igr_tf.paper.GS_ANNEALING)`. Both are functions of
    checkpointed state, so a resumed run sees the same temperatures as an uninterrupted one.
    """

    def __init__(self, schedule: Callable[[int], float], per: str = "epoch") -> None:
        super().__init__()
        if per not in ("epoch", "step"):
            raise ValueError(f"`per` must be 'epoch' or 'step'; got {per!r}.")
        self.schedule = schedule
        self.per = per

    def _assign(self, t: int) -> None:
        tau = float(self.schedule(t))
        for layer in _latent_layers(self.model):
            layer.set_temperature(tau)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.per == "epoch":
            self._assign(epoch)

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        if self.per == "step":
            self._assign(int(self.model.optimizer.iterations.numpy()))


def exponential_annealing(
    initial: float = 1.0, rate: float = 3e-5, floor: float = 0.5
) -> Callable[[int], float]:
    """The schedule t ↦ max(floor, initial · exp(−rate · t)) (Jang et al. 2017's annealing)."""
    check_positive(initial, "initial")
    check_positive(floor, "floor")
    if not (np.isfinite(rate) and rate >= 0):
        raise ValueError(f"`rate` must be finite and ≥ 0; got {rate}.")

    def schedule(t: int) -> float:
        return max(floor, initial * float(np.exp(-rate * t)))

    return schedule


def _latent_layers(model: keras.Model) -> list[DiscreteLatent]:
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, DiscreteLatent):
            found.append(layer)
    return found
