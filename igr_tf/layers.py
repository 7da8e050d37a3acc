"""Keras 3 layers for discrete latent variables, one class for every relaxation (chosen by name).

```python
latent = igr_tf.layers.DiscreteLatent("igr_sb", num_vars=20, num_categories=10, temperature=0.15)
h = keras.layers.Dense(latent.params_size)(features)     # the encoder's last layer
out = latent(h)            # {"sample": [B, 20, 10] relaxed one-hot, "kl": [B], "N": [B]}
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf._checks import check_positive, check_positive_int
from igr_tf.distributions import relaxations

__all__ = ["DiscreteLatent", "TemperatureSchedule"]


@keras.saving.register_keras_serializable(package="igr_tf")
class DiscreteLatent(keras.layers.Layer):
    """Relaxed discrete latent variables: V variables with K categories from encoder outputs.

    Input: encoder outputs `[B, V * P]` (or `[B, V, P]`), where `P = relaxation.num_params`
    (`params_size = V * P` is what the encoder's last Dense layer must output).

    Output: a dict with
      - "sample": `[B, V, K]`: the relaxed one-hot sample `ψ = softmax(ℓ / τ)`; with
        `straight_through=True` the forward value is `one_hot(argmax ψ)` and the gradient is ψ's;
        with `hard=True` in the call it is `one_hot(argmax ψ)` (no gradient). With `binary=True`
        (K = 2) the sample is `[B, V]`, the first coordinate of ψ: a relaxed Bernoulli.
      - "kl": `[B]`: the KL to the relaxation's prior summed over variables (closed form or a
        one-sample estimate, see `kl`).
      - one entry per relaxation diagnostic (e.g. "N", sticks used by IGR-SB), `[B]`.

    The temperature is a layer weight: fixed, assigned by `TemperatureSchedule`, or trainable
    (`trainable_temperature=True` learns log τ).
    """

    def __init__(
        self,
        relaxation: str = "igr_i",
        num_vars: int = 20,
        num_categories: int = 10,
        temperature: float = 1.0,
        *,
        trainable_temperature: bool = False,
        straight_through: bool = False,
        binary: bool = False,
        relaxation_options: dict[str, Any] | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_positive(temperature, "temperature")
        self.num_vars = check_positive_int(num_vars, "num_vars")
        self.relaxation_name = relaxation
        self.relaxation_options = dict(relaxation_options or {})
        self.relaxation = relaxations.get(relaxation, num_categories, **self.relaxation_options)
        self.num_categories = self.relaxation.num_categories
        if binary and self.num_categories != 2:
            raise ValueError(f"`binary=True` needs num_categories=2; got {num_categories}.")
        self.initial_temperature = float(temperature)
        self._unbuilt_temperature = self.initial_temperature  # set_temperature before build
        self.trainable_temperature = bool(trainable_temperature)
        self.straight_through = bool(straight_through)
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
        if input_shape[-1] is not None:
            expected = self.params_size if len(input_shape) == 2 else self.relaxation.num_params
            if input_shape[-1] != expected:
                raise ValueError(
                    f"DiscreteLatent({self.relaxation_name!r}, num_vars={self.num_vars}, "
                    f"num_categories={self.num_categories}) needs inputs with last axis "
                    f"{expected}; got shape {tuple(input_shape)}."
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
        )
        self.flow_weights = {
            name: self.add_weight(name=name, shape=spec.shape, initializer=spec.initializer)
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
        if inputs.shape.rank == 2:
            return tf.reshape(inputs, [-1, self.num_vars, self.relaxation.num_params])
        return inputs

    def _seed(self) -> tf.Tensor:
        return tf.cast(self.seed_generator.next(), tf.int32)

    def call(self, inputs, training=None, hard: bool = False) -> dict[str, tf.Tensor]:
        params = self._params(inputs)
        draw = self.relaxation.draw(
            params, tf.cast(self.temperature, params.dtype), self.flow_weights, seed=self._seed()
        )
        one_hot = tf.one_hot(
            tf.argmax(draw.logits, axis=-1), self.num_categories, dtype=params.dtype
        )
        if hard:
            sample = one_hot
        else:
            sample = draw.relaxed(tf.cast(self.temperature, params.dtype))
            if self.straight_through:
                # (ψ - sg(ψ)) is exactly 0 in value, so the forward value is exactly one-hot;
                # `one_hot + ψ - sg(ψ)` rounds `1 + ψ` first and is off by an ulp.
                sample = one_hot + (sample - tf.stop_gradient(sample))
        if self.binary:
            sample = sample[..., 0]
        out = {"sample": sample, "kl": tf.reduce_sum(draw.kl, axis=-1)}
        out.update({k: tf.reduce_mean(v, axis=-1) for k, v in draw.metrics.items()})
        return out

    # The seed generator's state is not a layer weight, so Keras would not save it: a reloaded
    # model would restart the random stream from `seed` while the saved one had moved on. Saving
    # it with the weights makes a reloaded model continue exactly where the saved one stood.
    _SEED_STATE_KEY = "seed_generator_state"

    def save_own_variables(self, store) -> None:
        super().save_own_variables(store)
        store[self._SEED_STATE_KEY] = self.seed_generator.state.numpy()

    def load_own_variables(self, store) -> None:
        keys = list(store.keys())
        if self._SEED_STATE_KEY in keys:  # absent in files written before it was saved
            self.seed_generator.state.assign(store[self._SEED_STATE_KEY])
        super().load_own_variables({k: store[k] for k in keys if k != self._SEED_STATE_KEY})

    def categorical_log_probs(self, inputs) -> tf.Tensor:
        """Log pmf `[B, V, K]` of the induced categorical of each variable given encoder outputs.

        Exact for "igr_i" (quadrature) and "gs"; a Monte Carlo estimate otherwise
        (`self.relaxation.exact_categorical` tells which).
        """
        params = self._params(inputs)
        return self.relaxation.categorical_log_probs(
            params,
            self.flow_weights,
            temperature=tf.cast(self.temperature, params.dtype),
            seed=self._seed(),
        )

    def compute_output_spec(self, inputs, training=None, hard=False):
        batch = inputs.shape[0]
        shape = (batch, self.num_vars) + (() if self.binary else (self.num_categories,))
        out = {
            "sample": keras.KerasTensor(shape, dtype=inputs.dtype),
            "kl": keras.KerasTensor((batch,), dtype=inputs.dtype),
        }
        for name in self.metric_names:
            out[name] = keras.KerasTensor((batch,), dtype=inputs.dtype)
        return out

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            relaxation=self.relaxation_name,
            num_vars=self.num_vars,
            num_categories=self.num_categories,
            temperature=self.initial_temperature,
            trainable_temperature=self.trainable_temperature,
            straight_through=self.straight_through,
            binary=self.binary,
            relaxation_options=self.relaxation_options,
            seed=self.seed,
        )
        return config


class TemperatureSchedule(keras.callbacks.Callback):
    """Sets the temperature of every `DiscreteLatent` in the model at the start of each epoch.

    `schedule(epoch) -> τ`, e.g. `lambda e: max(0.1, np.exp(-1e-2 * e))` for annealing.
    """

    def __init__(self, schedule: Callable[[int], float]) -> None:
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        tau = float(self.schedule(epoch))
        for layer in _latent_layers(self.model):
            layer.set_temperature(tau)


def _latent_layers(model: keras.Model) -> list[DiscreteLatent]:
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, DiscreteLatent):
            found.append(layer)
    return found
