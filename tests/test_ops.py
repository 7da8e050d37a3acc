"""The small shared ops of igr_tf._ops: softplus with a shared exponential under XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from igr_tf import _ops

# Extremes: |x| = 50 is the project's bound for locations; 80 and 700 reach the tails where
# e^{-|x|} underflows float32 / nearly underflows float64.
X32 = [-80.0, -50.0, -20.0, -3.0, -1e-3, 0.0, 1e-3, 0.7, 3.0, 20.0, 50.0, 80.0]
X64 = X32 + [-700.0, 700.0]


def _derivatives(fn, x: tf.Tensor):
    """Value, first and second derivative of an elementwise fn at x."""
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = fn(x)
        dy = inner.gradient(y, x)
    return y.numpy(), dy.numpy(), outer.gradient(dy, x).numpy()


def _exact64(x: np.ndarray):
    """softplus, σ and σ' = e/(1 + e)² with e = e^{-|x|}, in float64 without cancellation."""
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1.0, e) / (1.0 + e)
    return np.logaddexp(0.0, x), sig, e / (1.0 + e) ** 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_sharing_exp_matches_softplus_and_its_autodiff(dtype):
    """The custom-gradient route: value, gradient and second derivative against TF's softplus
    differentiated by autodiff, and against float64 closed forms, at the extremes."""
    x = np.array(X32 if dtype == np.float32 else X64, dtype)
    ours = _derivatives(_ops._softplus_sharing_exp, tf.constant(x))
    autodiff = _derivatives(tf.math.softplus, tf.constant(x.astype(np.float64)))
    exact = _exact64(x.astype(np.float64))
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    tiny = np.finfo(dtype).tiny
    for got, ref, want in zip(ours, autodiff, exact, strict=True):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=tiny)
        # TF's own softplus rounds its far tails to x or e^x; away from them it agrees too.
        mid = np.abs(x) < 15
        np.testing.assert_allclose(got[mid], ref[mid], rtol=rtol, atol=tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_routes_agree_eager_and_under_xla(dtype):
    """`softplus` takes TF's kernel eagerly and the shared-exp route under XLA: both give the
    same value and gradient (to float rounding), and the route taken is the one documented."""
    x = tf.constant(np.array(X32, dtype))
    routes = []

    def value_and_grad(x):
        routes.append(_ops.in_xla_context())
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = _ops.softplus(x)
        return y, tape.gradient(y, x)

    eager = value_and_grad(x)
    xla = tf.function(value_and_grad, jit_compile=True)(x)
    graph = tf.function(value_and_grad)(x)
    assert routes == [False, True, False]
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    for a, b, c in zip(eager, xla, graph, strict=True):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=np.finfo(dtype).tiny)
        np.testing.assert_allclose(c, a, rtol=rtol, atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 5), (2, 1, 3, 9)])
def test_softplus_keeps_any_shape_under_xla(shape):
    """Under XLA softplus runs on the tensor seen flat: every rank comes back in its own shape
    with softplus's values and gradient σ(x) (float64 reference), also for a traced batch axis of
    unknown size."""
    rng = np.random.default_rng(3)
    x = (10.0 * rng.standard_normal(shape)).astype(np.float32)
    w = rng.standard_normal(shape).astype(np.float32)
    x64 = x.astype(np.float64)
    ref_value = np.maximum(x64, 0.0) + np.log1p(np.exp(-np.abs(x64)))
    ref_grad = w / (1.0 + np.exp(-x64))

    def value_and_grad(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = _ops.softplus(x)
            loss = tf.reduce_sum(y * w)
        return y, tape.gradient(loss, x)

    compiled = tf.function(value_and_grad, jit_compile=True)
    batchless = [None] + list(shape[1:]) if shape else []
    spec = tf.TensorSpec(batchless, tf.float32)
    dynamic = tf.function(value_and_grad, jit_compile=True, input_signature=[spec, spec])
    for fn in (compiled, dynamic):
        y, g = fn(tf.constant(x), tf.constant(w))
        assert y.shape == shape and g.shape == shape
        np.testing.assert_allclose(y, ref_value, rtol=2e-6, atol=1e-30)
        np.testing.assert_allclose(g, ref_grad, rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum_last_matches_numpy_with_and_without_xla(jit_compile, exclusive, reverse):
    """Each route (the triangular matmul, the masked reduction for short axes under XLA, the scan
    past _MATMUL_CUMSUM_MAX) gives numpy's cumulative sum in float64: values, and the gradient
    of a weighted sum (the opposite cumulative sum of the weights), at short and long axes."""
    rng = np.random.default_rng(3)
    for d in (1, 9, _ops._XLA_MASKED_CUMSUM_MAX + 4, _ops._MATMUL_CUMSUM_MAX + 3):
        x = tf.constant(rng.normal(size=(4, 3, d)))
        w = tf.constant(rng.normal(size=(4, 3, d)))

        @tf.function(jit_compile=jit_compile)
        def value_and_grad(x, w):
            with tf.GradientTape() as tape:
                tape.watch(x)
                s = _ops.cumsum_last(x, exclusive=exclusive, reverse=reverse)
                loss = tf.reduce_sum(s * w)
            return s, tape.gradient(loss, x)

        s, g = value_and_grad(x, w)
        xs, ws = x.numpy(), w.numpy()
        flip = (lambda a: a[..., ::-1]) if reverse else (lambda a: a)
        want = flip(np.cumsum(flip(xs), axis=-1))
        if exclusive:
            want = want - xs
        # d loss / d x_j = Σ_{k: j enters S_k} w_k: the opposite cumulative sum of w.
        want_g = flip(np.cumsum(flip(ws)[..., ::-1], axis=-1)[..., ::-1])
        if exclusive:
            want_g = want_g - ws
        np.testing.assert_allclose(s.numpy(), want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g.numpy(), want_g, rtol=1e-12, atol=1e-12)


def test_every_stateless_draw_in_the_package_names_philox():
    """Every `tf.random.stateless_uniform` / `stateless_normal` call in igr_tf/, models/ and
    train.py passes `alg=`, and none draws through `keras.random.normal` / `uniform`: TF's default
    algorithm compiles, under XLA on CPU with a run-time seed, to a path 5-60x slower for the same
    numbers (igr_tf.distributions.philox). A source scan (ast), so a new call site fails here."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    files = [*root.joinpath("igr_tf").rglob("*.py"), *root.joinpath("models").rglob("*.py")]
    files.append(root / "train.py")
    offenders, checked = [], 0
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            owner = ast.unparse(node.func.value)
            where = f"{path.relative_to(root)}:{node.lineno}"
            if name in ("stateless_uniform", "stateless_normal") and owner.endswith("random"):
                checked += 1
                if not any(k.arg == "alg" for k in node.keywords):
                    offenders.append(where)
            elif owner == "keras.random" and name in ("normal", "uniform"):
                offenders.append(where)
    assert checked >= 10, checked  # the scan sees the package's draws
    assert not offenders, offenders
