"""Relaxations by name: encoder outputs to TFP distributions, and one draw for a Keras layer.

A relaxation is a small recipe: how encoder outputs `params [..., V, P]` become a posterior `q`
and which prior `p` it is compared with. The math lives in the TFP objects only (the bijector
chains of `igr_tf.distributions.igr`, `AdaptiveIGRStickBreaking`, TFP's
`ExpRelaxedOneHotCategorical`); every consumer (the Keras layer, the models, the approximation
task, `igr_tf.relaxed_one_hot`) goes through `draw`, which is nothing but

```none
q, p = relaxation.distributions(params, τ, weights, log_space=True)   # sharing one bijector
y    = q.sample(seed=seed)                                           # y = log ψ  [..., V, K]
kl   = KL(q ‖ p): tfd.kl_divergence(q, p)  (closed form)  or  q.log_prob(y) - p.log_prob(y)
       (sampled: y and q.log_prob(y) drawn together, q.experimental_sample_and_log_prob)
```

so a fix to a bijector is a fix everywhere. ψ = exp(y) is the relaxed one-hot sample and
`τ · y` are hard logits (`argmax y` is the discrete outcome, `softmax(τ y / τ) = ψ`). Models
never branch on which relaxation they hold; they ask `get(name, num_categories, ...)` and use:

- `num_params`: encoder outputs needed per discrete variable (IGR: 2(K-1); GS: K).
- `weight_specs(num_vars)`: global trainable weights it needs (the planar flows), created by the
  Keras layer that owns the relaxation.
- `draw(params, temperature, weights, seed)`: one reparameterised draw (`Draw`).
- `distributions(...)`, `distribution(...)`, `prior(...)`: the TFP objects themselves.
- `categorical_log_probs(...)` / `prior_categorical_log_probs(...)`: the categorical the
  posterior / prior induces (the law of `argmax ψ`): exact where a closed form exists (IGR-I by
  quadrature, GS), otherwise a Monte Carlo estimate (`exact_categorical` says which).

Priors are computed once, when a relaxation is built (IGR-SB's fitted stick locations), or in
closed form in the graph (IGR-I's location, which depends on τ when δ ≠ 1): never a numpy solve
at trace time.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import prefer_static as ps
from tensorflow_probability.python.internal import tensor_util

from igr_tf import categorical
from igr_tf._checks import as_dtype, check_num_categories, check_positive, check_positive_int
from igr_tf._ops import softplus
from igr_tf.bijectors import LogitStickBreaking, LogSoftmaxPlusPlus
from igr_tf.distributions import igr, philox
from igr_tf.distributions.adaptive import AdaptiveIGRStickBreaking, StickRow
from igr_tf.names import RELAXATIONS

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    "Draw",
    "ExponentialPerturbation",
    "GumbelSoftmax",
    "IGRI",
    "IGRPlanar",
    "IGRStickBreaking",
    "Relaxation",
    "WeightSpec",
    "get",
    "get_class",
    "names",
]

KL_METHODS = ("closed", "sampled")
_MIN_SCALE = 1e-4


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """A global trainable weight a relaxation needs (created by the owning Keras layer)."""

    shape: tuple[int, ...]
    initializer: str | Callable[..., Any] | dict


@dataclasses.dataclass(frozen=True)
class Draw:
    """One reparameterised draw for a batch of discrete variables.

    Attributes:
      log_sample: `y = log ψ` `[..., V, K]` (`-inf` for categories cut by adaptive truncation).
        `argmax y` is the discrete outcome; `τ y` are hard logits.
      kl: the KL term per variable `[..., V]` (closed form, or the one-sample estimate
        `log q(y) - log p(y)`).
      metrics: diagnostics per variable `[..., V]`, e.g. `{"N": sticks used}` for IGR-SB.
    """

    log_sample: tf.Tensor
    kl: tf.Tensor
    metrics: dict[str, tf.Tensor]
    #: ψ = exp(y) when the relaxation computed it already (adaptive IGR-SB: on the sticks
    #: used, zeros beyond), else None.
    _sample: tf.Tensor | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def sample(self) -> tf.Tensor:
        """The relaxed one-hot sample ψ = exp(y) `[..., V, K]`."""
        return tf.exp(self.log_sample) if self._sample is None else self._sample

    def one_hot(self) -> tf.Tensor:
        """`one_hot(argmax y)` `[..., V, K]`: the discrete outcome, exactly one-hot."""
        y = self.log_sample
        return tf.one_hot(tf.argmax(y, axis=-1), tf.shape(y)[-1], dtype=y.dtype)


class Relaxation(abc.ABC):
    """Configuration shared by every relaxation, and the one `draw` they all use."""

    name: ClassVar[str]
    exact_categorical: ClassVar[bool]
    closed_form_kl: ClassVar[bool]
    metric_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        num_categories: int,
        *,
        kl: str | None = None,
        stick_the_landing: bool = False,
        num_mc_samples: int = 1000,
        validate_args: bool = False,
    ) -> None:
        self.num_categories = check_num_categories(num_categories)
        if kl is None:
            kl = "closed" if self.closed_form_kl else "sampled"
        if kl not in KL_METHODS:
            raise ValueError(f"`kl` must be one of {KL_METHODS}; got {kl!r}.")
        if kl == "closed" and not self.closed_form_kl:
            raise ValueError(f"{self.name} has no closed-form KL to its prior; use kl='sampled'.")
        self.kl_method = kl
        self.stick_the_landing = bool(stick_the_landing)
        self.num_mc_samples = check_positive_int(num_mc_samples, "num_mc_samples")
        self.validate_args = bool(validate_args)

    # --- what each relaxation provides --------------------------------------------------------
    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Encoder outputs per discrete variable."""

    @classmethod
    @abc.abstractmethod
    def num_categories_for(cls, num_params: int) -> int:
        """K for encoder outputs of size `num_params` per variable (the inverse of num_params)."""

    def weight_specs(self, num_vars: int) -> dict[str, WeightSpec]:
        """Global trainable weights (none by default)."""
        return {}

    @abc.abstractmethod
    def distributions(
        self, params, temperature, weights=None, *, log_space: bool = True
    ) -> tuple[tfd.Distribution, tfd.Distribution]:
        """Posterior `q` (batch `[..., V]`, event `[K]`) and prior `p`, sharing their bijectors
        (so a sample's densities come from TFP's cache, exactly)."""

    @abc.abstractmethod
    def prior(
        self, temperature, weights=None, num_vars: int | None = None, dtype=None, *, log_space=False
    ) -> tfd.Distribution:
        """The prior alone (`dtype`: default the temperature's, float32 for a Python number)."""

    def prior_categorical_log_probs(self, temperature=1.0, dtype=tf.float32) -> tf.Tensor:
        """Log pmf `[K]` of the categorical the prior induces (uniform by construction)."""
        return tf.fill([self.num_categories], tf.constant(-math.log(self.num_categories), dtype))

    def _stick_the_landing(self, q: tfd.Distribution) -> tfd.Distribution:
        """`q` with its parameters behind `stop_gradient` (and the same bijector)."""
        raise NotImplementedError

    def _kl(self, q, p, y) -> tf.Tensor:
        if self.kl_method == "closed":
            return tfd.kl_divergence(q, p)
        log_q = (self._stick_the_landing(q) if self.stick_the_landing else q).log_prob(y)
        return log_q - p.log_prob(y)

    def _metrics(self, q, y) -> dict[str, tf.Tensor]:
        return {}

    # --- shared -------------------------------------------------------------------------------
    def distribution(self, params, temperature, weights=None, *, log_space: bool = False):
        """The relaxed posterior as a TFP distribution (ψ, or log ψ with `log_space=True`)."""
        return self.distributions(params, temperature, weights, log_space=log_space)[0]

    def draw(self, params, temperature, weights=None, seed=None) -> Draw:
        """One reparameterised draw: `y ~ q` in log space, the KL to the prior, diagnostics."""
        check_positive(temperature, "temperature")
        if weights:
            # Read each weight once: every use then shares one tensor, and the graph optimizer
            # merges the recomputations TFP makes of functions of it (a planar flow's
            # constrained parameters, in forward and in log-det); a variable read per use would
            # not be merged.
            weights = {k: tf.convert_to_tensor(v) for k, v in weights.items()}
        q, p = self.distributions(params, temperature, weights, log_space=True)
        if self.kl_method == "sampled" and not self.stick_the_landing:
            # The draw and its density together (TFP's sample_and_log_prob): an IGR base
            # evaluates log N(z; μ, σ) from its own noise ε instead of from (z - μ) / σ.
            y, log_q = q.experimental_sample_and_log_prob(seed=_as_seed(seed))
            kl = log_q - p.log_prob(y)
        else:
            y = q.sample(seed=_as_seed(seed))
            kl = self._kl(q, p, y)
        return Draw(log_sample=y, kl=kl, metrics=self._metrics(q, y))

    def categorical_log_probs(self, params, weights=None, temperature=1.0, seed=None) -> tf.Tensor:
        """Log pmf `[..., V, K]` of the induced categorical (the law of `argmax ψ`).

        The default is a Monte Carlo estimate from `num_mc_samples` draws of the posterior,
        smoothed with half a count per category (Jeffreys) so that every outcome keeps a
        positive estimate; relaxations with a closed form override it.
        """
        q = self.distribution(params, temperature, weights, log_space=True)
        y = q.sample(self.num_mc_samples, seed=_as_seed(seed))
        hits = tf.one_hot(tf.argmax(y, axis=-1), self.num_categories, dtype=y.dtype)
        smoothed = tf.reduce_sum(hits, axis=0) + 0.5
        return tf.math.log(smoothed) - tf.math.log(tf.reduce_sum(smoothed, axis=-1, keepdims=True))

    def split(self, params) -> tf.Tensor:
        """Checks and returns encoder outputs shaped `[..., V, num_params]`."""
        # Variables stay references, so a distribution built from them outside a GradientTape
        # still differentiates with respect to them.
        params = tensor_util.convert_nonref_to_tensor(params)  # float64 numpy stays float64
        if not params.dtype.is_floating:
            raise TypeError(
                f"{self.name}: encoder outputs must be floating point; got {params.dtype.name} "
                "(cast them, e.g. tf.cast(params, tf.float32))."
            )
        if params.shape.rank is not None and params.shape[-1] is not None:
            if params.shape.rank < 1 or params.shape[-1] != self.num_params:
                raise ValueError(
                    f"{self.name} with K={self.num_categories} needs params with last axis "
                    f"{self.num_params}; got shape {params.shape}."
                )
        return params

    def get_config(self) -> dict[str, Any]:
        return {
            "num_categories": self.num_categories,
            "kl": self.kl_method,
            "stick_the_landing": self.stick_the_landing,
            "num_mc_samples": self.num_mc_samples,
            "validate_args": self.validate_args,
        }


