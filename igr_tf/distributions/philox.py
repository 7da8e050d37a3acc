"""TFP distributions whose stateless draws name the Philox algorithm explicitly.

TFP's samplers call `tf.random.stateless_*` with TF's default `alg="auto_select"`. That is Philox
on CPU and GPU, but under `jit_compile=True` on CPU, with a seed that is not a compile-time
constant (a Keras `SeedGenerator`'s output, as in every training step here), "auto_select"
compiles to a path about 20x slower than "philox" for the same numbers: 11.2 ms against 0.49 ms
for 18,000 normals (2026-12-01, one thread). These subclasses change only how the draw is made
(Philox; for `Normal` without XLA, the Box–Muller transform as vectorised ops, see
`standard_normal`) and evaluate densities with fewer divisions (a fresh draw's `Normal` density
from its own noise, `experimental_sample_and_log_prob`): same parameters, laws, density
values (to float rounding), KL rules and shapes as their TFP parents. A stateful (integer) seed
falls back to the parent's sampler.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import prefer_static as ps
from tensorflow_probability.python.internal import samplers

from igr_tf._checks import logits_relaxation_assertions
from igr_tf._ops import RNG_ALGORITHM, in_xla_context

tfd = tfp.distributions

__all__ = ["ALGORITHM", "ExpRelaxedOneHotCategorical", "Normal", "standard_normal"]

ALGORITHM = RNG_ALGORITHM
_HALF_LOG_TWO_PI = 0.5 * float(np.log(2.0 * np.pi))


def _stateless(seed) -> tf.Tensor:
    return samplers.sanitize_seed(seed)


def standard_normal(shape, seed, dtype=tf.float32) -> tf.Tensor:
    """N(0, 1) noise of `shape` from the stateless Philox `seed` `[2]`: IGR's Gaussian draw.

    For float32 and float64, the Box–Muller transform written as TF ops on one Philox uniform
    draw `u [2, ⌈n/2⌉]`:

    ```none
    r = sqrt(-2 log(1 - u_0)),   θ = 2π u_1,   ε = [r cos θ, r sin θ]   (first n entries)
    ```

    Without XLA because TF's `StatelessRandomNormalV2` CPU kernel evaluates it one scalar at a
    time: the vectorised ops took ~0.05-0.10 off IGR's sample + KL + gradient step as a ratio to
    GS (V=20, K=10, batch 100). Under XLA because XLA on CPU calls a scalar sin and cos per
    entry (its own normal too): ~24 ns each, ~0.4 ms for the 18,000 normals of that step, twice
    the rest of the draw. There cos θ and sin θ are polynomials instead (`_cos_sin_turns`, exact
    to float rounding), vectorised with the ops around them. Other dtypes use
    `tf.random.stateless_normal`. Every route is an exact N(0, 1) draw (up to float rounding and
    the uniform's resolution: |ε| ≤ 5.6 in float32, as in TF's kernel); XLA's Philox stream
    differs from TF's kernels' for the same seed, so compiled and eager draws differ.
    """
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        return tf.random.stateless_normal(shape, seed=seed, dtype=dtype, alg=ALGORITHM)
    size = ps.reduce_prod(shape)
    u = tf.random.stateless_uniform(
        ps.stack([2, (size + 1) // 2]), seed=seed, dtype=dtype, alg=ALGORITHM
    )
    radius = tf.sqrt(-2.0 * tf.math.log1p(-u[0]))  # 1 - u_0 in (0, 1]: finite
    if in_xla_context():
        # θ = 2π(v + ½) with v = u_1 - ½ in [-½, ½) (exact): cos θ = -cos 2πv, sin θ = -sin 2πv.
        cos_v, sin_v = _cos_sin_turns(u[1] - 0.5)
        minus_radius = -radius
        eps = tf.concat([minus_radius * cos_v, minus_radius * sin_v], axis=0)
    else:
        angle = (2.0 * math.pi) * u[1]
        eps = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=0)
    return tf.reshape(eps[:size], shape)


@functools.cache
def _turn_coefficients(dtype: tf.DType) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Taylor coefficients, in powers of v², of cos(2πv) and of sin(2πv) / v.

    ```none
    cos 2πv = Σ_k (-1)^k (2π)^{2k} v^{2k} / (2k)!
    sin 2πv = v Σ_k (-1)^k (2π)^{2k+1} v^{2k} / (2k+1)!
    ```

    Kept up to the first term whose bound at |2πv| = π, π^m / m!, is below an eighth of the
    dtype's machine epsilon: degree 18 (float32) or 30 (float64) for the cosine.
    """
    eps = float(np.finfo(dtype.as_numpy_dtype).eps)
    cos, sin = [], []
    m = 0
    while math.pi**m / math.factorial(m) >= eps / 8:
        term = (-1) ** (m // 2) * (2.0 * math.pi) ** m / math.factorial(m)
        (cos if m % 2 == 0 else sin).append(term)
        m += 1
    return tuple(cos), tuple(sin)


def _cos_sin_turns(v: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`(cos 2πv, sin 2πv)` for |v| ≤ ½ by Horner's rule on `_turn_coefficients`.

    Truncation error below eps/8; rounding adds a few eps in absolute terms (the partial sums
    reach ~5 at |2πv| = π), as much as rounding 2πu to float does in `tf.cos(2π u)`.
    """
    cos_c, sin_c = _turn_coefficients(v.dtype)
    v_sq = tf.square(v)

    def horner(coefficients):
        acc = tf.constant(coefficients[-1], v.dtype)
        for c in coefficients[-2::-1]:
            acc = acc * v_sq + c
        return acc

    return horner(cos_c), v * horner(sin_c)


class Normal(tfd.Normal):
    """`tfd.Normal` drawing `loc + scale · ε` with `ε = standard_normal(shape, seed)` (Philox)."""

    def _sample_n(self, n, seed=None):
        if samplers.is_stateful_seed(seed):
            return super()._sample_n(n, seed=seed)
        loc = tf.convert_to_tensor(self.loc)
        scale = tf.convert_to_tensor(self.scale)
        shape = ps.concat([[n], self._batch_shape_tensor(loc=loc, scale=scale)], axis=0)
        eps = standard_normal(shape, _stateless(seed), self.dtype)
        return loc + scale * eps

    def _sample_and_log_prob(self, sample_shape, seed, **kwargs):
        """`x = μ + σ ε` and `log N(x; μ, σ) = -½ ε² − log σ − ½ log 2π`, from the same ε.

        TFP's `experimental_sample_and_log_prob` hook: the density of a fresh draw needs no
        `(x − μ) / σ`, which in float rounding is only ε again. The value is `log_prob(x)`'s to
        rounding, and so is the gradient along the reparameterised path x(μ, σ) (both give
        ∂/∂μ = 0, ∂/∂σ = −1/σ). IGR-Planar's sampled KL draws this way (`Relaxation.draw`):
        ~9% of its sample + KL + gradient step under XLA, forward and backward.
        """
        if samplers.is_stateful_seed(seed):  # TFP's default: draw, then evaluate
            x = self._call_sample_n(sample_shape, seed=seed)
            return x, self._log_prob(x)
        loc = tf.convert_to_tensor(self.loc)
        scale = tf.convert_to_tensor(self.scale)
        batch = self._batch_shape_tensor(loc=loc, scale=scale)
        eps = standard_normal(ps.concat([sample_shape, batch], 0), _stateless(seed), self.dtype)
        log_prob = -0.5 * tf.square(eps) - (_HALF_LOG_TWO_PI + tf.math.log(scale))
        return loc + scale * eps, log_prob

    def _log_prob(self, x):
        """`log N(x; μ, σ) = -½ ((x − μ) / σ)² − log σ − ½ log 2π`, TFP's value.

        TFP's `Normal.log_prob` divides x and μ by σ separately: two divisions per entry, and
        four more in its gradient (σ is a tensor per entry in IGR's posteriors). Times one
        reciprocal of σ instead: under XLA on CPU a division costs several multiplies, and
        IGR-Planar's sampled KL evaluates this density on every draw.
        """
        scale = tf.convert_to_tensor(self.scale)
        standardized = (x - tf.convert_to_tensor(self.loc)) * tf.math.reciprocal(scale)
        return -0.5 * tf.square(standardized) - (_HALF_LOG_TWO_PI + tf.math.log(scale))


@tfd.RegisterKL(Normal, Normal)
def _kl_normal_normal(a: Normal, b: Normal, name=None) -> tf.Tensor:
    """KL(N(μa, σa²) ‖ N(μb, σb²)) = ½ (r − 1)(r + 1) − log r + ½ ((μa − μb) / σb)², r = σa / σb.

    The value of TFP's rule for two Normals (which divides twice and takes two logs and an
    expm1 per entry); here one reciprocal of σb and one log per entry, which under XLA on CPU
    measured ~0.3 ms less per IGR-I step at [100, 20, 9]. Near r = 1 both forms lose the same
    relative accuracy (eps / |r − 1|) on the scale term.

    When σb is a constant equal to 1 (IGR's priors), `r = σa` and the shift is `μa − μb`: the
    two products by 1/σb are left out. XLA drops them itself; TensorFlow's graph optimizer does
    not (broadcast products by ones), and they and their gradients cost ~4-5% of IGR-I's and
    IGR-SB's sample + KL + gradient step without XLA.
    """
    with tf.name_scope(name or "kl_normal_normal"):
        scale_a = tf.convert_to_tensor(a.scale)
        scale_b = tf.convert_to_tensor(b.scale)
        shift = tf.convert_to_tensor(a.loc) - tf.convert_to_tensor(b.loc)
        if _is_constant_one(scale_b) and _broadcasts_into(scale_b, scale_a, shift):
            r = scale_a
        else:
            inverse_scale_b = tf.math.reciprocal(scale_b)
            r = scale_a * inverse_scale_b
            shift = shift * inverse_scale_b
        return 0.5 * (r - 1.0) * (r + 1.0) - tf.math.log(r) + 0.5 * tf.square(shift)


def _is_constant_one(x: tf.Tensor) -> bool:
    """Whether `x` is known at trace time and every entry equals 1 (a constant, not a variable)."""
    value = tf.get_static_value(x)
    return value is not None and bool(np.all(value == 1))


def _broadcasts_into(x: tf.Tensor, *others: tf.Tensor) -> bool:
    """Whether leaving `x` out of a broadcast with `others` keeps the (static) result shape."""
    shape = tf.TensorShape([])
    for t in others:
        shape = tf.broadcast_static_shape(shape, t.shape)
    return shape.is_fully_defined() and tf.broadcast_static_shape(shape, x.shape) == shape


class ExpRelaxedOneHotCategorical(tfd.ExpRelaxedOneHotCategorical):
    """`tfd.ExpRelaxedOneHotCategorical` (log Gumbel-Softmax) with Philox Gumbel noise.

    ```none
    y = log_softmax((logits + g) / τ),   g_k = -log(-log u_k),   u_k ~ U(tiny, 1)
    ```
    """

    def _parameter_control_dependencies(self, is_init):
        # TFP's checks (kept when the parameters are probs) name no argument ("Condition x > 0
        # did not hold") and let NaN logits through to a NaN sample.
        if not self.validate_args or self._logits is None:
            return super()._parameter_control_dependencies(is_init)
        return logits_relaxation_assertions(self.temperature, self._logits, is_init)

    def _sample_n(self, n, seed=None):
        if samplers.is_stateful_seed(seed):
            return super()._sample_n(n, seed=seed)
        temperature = tf.convert_to_tensor(self.temperature)
        logits = self._logits_parameter_no_checks()
        shape = ps.concat(
            [
                [n],
                self._batch_shape_tensor(temperature=temperature, logits=logits),
                self._event_shape_tensor(logits=logits),
            ],
            axis=0,
        )
        tiny = np.finfo(self.dtype.as_numpy_dtype).tiny
        u = tf.random.stateless_uniform(
            shape, seed=_stateless(seed), minval=tiny, maxval=1.0, dtype=self.dtype, alg=ALGORITHM
        )
        gumbel = -tf.math.log(-tf.math.log(u))
        # Times 1/τ, as in SoftmaxPlusPlus.logits: under XLA a division by a run-time τ stays
        # a division per entry (forward and backward).
        inverse_tau = tf.math.reciprocal(temperature)[..., tf.newaxis]
        return tf.math.log_softmax((logits + gumbel) * inverse_tau, axis=-1)
