"""Approximating discrete distributions with relaxed samples (SPEC section 5).

One discrete variable (V = 1) with K = len(target) categories has free, not amortized,
parameters θ (IGR: loc and raw scale of the Gaussian, 2(K−1) numbers; GS: K logits; plus the
planar flows' weights for IGR-Planar). They are fitted by Adam so that the *mean of S relaxed
samples* matches a target pmf p:

    q̄_θ = (1/S) Σ_s ψ_s,   ψ_s = softmax(ℓ_s / τ),   ℓ_s the relaxation's hard logits,
    loss(θ) = KL(p ‖ q̄_θ) = Σ_k p_k (log p_k − log q̄_θ,k).

Why this loss: q̄ is the Monte Carlo estimate of E[ψ], which is a point of the simplex, and the
KL from the target is the natural divergence between two pmfs (the paper fits the mean of the
samples with a KL-type loss). The forward direction KL(p ‖ q̄) is mass-covering: it is finite
whenever q̄ > 0 and punishes every category of the target that the samples miss, which is what
"the samples reach every category" means. It is computed in log space,
log q̄_k = LSE_s(log ψ_s,k) − log S with log ψ = log_softmax(ℓ / τ), so it stays finite at
τ = 0.01, where most ψ_s,k underflow to 0 in float32. Its minimum 0 is reached iff q̄ = p.

At small τ, ψ is nearly one-hot, so q̄ is close to the frequency of `argmax ℓ` (the induced
categorical). The result reports both, and the total variation distance between the argmax
frequencies and the target, `TV = ½ Σ_k |freq_k − p_k|`.

Targets (all truncated to categories 0..K−1 and renormalized there):

- `poisson(rate, K)`:               p_k ∝ rate^k / k!
- `binomial(n, p)`:                 p_k = C(n, k) p^k (1−p)^{n−k}, K = n + 1 (no truncation)
- `negative_binomial(r, p, K)`:     p_k ∝ C(k + r − 1, k) p^k (1−p)^r, the number of successes
  (probability p each) before the r-th failure, mean r p / (1 − p) (= 75 for r = 50, p = 0.6):
  TFP's `NegativeBinomial(total_count=r, probs=p)` convention (scipy's `nbinom(r, 1 − p)`).
- `discrete()`:                     p ∝ [10, 1, 5, 1, 10, 10, 1, 6, 1, 1]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf.distributions import relaxations
from igr_tf.paper import APPROX_TEMPERATURE

__all__ = [
    "DEFAULT_TEMPERATURES",
    "TARGETS",
    "ApproxResult",
    "binomial",
    "discrete",
    "fit_approximation",
    "negative_binomial",
    "poisson",
    "total_variation",
]

#: The paper's temperatures for this experiment (one home: `igr_tf.paper`).
DEFAULT_TEMPERATURES: dict[str, float] = APPROX_TEMPERATURE


def _normalize_log(log_weights: np.ndarray) -> np.ndarray:
    log_weights = np.asarray(log_weights, dtype=np.float64)
    w = np.exp(log_weights - log_weights.max())
    return w / w.sum()


def poisson(rate: float = 50.0, num_categories: int = 20) -> np.ndarray:
    """Poisson(rate) on 0..K−1, renormalized: p_k ∝ rate^k / k!."""
    k = np.arange(num_categories)
    return _normalize_log([i * math.log(rate) - math.lgamma(i + 1) for i in k])


def binomial(n: int = 12, p: float = 0.3) -> np.ndarray:
    """Binomial(n, p) on 0..n (K = n + 1): p_k = C(n, k) p^k (1 − p)^{n−k}."""
    k = np.arange(n + 1)
    return _normalize_log(
        [math.log(math.comb(n, i)) + i * math.log(p) + (n - i) * math.log1p(-p) for i in k]
    )


def negative_binomial(r: float = 50.0, p: float = 0.6, num_categories: int = 100) -> np.ndarray:
    """Negative binomial on 0..K−1, renormalized: p_k ∝ C(k + r − 1, k) p^k (1 − p)^r.

    k counts successes (probability p) before the r-th failure; mean r p / (1 − p).
    """
    k = np.arange(num_categories)
    return _normalize_log(
        [math.lgamma(i + r) - math.lgamma(i + 1) - math.lgamma(r) + i * math.log(p) for i in k]
    )


def discrete() -> np.ndarray:
    """The 10-category target ∝ [10, 1, 5, 1, 10, 10, 1, 6, 1, 1]."""
    w = np.array([10, 1, 5, 1, 10, 10, 1, 6, 1, 1], dtype=np.float64)
    return w / w.sum()


#: The SPEC's targets by name (float64 pmfs).
TARGETS: dict[str, np.ndarray] = {
    "poisson_20": poisson(50.0, 20),
    "poisson_40": poisson(50.0, 40),
    "poisson_100": poisson(50.0, 100),
    "binomial": binomial(12, 0.3),
    "negative_binomial": negative_binomial(50.0, 0.6, 100),
    "discrete": discrete(),
}


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance ½ Σ_k |p_k − q_k|."""
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


