"""Relaxations by name: how encoder outputs become relaxed one-hot samples and a KL to a prior.

A relaxation is a small recipe object. Models never branch on which one they use: they ask
`get(name, num_categories, ...)` and call the same four things on any of them:

- `num_params`: encoder outputs needed per discrete variable (IGR: 2(K-1); GS: K).
- `weight_specs(num_vars)`: global trainable weights it needs (the planar flows), created by the
  Keras layer that owns the relaxation.
- `draw(params, temperature, weights)`: one reparameterised draw. It returns the *hard logits*
  `ℓ` of shape `[..., V, K]`, whose `argmax` is the discrete outcome (the τ → 0 limit) and whose
  `softmax(ℓ / τ)` is the relaxed sample ψ, plus the per-variable KL term and diagnostics.
- `categorical_log_probs(params, weights)`: the log pmf of the categorical that the relaxation
  induces (the law of `argmax ψ`): exact where a closed form exists (IGR-I by quadrature, GS),
  otherwise a Monte Carlo estimate (`exact_categorical` says which).

`distribution(...)`/`prior(...)` return the relaxed distributions as TFP objects for users.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import tensor_util

from igr_tf import categorical
from igr_tf._checks import check_num_categories, check_positive
from igr_tf.bijectors import LogitStickBreaking
from igr_tf.distributions import igr
from igr_tf.distributions.kl import exp_concrete_log_prob, gaussian_kl, gaussian_log_prob

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    "Draw",
    "GumbelSoftmax",
    "IGRI",
    "IGRPlanar",
    "IGRStickBreaking",
    "Relaxation",
    "WeightSpec",
    "get",
    "names",
    "relaxed_sample",
]

KL_METHODS = ("closed", "sampled")
_MIN_SCALE = 1e-4


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """A global trainable weight a relaxation needs (created by the owning Keras layer)."""

    shape: tuple[int, ...]
    initializer: str | Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Draw:
    """One reparameterised draw for a batch of discrete variables.

    Attributes:
      logits: hard logits `ℓ` `[..., V, K]`: `argmax ℓ` is the discrete outcome and
        `softmax(ℓ / τ)` the relaxed sample.
      kl: the KL term per variable `[..., V]` (closed form, or the one-sample estimate
        `log q - log p` at this draw).
      metrics: diagnostics per example, e.g. `{"N": sticks used}` for IGR-SB.
    """

    logits: tf.Tensor
    kl: tf.Tensor
    metrics: dict[str, tf.Tensor]

    def relaxed(self, temperature) -> tf.Tensor:
        """The relaxed sample `ψ = softmax(ℓ / τ)` `[..., V, K]`.

        Categories masked out by adaptive truncation (`ℓ = -∞`) get exactly zero mass. They are
        kept out of the division by τ: `-∞ / τ` has gradient `∞ · 0 = NaN` with respect to τ,
        which would poison a trainable temperature.
        """
        return relaxed_sample(self.logits, temperature)


def relaxed_sample(logits, temperature) -> tf.Tensor:
    """`softmax(logits / τ)` on the last axis; `-∞` logits give exactly 0, with finite gradients."""
    logits = tf.convert_to_tensor(logits)
    tau = tf.convert_to_tensor(temperature, dtype=logits.dtype)
    kept = logits > -np.inf
    safe = tf.where(kept, logits, tf.zeros_like(logits))
    scaled = tf.where(kept, safe / tau, tf.constant(-np.inf, logits.dtype))
    return tf.math.softmax(scaled, axis=-1)


class Relaxation(abc.ABC):
    """Base class: configuration shared by all relaxations and the shared plumbing."""

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
        self.num_mc_samples = int(num_mc_samples)

    # --- what subclasses provide -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Encoder outputs per discrete variable."""

    def weight_specs(self, num_vars: int) -> dict[str, WeightSpec]:
        """Global trainable weights (none by default)."""
        return {}

    @abc.abstractmethod
    def draw(self, params, temperature, weights=None, seed=None) -> Draw:
        """One reparameterised draw; see the module docstring."""

    @abc.abstractmethod
    def distribution(self, params, temperature, weights=None) -> tfd.Distribution:
        """The relaxed posterior as a TFP distribution (event `[K]`, batch `[..., V]`)."""

    @abc.abstractmethod
    def prior(
        self, temperature, weights=None, num_vars: int | None = None, dtype=None
    ) -> tfd.Distribution:
        """The relaxed prior as a TFP distribution (`dtype`: default the temperature's, float32
        for a Python number)."""

    def categorical_log_probs(self, params, weights=None, temperature=1.0, seed=None) -> tf.Tensor:
        """Log pmf `[..., V, K]` of the induced categorical (law of `argmax ψ`).

        The default is a Monte Carlo estimate from `num_mc_samples` draws, smoothed with half a
        count per category (Jeffreys) so that every outcome keeps a positive estimate; relaxations
        with a closed form override it.
        """
        params = tf.convert_to_tensor(params)
        # All draws at once: a leading sample axis broadcasts through every map.
        tiled = tf.broadcast_to(params, tf.concat([[self.num_mc_samples], tf.shape(params)], 0))
        logits = self.draw(tiled, temperature, weights, seed=seed).logits
        hits = tf.one_hot(tf.argmax(logits, axis=-1), self.num_categories, dtype=params.dtype)
        counts = tf.reduce_sum(hits, axis=0)
        smoothed = counts + 0.5
        return tf.math.log(smoothed) - tf.math.log(tf.reduce_sum(smoothed, axis=-1, keepdims=True))

    # --- shared -------------------------------------------------------------------------------
    def split(self, params: tf.Tensor) -> tf.Tensor:
        """Checks and returns encoder outputs shaped `[..., V, num_params]`."""
        # Variables stay references, so a distribution built from them outside a GradientTape
        # still differentiates with respect to them.
        params = tensor_util.convert_nonref_to_tensor(params)
        if params.shape.rank is not None and params.shape[-1] is not None:
            if params.shape[-1] != self.num_params:
                raise ValueError(
                    f"{self.name} with K={self.num_categories} needs {self.num_params} parameters "
                    f"per variable (last axis of `params`); got shape {params.shape}."
                )
        return params

    def get_config(self) -> dict[str, Any]:
        return dict(
            num_categories=self.num_categories,
            kl=self.kl_method,
            stick_the_landing=self.stick_the_landing,
            num_mc_samples=self.num_mc_samples,
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _as_seed(seed):
    if seed is None:
        return tfp.random.sanitize_seed(None)
    return tfp.random.sanitize_seed(seed)


# Stateless RNG algorithm, named explicitly. "auto_select" (TF's default) already means Philox on
# CPU and GPU, and XLA draws the same numbers with either name; but under jit_compile on CPU,
# "auto_select" with a seed that is not a compile-time constant (ours comes from the layer's seed
# generator) compiles to a path ~60x slower than "philox": ~20 ms against ~0.3 ms for 20,000
# normals (benchmarks/relaxations.py; docs/benchmarks.md).
_RNG_ALG = "philox"


def _gaussian_sample(loc, scale, seed):
    eps = tf.random.stateless_normal(
        tf.shape(loc), seed=_as_seed(seed), dtype=loc.dtype, alg=_RNG_ALG
    )
    return loc + scale * eps


class _IGR(Relaxation):
    """IGR: z ~ N(loc, scale²) on R^{K-1}, λ = h(z), hard logits [λ, τ log δ] (softmax++)."""

    closed_form_kl: ClassVar[bool] = True
    exact_categorical: ClassVar[bool] = False

    def __init__(self, num_categories: int, *, delta: float = 1.0, **kwargs) -> None:
        check_positive(delta, "delta")
        self.delta = float(delta)
        super().__init__(num_categories, **kwargs)

    @property
    def num_params(self) -> int:
        return 2 * (self.num_categories - 1)

    def loc_scale(self, params):
        """Encoder outputs `[..., V, 2(K-1)]` -> (loc, scale) with scale = softplus(ξ) + 1e-4."""
        params = self.split(params)
        loc, raw = tf.split(params, 2, axis=-1)
        return loc, tf.math.softplus(raw) + _MIN_SCALE

    # The map h and the prior's Gaussian; subclasses override.
    def map(self, weights=None) -> tfb.Bijector:
        return tfb.Identity()

    def prior_loc_scale(self, dtype) -> tuple[tf.Tensor, tf.Tensor]:
        """Prior Gaussian (loc0, scale0), each `[K-1]`, making the induced categorical uniform.

        The default is IGR-I's closed form (equal coordinates; also IGR-Planar's prior, which has
        no flow); IGR-SB overrides it with its fitted per-stick locations.
        """
        loc0 = categorical.uniform_prior_loc(self.num_categories, delta=self.delta, scale=1.0)
        shape = [self.num_categories - 1]
        return tf.fill(shape, tf.constant(loc0, dtype)), tf.ones(shape, dtype)

    def _prior_log_prob(self, z, lam, fldj, dtype, mask=1.0):
        # Prior with the same map h: log p(λ) = log N(h⁻¹(λ) = z; μ0, σ0) - log|det ∂h/∂z|.
        loc0, scale0 = self.prior_loc_scale(dtype)
        return tf.reduce_sum(gaussian_log_prob(z, loc0, scale0) * mask, axis=-1) - fldj

    def _hard_logits(self, lam, temperature, z):
        tau = tf.convert_to_tensor(temperature, dtype=lam.dtype)
        last = tf.broadcast_to((tau * np.log(self.delta))[..., tf.newaxis], tf.shape(lam[..., :1]))
        return tf.concat([lam, last], axis=-1), {}

    def draw(self, params, temperature, weights=None, seed=None) -> Draw:
        check_positive(temperature, "temperature")
        loc, scale = self.loc_scale(params)
        z = _gaussian_sample(loc, scale, seed)
        h = self.map(weights)
        lam = h.forward(z)
        logits, metrics = self._hard_logits(lam, temperature, z)
        # Under IGR-SB's adaptive truncation only the sticks used enter the KL (both estimators).
        mask = metrics.pop("_kl_mask", 1.0)
        if self.kl_method == "closed":
            loc0, scale0 = self.prior_loc_scale(loc.dtype)
            kl = tf.reduce_sum(gaussian_kl(loc, scale, loc0, scale0) * mask, axis=-1)
        else:
            fldj = h.forward_log_det_jacobian(z, event_ndims=1)
            q_loc, q_scale = loc, scale
            if self.stick_the_landing:
                q_loc, q_scale = tf.stop_gradient(loc), tf.stop_gradient(scale)
            log_q = tf.reduce_sum(gaussian_log_prob(z, q_loc, q_scale) * mask, axis=-1) - fldj
            kl = log_q - self._prior_log_prob(z, lam, fldj, loc.dtype, mask)
        return Draw(logits=logits, kl=kl, metrics=metrics)

    def distribution(self, params, temperature, weights=None) -> tfd.Distribution:
        check_positive(temperature, "temperature")
        loc, scale = self.loc_scale(params)
        return self._make(loc, scale, temperature, weights)

    def prior(
        self, temperature, weights=None, num_vars: int | None = None, dtype=None
    ) -> tfd.Distribution:
        check_positive(temperature, "temperature")
        dtype = tf.as_dtype(dtype) if dtype is not None else _dtype_of(temperature)
        loc0, scale0 = self.prior_loc_scale(dtype)
        if num_vars is not None:
            loc0 = tf.broadcast_to(loc0, [num_vars, self.num_categories - 1])
            scale0 = tf.broadcast_to(scale0, [num_vars, self.num_categories - 1])
        return self._make_prior(loc0, scale0, temperature, weights)

    def _make_prior(self, loc0, scale0, temperature, weights):
        return self._make(loc0, scale0, temperature, weights)

    @abc.abstractmethod
    def _make(self, loc, scale, temperature, weights) -> tfd.Distribution: ...

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), delta=self.delta)