def _as_rows(params: tf.Tensor) -> tf.Tensor:
    """Encoder outputs `[..., 2(K-1)]` seen as `[..., 2, K-1]`: row 0 the Gaussian locations,
    row 1 the raw scales (a reshape, no copy)."""
    return tf.reshape(params, ps.concat([ps.shape(params)[:-1], [2, -1]], 0))


def _as_seed(seed) -> tf.Tensor:
    """A stateless seed `[2]` int32 (from None, an int, a pair or a tensor)."""
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int32)
    return tf.cast(seed, tf.int32)


def _dtype_of(x) -> tf.DType:
    return getattr(x, "dtype", None) or tf.float32


class _IGR(Relaxation):
    """IGR: `y = LogSoftmaxPlusPlus(τ, δ)(h(z))`, `z ~ N(loc, scale²)` on R^{K-1}."""

    closed_form_kl: ClassVar[bool] = True
    exact_categorical: ClassVar[bool] = False

    def __init__(self, num_categories: int, *, delta: float = 1.0, **kwargs) -> None:
        check_positive(delta, "delta")
        self.delta = float(delta)
        super().__init__(num_categories, **kwargs)
        # Φ⁻¹ at trace time would be a numpy computation in traced code: done once, here.
        self._uniform_loc_offset = categorical.uniform_prior_loc(self.num_categories)

    @property
    def num_params(self) -> int:
        return 2 * (self.num_categories - 1)

    @classmethod
    def num_categories_for(cls, num_params: int) -> int:
        if num_params < 2 or num_params % 2:
            raise ValueError(
                f"{cls.name} needs 2(K-1) parameters per variable (loc and raw scale of K-1 "
                f"Gaussian coordinates): an even number ≥ 2; got {num_params}."
            )
        return num_params // 2 + 1

    def loc_scale(self, params):
        """Encoder outputs `[..., V, 2(K-1)]` -> (loc, scale) with scale = softplus(ξ) + 1e-4."""
        params = self.split(params)
        # The two halves unstacked from their rows: on CPU, Unpack and its gradient (Pack) cost
        # less than Split and ConcatV2 for the same copy (~400 against ~440 µs with the
        # gradient, [100, 20, 18], one thread).
        loc, raw = tf.unstack(_as_rows(params), axis=-2)
        return loc, softplus(raw) + _MIN_SCALE

    def map(self, weights=None) -> tfb.Bijector | None:
        """The invertible map h (None: the identity)."""
        return None

    def bijector(self, temperature, weights=None, *, log_space: bool = True) -> tfb.Bijector:
        """`softmax++_{τ,δ} ∘ h`, onto log ψ (`log_space`) or ψ."""
        spp = igr.softmax_plus_plus(temperature, self.delta, log_space, self.validate_args)
        h = self.map(weights)
        return spp if h is None else tfb.Chain([spp, h])

    def prior_loc_scale(self, temperature, dtype) -> tuple[tf.Tensor, tf.Tensor]:
        """Prior Gaussian (loc0, scale0), each `[K-1]`, whose induced categorical is uniform.

        With equal coordinates N(μ0, 1), the last category wins with probability
        `Φ(τ log δ - μ0)^{K-1}` (the threshold of `argmax [x, τ log δ]`), which is 1/K for
        `μ0 = τ log δ - Φ⁻¹(K^{-1/(K-1)})`. IGR-SB overrides it with fitted per-stick values.
        """
        shape = [self.num_categories - 1]
        loc0 = tf.fill(shape, tf.constant(self._uniform_loc_offset, dtype))
        if self.delta != 1.0:
            loc0 += as_dtype(temperature, dtype) * math.log(self.delta)
        return loc0, tf.ones(shape, dtype)

    def _posterior(self, loc, scale, bijector):
        base = igr.gaussian_base(loc, scale, self.validate_args)
        return igr.transformed(base, bijector, self.name, self.validate_args)

    def _prior_bijector(self, bijector: tfb.Bijector) -> tfb.Bijector:
        return bijector

    def _prior(self, temperature, dtype, bijector, num_vars=None):
        loc0, scale0 = self.prior_loc_scale(temperature, dtype)
        if num_vars is not None:
            loc0 = tf.broadcast_to(loc0, [num_vars, self.num_categories - 1])
            scale0 = tf.broadcast_to(scale0, [num_vars, self.num_categories - 1])
        return self._posterior(loc0, scale0, self._prior_bijector(bijector))

    def distributions(self, params, temperature, weights=None, *, log_space: bool = True):
        check_positive(temperature, "temperature")
        loc, scale = self.loc_scale(params)
        bij = self.bijector(temperature, weights, log_space=log_space)
        return self._posterior(loc, scale, bij), self._prior(temperature, loc.dtype, bij)

    def prior(
        self, temperature, weights=None, num_vars: int | None = None, dtype=None, *, log_space=False
    ) -> tfd.Distribution:
        check_positive(temperature, "temperature")
        dtype = tf.as_dtype(dtype) if dtype is not None else _dtype_of(temperature)
        bij = self.bijector(temperature, weights, log_space=log_space)
        return self._prior(temperature, dtype, bij, num_vars)

    def _stick_the_landing(self, q):
        normal = q.distribution.distribution  # TransformedDistribution(Independent(Normal))
        return self._posterior(
            tf.stop_gradient(normal.loc), tf.stop_gradient(normal.scale), q.bijector
        )

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), delta=self.delta)


