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

#### Cost that follows the sticks used: static buckets

Computing all K-1 sticks and masking costs O(K) per draw however few sticks are used. Instead
the sticks are processed in a few static buckets of widths `w_0 < w_1 < … < w_m = K-1`
(default 16, 64, 256, … up to the cap), so the work is that of the smallest bucket holding every
variable's cut in the batch, and the program still has static shapes (it compiles with XLA):

```none
z_{1..w_0} ~ N(loc, scale) (noise block 0);  j = 0
while j < m and some variable of the batch is uncovered after w_j sticks (log r_{w_j} > log(1-t)):
    draw noise block j+1 (sticks w_j+1..w_{j+1}, independent of the previous blocks);  j += 1
y = the rule above applied to z_{1..w_j}, padded with -inf to [..., K]
```

This is the full draw's law exactly: the blocks are independent Gaussians, whether block j+1 is
drawn depends only on blocks 0..j, and y depends on z only through `z_{1..n}` with `n ≤ w_j`; so
y equals the masked computation on `z = [drawn blocks, fresh noise for the rest]`, which is a
`N(loc, scale)` draw. (`log_sample_from_noise(z)` runs the same buckets on slices of a given z.)
`log_prob`, `kl_given_truncation` and `num_sticks` work on the smallest bucket holding the value's
largest n (one `tf.switch_case`), read at the bucket edges (`n ≤ w` iff category w + 2 is cut).
Only the output itself (its `-inf` padding, and ψ = exp y in ψ space) is O(K).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    dtype_util,
    parameter_properties,
    samplers,
    tensor_util,
)
from tensorflow_probability.python.internal import prefer_static as ps

from igr_tf._ops import softplus
from igr_tf.bijectors import LogitStickBreaking
from igr_tf.distributions import philox
from igr_tf.distributions.igr import gaussian_base

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["AdaptiveIGRStickBreaking", "bucket_sizes"]

#: Default buckets: FIRST_BUCKET · BUCKET_GROWTH^i sticks below the cap, then the cap.
FIRST_BUCKET = 16
BUCKET_GROWTH = 4


def bucket_sizes(
    num_sticks: int, first: int = FIRST_BUCKET, growth: int = BUCKET_GROWTH
) -> tuple[int, ...]:
    """The default static buckets for a cap of `num_sticks` sticks: `first · growth^i` below
    the cap, then the cap itself (e.g. 999 sticks: (16, 64, 256, 999))."""
    sizes, width = [], int(first)
    while width < num_sticks:
        sizes.append(width)
        width *= int(growth)
    return (*sizes, int(num_sticks))


def _elementwise_bijector(x) -> tfb.Bijector | None:
    """The bijector of a `DeferredTensor` (or `TransformedVariable`) that acts entry by entry
    (scalar parameters, `forward_min_event_ndims == 0`), else None."""
    if not isinstance(x, tfp.util.DeferredTensor):
        return None
    fn = x.transform_fn  # the bijector itself, or a bound method of one
    bijector = fn if isinstance(fn, tfb.Bijector) else getattr(fn, "__self__", None)
    if not isinstance(bijector, tfb.Bijector) or bijector.forward_min_event_ndims != 0:
        return None
    return bijector if bijector.experimental_batch_shape().rank == 0 else None


def _widths(sizes: Sequence[int]) -> list[int]:
    """Sticks per block of the buckets `sizes` (block j holds sticks `sizes[j-1]+1..sizes[j]`)."""
    return [sizes[0], *(b - a for a, b in zip(sizes, sizes[1:], strict=False))]


class _Sticks:
    """A parameter `[..., K-1]` (or `[..., 1]`, broadcasting) cut once at the bucket edges,
    outside any branch: a branch then captures only the blocks it uses (so the gradient of a
    branch is no bigger than its blocks), and an elementwise `DeferredTensor` (a scale passed as
    `DeferredTensor(raw, tfb.Softplus(low=...))`) is transformed on those blocks only."""

    def __init__(self, x, sizes: Sequence[int]) -> None:
        self._bijector = _elementwise_bijector(x)
        raw = tf.convert_to_tensor(x.pretransformed_input if self._bijector is not None else x)
        self._whole = len(sizes) <= 1 or raw.shape[-1] == 1
        self._pieces = [raw] if self._whole else tf.split(raw, _widths(sizes), axis=-1)

    def _map(self, t: tf.Tensor) -> tf.Tensor:
        # A fresh tensor per call: the bijector caches forward() by input, and a cached output
        # made inside one branch cannot be read from another.
        return t if self._bijector is None else self._bijector.forward(tf.identity(t))

    def block(self, j: int) -> tf.Tensor:
        """The sticks of block j."""
        return self._map(self._pieces[0 if self._whole else j])

    def prefix(self, j: int) -> tf.Tensor:
        """The sticks of blocks 0..j (the first `sizes[j]` sticks)."""
        if self._whole or j == 0:
            return self._map(self._pieces[0])
        return self._map(tf.concat(self._pieces[: j + 1], axis=-1))