def _dtype_of(x) -> tf.DType:
    return getattr(x, "dtype", None) or tf.float32


class IGRI(_IGR):
    """IGR-I: h = identity; ψ = softmax([z/τ, log δ]); exact induced categorical by quadrature."""

    name = "igr_i"
    exact_categorical: ClassVar[bool] = True

    def categorical_log_probs(self, params, weights=None, temperature=1.0, seed=None):
        loc, scale = self.loc_scale(params)
        # argmax ψ = argmax [z, τ log δ]: the threshold is δ^τ (just δ when δ = 1).
        tau = tf.convert_to_tensor(temperature, dtype=loc.dtype)
        threshold = tf.exp(tau * np.log(self.delta))
        return categorical.igr_i_log_pmf(loc, scale, delta=threshold)

    def _make(self, loc, scale, temperature, weights):
        return igr.igr_i(loc, scale, temperature, self.delta)


# Up to this many sticks, cumulative sums are a matmul with a triangular matrix of ones: TF's CPU
# Cumsum kernel (and its gradient, another Cumsum) costs ~16 ns per element on a short last axis,
# 3-8x the matmul for 9 to 99 sticks (benchmarks/relaxations.py; docs/benchmarks.md). Past it, the
# matmul's O(K²) work loses and we keep the O(K) scan.
_MATMUL_CUMSUM_MAX = 128