class IGRI(_IGR):
    """IGR-I: h = identity; ψ = softmax([z/τ, log δ]); exact induced categorical by quadrature."""

    name = "igr_i"
    exact_categorical: ClassVar[bool] = True

    def categorical_log_probs(self, params, weights=None, temperature=1.0, seed=None):
        loc, scale = self.loc_scale(params)
        return self._igr_i_log_pmf(loc, scale, temperature)

    def _igr_i_log_pmf(self, loc, scale, temperature):
        # argmax ψ = argmax [z, τ log δ]: the threshold is δ^τ (just δ = 1 by default).
        tau = as_dtype(temperature, loc.dtype)
        return categorical.igr_i_log_pmf(loc, scale, delta=tf.exp(tau * math.log(self.delta)))

    def prior_categorical_log_probs(self, temperature=1.0, dtype=tf.float32):
        loc0, scale0 = self.prior_loc_scale(temperature, dtype)
        return self._igr_i_log_pmf(loc0, scale0, temperature)


class IGRStickBreaking(_IGR):
    """IGR-SB: h = LogitStickBreaking; ψ = softmax(log η / τ), η the stick pieces of sigmoid(z).

    With `adaptive=True` the stick is broken only until the pieces cover `threshold` of it, per
    sample and variable (`AdaptiveIGRStickBreaking`: categories beyond get no mass, the output
    keeps the static size K, the cap), and the number of sticks used is the metric "N". Its
    "closed" KL is then the Rao-Blackwellised `Σ_{k ≤ N} KL_k` of the Gaussian coordinates the
    draw used (unbiased; the truncated KL has no closed form). With `adaptive=False` all K-1
    sticks are used.
    """

    name = "igr_sb"
    metric_names: ClassVar[tuple[str, ...]] = ("N",)
    #: Static buckets of the adaptive truncation (None: the default ones, see
    #: `AdaptiveIGRStickBreaking`; `()`: the masked route). Private: the benchmark and the law
    #: tests set it on an instance to compare the routes; buckets never change the law.
    _buckets: tuple[int, ...] | None = None

    def __init__(
        self,
        num_categories: int,
        *,
        adaptive: bool = False,
        threshold: float = 0.99,
        **kwargs,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1]; got {threshold}.")
        if kwargs.get("delta", 1.0) != 1.0:
            raise ValueError("IGR-SB uses delta = 1 (the remainder of the stick is category K).")
        self.adaptive = bool(adaptive)
        self.threshold = float(threshold)
        super().__init__(num_categories, **kwargs)
        # Fitted once, here (a deterministic quadrature + Newton solve in numpy).
        self._prior_loc = categorical.fit_stick_breaking_prior(self.num_categories, scale=1.0)
        self._prior_log_pmf = np.log(
            np.maximum(categorical.stick_breaking_pmf(self._prior_loc, 1.0), 1e-300)
        )

    def map(self, weights=None):
        return LogitStickBreaking()

    def prior_loc_scale(self, temperature, dtype):
        return tf.constant(self._prior_loc, dtype), tf.ones([self.num_categories - 1], dtype)

    def prior_categorical_log_probs(self, temperature=1.0, dtype=tf.float32):
        return tf.constant(self._prior_log_pmf, dtype)

    def distributions(self, params, temperature, weights=None, *, log_space: bool = True):
        if not self.adaptive:
            return super().distributions(params, temperature, weights, log_space=log_space)
        check_positive(temperature, "temperature")
        params = self.split(params)
        # loc and the scale as loc_scale computes them (softplus(ξ) + 1e-4), deferred: rows of
        # the encoder outputs seen as [..., 2, K-1], read by the truncated distribution on the
        # sticks its bucket uses only (O(sticks used), not O(K); no full-width split).
        rows = _as_rows(params)
        shape = tf.TensorShape(params.shape[:-1]).concatenate([self.num_categories - 1])
        low = tf.constant(_MIN_SCALE, params.dtype)
        loc = tfp.util.DeferredTensor(rows, StickRow(0), shape=shape)
        scale = tfp.util.DeferredTensor(rows, StickRow(1, tfb.Softplus(low=low)), shape=shape)
        bij = self.bijector(temperature, weights, log_space=log_space)
        return self._posterior(loc, scale, bij), self._prior(temperature, params.dtype, bij)

    def _posterior(self, loc, scale, bijector):
        if not self.adaptive:
            return super()._posterior(loc, scale, bijector)
        # The truncated distribution carries its own maps; `bijector` says which space.
        log_space = isinstance(_outer(bijector), LogSoftmaxPlusPlus)
        tau = _outer(bijector).temperature
        return AdaptiveIGRStickBreaking(
            loc,
            scale,
            tau,
            self.threshold,
            log_space,
            validate_args=self.validate_args,
            buckets=self._buckets,
        )

    def draw(self, params, temperature, weights=None, seed=None) -> Draw:
        if not (self.adaptive and self.kl_method == "closed"):
            return super().draw(params, temperature, weights, seed)
        # One bucket switch computes the sample, ψ, N and the Rao-Blackwellised KL together
        # (the values of `super().draw`, at a cost that follows the sticks used).
        check_positive(temperature, "temperature")
        q, p = self.distributions(params, temperature, weights, log_space=True)
        y, psi, sticks, kl = q._sample_and_kl(p, seed=_as_seed(seed))
        return Draw(log_sample=y, kl=kl, metrics={"N": tf.cast(sticks, y.dtype)}, _sample=psi)

    def _stick_the_landing(self, q):
        if not self.adaptive:
            return super()._stick_the_landing(q)
        return q.copy(loc=tf.stop_gradient(q.loc), scale=tf.stop_gradient(q.scale))

    def _kl(self, q, p, y):
        if self.adaptive and self.kl_method == "closed":
            return q.kl_given_truncation(p, y)
        return super()._kl(q, p, y)

    def _metrics(self, q, y):
        if self.adaptive:
            sticks = tf.cast(q.num_sticks(y), y.dtype)
        else:
            sticks = tf.fill(tf.shape(y)[:-1], tf.constant(self.num_categories - 1, y.dtype))
        return {"N": sticks}

    def get_config(self) -> dict[str, Any]:
        config = dict(super().get_config(), adaptive=self.adaptive, threshold=self.threshold)
        config.pop("delta")
        return config


