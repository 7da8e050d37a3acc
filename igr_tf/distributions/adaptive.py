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

What stays O(K) is one read and one write per tensor: the chosen branch slices each parameter
once to its sticks (loc and scale given as rows of one tensor `[..., 2, K-1]` by `StickRow`, as
the relaxation passes the encoder outputs, are one slice), and writes the output padded in one
`tf.pad` (-inf for y; zeros for ψ = exp y, computed on the sticks used). The switches are not
differentiated by cond_v2 (whose gradient makes every branch output, as zeros when not taken,
the intermediates of every other branch: O(K) fills in the 16-stick branch, and a large program
for XLA) but by a custom gradient that runs the chosen branch again under a tape in a second
switch (`_recomputed_switch`); a parameter's gradient is then one `tf.pad` of the bucket's
gradient to the full width.
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

from igr_tf._ops import RNG_ALGORITHM, softplus
from igr_tf.bijectors import LogitStickBreaking
from igr_tf.distributions import philox
from igr_tf.distributions.igr import gaussian_base

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["AdaptiveIGRStickBreaking", "StickRow", "bucket_sizes"]

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


class StickRow:
    """`x[..., row, :]`, then an elementwise bijector: a parameter `[..., K-1]` stored as one
    row of a tensor `[..., 2, K-1]` (e.g. the encoder outputs of loc and raw scale), as the
    `transform_fn` of a `tfp.util.DeferredTensor`.

    `AdaptiveIGRStickBreaking` reads such parameters from the shared tensor: a bucket slices
    the columns of its sticks once for both rows, and its gradient is one padded write.
    """

    def __init__(self, row: int, bijector: tfb.Bijector | None = None) -> None:
        self.row = int(row)
        self.bijector = bijector
        self.__name__ = f"stick_row_{self.row}"  # DeferredTensor names its transform by it

    def __call__(self, x) -> tf.Tensor:
        x = tf.unstack(tf.convert_to_tensor(x), axis=-2)[self.row]
        return x if self.bijector is None else self.bijector.forward(x)


class _Param:
    """A parameter `[..., K-1]` (or `[..., 1]`, broadcasting) as a raw tensor that a branch
    slices by sticks, and the map from those columns to the parameter: a row of a shared
    tensor (`StickRow`) and an elementwise bijector (a scale passed as
    `DeferredTensor(raw, tfb.Softplus(low=...))` is transformed on the sticks used only)."""

    def __init__(self, x) -> None:
        self.row, bijector = None, None
        fn = getattr(x, "transform_fn", None)
        if isinstance(x, tfp.util.DeferredTensor) and isinstance(fn, StickRow):
            self.row, bijector = fn.row, fn.bijector
        else:
            bijector = _elementwise_bijector(x)
        if bijector is not None and bijector.trainable_variables:
            # A branch must see its variables as inputs: transform the parameter whole.
            self.row, bijector = None, None
        self._bijector = bijector
        direct = bijector is None and self.row is None
        self.raw = tf.convert_to_tensor(x if direct else x.pretransformed_input)

    def view(self, columns: tf.Tensor) -> tf.Tensor:
        """The parameter from `columns`, the raw tensor on some sticks (`_columns`), its row
        already taken (`_Group.views`)."""
        if self._bijector is None:
            return columns
        # A fresh tensor per call: the bijector caches forward() by input, and a cached output
        # made inside one branch cannot be read from another.
        return self._bijector.forward(tf.identity(columns))


def _batch_shape(x):
    """The shape of a parameter `[..., K-1]` less its last axis (static when known: a
    `DeferredTensor` is not transformed for it)."""
    shape = tf.TensorShape(x.shape)
    if shape.is_fully_defined():
        return shape[:-1]
    return ps.shape(tf.convert_to_tensor(x))[:-1]


