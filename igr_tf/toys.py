r"""Toy problems with exact gradients, for comparing gradient estimators (`igr_tf.estimators`).

- `PolynomialToy` (ReinMax's polynomial programming, after Tucker et al. 2017): n binary variables
  b_i (K = 2, b_i = sample[..., i, 0]) and the loss (1/n) Σ_i |b_i − t|^p, t = 0.45,
  p ∈ {1.5, 2, 3}. Its expectation factorises: E = (1/n) Σ_i [q_i |1 − t|^p + (1 − q_i) |t|^p]
  with q_i = P(b_i = 1), so the exact gradient is that of a sum of per-variable terms.
- `CategoricalToy`: V categorical variables with K categories and the coupled loss
  ‖Σ_v W_v d_v − y‖^p (d_v one-hot, W_v ∈ R^{2×K} and y ∈ R² fixed random numbers, p = 3: not
  quadratic, so no straight-through estimator is exact). Its expectation is a sum over all K^V
  outcomes (64 for V = 3, K = 4).

What the toys show about the biased estimators (exact expectations, see
tests/test_estimators_straight_through.py): for a binary variable with logit α, ST-GS's expected
gradient is E[σ'((α + L)/τ)/τ · f'(b)], L logistic; as τ → 0 it tends to q(1−q)(f'(1) + f'(0))/2,
the trapezoid rule for the exact q(1−q)(f(1) − f(0)). For p = 2 the rule is exact and the bias
vanishes with τ (α = 0.4: 0.0167, 0.0151, 0.0063, 0.0009 at τ = 1, 0.3, 0.1, 0.01; exact 0.0240);
for p = 3 it does not (0.025, 0.028, 0.023, 0.019; exact 0.0181). ST (τ = 1) is exact for linear
f, ReinMax (τ = 1) for quadratic f.

Both take a log pmf `[*batch, V, K]` for the exact expectation, so they serve any parameterisation
whose discrete law is known exactly (softmax logits, IGR-I's quadrature). `run_toy` trains free
parameters with an estimator and reports the loss curve and the gradient's bias and variance
against the exact gradient; `python train.py toy` is its command line.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
import tensorflow as tf

from igr_tf._checks import check_num_categories, check_positive_int, positive_float

__all__ = ["CategoricalToy", "PolynomialToy", "gradient_report", "initial_params", "run_toy"]


class PolynomialToy:
    """Minimise E[(1/n) Σ_i |b_i − target|^power] over n independent binary variables."""

    num_categories = 2

    def __init__(self, num_vars: int = 128, power: float = 2.0, target: float = 0.45) -> None:
        self.num_vars = check_positive_int(num_vars, "num_vars")
        self.power = positive_float(power, "power")
        self.target = float(target)

    def objective(self, samples: tf.Tensor) -> tf.Tensor:
        """`[..., n, 2]` -> `[...]`; also defined for relaxed samples (b = samples[..., 0])."""
        b = samples[..., 0]
        return tf.reduce_mean(tf.abs(b - self.target) ** self.power, axis=-1)

    def exact_loss(self, log_pmf: tf.Tensor) -> tf.Tensor:
        """E[loss] `[*batch]` from the per-variable log pmf `[*batch, n, 2]` (by factorisation)."""
        on = tf.exp(log_pmf[..., 0])
        dtype = on.dtype
        loss_on = tf.constant(abs(1.0 - self.target) ** self.power, dtype)
        loss_off = tf.constant(abs(self.target) ** self.power, dtype)
        return tf.reduce_mean(on * loss_on + (1.0 - on) * loss_off, axis=-1)

    def describe(self) -> dict[str, Any]:
        return {
            "toy": "poly",
            "num_vars": self.num_vars,
            "power": self.power,
            "target": self.target,
        }


class CategoricalToy:
    """Minimise E[‖Σ_v W_v d_v − y‖^power] over V categorical variables (enumerated exactly)."""

    def __init__(
        self, num_vars: int = 3, num_categories: int = 4, power: float = 3.0, seed: int = 0
    ) -> None:
        self.num_vars = check_positive_int(num_vars, "num_vars")
        self.num_categories = check_num_categories(num_categories)
        if self.num_categories**self.num_vars > 200_000:
            raise ValueError(
                "CategoricalToy enumerates all K^V outcomes; keep K^V <= 200000 "
                f"(got {self.num_categories}^{self.num_vars})."
            )
        self.power = positive_float(power, "power")
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        self.embedding = rng.normal(0.0, 1.0, (self.num_vars, self.num_categories, 2))
        self.goal = rng.normal(0.0, 1.0, 2)
        k, v = self.num_categories, self.num_vars
        outcomes = np.array(list(itertools.product(range(k), repeat=v)))
        self.outcomes = np.eye(k)[outcomes]  # [K^V, V, K] one-hot

    def objective(self, samples: tf.Tensor) -> tf.Tensor:
        """`[..., V, K]` -> `[...]` (one-hot or relaxed samples)."""
        w = tf.constant(self.embedding, samples.dtype)
        point = tf.einsum("...vk,vkd->...d", samples, w) - tf.constant(self.goal, samples.dtype)
        # ‖x‖^p written as (‖x‖² + 0)^{p/2}: smooth for p > 2 (gradient 0 at the origin).
        return tf.reduce_sum(tf.square(point), axis=-1) ** (self.power / 2.0)

    def exact_loss(self, log_pmf: tf.Tensor) -> tf.Tensor:
        """E[loss] `[*batch]` = Σ over the K^V outcomes of their probability times the loss."""
        outcomes = tf.constant(self.outcomes, log_pmf.dtype)
        values = self.objective(outcomes)  # [O]
        log_probs = tf.einsum("...vk,ovk->...o", log_pmf, outcomes)
        return tf.reduce_sum(tf.exp(log_probs) * values, axis=-1)

    def describe(self) -> dict[str, Any]:
        return {
            "toy": "categorical",
            "num_vars": self.num_vars,
            "num_categories": self.num_categories,
            "power": self.power,
            "seed": self.seed,
        }


def initial_params(estimator, num_vars: int, seed: int = 0, dtype=tf.float64) -> np.ndarray:
    """Near-uniform starting parameters `[V, P]`: logits (or IGR locations) in U(−0.01, 0.01),
    IGR scales 1 (encoder outputs ξ with softplus(ξ) + 1e-4 = 1)."""
    rng = np.random.default_rng(seed)
    k, p = estimator.num_categories, estimator.num_params
    if p == k:  # logits
        return rng.uniform(-0.01, 0.01, (num_vars, k))
    loc = rng.uniform(-0.01, 0.01, (num_vars, k - 1))
    xi = np.full((num_vars, k - 1), math.log(math.expm1(1.0 - 1e-4)))
    return np.concatenate([loc, xi], axis=-1)


def _exact(estimator, toy, params: tf.Tensor) -> tuple[tf.Tensor | None, tf.Tensor | None]:
    """(exact loss, exact gradient `[V, P]`) at params `[V, P]`, or (None, None) if no pmf."""
    with tf.GradientTape() as tape:
        tape.watch(params)
        try:
            loss = toy.exact_loss(estimator.log_pmf(params))
        except NotImplementedError:
            return None, None
    return loss, tape.gradient(loss, params)


def _weights(estimator, num_vars: int, dtype, seed: int) -> dict[str, tf.Variable]:
    specs = estimator.weight_specs(num_vars)
    rng = np.random.default_rng(seed + 1)
    out = {}
    for name, spec in specs.items():
        init = (
            np.zeros(spec.shape) if spec.initializer == "zeros" else rng.normal(0, 0.05, spec.shape)
        )
        out[name] = tf.Variable(init, dtype=dtype, name=name)
    return out


def _call_kwargs(estimator, weights) -> dict[str, Any]:
    return {"weights": weights} if weights else {}


def gradient_report(
    estimator,
    toy,
    params: tf.Tensor,
    num_draws: int = 1000,
    seed: int = 0,
    weights=None,
    chunk: int = 250,
) -> dict[str, Any]:
    """Bias, variance, SNR and zero fraction of the estimator's gradient at params `[V, P]`.

    Draws are independent copies of the parameters in one batch (each example's gradient is one
    draw), `chunk` at a time.
    """
    from igr_tf.estimators.diagnostics import gradient_statistics

    params = tf.convert_to_tensor(params)
    draws = []
    for start in range(0, num_draws, chunk):
        n = min(chunk, num_draws - start)
        tiled = tf.broadcast_to(params, [n, *params.shape])
        _, g = estimator.gradient(
            toy.objective, tiled, seed=[seed, start], **_call_kwargs(estimator, weights)
        )
        draws.append(g.numpy())
    loss, exact = _exact(estimator, toy, params)
    stats = gradient_statistics(np.concatenate(draws), None if exact is None else exact.numpy())
    stats["exact_loss"] = None if loss is None else float(loss)
    return stats


def run_toy(
    estimator,
    toy,
    steps: int = 1000,
    lr: float = 1e-3,
    batch: int = 64,
    seed: int = 0,
    num_draws: int = 1000,
    jit_compile: bool = False,
    log_every: int = 1,
    dtype=tf.float64,
) -> dict[str, Any]:
    """Trains free parameters `[V, P]` with `estimator` (Adam) and reports what happened.

    Each step averages the surrogate over `batch` independent samples. Returns a dict with
    "losses" (the exact loss every `log_every` steps, or the surrogate's estimate where the
    estimator has no exact pmf), "metrics" (final loss, and the gradient report at the initial
    and at the final parameters: bias, relative bias, variance, SNR, zero fraction) and timing.
    """
    import keras

    params = tf.Variable(initial_params(estimator, toy.num_vars, seed), dtype=dtype, name="params")
    weights = _weights(estimator, toy.num_vars, dtype, seed)
    if hasattr(estimator, "build") and getattr(estimator, "control", 1) is None:
        estimator.build(toy.num_vars, dtype=tf.as_dtype(dtype).name)
    variables = [params, *weights.values(), *getattr(estimator, "trainable_variables", [])]
    optimizer = keras.optimizers.Adam(lr)
    optimizer.build(variables)
    kwargs = _call_kwargs(estimator, weights)
    report_before = gradient_report(estimator, toy, params, num_draws, seed + 7, weights)

    @tf.function(jit_compile=jit_compile)
    def step(step_seed):
        with tf.GradientTape() as tape:
            tiled = tf.broadcast_to(params, [batch, *params.shape])
            loss = tf.reduce_mean(
                estimator.surrogate(toy.objective, tiled, seed=step_seed, **kwargs)
            )
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    losses, start = [], time.perf_counter()
    for i in range(int(steps)):
        estimate = step(tf.constant([seed, i], tf.int32))
        if i % log_every == 0 or i == steps - 1:
            exact, _ = _exact(estimator, toy, tf.convert_to_tensor(params))
            losses.append(float(estimate if exact is None else exact))
    seconds = time.perf_counter() - start
    report_after = gradient_report(estimator, toy, params, num_draws, seed + 11, weights)
    metrics = {
        "final_loss": losses[-1],
        "final_loss_exact": report_after["exact_loss"] is not None,
        **{f"{k}_at_init": v for k, v in report_before.items()},
        **{f"{k}_at_end": v for k, v in report_after.items()},
    }
    if hasattr(estimator, "control") and estimator.control is not None:
        metrics["learned_temperature"] = float(estimator.control.temperature)
        metrics["learned_eta"] = float(estimator.control.eta)
    return {
        "metrics": metrics,
        "losses": losses,
        "log_every": int(log_every),
        "train_seconds": seconds,
        "steps_per_sec": steps / seconds if seconds > 0 else None,
        "toy": toy.describe(),
    }
