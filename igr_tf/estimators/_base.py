"""What every gradient estimator shares: the objective's calling convention, seeds, base classes.

Conventions (all estimators):

- `params`: encoder outputs `[*batch, V, P]` for V discrete variables (P = `num_params`: K logits,
  or 2(K-1) IGR parameters). The category axis of every sample is last: `[*batch, V, K]`.
- An objective `f` maps samples `[S, *batch, V, K]` (one-hot, or relaxed points of the simplex for
  the control variates of REBAR/RELAX) to values `[S, *batch]`: one value per example and sample.
  It may close over `params` (e.g. a `log q` term) and over other variables (a decoder).
- `surrogate(f, params, seed)` returns `[*batch]`: its value is an estimate of `E[f]` (VIMCO: of the
  multi-sample objective) and its gradient, with respect to `params` and to whatever `f` closes
  over, is the estimator's gradient estimate. Use `tf.reduce_mean(surrogate)` as a loss.
- Binary variables are K = 2 with the first category meaning "on": `b = sample[..., 0]`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf._checks import check_num_categories, check_positive, check_positive_int
from igr_tf._ops import RNG_ALGORITHM, plain_tensorflow

__all__ = [
    "Estimator",
    "HardSampleEstimator",
    "Objective",
    "binary_params",
    "forward_value",
    "gumbel",
    "split_seed",
    "uniform",
]

#: f(samples [S, *batch, V, K]) -> values [S, *batch].
Objective = Callable[[tf.Tensor], tf.Tensor]


def split_seed(seed, n: int) -> list[tf.Tensor]:
    """`n` independent stateless seeds (shape [2] int32) from an int, a [2] tensor or None."""
    return list(tfp.random.split_seed(tfp.random.sanitize_seed(seed), n=n))


def uniform(shape, seed, dtype) -> tf.Tensor:
    """Uniform(0, 1) draws strictly inside (0, 1): `log u` and `log(1 - u)` are finite."""
    tiny = np.finfo(tf.as_dtype(dtype).as_numpy_dtype).tiny
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=tiny, maxval=1.0, dtype=dtype, alg=RNG_ALGORITHM
    )


def normal(shape, seed, dtype) -> tf.Tensor:
    """Standard normal draws (stateless)."""
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype, alg=RNG_ALGORITHM)


def gumbel(shape, seed, dtype) -> tf.Tensor:
    """Gumbel(0, 1) draws `-log(-log u)`."""
    return -tf.math.log(-tf.math.log(uniform(shape, seed, dtype)))


@tf.custom_gradient
def forward_value(soft: tf.Tensor, hard: tf.Tensor):
    """Returns `hard` exactly, with the gradient of `soft` (straight-through).

    Unlike `soft + stop_gradient(hard - soft)`, the forward value is bit-for-bit `hard` (an exact
    one-hot), and no gradient reaches `hard`.
    """

    def grad(dy):
        return dy, tf.zeros_like(hard)

    return tf.identity(hard), grad


def binary_params(logits) -> tf.Tensor:
    """Bernoulli logits `[..., V]` -> K = 2 logits `[..., V, 2]` for the logit estimators.

    With `b = sample[..., 0]`, `P(b = 1) = sigmoid(logits)`.
    """
    logits = tf.convert_to_tensor(logits)
    return tf.stack([logits, tf.zeros_like(logits)], axis=-1)


def check_params(params, num_params: int, name: str) -> tf.Tensor:
    """`params` as a float tensor `[*batch, V, P]`, with a clear error for a wrong last axis."""
    params = tf.convert_to_tensor(params)
    if not params.dtype.is_floating:
        params = tf.cast(params, tf.float32)
    if params.shape.rank is not None and params.shape.rank < 2:
        raise ValueError(
            f"{name}: `params` must have shape [*batch, V, {num_params}] (V variables); "
            f"got shape {params.shape}."
        )
    if params.shape.rank is not None and params.shape[-1] is not None:
        if params.shape[-1] != num_params:
            raise ValueError(
                f"{name} needs {num_params} parameters per variable (last axis of `params`); "
                f"got shape {params.shape}."
            )
    return params


def call_objective(f: Objective, samples: tf.Tensor, name: str) -> tf.Tensor:
    """`f(samples)` with its output checked to be `[S, *batch]`."""
    values = tf.convert_to_tensor(f(samples))
    expected = samples.shape[:-2]
    if values.shape.rank is not None and expected.rank is not None:
        if values.shape.rank != expected.rank:
            raise ValueError(
                f"{name}: the objective must map samples {samples.shape} to values of shape "
                f"{expected} (one per sample and example); got {values.shape}."
            )
    return tf.cast(values, samples.dtype)


class Estimator(abc.ABC):
    """A gradient estimator for V categorical variables with K categories each.

    Subclasses set `name`, `unbiased` (the gradient's expectation is the exact gradient of `E[f]`)
    and `needs_objective` (it must evaluate `f` itself, e.g. at several samples), and implement
    `num_params` and `surrogate`.
    """

    name: ClassVar[str]
    unbiased: ClassVar[bool]
    needs_objective: ClassVar[bool]

    #: The methods a user calls inside their own `tf.function`: `igr_tf._ops.plain_tensorflow`
    #: (autograph does not convert them) in every subclass that defines them.
    _PLAIN_METHODS: ClassVar[tuple[str, ...]] = (
        "sample", "surrogate", "gradient", "log_pmf", "kl", "categorical_log_probs",
    )  # fmt: skip

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _do_not_convert_methods(cls)

    def __init__(self, num_categories: int) -> None:
        self.num_categories = check_num_categories(num_categories)

    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Encoder outputs per discrete variable."""

    def weight_specs(self, num_vars: int) -> dict[str, Any]:
        """Global trainable weights the estimator's relaxation needs (IGR-Planar's flows)."""
        return {}

    #: What `surrogate`'s value estimates: "mean" (E[f]) or "log_mean_exp" (VIMCO's
    #: log (1/S) Σ_s exp f(b_s), for f a log importance weight).
    objective_kind: ClassVar[str] = "mean"

    def build(self, num_vars: int, dtype="float32") -> Any:
        """Creates the estimator's own trainable state for V variables (REBAR/RELAX: a Keras
        layer, returned so a model can own it); None for estimators without state."""
        return None

    def categorical_log_probs(self, params, weights=None, seed=None) -> tf.Tensor:
        """Log pmf `[*batch, V, K]` of the discrete sample, for evaluation: `log_pmf` by default
        (exact); estimators without an exact pmf return a Monte Carlo estimate from `seed`."""
        return self.log_pmf(params)

    @property
    def exact_categorical(self) -> bool:
        """Whether `categorical_log_probs` is exact."""
        return True

    def prior_log_pmf(self, dtype=tf.float32) -> tf.Tensor:
        """Log pmf `[K]` of the prior the latent terms use: uniform, log(1/K)."""
        k = self.num_categories
        return tf.fill([k], tf.constant(-np.log(k), tf.as_dtype(dtype)))

    def kl(self, params, weights=None) -> tf.Tensor:
        """`[*batch]`: Σ_V KL(Cat(exp log_pmf) ‖ prior), in closed form from the exact pmf.

        With q = exp(log_pmf(params)) and p = `prior_log_pmf`: Σ_v Σ_k q_vk (log q_vk − log p_k).
        Estimators without an exact pmf override it (and say what they compute).
        """
        log_q = self.log_pmf(params)
        log_p = self.prior_log_pmf(log_q.dtype)
        return tf.reduce_sum(tf.exp(log_q) * (log_q - log_p), axis=[-2, -1])

    def log_pmf(self, params) -> tf.Tensor:
        """Exact log pmf `[*batch, V, K]` of the discrete sample (the law of the forward value).

        Logit estimators: log softmax(params). Raises NotImplementedError where none is known.
        """
        params = check_params(params, self.num_params, self.name)
        if self.num_params != self.num_categories:
            raise NotImplementedError(f"{self.name}: no exact pmf for these parameters.")
        return tf.math.log_softmax(params, axis=-1)

    @abc.abstractmethod
    def surrogate(self, f: Objective, params, seed=None, **kwargs) -> tf.Tensor:
        """`[*batch]` values whose gradient is the estimate; see the module docstring."""

    def gradient(self, f: Objective, params, seed=None, **kwargs) -> tuple[tf.Tensor, tf.Tensor]:
        """`(surrogate values [*batch], gradient estimate [*batch, V, P])` with respect to params.

        The gradient of the sum over the batch: entry `b` is example b's gradient estimate.
        """
        params = tf.convert_to_tensor(params)
        with tf.GradientTape() as tape:
            tape.watch(params)
            values = self.surrogate(f, params, seed=seed, **kwargs)
            total = tf.reduce_sum(values)
        return values, tape.gradient(total, params, unconnected_gradients="zero")

    def get_config(self) -> dict[str, Any]:
        return {"num_categories": self.num_categories}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _do_not_convert_methods(cls: type) -> None:
    """Marks the `_PLAIN_METHODS` that `cls` itself defines as autograph's do-not-convert."""
    for name in cls._PLAIN_METHODS:
        method = cls.__dict__.get(name)
        if callable(method) and not hasattr(method, "__wrapped__"):
            setattr(cls, name, plain_tensorflow(method))


_do_not_convert_methods(Estimator)


class HardSampleEstimator(Estimator):
    """A one-hot sample whose backward pass is a surrogate's gradient (the straight-through family).

    `sample(params, seed)` is the whole estimator: an exact one-hot `[*batch, V, K]` forward value
    with a custom gradient. It needs no objective, so it drops into any model in place of a
    relaxed sample; `surrogate(f, ...)` is `f` at one sample, for the common API.
    """

    unbiased: ClassVar[bool] = False
    needs_objective: ClassVar[bool] = False

    def __init__(self, num_categories: int, *, temperature: float = 1.0) -> None:
        super().__init__(num_categories)
        check_positive(temperature, "temperature")
        self.temperature = float(temperature)

    @property
    def num_params(self) -> int:
        return self.num_categories

    def _tau(self, temperature, dtype) -> tf.Tensor:
        if temperature is None:
            return tf.constant(self.temperature, dtype)
        check_positive(temperature, "temperature")
        return tf.cast(temperature, dtype)

    def sample(self, params, seed=None, temperature=None, weights=None) -> tf.Tensor:
        """Exact one-hot `[*batch, V, K]` (params' dtype) with the estimator's gradient.

        `temperature` overrides the constructor's (a tensor, e.g. a trainable or scheduled τ, gets
        a gradient where the estimator gives it one).
        """
        params = check_params(params, self.num_params, self.name)
        tau = self._tau(temperature, params.dtype)
        return self._sample(params, tau, seed, weights)

    @abc.abstractmethod
    def _sample(self, params: tf.Tensor, tau: tf.Tensor, seed, weights) -> tf.Tensor: ...

    def surrogate(self, f: Objective, params, seed=None, temperature=None, weights=None):
        sample = self.sample(params, seed=seed, temperature=temperature, weights=weights)
        return call_objective(f, sample[tf.newaxis], self.name)[0]

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), temperature=self.temperature)


def check_num_samples(num_samples: int, minimum: int, name: str) -> int:
    value = check_positive_int(num_samples, "num_samples")
    if value < minimum:
        raise ValueError(f"{name} needs `num_samples` >= {minimum}; got {num_samples}.")
    return value
