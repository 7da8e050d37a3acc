"""A bijector test harness in the style of TFP's `bijector_test_util`, written for igr-tf.

TFP's own harness lives in its GitHub repository, not in the pip package, so this module
re-implements the checks a TFP bijector is expected to pass, plus the ones igr-tf needs for maps
onto the simplex. Every check raises `AssertionError` (with the check's name and the execution
mode in the message) when the bijector is wrong, and `ValueError` when the harness is misused.

Checks (each a function; `check_bijector` runs the bijector-level ones together):

- `assert_bijective_and_finite`: inverse(forward(x)) ≈ x, forward(inverse(y)) ≈ y, every value
  finite, fldj(x) = -ildj(forward(x)) and fldj(inverse(y)) = -ildj(y), dtypes preserved.
- `assert_log_det_matches_autodiff`: the log-det against an autodiff Jacobian, block by block over
  the batch (and the off-diagonal blocks must be exactly zero: batch members do not interact).
  Square maps use log|det J|. Maps R^{K-1} -> R^K take a `convention`, the measure on the
  (K-1)-dimensional image that the log-det (and a density built on it) refers to:
    - `"embedded"`: ½ log det(JᵀJ), the image's own (K-1)-volume as a surface in R^K. TFP's
      `SoftmaxCentered` uses it (the first-coordinates value plus ½ log K on the simplex), and so
      do igr-tf's maps onto the simplex, so chains through the simplex cancel it.
    - `"first_coordinates"`: log|det ∂y_{1..K-1}/∂x|, Lebesgue measure on the first K-1 output
      coordinates (a Dirichlet's density on the simplex is w.r.t. this measure).
    - `"log_ratios"`: log|det ∂(y_k - y_K)_{k<K}/∂x|, Lebesgue measure on the differences to the
      last coordinate. For log-simplex points y = log ψ these are the log-ratios log(ψ_k/ψ_K),
      and this is the measure of TFP's `ExpRelaxedOneHotCategorical` (ExpConcrete) density, as
      `test_bijector_harness.py` verifies by quadrature (not the first K-1 coordinates: those
      would need an extra factor ψ_K).
  Maps R^K -> R^{K-1} (e.g. `Invert` of a simplex map) are checked through their inverse.
- `assert_event_shapes`: `forward_event_shape`, `inverse_event_shape`, their `_tensor` versions
  (eagerly and traced with unknown sizes), partially known shapes, and the shapes that
  `forward`/`inverse` actually produce.
- `assert_batch_shape`: the batch shape implied by broadcasting the parameters with the event
  ndims of `_parameter_properties`, `experimental_batch_shape(_tensor)`, the shape of the
  log-det on one unbatched event, and batch slicing (`bijector[i]` is batch member i).
- `assert_composes`: `tfb.Invert(bijector)` and `tfb.Chain([tfb.Scale(2), bijector])` agree with the
  bijector, and the log-det with one more event dimension is the sum over that axis.
- `assert_finite_with_gradients`: values, log-dets and their gradients (w.r.t. the inputs and the
  bijector's float parameters) are finite, for inputs at the extremes.
- `assert_log_prob_matches_samples`: for a distribution (typically a `TransformedDistribution`),
  importance sampling with `log_prob` under a moment-matched proposal reproduces 1 and the mean
  estimated from `sample`, within a few standard errors (Monte Carlo, fixed seeds).
- `assert_density_integrates_to_one`: the density integrates to 1 by quadrature (real events of
  size 1 or 2; simplex events with K = 2 or 3, through the logit parametrization).

Every check that evaluates the bijector takes `mode`: `"eager"`, `"graph"` (`tf.function`) or
`"xla"` (`tf.function(jit_compile=True)`).

Caching: TFP bijectors cache (x, y) pairs keyed by the tensor object, so `b.inverse(b.forward(x))`
returns the cached `x` and tests nothing. The harness only ever feeds tensors freshly built from
numpy arrays (`fresh`), so every inverse and every log-det really is computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import parameter_properties

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    "CONVENTIONS",
    "DOMAINS",
    "EMBEDDED",
    "FIRST_COORDINATES",
    "MODES",
    "assert_batch_shape",
    "assert_bijective_and_finite",
    "assert_composes",
    "assert_density_integrates_to_one",
    "assert_event_shapes",
    "assert_finite_with_gradients",
    "assert_log_det_matches_autodiff",
    "assert_log_prob_matches_samples",
    "check_bijector",
    "fresh",
    "in_mode",
    "LOG_RATIOS",
]

EMBEDDED = "embedded"
FIRST_COORDINATES = "first_coordinates"
LOG_RATIOS = "log_ratios"
CONVENTIONS = (EMBEDDED, FIRST_COORDINATES, LOG_RATIOS)
MODES = ("eager", "xla")
_ALL_MODES = ("eager", "graph", "xla")

# Default tolerances per dtype: (rtol, atol) for values and for log-dets. Conditioned maps (a
# small temperature, a planar flow near its invertibility limit) pass their own.
_VALUE_TOL = {np.float32: (2e-5, 2e-5), np.float64: (1e-11, 1e-11)}
_LDJ_TOL = {np.float32: (1e-5, 1e-4), np.float64: (1e-10, 1e-10)}


# ------------------------------------------------------------------------------------------------
# Plumbing.
# ------------------------------------------------------------------------------------------------


def fresh(value: Any) -> tf.Tensor:
    """A new tensor with `value`'s contents: never a key in a bijector's forward/inverse cache."""
    return tf.constant(np.array(value))


def in_mode(fn: Callable, mode: str) -> Callable:
    """`fn` run eagerly, as a `tf.function`, or XLA-compiled; takes and returns numpy structures.

    Array arguments become fresh tensors; other arguments (e.g. a composite-tensor bijector) are
    passed as they are.
    """
    if mode == "eager":
        run = fn
    elif mode == "graph":
        run = tf.function(fn, autograph=False)
    elif mode == "xla":
        run = tf.function(fn, jit_compile=True, autograph=False)
    else:
        raise ValueError(f"`mode` must be one of {_ALL_MODES}; got {mode!r}.")

    def call(*args):
        args = [fresh(a) if isinstance(a, np.ndarray) else a for a in args]
        out = run(*args)
        return tf.nest.map_structure(lambda t: np.asarray(t), out)

    return call


def _np_dtype(x: np.ndarray):
    dtype = np.asarray(x).dtype.type
    if dtype not in _VALUE_TOL:
        raise ValueError(f"inputs must be float32 or float64 numpy arrays; got {dtype}.")
    return dtype


def _tolerances(dtype, rtol, atol, table) -> tuple[float, float]:
    default_rtol, default_atol = table[dtype]
    return (default_rtol if rtol is None else rtol), (default_atol if atol is None else atol)


def _assert_finite(what: str, value, where: str) -> None:
    value = np.asarray(value)
    bad = ~np.isfinite(value)
    if np.any(bad):
        raise AssertionError(
            f"{where}: {what} has {int(bad.sum())} non-finite value(s) of {value.size}; "
            f"first at index {np.argwhere(bad)[0].tolist()}."
        )


def _assert_close(what: str, actual, desired, rtol: float, atol: float, where: str) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, np.float64),
        np.asarray(desired, np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=f"{where}: {what}",
    )


def _assert_dtype(what: str, value, dtype, where: str) -> None:
    if np.asarray(value).dtype != dtype:
        raise AssertionError(f"{where}: {what} has dtype {np.asarray(value).dtype}, want {dtype}.")


def _y_event_ndims(bijector: tfb.Bijector, event_ndims: int) -> int:
    """Event ndims of forward's output for inputs with `event_ndims`."""
    return int(bijector.forward_event_ndims(event_ndims))


