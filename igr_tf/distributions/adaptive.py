"""IGR-SB with adaptive truncation: the stick is broken only as far as the sample needs.

IGR-SB's stick-breaking gives countably infinite support; in practice the stick is cut after
the first `n` breaks whose pieces cover a share `t` (the `threshold`) of it, per sample and per
variable, with a static cap K (so the output keeps a fixed size, and it compiles with XLA):

```none
z ~ N(loc, diag(scale²)) on R^{K-1}
log r_k = -Σ_{j≤k} softplus(z_j)                        (the stick left after k breaks)
n = min(1 + #{k : 1 - r_k < t}, K - 1)                  (sticks used, 1..K-1)
ℓ_k = log η_k = z_k + log r_k  (k ≤ n),   ℓ_{n+1} = log r_n,   ℓ_k = -∞  (k > n + 1)
y = log ψ = log_softmax(ℓ / τ)                                           (ψ_k = 0 beyond n + 1)
```

Given `n`, y is the `(n+1)`-category IGR-SB of `z_{1..n}`: the same bijectors
(`LogSoftmaxPlusPlus(τ) ∘ LogitStickBreaking`) on a face of the simplex. So the density of y,
with respect to the sum over faces of the log-ratio Lebesgue measures (the convention of
`LogSoftmaxPlusPlus`), is

```none
log q(y) = Σ_{k≤n} log N(z_k; loc_k, scale_k) + n log τ,   z_{1..n} recovered from y,
```

times the indicator that z satisfies the cutting rule; the sticks after n are integrated out.
Whether stick k is used depends only on sticks before it (`n ≥ k` iff `1 - r_{k-1} < t`), so for a
prior `p` of the same form `E_q[Σ_{k≤n} KL(N(loc_k, scale_k) ‖ N(loc0_k, scale0_k))] = KL(q ‖ p)`:
`kl_given_truncation` is an unbiased, Rao-Blackwellised estimate of the KL (exact in z given
which sticks a draw used). There is no closed form for the KL itself.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    dtype_util,
    parameter_properties,
    tensor_util,
)
from tensorflow_probability.python.internal import prefer_static as ps

from igr_tf.bijectors import LogitStickBreaking
from igr_tf.distributions.igr import gaussian_base

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["AdaptiveIGRStickBreaking"]


class AdaptiveIGRStickBreaking(tfd.Distribution):
    """IGR-SB truncated where the broken-off sticks first cover `threshold` of the stick.

    Event shape `[K]` (the cap), batch shape that of `loc[..., :-1]` (e.g. `[B, V]`). Values are
    `y = log ψ` (`log_space=True`, the default: entries beyond the cut are `-inf`) or ψ itself
    (exact zeros beyond the cut). Prefer log space for densities: the cut is read from the last
    finite entry of y, while in ψ space an underflowed last piece would be mistaken for the cut.

    Args:
      loc, scale: the Gaussian noise `[..., K-1]` (scale > 0).
      temperature: τ > 0 (scalar or broadcasting against the batch).
      threshold: t in (0, 1]; t = 1 uses every stick (no truncation below the cap).
      log_space: sample and evaluate log ψ (True) or ψ (False).
    """

    def __init__(
        self,
        loc,
        scale,
        temperature,
        threshold: float = 0.99,
        log_space: bool = True,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str = "AdaptiveIGR_SB",
    ) -> None:
        parameters = dict(locals())
        threshold = float(threshold)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1]; got {threshold}.")
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([loc, scale, temperature], dtype_hint=tf.float32)
            self._loc = tensor_util.convert_nonref_to_tensor(loc, dtype=dtype, name="loc")
            self._scale = tensor_util.convert_nonref_to_tensor(scale, dtype=dtype, name="scale")
            self._temperature = tensor_util.convert_nonref_to_tensor(
                temperature, dtype=dtype, name="temperature"
            )
            self._threshold = threshold
            self._log_space = bool(log_space)
            super().__init__(
                dtype=dtype,
                reparameterization_type=tfd.FULLY_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            loc=parameter_properties.ParameterProperties(event_ndims=1),
            scale=parameter_properties.ParameterProperties(
                event_ndims=1,
                default_constraining_bijector_fn=(
                    lambda: tfb.Softplus(low=dtype_util.eps(dtype))
                ),
            ),
            temperature=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED
            ),
        )

    # --- parameters -----------------------------------------------------------------------------
    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    @property
    def temperature(self):
        return self._temperature

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def log_space(self) -> bool:
        return self._log_space

    @property
    def base(self) -> tfd.Distribution:
        """The Gaussian noise `N(loc, diag(scale²))`, event `[K-1]`."""
        return gaussian_base(self._loc, self._scale, self.validate_args)

    def _event_shape(self):
        d = tf.TensorShape(self._loc.shape)[-1:]
        return tf.TensorShape([None]) if d[0] is None else tf.TensorShape([d[0] + 1])

    def _event_shape_tensor(self):
        return ps.shape(self._loc)[-1:] + 1

    # --- the cutting rule ------------------------------------------------------------------------
    def _sticks_used(self, log_rest: tf.Tensor) -> tf.Tensor:
        """`n` (int32, 1..K-1) from `log r_k` `[..., K-1]`."""
        cap = ps.shape(log_rest)[-1]
        if self._threshold >= 1.0:
            return tf.fill(ps.shape(log_rest)[:-1], tf.cast(cap, tf.int32))
        # 1 - r_k < t  <=>  log r_k > log(1 - t); r_k decreases with k.
        uncovered = tf.cast(log_rest > math.log1p(-self._threshold), tf.int32)
        return tf.minimum(tf.reduce_sum(uncovered, axis=-1) + 1, tf.cast(cap, tf.int32))

    def _positions(self, like: tf.Tensor) -> tf.Tensor:
        return tf.range(1, ps.shape(like)[-1] + 1)

    def log_sample_from_noise(self, z) -> tf.Tensor:
        """`y = log ψ` `[..., K]` for base noise `z` `[..., K-1]` (see the module docstring)."""
        z = tf.convert_to_tensor(z, dtype=self.dtype)
        log_rest = LogitStickBreaking.log_remainders(z)
        log_eta = LogitStickBreaking.log_pieces(z, log_rest)
        n = self._sticks_used(log_rest)[..., tf.newaxis]
        pos = self._positions(log_eta)
        log_rest_n = tf.reduce_sum(
            tf.where(pos[:-1] == n, log_rest, tf.zeros_like(log_rest)), axis=-1, keepdims=True
        )
        kept = pos <= n + 1
        ell = tf.where(pos <= n, log_eta, log_rest_n)
        # Cut categories stay out of the division by τ: -inf / τ has gradient inf · 0 = NaN with
        # respect to τ, which would poison a trainable temperature.
        tau = tf.convert_to_tensor(self._temperature)[..., tf.newaxis]
        safe = tf.where(kept, ell, tf.zeros_like(ell))
        # Times 1/τ (see SoftmaxPlusPlus.logits: a per-entry division by a run-time τ is slow).
        scaled = tf.where(kept, safe * tf.math.reciprocal(tau), tf.constant(-np.inf, ell.dtype))
        return tf.math.log_softmax(scaled, axis=-1)

    def _sample_n(self, n, seed=None):
        y = self.log_sample_from_noise(self.base.sample(n, seed=seed))
        return y if self._log_space else tf.exp(y)

    def _log_values(self, value) -> tf.Tensor:
        value = tf.convert_to_tensor(value, dtype=self.dtype)
        if self._log_space:
            return value
        return tf.math.log(value)

    def num_sticks(self, value) -> tf.Tensor:
        """Sticks used `n` (int32, `[...]`) by a value of this distribution: the cut is after
        the last live (finite in log space, nonzero in ψ space) entry minus one."""
        return self._num_sticks_of_log(self._log_values(value))

    def _num_sticks_of_log(self, y: tf.Tensor) -> tf.Tensor:
        pos = self._positions(y)
        last_live = tf.reduce_max(tf.where(y > -np.inf, pos, tf.zeros_like(pos)), axis=-1)
        return tf.maximum(last_live - 1, 1)

    # --- densities -------------------------------------------------------------------------------
    def _log_prob(self, value):
        y = self._log_values(value)
        n = self._num_sticks_of_log(y)
        n_ = n[..., tf.newaxis]
        pos = self._positions(y)
        kept = pos <= n_ + 1
        used = pos[:-1] <= n_
        tau = tf.convert_to_tensor(self._temperature)
        # τ (y_k - y_{n+1}) = log η_k - log r_n; invert the (n+1)-category stick breaking.
        y_last = tf.reduce_sum(tf.where(pos == n_ + 1, y, tf.zeros_like(y)), -1, keepdims=True)
        t = tf.where(kept, tau[..., tf.newaxis] * (y - y_last), tf.constant(-np.inf, y.dtype))
        tail = tf.math.cumulative_logsumexp(t, axis=-1, exclusive=True, reverse=True)
        z = tf.where(used, t[..., :-1] - tail[..., :-1], tf.zeros_like(y[..., :-1]))
        normal = self.base.distribution
        log_noise = tf.reduce_sum(tf.where(used, normal.log_prob(z), tf.zeros_like(z)), axis=-1)
        n_float = tf.cast(n, y.dtype)
        log_prob = log_noise + n_float * tf.math.log(tau)
        if not self._log_space:  # the face's SoftmaxPlusPlus volume (see that bijector)
            log_prob -= 0.5 * tf.math.log1p(n_float) + tf.reduce_sum(
                tf.where(kept, y, tf.zeros_like(y)), axis=-1
            )
        return tf.where(self._follows_rule(z, n), log_prob, tf.constant(-np.inf, y.dtype))

    def _follows_rule(self, z: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
        """Whether noise z (valid in its first n entries) cuts the stick after exactly n breaks.

        Recovered noise carries rounding errors, so values within a few ulps of the threshold
        count as either side: a sample's own log-density is never -inf.
        """
        if self._threshold >= 1.0:
            return tf.equal(n, ps.shape(z)[-1])
        log_rest = LogitStickBreaking.log_remainders(z)
        limit = math.log1p(-self._threshold)
        slack = 64 * float(np.finfo(self.dtype.as_numpy_dtype).eps) * (1.0 + abs(limit))
        pos = self._positions(log_rest)
        n_ = n[..., tf.newaxis]
        before_ok = tf.reduce_all((pos >= n_) | (log_rest > limit - slack), axis=-1)
        at_n = tf.reduce_sum(tf.where(pos == n_, log_rest, tf.zeros_like(log_rest)), axis=-1)
        cut_ok = (n == ps.shape(z)[-1]) | (at_n <= limit + slack)
        return before_ok & cut_ok

    def kl_given_truncation(self, other: AdaptiveIGRStickBreaking, value) -> tf.Tensor:
        """`Σ_{k ≤ n} KL(N(loc_k, scale_k) ‖ N(other.loc_k, other.scale_k))` at the value's `n`.

        An unbiased, Rao-Blackwellised estimate of `KL(self ‖ other)` for `value ~ self` (see
        the module docstring); `other` must cut the stick with the same rule.
        """
        n = self.num_sticks(value)[..., tf.newaxis]
        kl = tfd.kl_divergence(self.base.distribution, other.base.distribution)
        pos = self._positions(kl)
        return tf.reduce_sum(tf.where(pos <= n, kl, tf.zeros_like(kl)), axis=-1)