def _check_buckets(buckets) -> tuple[int, ...] | None:
    if buckets is None:
        return None
    out = tuple(int(b) for b in buckets)
    if any(b < 1 for b in out) or any(b >= c for b, c in zip(out, out[1:], strict=False)):
        raise ValueError(
            f"`buckets` must be strictly increasing stick counts ≥ 1; got {tuple(buckets)}."
        )
    return out


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
      buckets: the static bucket widths in sticks (strictly increasing; widths at or above the
        cap K-1 are dropped and the cap is always the last bucket). None: `bucket_sizes(K-1)`,
        i.e. 16, 64, 256, …; `()`: one bucket, the cap (every stick computed and masked).
        Buckets change the cost, never the law of the samples (see the module docstring).
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
        buckets: Sequence[int] | None = None,
    ) -> None:
        parameters = dict(locals())
        threshold = float(threshold)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1]; got {threshold}.")
        self._buckets = _check_buckets(buckets)
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
                default_constraining_bijector_fn=(lambda: tfb.Softplus(low=dtype_util.eps(dtype))),
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
    def buckets(self) -> tuple[int, ...]:
        """The static bucket widths in sticks, the cap last (`()` when K is not static)."""
        cap = tf.TensorShape(self._loc.shape)[-1:]
        cap = None if cap.rank is None or cap[0] is None else int(cap[0])
        if cap is None:
            return ()
        if self._threshold >= 1.0:  # every stick is used: nothing to choose
            return (cap,)
        if self._buckets is None:
            return bucket_sizes(cap)
        return (*(b for b in self._buckets if b < cap), cap)

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
        """`n` (int32, 1..w) from `log r_k` `[..., w]` (w sticks: the cap, or a bucket that
        holds every cut)."""
        cap = ps.shape(log_rest)[-1]
        if self._threshold >= 1.0:
            return tf.fill(ps.shape(log_rest)[:-1], tf.cast(cap, tf.int32))
        # 1 - r_k < t  <=>  log r_k > log(1 - t); r_k decreases with k.
        uncovered = tf.cast(log_rest > math.log1p(-self._threshold), tf.int32)
        return tf.minimum(tf.reduce_sum(uncovered, axis=-1) + 1, tf.cast(cap, tf.int32))

    def _positions(self, like: tf.Tensor) -> tf.Tensor:
        return tf.range(1, ps.shape(like)[-1] + 1)

    def _log_sample(self, z: tf.Tensor, log_rest: tf.Tensor) -> tf.Tensor:
        """`y` `[..., w+1]` from the first w sticks' noise z and log remainders `[..., w]`."""
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

    @staticmethod
    def _pad(y: tf.Tensor, num_categories: int) -> tf.Tensor:
        """`y` `[..., w+1]` padded with `-inf` to `[..., K]`."""
        missing = num_categories - int(y.shape[-1])
        if missing == 0:
            return y
        fill = tf.fill(ps.concat([ps.shape(y)[:-1], [missing]], 0), tf.constant(-np.inf, y.dtype))
        return tf.concat([y, fill], axis=-1)

    def _bucketed_log_sample(
        self, noise_block: Callable[[int], tf.Tensor], sizes: tuple[int, ...]
    ) -> tf.Tensor:
        """`y` `[..., K]` drawing noise block by block: `noise_block(j)` is z for block j, the
        sticks `sizes[j-1]+1..sizes[j]` (deterministic: a stateless draw or a slice); block j is
        used only if block j-1 was and a variable is still uncovered after it.

        One flat `tf.cond` per block carries only the stick left, `[..., 1]`, to the next
        decision (nested conds would break the gradient of custom-gradient ops inside them, e.g.
        TFP's Softplus bijector of a deferred scale: a cond_v2 limitation); then one
        `tf.switch_case` on the number of blocks used computes the sample on them, drawing the
        blocks after the first again (the same values: `noise_block` is deterministic). Carrying
        the blocks themselves out of the conds would make the skipping branch fill placeholders
        as wide as the blocks it skips: O(K) work for a batch that needs the first bucket only.
        """
        limit = math.log1p(-self._threshold)
        z0 = noise_block(0)
        rest0 = LogitStickBreaking.log_remainders(z0)
        left = rest0[..., -1:]
        need = None
        used = []
        for j in range(1, len(sizes)):
            uncovered = tf.reduce_any(left > limit)
            need = uncovered if need is None else need & uncovered
            used.append(tf.cast(need, tf.int32))
            if j + 1 < len(sizes):  # the stick left after block j decides on block j + 1

                def extend(j=j, left=left):
                    broken = softplus(noise_block(j))
                    return left - tf.reduce_sum(broken, axis=-1, keepdims=True)

                left = tf.cond(need, extend, lambda left=left: tf.identity(left))

        def finish(j: int) -> tf.Tensor:
            if j == 0:
                z, log_rest = z0, rest0
            else:
                z = tf.concat([z0, *(noise_block(i) for i in range(1, j + 1))], axis=-1)
                log_rest = LogitStickBreaking.log_remainders(z)
            return self._pad(self._log_sample(z, log_rest), sizes[-1] + 1)

        return tf.switch_case(tf.add_n(used), [lambda j=j: finish(j) for j in range(len(sizes))])

    def log_sample_from_noise(self, z) -> tf.Tensor:
        """`y = log ψ` `[..., K]` for base noise `z` `[..., K-1]` (see the module docstring).

        Runs the buckets on slices of z: the work follows the sticks used, the values are the
        masked computation's (`buckets=()`).
        """
        z = tf.convert_to_tensor(z, dtype=self.dtype)
        sizes = self.buckets
        if len(sizes) <= 1 or z.shape[-1] != sizes[-1]:
            return self._log_sample(z, LogitStickBreaking.log_remainders(z))
        blocks = tf.split(z, _widths(sizes), axis=-1)
        return self._bucketed_log_sample(lambda j: blocks[j], sizes)

    def _sample_n(self, n, seed=None):
        sizes = self.buckets
        if len(sizes) <= 1:
            y = self.log_sample_from_noise(self.base.sample(n, seed=seed))
        else:
            y = self._bucketed_log_sample(self._noise_blocks(n, seed, sizes), sizes)
        return y if self._log_space else tf.exp(y)

    def _noise_blocks(self, n, seed, sizes: tuple[int, ...]) -> Callable[[int], tf.Tensor]:
        """`block(j)`: `[n, ..., w_j - w_{j-1}]` draws of z for the sticks of block j, each block
        from its own Philox stream (split from `seed`): independent whichever are drawn."""
        seeds = tf.random.experimental.stateless_split(
            samplers.sanitize_seed(seed), len(sizes), alg=philox.ALGORITHM
        )
        locs, scales = _Sticks(self._loc, sizes), _Sticks(self._scale, sizes)
        widths = _widths(sizes)

        def block(j: int) -> tf.Tensor:
            loc, scale = locs.block(j), scales.block(j)
            batch = ps.broadcast_shape(ps.shape(loc)[:-1], ps.shape(scale)[:-1])
            shape = ps.concat([[n], batch, [widths[j]]], 0)
            return loc + scale * philox.standard_normal(shape, seeds[j], self.dtype)

        return block

    def _log_values(self, value) -> tf.Tensor:
        value = tf.convert_to_tensor(value, dtype=self.dtype)
        if self._log_space:
            return value
        return tf.math.log(value)

    def _live(self, value: tf.Tensor) -> tf.Tensor:
        """Whether entries of a value are inside the cut (finite log ψ, nonzero ψ)."""
        return value > (-np.inf if self._log_space else 0.0)

    def _by_bucket(self, value, fn: Callable[[int, tf.Tensor, tf.Tensor], tf.Tensor]):
        """`fn(j, y, n)` in the smallest bucket `sizes[j]` holding every cut of `value`: `y` is
        log ψ on the first `sizes[j] + 1` categories (all the live ones), `n` the sticks used.

        The bucket is read at its edges only: `n ≤ w` iff category `w + 2` is cut (the live
        categories are the first `n + 1`), so choosing it costs one `[...]` slice per bucket and
        the branch then reads `w + 1` categories, not K. One bucket: `fn(0, log ψ, n)`.
        """
        value = tf.convert_to_tensor(value, dtype=self.dtype)
        sizes = self.buckets

        def branch(j: int) -> tf.Tensor:
            head = value if len(sizes) <= 1 else value[..., : sizes[j] + 1]
            y = self._log_values(head)
            return fn(j, y, self._num_sticks_of_log(y))

        if len(sizes) <= 1:
            return branch(0)
        beyond = [
            tf.cast(tf.reduce_any(self._live(value[..., w + 1])), tf.int32) for w in sizes[:-1]
        ]
        return tf.switch_case(tf.add_n(beyond), [lambda j=j: branch(j) for j in range(len(sizes))])

    def num_sticks(self, value) -> tf.Tensor:
        """Sticks used `n` (int32, `[...]`) by a value of this distribution: the cut is after
        the last live (finite in log space, nonzero in ψ space) entry minus one."""
        return self._by_bucket(value, lambda j, y, n: n)

    def _num_sticks_of_log(self, y: tf.Tensor) -> tf.Tensor:
        pos = self._positions(y)
        last_live = tf.reduce_max(tf.where(y > -np.inf, pos, tf.zeros_like(pos)), axis=-1)
        return tf.maximum(last_live - 1, 1)

    def _normals(self, sizes: tuple[int, ...]) -> Callable[[int], tfd.Distribution]:
        """`normal(j)`: the noise of the first `sizes[j]` sticks, `N(loc, scale)` on them (the
        parameters are cut here, outside the branches that call it)."""
        locs, scales = _Sticks(self._loc, sizes), _Sticks(self._scale, sizes)
        return lambda j: tfd.Normal(
            locs.prefix(j), scales.prefix(j), validate_args=self.validate_args
        )

    # --- densities -------------------------------------------------------------------------------
    def _log_prob(self, value):
        normal = self._normals(self.buckets)
        cap = ps.shape(value)[-1] - 1
        return self._by_bucket(value, lambda j, y, n: self._face_log_prob(y, n, normal(j), cap))

    def _face_log_prob(
        self, y: tf.Tensor, n: tf.Tensor, normal: tfd.Distribution, cap
    ) -> tf.Tensor:
        """log q(y) from the first w + 1 entries of y, every n ≤ w (`normal`: the noise of the
        first w sticks); `cap` = K - 1."""
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
        log_noise = tf.reduce_sum(tf.where(used, normal.log_prob(z), tf.zeros_like(z)), axis=-1)
        n_float = tf.cast(n, y.dtype)
        log_prob = log_noise + n_float * tf.math.log(tau)
        if not self._log_space:  # the face's SoftmaxPlusPlus volume (see that bijector)
            log_prob -= 0.5 * tf.math.log1p(n_float) + tf.reduce_sum(
                tf.where(kept, y, tf.zeros_like(y)), axis=-1
            )
        return tf.where(self._follows_rule(z, n, cap), log_prob, tf.constant(-np.inf, y.dtype))

    def _follows_rule(self, z: tf.Tensor, n: tf.Tensor, cap) -> tf.Tensor:
        """Whether noise z (valid in its first n entries) cuts the stick after exactly n breaks,
        with `cap` sticks at most.

        Recovered noise carries rounding errors, so values within a few ulps of the threshold
        count as either side: a sample's own log-density is never -inf.
        """
        if self._threshold >= 1.0:
            return tf.equal(n, cap)
        log_rest = LogitStickBreaking.log_remainders(z)
        limit = math.log1p(-self._threshold)
        slack = 64 * float(np.finfo(self.dtype.as_numpy_dtype).eps) * (1.0 + abs(limit))
        pos = self._positions(log_rest)
        n_ = n[..., tf.newaxis]
        before_ok = tf.reduce_all((pos >= n_) | (log_rest > limit - slack), axis=-1)
        at_n = tf.reduce_sum(tf.where(pos == n_, log_rest, tf.zeros_like(log_rest)), axis=-1)
        cut_ok = (n == cap) | (at_n <= limit + slack)
        return before_ok & cut_ok

    def kl_given_truncation(self, other: AdaptiveIGRStickBreaking, value) -> tf.Tensor:
        """`Σ_{k ≤ n} KL(N(loc_k, scale_k) ‖ N(other.loc_k, other.scale_k))` at the value's `n`.

        An unbiased, Rao-Blackwellised estimate of `KL(self ‖ other)` for `value ~ self` (see
        the module docstring); `other` must cut the stick with the same rule.
        """
        mine, theirs = self._normals(self.buckets), other._normals(self.buckets)

        def kl(j: int, y: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
            per_stick = tfd.kl_divergence(mine(j), theirs(j))
            used = self._positions(per_stick) <= n[..., tf.newaxis]
            return tf.reduce_sum(tf.where(used, per_stick, tf.zeros_like(per_stick)), axis=-1)

        return self._by_bucket(value, kl)