def _event_and_batch(x: np.ndarray, event_ndims: int) -> tuple[tuple, tuple]:
    if x.ndim < event_ndims:
        raise ValueError(f"`x` has rank {x.ndim}, below `event_ndims` = {event_ndims}.")
    split = x.ndim - event_ndims
    return tuple(x.shape[split:]), tuple(x.shape[:split])


def _range_points(bijector, x: np.ndarray) -> np.ndarray:
    """forward(x), evaluated eagerly: points in the range for the checks to start from."""
    return bijector.forward(fresh(x)).numpy()


# ------------------------------------------------------------------------------------------------
# Round trips and log-det consistency.
# ------------------------------------------------------------------------------------------------


def assert_bijective_and_finite(
    bijector: tfb.Bijector,
    x: np.ndarray,
    y: np.ndarray | None = None,
    event_ndims: int = 1,
    mode: str = "eager",
    rtol: float | None = None,
    atol: float | None = None,
    ldj_rtol: float | None = None,
    ldj_atol: float | None = None,
) -> None:
    """Round trips both ways, finite values, and fldj = -ildj at corresponding points.

    Checks, with fresh tensors throughout (no cache hits):
      inverse(forward(x)) ≈ x,   forward(inverse(y)) ≈ y,
      fldj(x) ≈ -ildj(forward(x)),   fldj(inverse(y)) ≈ -ildj(y),
    every one of those values finite, and the dtype of `x` preserved. `y` (points in the range)
    defaults to forward(x), evaluated separately.
    """
    x = np.asarray(x)
    dtype = _np_dtype(x)
    where = f"bijective_and_finite[{mode}]"
    _assert_finite("input x", x, where)
    y = _range_points(bijector, x) if y is None else np.asarray(y, dtype)
    _assert_finite("input y", y, where)
    y_ndims = _y_event_ndims(bijector, event_ndims)

    def maps(a, b):
        return (
            bijector.forward(a),
            bijector.inverse(b),
            bijector.forward_log_det_jacobian(a, event_ndims=event_ndims),
            bijector.inverse_log_det_jacobian(b, event_ndims=y_ndims),
        )

    run = in_mode(maps, mode)
    f_x, g_y, fldj_x, ildj_y = run(x, y)
    # The same function on the images: one trace, and nothing the cache could answer.
    f_g_y, g_f_x, fldj_g_y, ildj_f_x = run(g_y, f_x)
    outputs = dict(
        forward_x=f_x,
        inverse_y=g_y,
        fldj_x=fldj_x,
        ildj_y=ildj_y,
        inverse_forward_x=g_f_x,
        forward_inverse_y=f_g_y,
        fldj_inverse_y=fldj_g_y,
        ildj_forward_x=ildj_f_x,
    )
    for name, value in outputs.items():
        _assert_finite(name, value, where)
        _assert_dtype(name, value, dtype, where)
    v_rtol, v_atol = _tolerances(dtype, rtol, atol, _VALUE_TOL)
    l_rtol, l_atol = _tolerances(dtype, ldj_rtol, ldj_atol, _LDJ_TOL)
    _assert_close("inverse(forward(x)) vs x", g_f_x, x, v_rtol, v_atol, where)
    _assert_close("forward(inverse(y)) vs y", f_g_y, y, v_rtol, v_atol, where)
    _assert_close("fldj(x) vs -ildj(forward(x))", fldj_x, -ildj_f_x, l_rtol, l_atol, where)
    _assert_close("fldj(inverse(y)) vs -ildj(y)", fldj_g_y, -ildj_y, l_rtol, l_atol, where)


# ------------------------------------------------------------------------------------------------
# Log-det against autodiff.
# ------------------------------------------------------------------------------------------------