def _outer(bijector: tfb.Bijector) -> tfb.Bijector:
    """The last bijector applied (softmax++ in every IGR chain)."""
    return bijector.bijectors[0] if isinstance(bijector, tfb.Chain) else bijector


class IGRPlanar(_IGR):
    """IGR-Planar: h = L planar flows per variable (global weights); prior N(μ0, σ0) with no flow.

    The KL has no closed form: it is the one-sample estimate
    `log q(y) - log p(y) = log N(z; μ, σ) - Σ_l log|det ∂f_l| - log N(λ; μ0, σ0)`, λ = h(z) (the
    original code's prior: a Gaussian on λ pushed through softmax++ alone).
    """

    name = "igr_planar"
    closed_form_kl: ClassVar[bool] = False

    def __init__(self, num_categories: int, *, num_flows: int = 2, **kwargs) -> None:
        self.num_flows = check_positive_int(num_flows, "num_flows")
        super().__init__(num_categories, **kwargs)

    def weight_specs(self, num_vars: int) -> dict[str, WeightSpec]:
        d = self.num_categories - 1
        init = {"class_name": "RandomNormal", "config": {"stddev": 0.05}}
        specs = {}
        for i in range(self.num_flows):
            specs[f"planar_w{i}"] = WeightSpec((num_vars, d), init)
            specs[f"planar_u{i}"] = WeightSpec((num_vars, d), init)
            specs[f"planar_b{i}"] = WeightSpec((num_vars,), "zeros")
        return specs

    def map(self, weights=None):
        if not weights:
            raise ValueError("IGR-Planar needs its flow weights (`weights`); see weight_specs().")
        r = range(self.num_flows)
        return igr.planar_flows(
            [weights[f"planar_w{i}"] for i in r],
            [weights[f"planar_u{i}"] for i in r],
            [weights[f"planar_b{i}"] for i in r],
        )

    def _prior_bijector(self, bijector):
        # The same softmax++ instance as the posterior's: p.log_prob(y) finds λ in its cache.
        return _outer(bijector)

    def prior(
        self, temperature, weights=None, num_vars: int | None = None, dtype=None, *, log_space=False
    ) -> tfd.Distribution:
        check_positive(temperature, "temperature")
        dtype = tf.as_dtype(dtype) if dtype is not None else _dtype_of(temperature)
        spp = igr.softmax_plus_plus(temperature, self.delta, log_space, self.validate_args)
        return self._prior(temperature, dtype, spp, num_vars)

    def prior_categorical_log_probs(self, temperature=1.0, dtype=tf.float32):
        # The prior has no flow: it is IGR-I's, whose categorical is uniform by construction.
        loc0, scale0 = self.prior_loc_scale(temperature, dtype)
        tau = as_dtype(temperature, dtype)
        return categorical.igr_i_log_pmf(loc0, scale0, delta=tf.exp(tau * math.log(self.delta)))

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), num_flows=self.num_flows)


