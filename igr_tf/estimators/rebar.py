r"""REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018) with GS or IGR relaxations.

A family (see `_families`) gives the noise z (reparameterised), b = H(z), the relaxation σ_λ(z) and,
where known, z̃ ~ p(z | b). The control variate is

    c(z) = η · f(σ_λ(z)) + r_ρ(σ_λ(z))     (REBAR: r = 0; RELAX: r a small network)

and, with log p(b) summed over the V variables, the estimate is (`conditioning="discrete"`)

    ĝ = [f(b) − c(z̃)] ∇ log p(b) + ∇ c(z) − ∇ c(z̃),

where ∇ c(z̃) differentiates through z̃'s reparameterisation with b held fixed. It is unbiased for
any c, because z and z̃ have the same law. Where the family has no pmf or conditional (IGR-SB with
K > 2), `conditioning="noise"` uses the score of the noise itself (the LAX form,
Grathwohl et al. 2018 §3.2), also unbiased for any c:

    ĝ = [f(b) − c(z)] ∇ log p(z) + ∇ c(z).

The control parameters φ = (η, log λ, ρ) are learned by minimising the variance of ĝ: since E[ĝ]
does not depend on φ, the gradient of mean_b ‖ĝ_b‖² (per-example gradients with respect to the
parameters) is the gradient of the variance. `surrogate` computes ĝ with an inner tape and returns

    f(b) + Σ stop_gradient(ĝ − ∂f(b)/∂params) · (params − stop_gradient(params))
         + Σ_φ stop_gradient(∂ mean_b ‖ĝ_b‖² / ∂φ) · (φ − stop_gradient(φ)),

so one outer tape on `reduce_mean(surrogate)` gives the encoder ĝ (scaled by 1/batch, as any mean
loss), the variables f closes over (a decoder) their gradient at the discrete b only, and φ the
variance gradient. φ lives in `estimator.control`, a Keras layer a model can own.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import keras
import tensorflow as tf

from igr_tf._checks import check_positive
from igr_tf.estimators._base import Estimator, Objective, call_objective, check_params, split_seed
from igr_tf.estimators._families import family

__all__ = ["REBAR", "RELAX", "ControlVariate"]

CONDITIONINGS = ("discrete", "noise")


@keras.saving.register_keras_serializable(package="igr_tf")
class ControlVariate(keras.layers.Layer):
    """c(σ) = η · f(σ) + r_ρ(σ): the learned part of REBAR/RELAX, and the relaxation temperature.

    Weights: `eta` (scalar, init 1), `log_temperature` (scalar, init log τ), and for
    `hidden_units` not None the network r_ρ: Dense(tanh) layers then Dense(1), whose output layer
    starts at zero (`zero_init=True`), so RELAX starts as REBAR.
    Inputs of `call`: the relaxed samples `[*batch, V, K]` and f at them `[*batch]`.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        eta: float = 1.0,
        hidden_units: tuple[int, ...] | None = None,
        learn_temperature: bool = True,
        learn_eta: bool = True,
        zero_init: bool = True,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_positive(temperature, "temperature")
        self.initial_temperature = float(temperature)
        self.initial_eta = float(eta)
        self.hidden_units = None if hidden_units is None else tuple(int(u) for u in hidden_units)
        self.learn_temperature = bool(learn_temperature)
        self.learn_eta = bool(learn_eta)
        self.zero_init = bool(zero_init)
        self.seed = seed
        self.network: list[keras.layers.Dense] = []
        if self.hidden_units is not None:

            def init(i):
                return keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)

            self.network = [
                keras.layers.Dense(
                    u,
                    activation="tanh",
                    kernel_initializer=init(i),
                    name=f"hidden_{i}",
                    dtype=self.dtype_policy,
                )
                for i, u in enumerate(self.hidden_units)
            ]
            out_init = "zeros" if self.zero_init else init(len(self.hidden_units))
            self.network.append(
                keras.layers.Dense(
                    1, kernel_initializer=out_init, name="out", dtype=self.dtype_policy
                )
            )

    def build(self, input_shape) -> None:
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.initial_temperature)),
            trainable=self.learn_temperature,
        )
        self.eta = self.add_weight(
            name="eta",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_eta),
            trainable=self.learn_eta,
        )
        width = int(input_shape[-2]) * int(input_shape[-1])
        for layer in self.network:
            layer.build((None, width))
            width = layer.units
        self.built = True

    @property
    def temperature(self) -> tf.Tensor:
        """λ = exp(log_temperature)."""
        return tf.exp(tf.convert_to_tensor(self.log_temperature))

    def call(self, relaxed, f_relaxed):
        return self.value(relaxed, f_relaxed)

    def value(self, relaxed, f_relaxed) -> tf.Tensor:
        """c `[*batch]` in the inputs' dtype (no Keras autocasting of the inputs)."""
        dtype = relaxed.dtype
        c = tf.cast(self.eta, dtype) * f_relaxed
        if self.network:
            h = tf.reshape(relaxed, tf.concat([tf.shape(relaxed)[:-2], [-1]], 0))
            h = tf.cast(h, self.compute_dtype)
            for layer in self.network:
                h = layer(h)
            c = c + tf.cast(h[..., 0], dtype)
        return c

    def get_config(self) -> dict[str, Any]:
        return dict(
            super().get_config(),
            temperature=self.initial_temperature,
            eta=self.initial_eta,
            hidden_units=self.hidden_units,
            learn_temperature=self.learn_temperature,
            learn_eta=self.learn_eta,
            zero_init=self.zero_init,
            seed=self.seed,
        )