def _columns(raw: tf.Tensor, start: int = 0, stop: int | None = None) -> tf.Tensor:
    """`raw` on sticks `start+1..stop` (its last axis; None: to the end): not sliced when that
    is all of it, or when it broadcasts (width 1)."""
    width = raw.shape[-1]
    if width == 1 or (start == 0 and stop in (None, width)):
        return raw
    if start == 0 and width is not None:
        return _head(raw, stop)
    return raw[..., start:stop]


def _head(raw: tf.Tensor, stop: int) -> tf.Tensor:
    """`raw[..., :stop]` as a `tf.slice`, whose gradient is one `tf.pad` of the slice's gradient
    (a strided slice's is `StridedSliceGrad`, slower for the full-width gradient of a bucket)."""
    rank = raw.shape.rank
    if rank is None:
        return raw[..., :stop]
    return tf.slice(raw, [0] * rank, [-1] * (rank - 1) + [stop])


class _Group:
    """Parameters a bucket reads, as the distinct raw tensors a branch takes as inputs (a
    tensor shared by two parameters is one input, sliced once)."""

    def __init__(self, xs) -> None:
        self.params = [_Param(x) for x in xs]
        self.inputs: list[tf.Tensor] = []
        self._arg: list[int] = []
        seen: dict = {}
        for param in self.params:
            key = param.raw.ref()
            if key not in seen:
                seen[key] = len(self.inputs)
                self.inputs.append(param.raw)
            self._arg.append(seen[key])

    def views(self, inputs: Sequence[tf.Tensor], start: int = 0, stop: int | None = None):
        """The parameters on sticks `start+1..stop`, from `inputs` (the raw tensors, or the
        same tensors as a branch's inputs)."""
        cols = [_columns(x, start, stop) for x in inputs]
        # The rows of a shared input, unstacked once for the parameters that read them: an
        # indexed row `x[..., r, :]` differentiates through StridedSliceGrad, ~3x slower than
        # unstack's Pack (2.5 against 0.7 ms for both rows of [100, 20, 2, 16] with gradient).
        rows: dict[int, list[tf.Tensor]] = {}
        out = []
        for p, i in zip(self.params, self._arg, strict=True):
            if p.row is None:
                out.append(p.view(cols[i]))
                continue
            if i not in rows:
                rows[i] = tf.unstack(cols[i], axis=-2)
            out.append(p.view(rows[i][p.row]))
        return out


def _recomputed_switch(
    index: tf.Tensor,
    branches: Sequence[Callable[..., tuple]],
    args: Sequence[tf.Tensor],
    groups: Sequence[Sequence[int]] | None = None,
) -> tuple:
    """`tf.switch_case(index, [lambda: f(*args) for f in branches])`, differentiable in `args`
    through a second switch that recomputes the chosen branch under a tape.

    The gradient of a `tf.switch_case` itself (cond_v2) makes every branch output the
    intermediates that every other branch's gradient needs, as zeros when not taken: the
    branch of 16 sticks would fill zeros as wide as the cap's branch, and XLA would compile
    each of them. Here the forward switch runs on gradient-free inputs and keeps no
    intermediates; a custom gradient runs the chosen branch again (O(its width)) under a tape
    in a backward switch, so the only full-width work is reading an input's slice and writing
    its padded gradient. `branches[j](*args)` must be deterministic (stateless draws) and
    return a tuple of tensors.

    `groups`: the float outputs by gradient (default: one group of them all); each group gets
    its own custom gradient, so an output no loss uses (e.g. y when the loss reads ψ) costs no
    zero-filled upstream gradient and no backward pass.
    """
    args = [tf.convert_to_tensor(a) for a in args]
    if len(branches) == 1:
        return tuple(branches[0](*args))
    frozen = [tf.stop_gradient(a) for a in args]
    outputs = list(tf.switch_case(index, [_bind(f, frozen) for f in branches]))
    if groups is None:
        groups = [[i for i, o in enumerate(outputs) if o.dtype.is_floating]]
    for group in (g for g in groups if g):  # (num_sticks: no float output, no gradient)
        values = _recomputed_gradient(index, branches, args, [outputs[i] for i in group], group)
        for i, value in zip(group, values, strict=True):
            outputs[i] = value
    return tuple(outputs)