class _Logits(Relaxation):
    """A relaxation parameterised by K logits per variable whose TFP distribution of log ψ has a
    density (GS and the perturbation families): KL by the one-sample estimate
    `log q(y) - log p(y)` against the same family at uniform logits and temperature τ_p, and an
    exact induced categorical, softmax(logits) (the argmax of every perturb-and-max is exact)."""

    closed_form_kl: ClassVar[bool] = False
    exact_categorical: ClassVar[bool] = True

    def __init__(self, num_categories: int, *, prior_temperature: float = 0.5, **kwargs) -> None:
        check_positive(prior_temperature, "prior_temperature")
        self.prior_temperature = float(prior_temperature)
        super().__init__(num_categories, **kwargs)

    @property
    def num_params(self) -> int:
        return self.num_categories

    @classmethod
    def num_categories_for(cls, num_params: int) -> int:
        return num_params

    @abc.abstractmethod
    def _log_space_distribution(self, temperature, logits) -> tfd.Distribution:
        """The distribution of y = log ψ for these logits."""

    def _relaxed(self, temperature, logits, log_space):
        y = self._log_space_distribution(as_dtype(temperature, logits.dtype), logits)
        return y if log_space else tfd.TransformedDistribution(y, tfb.Exp(), name=self.name)

    def distributions(self, params, temperature, weights=None, *, log_space: bool = True):
        check_positive(temperature, "temperature")
        logits = self.split(params)
        q = self._relaxed(temperature, logits, log_space)
        p = self._relaxed(self.prior_temperature, tf.zeros_like(logits), log_space)
        return q, p

    def prior(
        self, temperature, weights=None, num_vars: int | None = None, dtype=None, *, log_space=False
    ) -> tfd.Distribution:
        check_positive(temperature, "temperature")
        dtype = tf.as_dtype(dtype) if dtype is not None else _dtype_of(temperature)
        shape = [self.num_categories] if num_vars is None else [num_vars, self.num_categories]
        return self._relaxed(self.prior_temperature, tf.zeros(shape, dtype), log_space)

    def _stick_the_landing(self, q):
        return q.copy(logits=tf.stop_gradient(q.logits))

    def categorical_log_probs(self, params, weights=None, temperature=1.0, seed=None):
        return tf.math.log_softmax(self.split(params), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), prior_temperature=self.prior_temperature)