def _cumsum_last(x: tf.Tensor) -> tf.Tensor:
    """Inclusive cumulative sum over the last axis (of static size, for the matmul path)."""
    d = x.shape[-1]
    if d is not None and d <= _MATMUL_CUMSUM_MAX:
        return tf.linalg.matmul(x, tf.constant(np.triu(np.ones((d, d))), x.dtype))
    return tf.math.cumsum(x, axis=-1)


class IGRStickBreaking(_IGR):
    """IGR-SB: h = LogitStickBreaking; ψ = softmax(log η / τ), η the stick pieces of sigmoid(z).

    With `adaptive=True` the stick is broken only until the pieces cover `threshold` of it, per
    example and variable: categories beyond the last piece used get no mass, the remainder of the
    stick goes to the next category, and the output keeps the static size K (the cap). The number
    of sticks used is reported as the metric "N". The closed-form KL then counts only the sticks
    used. With `adaptive=False` all K-1 sticks are used (finite K).
    """

    name = "igr_sb"
    metric_names: ClassVar[tuple[str, ...]] = ("N",)

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
        if "delta" in kwargs and kwargs["delta"] != 1.0:
            raise ValueError("IGR-SB uses delta = 1 (the remainder of the stick is category K).")
        self.adaptive = bool(adaptive)
        self.threshold = float(threshold)
        super().__init__(num_categories, **kwargs)

    def map(self, weights=None):
        return LogitStickBreaking()

    def prior_loc_scale(self, dtype):
        loc0 = categorical.fit_stick_breaking_prior(self.num_categories, scale=1.0)
        return tf.constant(loc0, dtype), tf.ones([self.num_categories - 1], dtype)

    def _hard_logits(self, lam, temperature, z):
        # log η straight from z (λ is not needed): with s = softplus(z) and C its cumulative sum,
        # log η_k = log σ(z_k) + Σ_{j<k} log σ(-z_j) = z_k - C_k for k < K and log η_K = -C_{K-1};
        # more generally the stick left after n breaks is Π_{j≤n} (1 - v_j) = exp(-C_n).
        # Same values as log_softmax([λ, 0]) in fewer ops (one softplus and one cumsum instead of
        # the map's two softplus, a reverse cumsum, a concat and a log-softmax), and exact in log
        # space where forming η would underflow. λ = h(z) is then unused and pruned from graphs.
        del lam
        used = _cumsum_last(tf.math.softplus(z))  # C_k = -log(stick left after k)
        log_eta = tf.concat([z - used, -used[..., -1:]], axis=-1)
        k = self.num_categories
        if not self.adaptive:
            sticks = tf.fill(tf.shape(z)[:-1], tf.constant(k - 1, z.dtype))
            return log_eta, {"N": sticks}
        # Broken-off mass after k sticks is 1 - exp(-C_k) < threshold  <=>  C_k < -log(1 - t);
        # threshold 1 uses every stick (no rounded sum is compared with 1).
        limit = -np.log1p(-self.threshold) if self.threshold < 1.0 else np.inf
        below = tf.reduce_sum(tf.cast(used < limit, tf.int32), axis=-1)
        n = tf.stop_gradient(tf.minimum(below + 1, k - 1))  # sticks used, 1..K-1
        position = tf.range(1, k + 1)
        n_ = n[..., tf.newaxis]
        # Log of the stick left after the n-th break: -C_n.
        log_rest_n = -tf.gather(used, n - 1, batch_dims=n.shape.rank)[..., tf.newaxis]
        logits = tf.where(
            position <= n_,
            log_eta,
            tf.where(position == n_ + 1, log_rest_n, tf.constant(-np.inf, z.dtype)),
        )
        kl_mask = tf.cast(position[:-1] <= n_, z.dtype)
        return logits, {"N": tf.cast(n, z.dtype), "_kl_mask": kl_mask}

    def _make(self, loc, scale, temperature, weights):
        return igr.igr_sb(loc, scale, temperature)

    def get_config(self) -> dict[str, Any]:
        config = dict(super().get_config(), adaptive=self.adaptive, threshold=self.threshold)
        config.pop("delta")
        return config