def _log_volume(jac: np.ndarray, kind: str, where: str) -> np.ndarray:
    """log volume factor of Jacobian blocks [N, D_out, D_in] under the given convention."""
    jac = jac.astype(np.float64)
    if kind == "square":
        sign, logdet = np.linalg.slogdet(jac)
    elif kind == EMBEDDED:
        sign, logdet = np.linalg.slogdet(np.swapaxes(jac, -1, -2) @ jac)
        logdet = 0.5 * logdet
    elif kind == FIRST_COORDINATES:
        sign, logdet = np.linalg.slogdet(jac[:, : jac.shape[-1], :])
    elif kind == LOG_RATIOS:
        d = jac.shape[-1]
        sign, logdet = np.linalg.slogdet(jac[:, :d, :] - jac[:, d : d + 1, :])
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(kind)
    if np.any(sign == 0):
        raise AssertionError(f"{where}: singular autodiff Jacobian at {int(np.sum(sign == 0))} pts")
    return logdet


def assert_log_det_matches_autodiff(
    bijector: tfb.Bijector,
    x: np.ndarray,
    event_ndims: int = 1,
    convention: str | None = None,
    mode: str = "eager",
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """The bijector's log-det equals the log volume factor of its autodiff Jacobian.

    The full Jacobian of the batched map is taken with `tf.GradientTape.jacobian`; its diagonal
    blocks (one per batch member, [D_out, D_in]) give the volume factor, and its off-diagonal
    blocks must be exactly zero. With D = D_in:
      D_out = D:      log|det J|                                  vs fldj(x)
      D_out = D + 1:  ½ log det(JᵀJ) ("embedded"),
                      log|det J_{1..D, :}| ("first_coordinates") or
                      log|det (J_{1..D, :} - J_{D+1, :})| ("log_ratios")   vs fldj(x)
      D_out = D - 1:  the same for the inverse map at y = forward(x)   vs ildj(y)
    """
    x = np.asarray(x)
    dtype = _np_dtype(x)
    where = f"log_det_vs_autodiff[{mode}]"
    in_event, _ = _event_and_batch(x, event_ndims)
    out_event = tuple(bijector.forward_event_shape(in_event).as_list())
    d_in, d_out = math.prod(in_event), math.prod(out_event)
    y_ndims = _y_event_ndims(bijector, event_ndims)
    if d_in == d_out:
        kind = "square"
    elif abs(d_in - d_out) == 1:
        if convention not in CONVENTIONS:
            raise ValueError(
                f"`convention` must be one of {CONVENTIONS} for a map from dimension {d_in} to "
                f"{d_out}; got {convention!r}."
            )
        kind = convention
    else:
        raise ValueError(f"cannot compare volumes of a map from dimension {d_in} to {d_out}.")

    if d_out >= d_in:  # check forward at x
        points, points_ndims = x, event_ndims
        map_fn = bijector.forward

        def ldj_fn(p):
            return bijector.forward_log_det_jacobian(p, event_ndims=event_ndims)

    else:  # check the inverse (a map up onto the higher-dimensional set) at y = forward(x)
        points, points_ndims = _range_points(bijector, x), y_ndims
        map_fn = bijector.inverse

        def ldj_fn(p):
            return bijector.inverse_log_det_jacobian(p, event_ndims=y_ndims)

    def jacobian_and_ldj(p):
        with tf.GradientTape() as tape:
            tape.watch(p)
            image = map_fn(p)
        return image, tape.jacobian(image, p), ldj_fn(p)

    image, jac, ldj = in_mode(jacobian_and_ldj, mode)(points)
    p_event, p_batch = _event_and_batch(points, points_ndims)
    n = math.prod(p_batch)
    n_in, n_out = math.prod(p_event), image.size // max(n, 1)
    jac = jac.reshape(n, n_out, n, n_in)
    idx = np.arange(n)
    blocks = jac[idx, :, idx, :]
    off_diagonal = jac.copy()
    off_diagonal[idx, :, idx, :] = 0
    if np.any(off_diagonal != 0):
        raise AssertionError(f"{where}: batch members interact (non-zero off-diagonal Jacobian).")
    _assert_finite("autodiff Jacobian", blocks, where)
    expected = _log_volume(blocks, kind, where)
    ldj = np.broadcast_to(ldj, p_batch).reshape(n)
    _assert_finite("log-det", ldj, where)
    l_rtol, l_atol = _tolerances(dtype, rtol, atol, _LDJ_TOL)
    _assert_close(f"log-det vs autodiff ({kind})", ldj, expected, l_rtol, l_atol, where)


# ------------------------------------------------------------------------------------------------
# Shapes.
# ------------------------------------------------------------------------------------------------


def assert_event_shapes(
    bijector: tfb.Bijector,
    x: np.ndarray,
    y: np.ndarray | None = None,
    event_ndims: int = 1,
    unknown_sizes: bool = True,
) -> None:
    """Event-shape methods agree with each other and with the shapes forward/inverse produce.

    `unknown_sizes=False` skips the static check on shapes like `[None]` (TFP 0.25's own
    `SoftmaxCentered.inverse_event_shape([None])` raises a TypeError in `Pad`); the traced
    `_tensor` versions, whose sizes are unknown at trace time, are checked regardless.
    """
    x = np.asarray(x)
    where = "event_shapes"
    in_event, batch = _event_and_batch(x, event_ndims)
    y = _range_points(bijector, x) if y is None else np.asarray(y, x.dtype)
    y_ndims = _y_event_ndims(bijector, event_ndims)
    out_event, y_batch = _event_and_batch(y, y_ndims)

    def same(what, got, want):
        got = tf.TensorShape(got)
        if not got.is_fully_defined() or got.as_list() != list(want):
            raise AssertionError(f"{where}: {what} is {got}, want {list(want)}.")

    f_x = bijector.forward(fresh(x))
    g_y = bijector.inverse(fresh(y))
    same("forward(x) event shape", f_x.shape[f_x.shape.rank - y_ndims :], out_event)
    same("inverse(y) event shape", g_y.shape[g_y.shape.rank - event_ndims :], in_event)
    same("forward_event_shape", bijector.forward_event_shape(in_event), out_event)
    same("inverse_event_shape", bijector.inverse_event_shape(out_event), in_event)
    same(
        "forward_event_shape_tensor",
        bijector.forward_event_shape_tensor(np.array(in_event, np.int32)).numpy(),
        out_event,
    )
    same(
        "inverse_event_shape_tensor",
        bijector.inverse_event_shape_tensor(np.array(out_event, np.int32)).numpy(),
        in_event,
    )
    if unknown_sizes:  # static shapes with unknown sizes stay compatible and keep their rank
        unknown_in = tf.TensorShape([None] * event_ndims)
        unknown_out = tf.TensorShape([None] * y_ndims)
        for name, got, want in [
            ("forward_event_shape", bijector.forward_event_shape(unknown_in), out_event),
            ("inverse_event_shape", bijector.inverse_event_shape(unknown_out), in_event),
        ]:
            if got.rank != len(want) or not got.is_compatible_with(want):
                raise AssertionError(f"{where}: {name} of unknown sizes is {got}, want {want}.")

    # The tensor versions traced with sizes unknown at trace time.
    @tf.function(
        autograph=False,
        input_signature=[
            tf.TensorSpec([event_ndims], tf.int32),
            tf.TensorSpec([y_ndims], tf.int32),
        ],
    )
    def traced(shape_in, shape_out):
        return (
            bijector.forward_event_shape_tensor(shape_in),
            bijector.inverse_event_shape_tensor(shape_out),
        )

    fwd, inv = traced(np.array(in_event, np.int32), np.array(out_event, np.int32))
    same("traced forward_event_shape_tensor", fwd.numpy(), out_event)
    same("traced inverse_event_shape_tensor", inv.numpy(), in_event)
    # Batch dimensions pass through untouched.
    same("forward(x) batch shape", f_x.shape[: f_x.shape.rank - y_ndims], batch)
    same("inverse(y) batch shape", g_y.shape[: g_y.shape.rank - event_ndims], y_batch)


def _declared_batch_shape(bijector: tfb.Bijector, dtype) -> tf.TensorShape:
    """Broadcast of each parameter's shape less its `_parameter_properties` event ndims.

    Bijector-valued parameters (the parts of `Chain`, `Invert`) contribute their own declared
    batch shape; this assumes the parts share the event rank, as every chain in igr-tf does.
    """
    shape = tf.TensorShape([])
    props = bijector.parameter_properties(dtype=tf.as_dtype(dtype))
    for name, prop in props.items():
        value = bijector.parameters.get(name)
        if value is None:
            continue
        parts = value if isinstance(value, (list, tuple)) else [value]
        if all(isinstance(p, tfb.Bijector) for p in parts):
            for part in parts:
                shape = tf.broadcast_static_shape(shape, _declared_batch_shape(part, dtype))
            continue
        ndims = prop.event_ndims
        if callable(ndims):
            ndims = ndims(bijector)
        if ndims is None or ndims is parameter_properties.NO_EVENT_NDIMS:
            continue
        value_shape = tf.TensorShape(getattr(value, "shape", np.shape(value)))
        shape = tf.broadcast_static_shape(shape, value_shape[: value_shape.rank - ndims])
    return shape


def assert_batch_shape(
    bijector: tfb.Bijector,
    x: np.ndarray,
    event_ndims: int = 1,
    rtol: float | None = None,
    atol: float | None = None,
    ldj_rtol: float | None = None,
    ldj_atol: float | None = None,
    slices: Sequence[tuple[int, ...]] | None = None,
) -> None:
    """The batch shape implied by the parameters is the one the bijector behaves with.

    Checks: `experimental_batch_shape(_tensor)` equals the broadcast of the parameters' batch
    shapes; applied to a single unbatched event, forward/log-det return that batch shape; and for
    `x` whose trailing batch dimensions are the bijector's batch shape, batch member i of the
    batched forward, inverse and log-dets equals what `bijector[i]` (batch slicing, which also
    relies on `_parameter_properties`) gives on the i-th slice of the input, for the batch
    indices in `slices` (default: the first and the last member).
    """
    x = np.asarray(x)
    dtype = _np_dtype(x)
    where = "batch_shape"
    in_event, x_batch = _event_and_batch(x, event_ndims)
    y_ndims = _y_event_ndims(bijector, event_ndims)
    declared = _declared_batch_shape(bijector, dtype)
    reported = bijector.experimental_batch_shape(x_event_ndims=event_ndims)
    if reported.as_list() != declared.as_list():
        raise AssertionError(f"{where}: experimental_batch_shape {reported} vs params {declared}.")
    reported_t = np.asarray(bijector.experimental_batch_shape_tensor(x_event_ndims=event_ndims))
    if reported_t.tolist() != declared.as_list():
        raise AssertionError(f"{where}: experimental_batch_shape_tensor {reported_t} vs {declared}")

    batch = tuple(declared.as_list())
    single = x[(0,) * len(x_batch)]
    out_event = tuple(bijector.forward_event_shape(in_event).as_list())
    y_single = bijector.forward(fresh(single))
    fldj_single = bijector.forward_log_det_jacobian(fresh(single), event_ndims=event_ndims)
    if tuple(y_single.shape) != batch + out_event:
        raise AssertionError(
            f"{where}: forward(one event) has shape {y_single.shape}, want "
            f"{list(batch + out_event)}."
        )
    if not bijector.is_constant_jacobian and tuple(fldj_single.shape) != batch:
        raise AssertionError(
            f"{where}: fldj(one event) has shape {fldj_single.shape}, want {list(batch)}."
        )
    if not batch:
        return
    if x_batch[len(x_batch) - len(batch) :] != batch:
        raise ValueError(f"`x` batch dims {list(x_batch)} must end with the bijector's {batch}.")

    v_rtol, v_atol = _tolerances(dtype, rtol, atol, _VALUE_TOL)
    l_rtol, l_atol = _tolerances(dtype, ldj_rtol, ldj_atol, _LDJ_TOL)
    y = bijector.forward(fresh(x)).numpy()
    batched = dict(
        forward=y,
        inverse=bijector.inverse(fresh(y)).numpy(),
        fldj=bijector.forward_log_det_jacobian(fresh(x), event_ndims=event_ndims).numpy(),
        ildj=bijector.inverse_log_det_jacobian(fresh(y), event_ndims=y_ndims).numpy(),
    )
    lead = len(x_batch) - len(batch)
    if slices is None:  # the first and the last member (slicing a chain is slow)
        slices = sorted({(0,) * len(batch), tuple(n - 1 for n in batch)})
    for index in slices:
        member = bijector[index]
        if member.experimental_batch_shape(x_event_ndims=event_ndims).as_list():
            raise AssertionError(f"{where}: bijector{list(index)} still has a batch shape.")
        sel = (slice(None),) * lead + index
        got = dict(
            forward=member.forward(fresh(x[sel])),
            inverse=member.inverse(fresh(y[sel])),
            fldj=member.forward_log_det_jacobian(fresh(x[sel]), event_ndims=event_ndims),
            ildj=member.inverse_log_det_jacobian(fresh(y[sel]), event_ndims=y_ndims),
        )
        for name, value in got.items():
            want = batched[name]
            want = np.broadcast_to(want, x_batch)[sel] if name in ("fldj", "ildj") else want[sel]
            r, a = (l_rtol, l_atol) if name in ("fldj", "ildj") else (v_rtol, v_atol)
            _assert_close(f"bijector{list(index)}.{name} vs batch member", value, want, r, a, where)


# ------------------------------------------------------------------------------------------------
# Composition.
# ------------------------------------------------------------------------------------------------


def assert_composes(
    bijector: tfb.Bijector,
    x: np.ndarray,
    y: np.ndarray | None = None,
    event_ndims: int = 1,
    mode: str = "eager",
    rtol: float | None = None,
    atol: float | None = None,
    ldj_rtol: float | None = None,
    ldj_atol: float | None = None,
) -> None:
    """`tfb.Invert` and `tfb.Chain` built on the bijector behave as the math says.

    Invert(b): forward = b.inverse, inverse = b.forward, fldj = b.ildj, ildj = b.fldj, event shapes
    swapped. Chain([Scale(2), b]): forward = 2·b.forward, inverse(2y) = b.inverse(y),
    fldj = b.fldj + D_out·log 2 (Scale acts elementwise on the D_out output coordinates). With one
    more event dimension than the minimum, the log-det is the sum over that axis.
    """
    x = np.asarray(x)
    dtype = _np_dtype(x)
    where = f"composes[{mode}]"
    y = _range_points(bijector, x) if y is None else np.asarray(y, dtype)
    y_ndims = _y_event_ndims(bijector, event_ndims)
    in_event, x_batch = _event_and_batch(x, event_ndims)
    out_event, _ = _event_and_batch(y, y_ndims)
    d_out = math.prod(out_event)
    two = tf.constant(2.0, dtype)
    inverted = tfb.Invert(bijector)
    chain = tfb.Chain([tfb.Scale(two), bijector])

    wider = event_ndims + 1 if x_batch else event_ndims  # one more event dim, if x has one

    def maps(a, b, two_b, a_ref, b_ref):
        # The composites see (a, b, two_b), the bijector itself copies (a_ref, b_ref): distinct
        # tensors, so no value can come from another's cache entry.
        return dict(
            inv_forward=inverted.forward(b),
            inv_inverse=inverted.inverse(a),
            inv_fldj=inverted.forward_log_det_jacobian(b, event_ndims=y_ndims),
            inv_ildj=inverted.inverse_log_det_jacobian(a, event_ndims=event_ndims),
            chain_forward=chain.forward(a),
            chain_inverse=chain.inverse(two_b),
            chain_fldj=chain.forward_log_det_jacobian(a, event_ndims=event_ndims),
            chain_ildj=chain.inverse_log_det_jacobian(two_b, event_ndims=y_ndims),
            wide_fldj=bijector.forward_log_det_jacobian(a, event_ndims=wider),
            b_forward=bijector.forward(a_ref),
            b_inverse=bijector.inverse(b_ref),
            b_fldj=bijector.forward_log_det_jacobian(a_ref, event_ndims=event_ndims),
            b_ildj=bijector.inverse_log_det_jacobian(b_ref, event_ndims=y_ndims),
        )

    out = in_mode(maps, mode)(x, y, 2 * y, x.copy(), y.copy())
    v_rtol, v_atol = _tolerances(dtype, rtol, atol, _VALUE_TOL)
    l_rtol, l_atol = _tolerances(dtype, ldj_rtol, ldj_atol, _LDJ_TOL)
    log2 = d_out * np.log(2.0)
    checks = [
        ("Invert.forward vs inverse", out["inv_forward"], out["b_inverse"], "v"),
        ("Invert.inverse vs forward", out["inv_inverse"], out["b_forward"], "v"),
        ("Invert.fldj vs ildj", out["inv_fldj"], out["b_ildj"], "l"),
        ("Invert.ildj vs fldj", out["inv_ildj"], out["b_fldj"], "l"),
        ("Chain.forward vs 2·forward", out["chain_forward"], 2 * out["b_forward"], "v"),
        ("Chain.inverse(2y) vs inverse(y)", out["chain_inverse"], out["b_inverse"], "v"),
        ("Chain.fldj vs fldj + D log 2", out["chain_fldj"], out["b_fldj"] + log2, "l"),
        ("Chain.ildj(2y) vs ildj(y) - D log 2", out["chain_ildj"], out["b_ildj"] - log2, "l"),
    ]
    for what, actual, desired, kind in checks:
        _assert_finite(what, actual, where)
        r, a = (v_rtol, v_atol) if kind == "v" else (l_rtol, l_atol)
        _assert_close(what, actual, desired, r, a, where)
    for name, shape_fn, arg, want in [
        ("Invert.forward_event_shape", inverted.forward_event_shape, out_event, in_event),
        ("Invert.inverse_event_shape", inverted.inverse_event_shape, in_event, out_event),
        ("Chain.forward_event_shape", chain.forward_event_shape, in_event, out_event),
        ("Chain.inverse_event_shape", chain.inverse_event_shape, out_event, in_event),
    ]:
        if shape_fn(arg).as_list() != list(want):
            raise AssertionError(f"{where}: {name}({list(arg)}) = {shape_fn(arg)}, want {want}.")

    if x_batch:  # the log-det with one more event dimension sums over the last batch axis
        narrow = np.broadcast_to(out["b_fldj"], x_batch).sum(-1)
        _assert_close(
            "fldj with event_ndims + 1 vs sum",
            out["wide_fldj"],
            narrow,
            l_rtol,
            l_atol * x_batch[-1],
            where,
        )


# ------------------------------------------------------------------------------------------------
# Extremes: finite values and gradients.
# ------------------------------------------------------------------------------------------------


def _float_leaves(bijector) -> list:
    if not isinstance(bijector, tf.__internal__.CompositeTensor):
        return list(bijector.trainable_variables)
    leaves = tf.nest.flatten(bijector, expand_composites=True)
    return [t for t in leaves if t.dtype.is_floating]


def assert_finite_with_gradients(
    bijector: tfb.Bijector,
    x: np.ndarray,
    event_ndims: int = 1,
    mode: str = "eager",
    y: np.ndarray | None = None,
) -> None:
    """forward, fldj and their gradients (inputs and float parameters) are finite at `x`.

    With `y`, the same for inverse and ildj at `y`. Meant for extreme inputs, where round trips may
    be unrepresentable (a softmax entry below the dtype's smallest number) but the values the
    model uses must stay finite. A composite-tensor bijector is passed into the traced function as
    an argument, so its parameters are differentiated in every mode.
    """
    x = np.asarray(x)
    _np_dtype(x)
    where = f"finite_with_gradients[{mode}]"
    y_ndims = _y_event_ndims(bijector, event_ndims)
    composite = isinstance(bijector, tf.__internal__.CompositeTensor)

    def values_and_grads(bij, a, b):
        bij = bij if composite else bijector
        params = _float_leaves(bij)
        sources = [a] + ([b] if b is not None else []) + params
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([s for s in sources if not isinstance(s, tf.Variable)])
            out = bij.forward(a)
            # A generic functional: the sum of a simplex point has no gradient.
            weights = tf.range(1, tf.shape(out)[-1] + 1, dtype=out.dtype)
            results = dict(
                forward=out,
                fldj=bij.forward_log_det_jacobian(a, event_ndims=event_ndims),
            )
            if b is not None:
                results["inverse"] = bij.inverse(b)
                results["ildj"] = bij.inverse_log_det_jacobian(b, event_ndims=y_ndims)
            scalars = dict(
                forward=tf.reduce_sum(out * weights),
                fldj=tf.reduce_sum(results["fldj"]),
            )
            if b is not None:
                scalars["inverse"] = tf.reduce_sum(results["inverse"])
                scalars["ildj"] = tf.reduce_sum(results["ildj"])
        for name, scalar in scalars.items():
            grads = tape.gradient(
                scalar, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            for i, g in enumerate(grads):
                results[f"d {name} / d source {i}"] = g
        return results

    arg = bijector if composite else None
    if mode == "eager":
        results = values_and_grads(arg, fresh(x), None if y is None else fresh(y))
        results = {k: np.asarray(v) for k, v in results.items()}
    else:
        run = tf.function(values_and_grads, jit_compile=(mode == "xla"), autograph=False)
        results = run(arg, fresh(x), None if y is None else fresh(y))
        results = {k: np.asarray(v) for k, v in results.items()}
    for name, value in results.items():
        _assert_finite(name, value, where)


# ------------------------------------------------------------------------------------------------
# Distributions built on a bijector: log_prob against sampling and quadrature.
# ------------------------------------------------------------------------------------------------


DOMAINS = ("real", "simplex", "log_simplex")


_DOMAIN_CONVENTIONS = {
    "real": (None,),
    "simplex": (EMBEDDED, FIRST_COORDINATES),
    "log_simplex": (FIRST_COORDINATES, LOG_RATIOS),
}


def _check_domain(domain: str, convention: str | None) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"`domain` must be one of {DOMAINS}; got {domain!r}.")
    if convention not in _DOMAIN_CONVENTIONS[domain]:
        raise ValueError(
            f"`convention` for domain {domain!r} must be one of {_DOMAIN_CONVENTIONS[domain]}; "
            f"got {convention!r}."
        )


def _coordinates(samples: np.ndarray, domain: str) -> np.ndarray:
    """Unconstrained coordinates of samples: themselves on R^D, log-ratios r_k = log ψ_k - log ψ_K
    on the simplex (samples ψ) and the log-simplex (samples log ψ)."""
    if domain == "real":
        return samples
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(samples) if domain == "simplex" else samples
        coords = log_s[..., :-1] - log_s[..., -1:]
    if not np.all(np.isfinite(coords)):
        raise ValueError(
            "samples touch the simplex boundary (an entry rounds to 0): use a larger "
            "temperature, float64 or log-space samples for this check."
        )
    return coords


def _points(
    coords: np.ndarray, domain: str, convention: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Points of the domain at unconstrained `coords`, and the log volume factor of the map
    coords -> points in `convention`'s measure (float64 throughout).

    simplex, ψ = softmax([r, 0]): ∂ψ_{1..K-1}/∂r = diag(ψ') - ψ'ψ'ᵀ with ψ' = ψ_{1..K-1}, whose
      determinant is Π_{k<K} ψ_k · (1 - Σ_{k<K} ψ_k) = Π_{k≤K} ψ_k (matrix determinant lemma):
      "first_coordinates" Σ_k log ψ_k; "embedded" adds ½ log K (the simplex's (K-1)-volume is
      √K times that of its projection on the first K-1 coordinates).
    log_simplex, y = log_softmax([r, 0]): ∂y_{1..K-1}/∂r = I - 1ψ'ᵀ, determinant
      1 - Σ_{k<K} ψ_k = ψ_K: "first_coordinates" y_K; "log_ratios" 0 (r are the log-ratios).
    """
    if domain == "real":
        return coords, np.zeros(coords.shape[:-1])
    logits = np.concatenate([coords, np.zeros_like(coords[..., :1])], -1)
    log_psi = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    if domain == "simplex":
        half_log_k = 0.5 * math.log(logits.shape[-1]) if convention == EMBEDDED else 0.0
        return np.exp(log_psi), log_psi.sum(-1) + half_log_k
    return log_psi, (log_psi[..., -1] if convention == FIRST_COORDINATES else 0.0 * logits[..., 0])


def _log_prob_at(dist: tfd.Distribution, points: np.ndarray, domain: str, where: str):
    """dist.log_prob at fresh copies of `points` (cast to dist's dtype), in float64.

    A simplex point whose cast has an entry rounded to 0 lies outside the open simplex, where
    the density is undefined: it gets density 0 (log p = -inf) whatever the bijector returns.
    Any other non-finite value fails.
    """
    cast = points.astype(dist.dtype.as_numpy_dtype)
    log_p = dist.log_prob(fresh(cast)).numpy().astype(np.float64)
    outside = np.any(cast == 0, axis=-1) if domain == "simplex" else np.zeros(log_p.shape, bool)
    outside = np.broadcast_to(outside, log_p.shape)
    _assert_finite("log_prob", np.where(outside, 0.0, log_p), where)
    return np.where(outside, -np.inf, log_p)


def _student_t_proposal(
    coords: np.ndarray, num_samples: int, seed: int, df: float = 5.0, widen: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Samples and log densities of a multivariate Student-t matched to `coords`' moments.

    `coords` is [N, *batch, D]; each batch member gets its own location and scale (the sample
    covariance, widened by `widen`²). The t's polynomial tails dominate the Gaussian-like tails
    of the targets here, which keeps the importance weights' variance finite.
    """
    mean = coords.mean(0)
    centred = coords - mean
    cov = np.einsum("n...i,n...j->...ij", centred, centred) / coords.shape[0]
    dim = coords.shape[-1]
    chol = np.linalg.cholesky(widen**2 * cov + 1e-12 * np.eye(dim))
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((num_samples,) + mean.shape)
    chi2 = rng.chisquare(df, size=(num_samples,) + mean.shape[:-1] + (1,))
    points = mean + np.einsum("...ij,n...j->n...i", chol, normal) / np.sqrt(chi2 / df)
    white = np.linalg.solve(chol, (points - mean)[..., None])[..., 0]
    log_det = np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), -1)
    log_q = (
        math.lgamma((df + dim) / 2)
        - math.lgamma(df / 2)
        - 0.5 * dim * math.log(df * math.pi)
        - log_det
        - 0.5 * (df + dim) * np.log1p(np.sum(white**2, -1) / df)
    )
    return points, log_q


def assert_log_prob_matches_samples(
    dist: tfd.Distribution,
    domain: str,
    convention: str | None = None,
    num_samples: int = 20_000,
    seed: tuple[int, int] = (1, 2),
    num_standard_errors: float = 4.0,
    max_standard_error: float = 0.03,
) -> None:
    """`dist.log_prob` and `dist.sample` describe the same distribution (Monte Carlo).

    `domain`: "real" (events in R^D; `convention` None), "simplex" (ψ; "embedded" or
    "first_coordinates") or "log_simplex" (log ψ; "log_ratios", as TFP's
    `ExpRelaxedOneHotCategorical`, or "first_coordinates"): the convention names the measure
    dist's density is w.r.t. A proposal q is fitted to the moments of dist's samples in
    unconstrained coordinates (the points themselves on R^D, the log-ratios
    r_k = log ψ_k - log ψ_K otherwise): a multivariate Student-t (5 degrees of freedom, widened),
    mapped to the domain by ψ = softmax([r, 0]) or log ψ = log_softmax([r, 0]), with its density
    in the same measure through the volume factor of `_points`. With w = exp(log p(y) - log q(y)),
    y ~ q:
      E_q[w] = 1   and   E_q[w·y] = E_p[y] (estimated from dist.sample),
    each within `num_standard_errors` combined standard errors, per batch member. The check
    refuses to pass when the importance-sampling standard error exceeds `max_standard_error`.
    Densities are evaluated at fresh tensors, so they go through the bijector's inverse.
    """
    where = f"log_prob_vs_samples[{domain}]"
    samples = np.asarray(dist.sample(num_samples, seed=seed), np.float64)
    _assert_finite("samples", samples, where)
    _check_domain(domain, convention)
    q_seed = int(np.asarray(tfp.random.split_seed(seed, 2)[1])[0]) % (2**31)
    coords, log_t = _student_t_proposal(_coordinates(samples, domain), num_samples, q_seed)
    points, log_volume = _points(coords, domain, convention)
    log_q = log_t - log_volume
    log_p = _log_prob_at(dist, points, domain, where)
    weights = np.exp(log_p - log_q)  # [N, *batch]
    n = num_samples

    def compare(what, is_terms, sample_terms):
        is_mean, is_se = is_terms.mean(0), is_terms.std(0) / np.sqrt(n)
        s_mean, s_se = sample_terms.mean(0), sample_terms.std(0) / np.sqrt(n)
        se = np.sqrt(is_se**2 + s_se**2)
        if np.any(is_se > max_standard_error):
            raise AssertionError(
                f"{where}: {what}: importance-sampling standard error "
                f"{is_se.max():.3g} > {max_standard_error}: the check is too weak."
            )
        z = np.abs(is_mean - s_mean) / np.maximum(se, 1e-300)
        if np.any(z > num_standard_errors):
            raise AssertionError(
                f"{where}: {what}: importance-sampled {is_mean.ravel()[:6]} vs sampled "
                f"{s_mean.ravel()[:6]}, {z.max():.1f} standard errors apart."
            )

    compare("normalisation E_q[w] = 1", weights, np.ones_like(weights))
    compare("mean E_q[w y] = E_p[y]", weights[..., None] * points, samples)


def assert_density_integrates_to_one(
    dist: tfd.Distribution,
    domain: str,
    convention: str | None = None,
    num_points: int | None = None,
    half_width_sd: float = 12.0,
    rtol: float = 1e-4,
    seed: tuple[int, int] = (3, 4),
) -> None:
    """∫ exp(dist.log_prob) = 1 by quadrature, per batch member.

    The integral is taken over the unconstrained coordinates of `assert_log_prob_matches_samples`
    (dimension 1 or 2: real events of size 1 or 2, simplex and log-simplex events with K = 2
    or 3), on a grid of ±`half_width_sd` sample standard deviations around the samples' mean,
    with the volume factor of `_points`; `domain` and `convention` as there. The trapezoid rule
    converges fast for these smooth, decaying integrands.
    """
    where = f"density_quadrature[{domain}]"
    samples = np.asarray(dist.sample(2000, seed=seed), np.float64)
    event = samples.shape[-1]
    _check_domain(domain, convention)
    coords = _coordinates(samples, domain)
    dim = coords.shape[-1]
    if dim not in (1, 2):
        raise ValueError(f"quadrature needs a 1-D or 2-D integral; got dimension {dim}.")
    num_points = num_points or (20_001 if dim == 1 else 601)
    flat = coords.reshape(-1, dim)
    centre, sd = flat.mean(0), flat.std(0)
    axes = [
        np.linspace(c - half_width_sd * s, c + half_width_sd * s, num_points)
        for c, s in zip(centre, sd, strict=True)
    ]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)  # [M, dim]
    points, log_volume = _points(mesh, domain, convention)
    batch_ndims = samples.ndim - 2
    shaped = points.reshape((-1,) + (1,) * batch_ndims + (event,))
    log_p = _log_prob_at(dist, shaped, domain, where).reshape(mesh.shape[0], -1)
    integrand = np.exp(log_p + log_volume[:, None])
    total = integrand.reshape((num_points,) * dim + (-1,))
    for axis in axes:
        total = np.trapezoid(total, axis, axis=0)
    np.testing.assert_allclose(total, 1.0, rtol=rtol, atol=0, err_msg=f"{where}: ∫ density")


# ------------------------------------------------------------------------------------------------
# Everything at once.
# ------------------------------------------------------------------------------------------------


def check_bijector(
    bijector: tfb.Bijector,
    x: np.ndarray,
    y: np.ndarray | None = None,
    event_ndims: int = 1,
    convention: str | None = None,
    modes: Sequence[str] = MODES,
    rtol: float | None = None,
    atol: float | None = None,
    ldj_rtol: float | None = None,
    ldj_atol: float | None = None,
    autodiff: bool = True,
    unknown_sizes: bool = True,
    compose_modes: Sequence[str] = ("eager",),
) -> None:
    """Runs the bijector-level checks: round trips, log-dets, autodiff, shapes, composition.

    `x`: points in the domain, `[..., *batch, *event]` (the trailing batch dimensions the
    bijector's own batch shape, if it has one); `y`: optional points in the range. `convention`
    is required for maps between dimensions D and D ± 1 (see the module docstring). Round trips
    and log-dets against autodiff run in each of `modes`; the composition check (TFP's own
    Chain/Invert code around the methods the other checks already compile) in `compose_modes`
    (eager by default: an XLA compile of it costs as much as the other two together); shape
    checks run once.
    """
    for mode in (*modes, *compose_modes):
        if mode not in _ALL_MODES:
            raise ValueError(f"`modes` entries must be in {_ALL_MODES}; got {mode!r}.")
    assert_event_shapes(bijector, x, y, event_ndims, unknown_sizes)
    assert_batch_shape(bijector, x, event_ndims, rtol, atol, ldj_rtol, ldj_atol)
    for mode in modes:
        assert_bijective_and_finite(
            bijector, x, y, event_ndims, mode, rtol, atol, ldj_rtol, ldj_atol
        )
        if autodiff:
            assert_log_det_matches_autodiff(
                bijector, x, event_ndims, convention, mode, ldj_rtol, ldj_atol
            )
    for mode in compose_modes:
        assert_composes(bijector, x, y, event_ndims, mode, rtol, atol, ldj_rtol, ldj_atol)