class GumbelSoftmax(_Logits):
    """Gumbel-Softmax (Concrete): ψ = softmax((log α + g)/τ), g ~ Gumbel(0, 1), K logits.

    TFP's `ExpRelaxedOneHotCategorical` (drawn with Philox): y = log ψ, whose density stays finite
    at τ = 0.01 where `RelaxedOneHotCategorical.log_prob(ψ)` does not. The KL is the one-sample
    estimate `log ExpConcrete(y; α, τ) - log ExpConcrete(y; uniform, τ_p)`, with the prior
    temperature τ_p = 0.5 by default as in the original experiments.
    """

    name = "gs"

    def _log_space_distribution(self, temperature, logits):
        return philox.ExpRelaxedOneHotCategorical(
            temperature, logits=logits, validate_args=self.validate_args
        )


class ExponentialPerturbation(_Logits):
    """The Gumbel trick's Exponential relative, relaxed (Balog et al. 2017; igr_tf.perturbations):
    ψ = softmax(-T / τ), T_k = E_k / π_k, E_k ~ Exp(1), π = softmax(logits).

    argmax ψ = argmin_k T_k is an exact Categorical(π) draw, as for Gumbel-max; the relaxation
    differs from GS because the softmax acts on the scores -T themselves. Its density on log ψ is
    in closed form (`ExpRelaxedPerturbation`), so the KL is the one-sample estimate against the
    same family at uniform logits and τ_p = 0.5 (as for GS). (The Weibull and Fréchet relatives
    have no density and are sampled through `igr_tf.perturbations` only.)
    """

    name = "perturb_exponential"

    def _log_space_distribution(self, temperature, logits):
        from igr_tf.perturbations.relaxed import ExpRelaxedPerturbation

        return ExpRelaxedPerturbation(
            temperature, logits, family="exponential", validate_args=self.validate_args
        )