class IGRPlanar(_IGR):
    """IGR-Planar: h = L planar flows per variable (global weights); prior N(μ0, σ0) with no flow.

    The KL has no closed form: it is the one-sample estimate
    `log N(z; μ, σ) - Σ_l log|det ∂f_l| - log N(λ; μ0, σ0)` (the original code's prior).
    """

    name = "igr_planar"
    closed_form_kl: ClassVar[bool] = False

    def __init__(self, num_categories: int, *, num_flows: int = 2, **kwargs) -> None:
        if int(num_flows) != num_flows or num_flows < 1:
            raise ValueError(f"`num_flows` must be an integer ≥ 1; got {num_flows!r}.")
        self.num_flows = int(num_flows)
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

    def _prior_log_prob(self, z, lam, fldj, dtype, mask=1.0):
        loc0, scale0 = self.prior_loc_scale(dtype)
        return tf.reduce_sum(gaussian_log_prob(lam, loc0, scale0), axis=-1)

    def _make(self, loc, scale, temperature, weights):
        return igr.igr_planar(loc, scale, self.map(weights), temperature, self.delta)

    def _make_prior(self, loc0, scale0, temperature, weights):
        return igr.igr_i(loc0, scale0, temperature, self.delta)

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), num_flows=self.num_flows)