def _score_term(coefficient, log_p):
    """Zero in value; its params-gradient is `coefficient · ∇ log p`.

    The coefficient is deliberately not stopped: multiplied by a factor that is exactly zero in
    value, its own params-gradient vanishes, while ĝ keeps its dependence on φ through it (which
    the variance gradient needs; a stop_gradient here would drop that part).
    """
    return coefficient * (log_p - tf.stop_gradient(log_p))


def _path_term(c):
    return c - tf.stop_gradient(c)


class _ControlVariateEstimator(Estimator):
    unbiased: ClassVar[bool] = True
    needs_objective: ClassVar[bool] = True
    hidden_units: ClassVar[tuple[int, ...] | None] = None

    def __init__(
        self,
        num_categories: int,
        *,
        relaxation: str = "gs",
        conditioning: str | None = None,
        temperature: float = 0.5,
        eta: float = 1.0,
        learn_control: bool = True,
        hidden_units: tuple[int, ...] | None = None,
        zero_init: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_categories)
        self.family = family(relaxation, self.num_categories)
        self.relaxation = relaxation
        if conditioning is None:
            conditioning = "discrete" if self.family.has_conditional else "noise"
        if conditioning not in CONDITIONINGS:
            raise ValueError(
                f"`conditioning` must be one of {CONDITIONINGS}; got {conditioning!r}."
            )
        if conditioning == "discrete" and not self.family.has_conditional:
            raise ValueError(
                f"{self.name} with relaxation={relaxation!r} and K={self.num_categories} has no "
                "conditional z | b; use conditioning='noise'."
            )
        self.conditioning = conditioning
        check_positive(temperature, "temperature")
        self.initial_temperature = float(temperature)
        self.initial_eta = float(eta)
        self.learn_control = bool(learn_control)
        if hidden_units is not None:
            self.hidden_units = tuple(hidden_units)
        self.zero_init = bool(zero_init)
        self.seed = seed
        self.control: ControlVariate | None = None

    @property
    def num_params(self) -> int:
        return self.family.num_params

    def log_pmf(self, params) -> tf.Tensor:
        return self.family.log_pmf(check_params(params, self.num_params, self.name))

    def build(self, num_vars: int, dtype="float32") -> ControlVariate:
        """Creates `self.control` for V = num_vars variables (call before tracing a tf.function)."""
        self.control = ControlVariate(
            temperature=self.initial_temperature,
            eta=self.initial_eta,
            hidden_units=self.hidden_units,
            learn_temperature=self.learn_control,
            learn_eta=self.learn_control,
            zero_init=self.zero_init,
            seed=self.seed,
            dtype=dtype,
            name=f"{self.name}_control",
        )
        self.control.build((None, int(num_vars), self.num_categories))
        self.control.trainable = self.learn_control
        return self.control

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return [] if self.control is None else list(self.control.trainable_variables)

    @property
    def temperature(self) -> tf.Tensor:
        return self.control.temperature

    def _core(self, f: Objective, params, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """(per-example surrogate whose params-gradient is ĝ, f at the discrete sample)."""
        fam = self.family
        noise_seed, conditional_seed = split_seed(seed, 2)
        z = fam.noise(params, noise_seed)
        hard = fam.hard(z)
        lam = tf.cast(self.control.temperature, params.dtype)
        relaxed_z = fam.relaxed(z, lam)
        if self.conditioning == "discrete":
            z_tilde, log_p_vars = fam.conditional(params, hard, conditional_seed)
            relaxed_zt = fam.relaxed(z_tilde, lam)
            values = call_objective(f, tf.stack([hard, relaxed_z, relaxed_zt]), self.name)
            f_b = values[0]
            c_z, c_zt = (
                self.control.value(relaxed_z, values[1]),
                self.control.value(relaxed_zt, values[2]),
            )
            log_p = tf.reduce_sum(log_p_vars, axis=-1)
            out = f_b + _score_term(f_b - c_zt, log_p) + _path_term(c_z) - _path_term(c_zt)
        else:
            values = call_objective(f, tf.stack([hard, relaxed_z]), self.name)
            f_b, c_z = values[0], self.control.value(relaxed_z, values[1])
            log_pz = tf.reduce_sum(fam.noise_log_density(params, tf.stop_gradient(z)), axis=-1)
            out = f_b + _score_term(f_b - c_z, log_pz) + _path_term(c_z)
        return out, f_b

    def surrogate(self, f: Objective, params, seed=None) -> tf.Tensor:
        params = check_params(params, self.num_params, self.name)
        if self.control is None:
            self.build(params.shape[-2], dtype=params.dtype.name)
        phi = self.trainable_variables
        with tf.GradientTape() as phi_tape:
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(params)
                out, f_b = self._core(f, params, seed)
                total, total_f = tf.reduce_sum(out), tf.reduce_sum(f_b)
            g_hat = tape.gradient(total, params, unconnected_gradients="zero")
            g_direct = tape.gradient(total_f, params, unconnected_gradients="zero")
            del tape
            examples = tf.cast(tf.reduce_prod(tf.shape(params)[:-2]), params.dtype)
            variance_loss = tf.reduce_sum(tf.square(g_hat)) / examples
        injected = tf.stop_gradient(g_hat - g_direct) * (params - tf.stop_gradient(params))
        result = f_b + tf.reduce_sum(injected, axis=[-2, -1])
        if phi:
            # (unconnected_gradients="zero" fails on Keras variables, whose dtype is a string.)
            g_phi = phi_tape.gradient(variance_loss, phi)
            terms = [
                tf.reduce_sum(tf.stop_gradient(g) * (v - tf.stop_gradient(v)))
                for g, v in zip(g_phi, phi, strict=True)
                if g is not None
            ]
            if terms:
                result = result + tf.cast(tf.add_n(terms), f_b.dtype)
        return result

    def get_config(self) -> dict[str, Any]:
        return dict(
            super().get_config(),
            relaxation=self.relaxation,
            conditioning=self.conditioning,
            temperature=self.initial_temperature,
            eta=self.initial_eta,
            learn_control=self.learn_control,
            hidden_units=self.hidden_units,
            zero_init=self.zero_init,
            seed=self.seed,
        )


class REBAR(_ControlVariateEstimator):
    """REBAR: c(z) = η f(σ_λ(z)), η and λ learned by minimising the estimator's variance."""

    name = "rebar"


class RELAX(_ControlVariateEstimator):
    """RELAX: c(z) = η f(σ_λ(z)) + r_ρ(σ_λ(z)), r_ρ a small tanh network (starts at zero)."""

    name = "relax"
    hidden_units: ClassVar[tuple[int, ...] | None] = (32,)