_REGISTRY: dict[str, type[Relaxation]] = {
    cls.name: cls
    for cls in (IGRI, IGRStickBreaking, IGRPlanar, GumbelSoftmax, ExponentialPerturbation)
}
# The command line lists the names without importing TensorFlow (igr_tf.names): one list.
if tuple(_REGISTRY) != RELAXATIONS:
    raise ImportError(f"igr_tf.names.RELAXATIONS {RELAXATIONS} != registry {tuple(_REGISTRY)}")


def names() -> tuple[str, ...]:
    """The registered relaxation names."""
    return tuple(_REGISTRY)


def get_class(name: str) -> type[Relaxation]:
    """The relaxation class registered under `name`."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown relaxation {name!r}; known relaxations: {', '.join(_REGISTRY)}."
        ) from None


def get(name: str, num_categories: int, **options) -> Relaxation:
    """Builds the relaxation registered under `name` (`names()`: "igr_i", "igr_sb",
    "igr_planar", "gs", "perturb_exponential").

    `options` are the relaxation's keyword arguments (kl, stick_the_landing, delta, adaptive,
    threshold, num_flows, prior_temperature, num_mc_samples, validate_args).
    """
    cls = get_class(name)
    try:
        return cls(num_categories, **options)
    except TypeError as e:
        raise ValueError(f"Bad option for relaxation {name!r}: {e}") from None