class GumbelSoftmax(Relaxation):
    """Gumbel-Softmax (Concrete): ψ = softmax((log α + g)/τ), g ~ Gumbel(0, 1), K logits.

    Densities are evaluated in log space on `y = log ψ` (ExpConcrete), which stays finite at
    τ = 0.01 where `RelaxedOneHotCategorical.log_prob(ψ)` does not. The KL is the one-sample
    estimate `log ExpConcrete(y; α, τ) - log ExpConcrete(y; uniform, τ_p)`, with the prior
    temperature τ_p = 0.5 by default as in the original experiments.
    """

    name = "gs"
    closed_form_kl: ClassVar[bool] = False
    exact_categorical: ClassVar[bool] = True

    def __init__(self, num_categories: int, *, prior_temperature: float = 0.5, **kwargs) -> None:
        check_positive(prior_temperature, "prior_temperature")
        self.prior_temperature = float(prior_temperature)
        super().__init__(num_categories, **kwargs)

    @property
    def num_params(self) -> int:
        return self.num_categories

    def draw(self, params, temperature, weights=None, seed=None) -> Draw:
        check_positive(temperature, "temperature")
        logits = self.split(params)
        u = tf.random.stateless_uniform(
            tf.shape(logits),
            seed=_as_seed(seed),
            dtype=logits.dtype,
            minval=np.finfo(logits.dtype.as_numpy_dtype).tiny,
            maxval=1.0,
            alg=_RNG_ALG,
        )
        hard = logits - tf.math.log(-tf.math.log(u))
        tau = tf.convert_to_tensor(temperature, dtype=logits.dtype)
        y = tf.math.log_softmax(hard / tau, axis=-1)
        q_logits = tf.stop_gradient(logits) if self.stick_the_landing else logits
        log_q = exp_concrete_log_prob(y, q_logits, tau)
        log_p = exp_concrete_log_prob(
            y, tf.zeros_like(logits), tf.constant(self.prior_temperature, logits.dtype)
        )
        return Draw(logits=hard, kl=log_q - log_p, metrics={})

    def categorical_log_probs(self, params, weights=None, temperature=1.0, seed=None):
        return tf.math.log_softmax(self.split(params), axis=-1)

    def distribution(self, params, temperature, weights=None) -> tfd.Distribution:
        check_positive(temperature, "temperature")
        return tfd.RelaxedOneHotCategorical(temperature, logits=self.split(params))

    def prior(
        self, temperature, weights=None, num_vars: int | None = None, dtype=None
    ) -> tfd.Distribution:
        check_positive(temperature, "temperature")
        dtype = tf.as_dtype(dtype) if dtype is not None else _dtype_of(temperature)
        shape = [self.num_categories] if num_vars is None else [num_vars, self.num_categories]
        return tfd.RelaxedOneHotCategorical(
            tf.constant(self.prior_temperature, dtype), logits=tf.zeros(shape, dtype)
        )

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), prior_temperature=self.prior_temperature)


_REGISTRY: dict[str, type[Relaxation]] = {
    cls.name: cls for cls in (IGRI, IGRStickBreaking, IGRPlanar, GumbelSoftmax)
}


def names() -> tuple[str, ...]:
    """The registered relaxation names."""
    return tuple(_REGISTRY)


def get(name: str, num_categories: int, **options) -> Relaxation:
    """Builds the relaxation registered under `name` ("igr_i", "igr_sb", "igr_planar", "gs").

    `options` are the relaxation's keyword arguments (kl, stick_the_landing, delta, adaptive,
    threshold, num_flows, prior_temperature, num_mc_samples).
    """
    try:
        cls = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown relaxation {name!r}; known relaxations: {', '.join(_REGISTRY)}."
        ) from None
    try:
        return cls(num_categories, **options)
    except TypeError as e:
        raise ValueError(f"Bad option for relaxation {name!r}: {e}") from None