def _recomputed_gradient(index, branches, args, values, group) -> tuple:
    """`values` (outputs `group` of the switch) with the gradient of the chosen branch."""

    @tf.custom_gradient
    def attach(*inputs):
        def grad(*upstream):
            def back(f):
                with tf.GradientTape() as tape:
                    tape.watch(inputs)
                    again = f(*inputs)
                grads = tape.gradient(
                    [again[i] for i in group],
                    list(inputs),
                    output_gradients=list(upstream),
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                return tuple(grads)

            return list(tf.switch_case(index, [_bind(back, (f,)) for f in branches]))

        return tuple(tf.identity(v) for v in values), grad

    return attach(*args)


def _bind(f: Callable, args: Sequence) -> Callable[[], tuple]:
    return lambda: tuple(f(*args))


def _check_buckets(buckets) -> tuple[int, ...] | None:
    if buckets is None:
        return None
    out = tuple(int(b) for b in buckets)
    if any(b < 1 for b in out) or any(b >= c for b, c in zip(out, out[1:], strict=False)):
        raise ValueError(
            f"`buckets` must be strictly increasing stick counts ≥ 1; got {tuple(buckets)}."
        )
    return out


class AdaptiveIGRStickBreaking(tfd.AutoCompositeTensorDistribution):
    """IGR-SB truncated where the broken-off sticks first cover `threshold` of the stick.

    Event shape `[K]` (the cap), batch shape that of `loc[..., :-1]` (e.g. `[B, V]`). Values are
    `y = log ψ` (`log_space=True`, the default: entries beyond the cut are `-inf`) or ψ itself
    (exact zeros beyond the cut). Prefer log space for densities: the cut is read from the last
    finite entry of y, while in ψ space an underflowed last piece would be mistaken for the cut,
    and a live entry that underflowed to 0 puts the value off the support as given (`log_prob`
    -inf, with finite gradients; at τ = 0.05 in float32 about 1 in 6 fresh ψ samples).

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

    def _log_sample(self, z: tf.Tensor, log_rest: tf.Tensor, tau=None) -> tf.Tensor:
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
        tau = tf.convert_to_tensor(self._temperature if tau is None else tau)[..., tf.newaxis]
        safe = tf.where(kept, ell, tf.zeros_like(ell))
        # Times 1/τ (see SoftmaxPlusPlus.logits: a per-entry division by a run-time τ is slow).
        scaled = tf.where(kept, safe * tf.math.reciprocal(tau), tf.constant(-np.inf, ell.dtype))
        return tf.math.log_softmax(scaled, axis=-1)

    @staticmethod
    def _pad(y: tf.Tensor, num_categories: int, fill: float = -np.inf) -> tf.Tensor:
        """`y` `[..., w+1]` padded with `fill` (-inf: cut categories in log space) to `[..., K]`,
        in one op (its gradient is one slice)."""
        missing = num_categories - int(y.shape[-1])
        if missing == 0:
            return y
        paddings = tf.concat(
            [tf.zeros([tf.rank(y) - 1, 2], tf.int32), tf.constant([[0, missing]], tf.int32)], 0
        )
        return tf.pad(y, paddings, constant_values=tf.constant(fill, y.dtype))

    def _choose_bucket(
        self, noise_block: Callable[[int], tf.Tensor], sizes: tuple[int, ...]
    ) -> tf.Tensor:
        """The number of noise blocks used (int32): block j is used only if block j-1 was and a
        variable is still uncovered after it. `noise_block(j)` is z for block j (the sticks
        `sizes[j-1]+1..sizes[j]`), called on gradient-free inputs: a decision is discrete.

        One flat `tf.cond` per block carries only the stick left, `[..., 1]`, to the next
        decision (carrying the blocks themselves out would make the skipping branch fill
        placeholders as wide as the blocks it skips: O(K) work for a batch that needs the first
        bucket only).
        """
        limit = math.log1p(-self._threshold)
        left = LogitStickBreaking.log_remainders(noise_block(0))[..., -1:]
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
        return tf.add_n(used)

    def _bucketed(
        self,
        group: _Group,
        extra: Sequence[tf.Tensor],
        noise: Callable[..., tf.Tensor],
        outputs: Callable[..., tuple],
        sizes: tuple[int, ...],
        groups: Sequence[Sequence[int]] | None = None,
    ) -> tuple:
        """`outputs(z, log_rest, views, *extra)` on the noise of the smallest bucket holding
        every cut: `views` are the parameters of `group` on the bucket's sticks.

        `noise(start, stop, views)`: z on sticks `start+1..stop` from the parameters on those
        sticks (deterministic: a stateless draw or a slice). The bucket is chosen on
        gradient-free inputs; the chosen branch slices each input once to its first `sizes[j]`
        sticks, and `_recomputed_switch` differentiates it. The law is the full draw's (see the
        module docstring).
        """
        inputs = group.inputs
        frozen = [tf.stop_gradient(x) for x in inputs]
        edges = (0, *sizes)

        def block(j: int) -> tf.Tensor:
            start, stop = edges[j], edges[j + 1]
            return noise(start, stop, group.views(frozen, start, stop))

        index = self._choose_bucket(block, sizes)

        def branch(j: int, *args) -> tuple:
            views = group.views(args[: len(inputs)], 0, sizes[j])
            z = noise(0, sizes[j], views)
            return outputs(z, LogitStickBreaking.log_remainders(z), views, *args[len(inputs) :])

        branches = [lambda *a, j=j: branch(j, *a) for j in range(len(sizes))]
        return _recomputed_switch(index, branches, [*inputs, *extra], groups)

    def log_sample_from_noise(self, z) -> tf.Tensor:
        """`y = log ψ` `[..., K]` for base noise `z` `[..., K-1]` (see the module docstring).

        Runs the buckets on slices of z: the work follows the sticks used, the values are the
        masked computation's (`buckets=()`).
        """
        z = tf.convert_to_tensor(z, dtype=self.dtype)
        sizes = self.buckets
        if len(sizes) <= 1 or z.shape[-1] != sizes[-1]:
            return self._log_sample(z, LogitStickBreaking.log_remainders(z))

        def outputs(z_head, log_rest, views, tau):
            return (self._pad(self._log_sample(z_head, log_rest, tau), sizes[-1] + 1),)

        tau = tf.convert_to_tensor(self._temperature)
        return self._bucketed(
            _Group([z]), [tau], lambda start, stop, views: views[0], outputs, sizes
        )[0]

    def _sample_n(self, n, seed=None):
        sizes = self.buckets
        if len(sizes) <= 1:
            y = self.log_sample_from_noise(self.base.sample(n, seed=seed))
            return y if self._log_space else tf.exp(y)
        return self._draw(n, seed, log=self._log_space, psi=not self._log_space)[0]

    def _draw(
        self,
        n,
        seed,
        log: bool = True,
        psi: bool = False,
        prior: AdaptiveIGRStickBreaking | None = None,
    ) -> tuple:
        """`n` bucketed draws: y = log ψ (if `log`), ψ (if `psi`), then, with a `prior`, the
        sticks used (int32) and `kl_given_truncation(prior, y)` computed in the same branch.

        ψ is the branch's `exp(y)` padded with zeros (not `exp` of the padded y: O(sticks used)
        work, and the same values and gradients, since `exp(-inf) = 0`).
        """
        sizes = self.buckets
        cap = sizes[-1]
        mine = [self._loc, self._scale]
        group = _Group(mine if prior is None else [*mine, prior._loc, prior._scale])
        eps = self._standard_blocks(n, seed, sizes)

        def noise(start, stop, views):
            loc, scale = views[:2]
            if start > 0:  # one block, in the decision stage
                return loc + scale * eps(stop)
            head = [eps(w) for w in sizes if w <= stop]
            return loc + scale * (head[0] if len(head) == 1 else tf.concat(head, axis=-1))

        def outputs(z, log_rest, views, tau):
            y = self._log_sample(z, log_rest, tau)
            out = (self._pad(y, cap + 1),) if log else ()
            if psi:
                out += (self._pad(tf.exp(y), cap + 1, 0.0),)
            if prior is None:
                return out
            sticks = self._sticks_used(log_rest)
            q_sticks, p_sticks = (
                philox.Normal(loc, scale, validate_args=self.validate_args)
                for loc, scale in (views[:2], views[2:])
            )
            return (*out, sticks, self._kl_of_sticks(q_sticks, p_sticks, sticks))

        # Gradients by group: y alone (often unused: ψ is the sample), ψ with the KL.
        groups = [[0], [1]] if log and psi else [[0]]
        if prior is not None:
            groups[-1].append(len(groups) + 1)  # the KL, after the sticks used
        tau = tf.convert_to_tensor(self._temperature)
        return self._bucketed(group, [tau], noise, outputs, sizes, groups)

    def _standard_blocks(self, n, seed, sizes) -> Callable[[int], tf.Tensor]:
        """`eps(w)`: standard normal noise `[n, ..., width]` for the block whose last stick is
        `w`, each block from its own Philox stream (split from `seed`): independent whichever
        are used. Drawn where it is called (in the branch that uses it), but for the first."""
        seeds = tf.random.experimental.stateless_split(
            samplers.sanitize_seed(seed), len(sizes), alg=RNG_ALGORITHM
        )
        batch = ps.broadcast_shape(_batch_shape(self._loc), _batch_shape(self._scale))
        blocks = {
            w: (j, width) for j, (w, width) in enumerate(zip(sizes, _widths(sizes), strict=True))
        }

        def draw(w: int) -> tf.Tensor:
            j, width = blocks[w]
            return philox.standard_normal(ps.concat([[n], batch, [width]], 0), seeds[j], self.dtype)

        # The first block is always used: drawn once, here, not again by every branch (and by
        # the gradient's recomputation).
        first = draw(sizes[0])
        return lambda w: first if w == sizes[0] else draw(w)

    def _noise_blocks(self, n, seed, sizes: tuple[int, ...]) -> Callable[[int], tf.Tensor]:
        """`block(j)`: `[n, ..., w_j - w_{j-1}]` draws of z for the sticks of block j: the noise
        a bucketed draw from `seed` uses (or skips)."""
        group = _Group([self._loc, self._scale])
        eps = self._standard_blocks(n, seed, sizes)
        edges = (0, *sizes)

        def block(j: int) -> tf.Tensor:
            loc, scale = group.views(group.inputs, edges[j], edges[j + 1])
            return loc + scale * eps(edges[j + 1])

        return block

    def _log_values(self, value) -> tf.Tensor:
        value = tf.convert_to_tensor(value, dtype=self.dtype)
        if self._log_space:
            return value
        return tf.math.log(value)

    def _live(self, value: tf.Tensor) -> tf.Tensor:
        """Whether entries of a value are inside the cut (finite log ψ, nonzero ψ)."""
        return value > (-np.inf if self._log_space else 0.0)

    def _by_bucket(
        self,
        value,
        fn: Callable[..., tf.Tensor],
        group: _Group | None = None,
        extra: Sequence[tf.Tensor] = (),
        differentiable: bool = False,
    ) -> tf.Tensor:
        """`fn(j, y, n, views, *extra)` in the smallest bucket `sizes[j]` holding every cut of
        `value`: `y` is log ψ on the first `sizes[j] + 1` categories (all the live ones), `n`
        the sticks used, `views` the parameters of `group` on the first `sizes[j]` sticks;
        the result is differentiable in the group's parameters, `extra` and, if
        `differentiable`, the value.

        The bucket is read at its edges only: `n ≤ w` iff category `w + 2` is cut (the live
        categories are the first `n + 1`), so choosing it costs one `[...]` slice per bucket and
        the branch then reads `w + 1` categories, not K. One bucket: every stick.
        """
        value = tf.convert_to_tensor(value, dtype=self.dtype)
        sizes = self.buckets
        group = group or _Group([])
        inputs = group.inputs

        def branch(j: int | None, value: tf.Tensor, *args) -> tuple:
            width = None if j is None else sizes[j]
            y = self._log_values(value if j is None else value[..., : width + 1])
            views = group.views(args[: len(inputs)], 0, width)
            return (fn(j, y, self._num_sticks_of_log(y), views, *args[len(inputs) :]),)

        if len(sizes) <= 1:
            return branch(None, value, *inputs, *extra)[0]
        beyond = [
            tf.cast(tf.reduce_any(self._live(value[..., w + 1])), tf.int32) for w in sizes[:-1]
        ]
        index = tf.add_n(beyond)
        if differentiable:
            branches = [lambda *a, j=j: branch(j, *a) for j in range(len(sizes))]
            return _recomputed_switch(index, branches, [value, *inputs, *extra])[0]
        branches = [lambda *a, j=j: branch(j, value, *a) for j in range(len(sizes))]
        return _recomputed_switch(index, branches, [*inputs, *extra])[0]

    def num_sticks(self, value) -> tf.Tensor:
        """Sticks used `n` (int32, `[...]`) by a value of this distribution: the cut is after
        the last live (finite in log space, nonzero in ψ space) entry minus one."""
        return self._by_bucket(value, lambda j, y, n, views: n)

    def _num_sticks_of_log(self, y: tf.Tensor) -> tf.Tensor:
        pos = self._positions(y)
        last_live = tf.reduce_max(tf.where(y > -np.inf, pos, tf.zeros_like(pos)), axis=-1)
        return tf.maximum(last_live - 1, 1)

    # --- densities -------------------------------------------------------------------------------
    def _log_prob(self, value):
        cap = ps.shape(value)[-1] - 1

        def log_prob(j, y, n, views, tau):
            normal = philox.Normal(*views, validate_args=self.validate_args)
            return self._face_log_prob(y, n, normal, cap, tau)

        tau = tf.convert_to_tensor(self._temperature)
        group = _Group([self._loc, self._scale])
        return self._by_bucket(value, log_prob, group, [tau], differentiable=True)

    def _face_log_prob(
        self, y: tf.Tensor, n: tf.Tensor, normal: tfd.Distribution, cap, tau=None
    ) -> tf.Tensor:
        """log q(y) from the first w + 1 entries of y, every n ≤ w (`normal`: the noise of the
        first w sticks); `cap` = K - 1."""
        n_ = n[..., tf.newaxis]
        pos = self._positions(y)
        kept = pos <= n_ + 1
        used = pos[:-1] <= n_
        # A zero inside the cut (a ψ-space value whose live entry underflowed; log ψ = -inf) is
        # off the support as given: density 0, computed on a stand-in so that neither the value
        # nor a gradient is NaN (-inf - -inf in the inversion below).
        hole = kept & tf.math.is_inf(y)
        off_support = tf.reduce_any(hole, axis=-1)
        y = tf.where(hole, tf.zeros_like(y), y)
        tau = tf.convert_to_tensor(self._temperature if tau is None else tau)
        # τ (y_k - y_{n+1}) = log η_k - log r_n; invert the (n+1)-category stick breaking.
        y_last = tf.reduce_sum(tf.where(pos == n_ + 1, y, tf.zeros_like(y)), -1, keepdims=True)
        # Cut entries (-inf) stay out of the product with τ: its gradient would be -inf · 0.
        gap = tf.where(kept, y - y_last, tf.zeros_like(y))
        t = tf.where(kept, tau[..., tf.newaxis] * gap, tf.constant(-np.inf, y.dtype))
        tail = tf.math.cumulative_logsumexp(t, axis=-1, exclusive=True, reverse=True)
        z = tf.where(used, t[..., :-1] - tail[..., :-1], tf.zeros_like(y[..., :-1]))
        log_noise = tf.reduce_sum(tf.where(used, normal.log_prob(z), tf.zeros_like(z)), axis=-1)
        n_float = tf.cast(n, y.dtype)
        log_prob = log_noise + n_float * tf.math.log(tau)
        if not self._log_space:  # the face's SoftmaxPlusPlus volume (see that bijector)
            log_prob -= 0.5 * tf.math.log1p(n_float) + tf.reduce_sum(
                tf.where(kept, y, tf.zeros_like(y)), axis=-1
            )
        valid = self._follows_rule(z, n, cap) & ~off_support
        return tf.where(valid, log_prob, tf.constant(-np.inf, y.dtype))

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

    @staticmethod
    def _kl_of_sticks(mine: tfd.Distribution, theirs: tfd.Distribution, n: tf.Tensor):
        """`Σ_{k ≤ n} KL(mine_k ‖ theirs_k)` over the sticks of two `Normal`s `[..., w]`."""
        per_stick = tfd.kl_divergence(mine, theirs)
        used = tf.range(1, ps.shape(per_stick)[-1] + 1) <= n[..., tf.newaxis]
        return tf.reduce_sum(tf.where(used, per_stick, tf.zeros_like(per_stick)), axis=-1)

    def kl_given_truncation(self, other: AdaptiveIGRStickBreaking, value) -> tf.Tensor:
        """`Σ_{k ≤ n} KL(N(loc_k, scale_k) ‖ N(other.loc_k, other.scale_k))` at the value's `n`.

        An unbiased, Rao-Blackwellised estimate of `KL(self ‖ other)` for `value ~ self` (see
        the module docstring); `other` must cut the stick with the same rule.
        """

        def kl(j, y, n, views):
            mine, theirs = (
                philox.Normal(loc, scale, validate_args=self.validate_args)
                for loc, scale in (views[:2], views[2:])
            )
            return self._kl_of_sticks(mine, theirs, n)

        group = _Group([self._loc, self._scale, other._loc, other._scale])
        return self._by_bucket(value, kl, group)

    def _sample_and_kl(self, other: AdaptiveIGRStickBreaking, seed=None) -> tuple:
        """One draw in log space, `(y, ψ, n, kl)`: y = log ψ (shape `batch + [K]`), ψ = exp y,
        the sticks used n (int32) and `kl_given_truncation(other, y)`, computed together in
        the draw's bucket.

        The values of `sample(seed=seed)` (log space), `num_sticks(y)` and
        `kl_given_truncation(other, y)`, without reading y back (one bucket switch, not three),
        and ψ without `exp` of the full width (see `_draw`).
        """
        if len(self.buckets) <= 1:
            y = self._log_values(self.sample(seed=seed))
            return y, tf.exp(y), self.num_sticks(y), self.kl_given_truncation(other, y)
        # Squeezed, not indexed: a [0] would copy the full width (and its gradient pad it).
        draw = self._draw(1, seed, log=True, psi=True, prior=other)
        return tuple(tf.squeeze(x, axis=0) for x in draw)


@tfd.RegisterKL(AdaptiveIGRStickBreaking, AdaptiveIGRStickBreaking)
def _kl_has_no_closed_form(a, b, name=None):
    """The truncated KL has no closed form: say what to use instead of TFP's generic message."""
    raise NotImplementedError(
        "KL(AdaptiveIGRStickBreaking || AdaptiveIGRStickBreaking) has no closed form; use "
        "q.kl_given_truncation(p, y) at a sample y ~ q (unbiased, Rao-Blackwellised: what "
        "relaxation 'igr_sb' with adaptive=True and kl='closed' uses) or q.log_prob(y) - "
        "p.log_prob(y)."
    )