@dataclasses.dataclass(frozen=True)
class ApproxResult:
    """Outcome of `fit_approximation`.

    Attributes:
      losses: `[steps]`: KL(target ‖ mean of relaxed samples) at each step (before its update).
      pmf_estimate: `[K]`: mean of S fresh relaxed samples at the fitted parameters.
      argmax_pmf: `[K]`: frequency of each category among the `argmax` of those S draws.
      total_variation: TV distance between `argmax_pmf` and the target.
      params: the fitted parameters: "params" `[1, P]` (one variable) and any global weights.
    """

    losses: np.ndarray
    pmf_estimate: np.ndarray
    argmax_pmf: np.ndarray
    total_variation: float
    params: dict[str, np.ndarray]


def _initial_params(relaxation: relaxations.Relaxation) -> np.ndarray:
    """`[1, P]` parameters whose induced categorical is (close to) uniform.

    GS: logits 0. IGR: the relaxation's prior Gaussian (μ0, σ0), which is fitted to make the
    induced categorical uniform, written as encoder outputs (loc, softplus⁻¹(σ0 − 1e-4)).
    """
    if not isinstance(relaxation, relaxations._IGR):
        return np.zeros([1, relaxation.num_params], np.float32)
    loc0, scale0 = (np.asarray(t, np.float64) for t in relaxation.prior_loc_scale(1.0, tf.float64))
    s = np.maximum(scale0 - relaxations._MIN_SCALE, 1e-6)
    raw = s + np.log(-np.expm1(-s))  # softplus⁻¹(s), stably
    return np.concatenate([loc0, raw])[np.newaxis].astype(np.float32)


def _kl_to_mean(log_target: tf.Tensor, target: tf.Tensor, log_psi: tf.Tensor) -> tf.Tensor:
    """KL(p ‖ q̄) with log q̄ = LSE_s log ψ_s − log S; `log_psi` is `[S, K]`."""
    s = tf.cast(tf.shape(log_psi)[0], log_psi.dtype)
    log_mean = tf.reduce_logsumexp(log_psi, axis=0) - tf.math.log(s)
    return tf.reduce_sum(tf.where(target > 0, target * (log_target - log_mean), 0.0))


def fit_approximation(
    relaxation_name: str,
    target_pmf: np.ndarray,
    temperature: float | None = None,
    num_samples: int = 10_000,
    steps: int = 200,
    lr: float = 1e-2,
    seed: int = 0,
    relaxation_options: dict[str, Any] | None = None,
    jit_compile: bool = False,
) -> ApproxResult:
    """Fits one relaxed variable so that the mean of its relaxed samples matches `target_pmf`.

    Minimizes KL(target ‖ mean of `num_samples` relaxed samples) (see the module docstring)
    with Adam(`lr`) for `steps` steps, fresh samples every step. `temperature` defaults to
    `DEFAULT_TEMPERATURES[relaxation_name]` (GS 0.1, the IGR family 0.01). Deterministic given
    `seed` (stateless sampling; step t uses the seed pair (seed, t)).

    The step is a `tf.function`; `jit_compile=True` (XLA) works but on CPU it was slower, not
    faster (IGR-SB, Poisson K = 100, 200 steps, S = 10⁴: 158 s with XLA against 16 s without).
    """
    target = np.asarray(target_pmf, dtype=np.float64)
    if target.ndim != 1 or target.size < 2 or np.any(target < 0) or target.sum() <= 0:
        raise ValueError("`target_pmf` must be a 1-D non-negative vector of ≥ 2 probabilities.")
    target = target / target.sum()
    relaxation = relaxations.get(relaxation_name, target.size, **(relaxation_options or {}))
    if temperature is None:
        temperature = DEFAULT_TEMPERATURES[relaxation_name]
    tau = tf.constant(temperature, tf.float32)
    p = tf.constant(target, tf.float32)
    log_p = tf.math.log(tf.maximum(p, np.finfo(np.float32).tiny))

    params = tf.Variable(_initial_params(relaxation), name="params")
    weights = {}  # global weights (the planar flows), seeded initial values
    for i, (name, spec) in enumerate(relaxation.weight_specs(1).items()):
        init = keras.initializers.get(spec.initializer)
        if hasattr(init, "seed"):
            init.seed = seed + 1000 + i
        weights[name] = tf.Variable(init(spec.shape), name=name)
    variables = [params, *weights.values()]
    optimizer = keras.optimizers.Adam(lr)
    optimizer.build(variables)

    def log_samples(step: tf.Tensor, salt: int) -> tf.Tensor:
        tiled = tf.broadcast_to(params, [num_samples, *params.shape])  # [S, V=1, P]
        draw = relaxation.draw(tiled, tau, weights, seed=tf.stack([seed + salt, step]))
        return draw.log_sample[:, 0, :]  # [S, K] log ψ

    @tf.function(jit_compile=jit_compile)
    def train_step(step: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = _kl_to_mean(log_p, p, log_samples(step, 0))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    losses = np.array([float(train_step(tf.constant(t))) for t in range(steps)])

    log_psi = log_samples(tf.constant(0), 1)  # fresh draws for the summary
    pmf_estimate = tf.reduce_mean(tf.exp(log_psi), axis=0).numpy()
    counts = np.bincount(tf.argmax(log_psi, axis=-1).numpy(), minlength=target.size)
    argmax_pmf = counts / counts.sum()
    return ApproxResult(
        losses=losses,
        pmf_estimate=pmf_estimate.astype(np.float64),
        argmax_pmf=argmax_pmf,
        total_variation=total_variation(argmax_pmf, target),
        params={"params": params.numpy(), **{k: v.numpy() for k, v in weights.items()}},
    )
