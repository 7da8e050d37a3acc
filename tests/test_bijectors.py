"""Tests for igr_tf.bijectors: SoftmaxPlusPlus, StickBreaking, LogitStickBreaking, Planar.

Caching pitfall: TFP bijectors cache (x, y) pairs keyed by the tensor object, so
`b.inverse(b.forward(x))` returns the cached `x` and tests nothing. Every round trip and every
"compare at a point" below feeds a new tensor built from numpy (`fresh`), which misses the cache
(`test_fresh_breaks_the_bijector_cache` checks that this helper really does).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from igr_tf.bijectors import (  # noqa: E402
    LogitStickBreaking,
    Planar,
    SoftmaxPlusPlus,
    StickBreaking,
)

tfb = tfp.bijectors
tfd = tfp.distributions

DTYPES = [np.float32, np.float64]
KS = [2, 5]
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


def tol(dtype, f32=1e-5, f64=1e-11):
    t = f32 if dtype == np.float32 else f64
    return dict(rtol=t, atol=t)


def fresh(t):
    """A new tensor with the same value: never a key in a bijector's forward/inverse cache."""
    return tf.constant(np.array(t))


def dirichlet(rng, k, n, dtype):
    y = rng.dirichlet(np.ones(k), size=n)
    return (y / y.sum(-1, keepdims=True)).astype(dtype)


def sc_chain(temperature, delta, dtype):
    """TFP reference for SoftmaxPlusPlus: SoftmaxCentered ∘ Shift(-log δ) ∘ Scale(1/τ)."""
    shift = tf.constant(-np.log(delta), dtype)
    return tfb.Chain(
        [tfb.SoftmaxCentered(), tfb.Shift(shift), tfb.Scale(tf.constant(1.0 / temperature, dtype))]
    )


def naive_sb_chain():
    """The square map Invert(SoftmaxCentered) ∘ StickBreaking ∘ Sigmoid (what LSB equals)."""
    return tfb.Chain([tfb.Invert(tfb.SoftmaxCentered()), StickBreaking(), tfb.Sigmoid()])


def jacobian(fn, x):
    """Autodiff Jacobian of fn at x; x's leading axis is the batch, everything else inside tape."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.batch_jacobian(y, x).numpy()


def autodiff_logdet(fn, x):
    sign, logdet = np.linalg.slogdet(jacobian(fn, x).astype(np.float64))
    assert np.all(sign != 0)
    return logdet


def planar_params(case, dtype, rng, v=4, d=3):
    """(w, u, b) of shape [V, D], [V, D], [V] for one of the named test cases."""
    w = rng.normal(size=(v, d))
    u = rng.normal(size=(v, d))
    b = rng.normal(size=v)
    if case == "opposite":
        # u nearly antiparallel to w with wᵀu = -8: wᵀû = -1 + softplus(-8) ≈ -1 + 3e-4, so the
        # flow is almost flat along w around wᵀz + b = 0.
        perp = u - np.sum(u * w, -1, keepdims=True) * w / np.sum(w * w, -1, keepdims=True)
        u = -8.0 * w / np.sum(w * w, -1, keepdims=True) + 0.1 * perp
    elif case == "zero_w":
        w = np.zeros_like(w)
    return w.astype(dtype), u.astype(dtype), b.astype(dtype)


def planar_inputs(case, dtype, rng, n=16, v=4, d=3):
    if case == "large":
        z = rng.uniform(-50.0, 50.0, size=(n, v, d))
        z[0] = 50.0
        z[1] = -50.0
    else:
        z = 2.0 * rng.normal(size=(n, v, d))
    return z.astype(dtype)


def planar_reference(w, u, b, z):
    """Float64 numpy forward and per-block Jacobian determinant (standard planar flow)."""
    w, u, b, z = (np.asarray(a, np.float64) for a in (w, u, b, z))
    wu = np.sum(w * u, -1, keepdims=True)
    w_sq = np.sum(w * w, -1, keepdims=True)
    m = -1.0 + np.logaddexp(0.0, wu)
    with np.errstate(invalid="ignore", divide="ignore"):
        u_hat = np.where(w_sq > 0, u + (m - wu) / w_sq * w, u)
    x = np.sum(w * z, -1, keepdims=True) + b[..., None]
    y = z + u_hat * np.tanh(x)
    det = 1.0 + (1.0 - np.tanh(x[..., 0]) ** 2) * np.sum(w * u_hat, -1)
    return y, det, u_hat


PLANAR_CASES = ["random", "opposite", "zero_w", "large"]


# ------------------------------------------------------------------------------------------------
# 0. The cache-breaking helper really breaks the cache.
# ------------------------------------------------------------------------------------------------


def test_fresh_breaks_the_bijector_cache():
    bij = SoftmaxPlusPlus(temperature=0.5)
    x = tf.constant([[0.3, -1.0]])
    y = bij.forward(x)
    assert bij.inverse(y) is x  # the cache hit that makes naive round trips vacuous
    assert bij.inverse(fresh(y)) is not x


# ------------------------------------------------------------------------------------------------
# 1. Round trips.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature,delta", [(1.0, 1.0), (0.3, 0.4), (4.0, 2.5)])
def test_softmax_plus_plus_round_trip(dtype, k, temperature, delta):
    rng = np.random.default_rng(k)
    bij = SoftmaxPlusPlus(temperature=temperature, delta=delta)
    x = (3.0 * rng.normal(size=(8, k - 1))).astype(dtype)
    y = bij.forward(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(bij.inverse(fresh(y)), x, **tol(dtype, 1e-4, 1e-10))
    y0 = dirichlet(rng, k, 8, dtype)
    np.testing.assert_allclose(bij.forward(fresh(bij.inverse(y0))), y0, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_stick_breaking_round_trip(dtype, k):
    rng = np.random.default_rng(10 + k)
    bij = StickBreaking()
    v = rng.uniform(0.02, 0.98, size=(8, k - 1)).astype(dtype)
    eta = bij.forward(v)
    np.testing.assert_allclose(np.sum(eta, -1), 1.0, **tol(dtype))
    np.testing.assert_allclose(bij.inverse(fresh(eta)), v, **tol(dtype, 1e-4, 1e-11))
    y0 = dirichlet(rng, k, 8, dtype)
    np.testing.assert_allclose(bij.forward(fresh(bij.inverse(y0))), y0, **tol(dtype))


def test_stick_breaking_doc_example():
    np.testing.assert_allclose(StickBreaking().forward([0.5, 0.5]), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(StickBreaking().inverse([0.5, 0.25, 0.25]), [0.5, 0.5])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_logit_stick_breaking_round_trip(dtype, k):
    rng = np.random.default_rng(20 + k)
    bij = LogitStickBreaking()
    z = (4.0 * rng.normal(size=(8, k - 1))).astype(dtype)
    np.testing.assert_allclose(bij.inverse(fresh(bij.forward(z))), z, **tol(dtype, 1e-4, 1e-10))
    x = (4.0 * rng.normal(size=(8, k - 1))).astype(dtype)
    np.testing.assert_allclose(bij.forward(fresh(bij.inverse(x))), x, **tol(dtype, 1e-4, 1e-10))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", PLANAR_CASES)
def test_planar_round_trip(dtype, case):
    rng = np.random.default_rng(PLANAR_CASES.index(case))
    w, u, b = planar_params(case, dtype, rng)
    flow = Planar(w, u, b)
    z = planar_inputs(case, dtype, rng)
    y = flow.forward(z).numpy()
    y_ref, det, u_hat = planar_reference(w, u, b, z)
    eps = EPS[dtype]
    scale = 1.0 + np.max(np.abs(z))
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=20 * eps * scale)

    z2 = flow.inverse(fresh(y)).numpy()
    assert np.all(np.isfinite(z2))
    # Backward stability: the recovered point maps back onto y to rounding.
    np.testing.assert_allclose(flow.forward(fresh(z2)), y, rtol=0, atol=20 * eps * scale)
    # Forward error: rounding of y (relative eps·|y|, amplified by ‖w‖ in wᵀy) divided by the
    # slope of the scalar map along w (= det), times ‖û‖ (how that error moves z).
    cond = (np.linalg.norm(w, axis=-1) * np.linalg.norm(u_hat, axis=-1) / np.maximum(det, 1e-300))[
        ..., None
    ]
    bound = 50 * eps * scale * (1.0 + cond)
    assert np.all(np.abs(z2 - z) < bound), np.max(np.abs(z2 - z) / bound)
    if case == "zero_w":  # a pure shift by u·tanh(b), recovered exactly
        np.testing.assert_allclose(y, z + u * np.tanh(b)[:, None], **tol(dtype))
        np.testing.assert_allclose(z2, z, **tol(dtype))
    if case == "random":  # well-conditioned: a plain tolerance suffices
        np.testing.assert_allclose(z2, z, **tol(dtype, 1e-4, 1e-10))


@pytest.mark.parametrize("dtype", DTYPES)
def test_planar_inverse_on_the_flat_hyperplane(dtype):
    """wᵀû ≈ -1 and wᵀz + b = 0: the slope along w is ~0; the inverse must stay finite."""
    rng = np.random.default_rng(7)
    w, u, b = planar_params("opposite", dtype, rng)
    u = (-30.0 * w / np.sum(w * w, -1, keepdims=True)).astype(dtype)  # float32: wᵀû = -1
    z = rng.normal(size=(6, 4, 3))
    z -= ((np.sum(w * z, -1) + b) / np.sum(w * w, -1))[..., None] * w  # onto wᵀz + b = 0
    z = z.astype(dtype)
    flow = Planar(w, u, b)
    y = flow.forward(z).numpy()
    z2 = flow.inverse(fresh(y)).numpy()
    assert np.all(np.isfinite(z2))
    np.testing.assert_allclose(flow.forward(fresh(z2)), y, rtol=0, atol=50 * EPS[dtype])
    assert np.all(np.isfinite(flow.forward_log_det_jacobian(z, event_ndims=1)))


# ------------------------------------------------------------------------------------------------
# 2. Log-determinants: autodiff Jacobians and TFP reference chains.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", PLANAR_CASES)
def test_planar_log_det_against_autodiff(dtype, case):
    rng = np.random.default_rng(30 + PLANAR_CASES.index(case))
    w, u, b = planar_params(case, dtype, rng)
    flow = Planar(w, u, b)
    z = planar_inputs(case, dtype, rng, n=5)
    jac = jacobian(flow.forward, z).astype(np.float64)  # [B, V, D, V, D]
    fldj = flow.forward_log_det_jacobian(fresh(z), event_ndims=1).numpy()
    assert fldj.shape == (5, 4)
    n_var = w.shape[0]
    for v in range(n_var):
        _, logdet = np.linalg.slogdet(jac[:, v, :, v, :])
        np.testing.assert_allclose(fldj[:, v], logdet, **tol(dtype, 2e-4, 1e-9))
        for other in range(n_var):  # variables do not interact
            if other != v:
                assert np.all(jac[:, v, :, other, :] == 0)
    _, det, _ = planar_reference(w, u, b, z)
    np.testing.assert_allclose(fldj, np.log(det), **tol(dtype, 2e-4, 1e-9))
    ildj = flow.inverse_log_det_jacobian(fresh(flow.forward(z)), event_ndims=1)
    np.testing.assert_allclose(ildj, -fldj, **tol(dtype, 2e-4, 1e-8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_logit_stick_breaking_log_det_and_chain(dtype, k):
    rng = np.random.default_rng(40 + k)
    bij = LogitStickBreaking()
    z = (2.0 * rng.normal(size=(6, k - 1))).astype(dtype)
    jac = jacobian(bij.forward, z)
    # Unit upper triangular.
    np.testing.assert_allclose(np.diagonal(jac, axis1=-2, axis2=-1), 1.0, **tol(dtype))
    assert np.all(np.tril(jac, -1) == 0)
    np.testing.assert_allclose(autodiff_logdet(bij.forward, z), 0.0, atol=1e-5)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(z, event_ndims=1), 0.0)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(z, event_ndims=1), 0.0)
    chain = naive_sb_chain()
    np.testing.assert_allclose(bij.forward(z), chain.forward(fresh(z)), **tol(dtype, 1e-4, 1e-10))
    np.testing.assert_allclose(bij.inverse(z), chain.inverse(fresh(z)), **tol(dtype, 1e-4, 1e-10))
    np.testing.assert_allclose(
        chain.forward_log_det_jacobian(fresh(z), event_ndims=1), 0.0, atol=1e-4
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_square_chain_through_softmax_plus_plus(dtype, k):
    """Invert(SoftmaxCentered) ∘ SoftmaxPlusPlus(τ, δ) is x ↦ x/τ - log δ (½ log K cancels)."""
    rng = np.random.default_rng(50 + k)
    tau, delta = 0.6, 0.3
    chain = tfb.Chain([tfb.Invert(tfb.SoftmaxCentered()), SoftmaxPlusPlus(tau, delta)])
    x = (2.0 * rng.normal(size=(6, k - 1))).astype(dtype)
    np.testing.assert_allclose(chain.forward(x), x / tau - np.log(delta), **tol(dtype, 1e-4))
    fldj = chain.forward_log_det_jacobian(fresh(x), event_ndims=1).numpy()
    np.testing.assert_allclose(fldj, autodiff_logdet(chain.forward, x), **tol(dtype, 1e-4, 1e-9))
    np.testing.assert_allclose(fldj, -(k - 1) * np.log(tau), **tol(dtype, 1e-5, 1e-12))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_square_chain_through_stick_breaking(dtype, k):
    rng = np.random.default_rng(60 + k)
    chain = naive_sb_chain()
    z = (2.0 * rng.normal(size=(6, k - 1))).astype(dtype)
    fldj = chain.forward_log_det_jacobian(fresh(z), event_ndims=1).numpy()
    np.testing.assert_allclose(
        fldj, autodiff_logdet(chain.forward, z), atol=2e-4 if dtype == np.float32 else 1e-9
    )
    # StickBreaking alone: its fldj is the chain's minus Sigmoid's, minus Invert(SC)'s.
    v = tf.sigmoid(fresh(z))
    eta = StickBreaking().forward(v)
    sb_fldj = StickBreaking().forward_log_det_jacobian(fresh(v), event_ndims=1)
    parts = (
        tfb.Sigmoid().forward_log_det_jacobian(fresh(z), event_ndims=1)
        + sb_fldj
        + tfb.SoftmaxCentered().inverse_log_det_jacobian(fresh(eta), event_ndims=1)
    )
    np.testing.assert_allclose(parts, fldj, **tol(dtype, 1e-4, 1e-10))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature,delta", [(1.0, 1.0), (0.25, 0.5), (3.0, 2.0)])
def test_softmax_plus_plus_matches_tfp_chain(dtype, k, temperature, delta):
    rng = np.random.default_rng(70 + k)
    bij = SoftmaxPlusPlus(temperature, delta)
    ref = sc_chain(temperature, delta, dtype)
    x = (2.0 * rng.normal(size=(7, k - 1))).astype(dtype)
    y = dirichlet(rng, k, 7, dtype)
    t = tol(dtype, 2e-5, 1e-11)
    np.testing.assert_allclose(bij.forward(fresh(x)), ref.forward(fresh(x)), **t)
    np.testing.assert_allclose(bij.inverse(fresh(y)), ref.inverse(fresh(y)), **t)
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(fresh(x), event_ndims=1),
        ref.forward_log_det_jacobian(fresh(x), event_ndims=1),
        **t,
    )
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(fresh(y), event_ndims=1),
        ref.inverse_log_det_jacobian(fresh(y), event_ndims=1),
        **t,
    )
    # event_ndims=2 sums over the extra axis, like any TFP bijector.
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(fresh(x), event_ndims=2),
        np.sum(ref.forward_log_det_jacobian(fresh(x), event_ndims=1)),
        **tol(dtype, 1e-4, 1e-10),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_stick_breaking_matches_tfp_iterated_sigmoid(dtype, k):
    """StickBreaking = IteratedSigmoidCentered ∘ Shift(log(K-1..1)) ∘ Logit.

    TFP's IteratedSigmoidCentered measures volume in the first K-1 coordinates (no ½ log K);
    StickBreaking follows SoftmaxCentered's convention, which adds ½ log K.
    """
    rng = np.random.default_rng(80 + k)
    offsets = np.log(np.arange(k - 1, 0, -1)).astype(dtype)
    ref = tfb.Chain([tfb.IteratedSigmoidCentered(), tfb.Shift(offsets), tfb.Invert(tfb.Sigmoid())])
    bij = StickBreaking()
    v = rng.uniform(0.05, 0.95, size=(7, k - 1)).astype(dtype)
    y = dirichlet(rng, k, 7, dtype)
    t = tol(dtype, 2e-5, 1e-10)
    half_log_k = 0.5 * np.log(k)
    np.testing.assert_allclose(bij.forward(fresh(v)), ref.forward(fresh(v)), **t)
    np.testing.assert_allclose(bij.inverse(fresh(y)), ref.inverse(fresh(y)), **t)
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(fresh(v), event_ndims=1),
        ref.forward_log_det_jacobian(fresh(v), event_ndims=1) + half_log_k,
        **t,
    )
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(fresh(y), event_ndims=1),
        ref.inverse_log_det_jacobian(fresh(y), event_ndims=1) - half_log_k,
        **t,
    )


# ------------------------------------------------------------------------------------------------
# 3. Event and batch shapes.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bij", [SoftmaxPlusPlus(0.5), StickBreaking()], ids=["spp", "sb"])
def test_simplex_event_shapes(bij):
    assert bij.forward_event_shape([3, 4]) == [3, 5]
    assert bij.inverse_event_shape([3, 5]) == [3, 4]
    assert bij.forward_event_shape([1]) == [2]  # K = 2
    assert bij.inverse_event_shape([2]) == [1]
    assert bij.forward_event_shape(tf.TensorShape([3, None])).as_list() == [3, None]
    assert bij.inverse_event_shape(tf.TensorShape([None, None])).as_list() == [None, None]
    np.testing.assert_array_equal(bij.forward_event_shape_tensor([3, 4]), [3, 5])
    np.testing.assert_array_equal(bij.inverse_event_shape_tensor([3, 5]), [3, 4])

    @tf.function(input_signature=[tf.TensorSpec([2], tf.int32)])
    def dynamic(shape):
        return bij.forward_event_shape_tensor(shape), bij.inverse_event_shape_tensor(shape)

    fwd, inv = dynamic(tf.constant([6, 2]))
    np.testing.assert_array_equal(fwd, [6, 3])
    np.testing.assert_array_equal(inv, [6, 1])


@pytest.mark.parametrize(
    "bij",
    [LogitStickBreaking(), Planar([[0.5, -1.0]], [[1.0, 2.0]], [0.1])],
    ids=["lsb", "planar"],
)
def test_square_event_shapes(bij):
    assert bij.forward_event_shape([1, 2]) == [1, 2]
    assert bij.inverse_event_shape([1, 2]) == [1, 2]
    np.testing.assert_array_equal(bij.forward_event_shape_tensor([1, 2]), [1, 2])
    np.testing.assert_array_equal(bij.inverse_event_shape_tensor([1, 2]), [1, 2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_softmax_plus_plus_batched_temperature(dtype, k):
    rng = np.random.default_rng(90 + k)
    taus = np.array([0.1, 0.5, 2.0], dtype)
    deltas = np.array([1.0, 0.2, 3.0], dtype)
    bij = SoftmaxPlusPlus(temperature=taus, delta=deltas)
    assert bij.experimental_batch_shape() == [3]
    x = (2.0 * rng.normal(size=(4, 3, k - 1))).astype(dtype)
    y = bij.forward(x).numpy()
    assert y.shape == (4, 3, k)
    fldj = bij.forward_log_det_jacobian(x, event_ndims=1).numpy()
    assert fldj.shape == (4, 3)
    y0 = dirichlet(rng, k, 12, dtype).reshape(4, 3, k)
    x0 = bij.inverse(y0).numpy()
    assert x0.shape == (4, 3, k - 1)
    ildj = bij.inverse_log_det_jacobian(y0, event_ndims=1).numpy()
    assert ildj.shape == (4, 3)
    t = tol(dtype, 1e-5, 1e-11)
    for v in range(3):
        single = SoftmaxPlusPlus(float(taus[v]), float(deltas[v]))
        np.testing.assert_allclose(y[:, v], single.forward(fresh(x[:, v])), **t)
        np.testing.assert_allclose(
            fldj[:, v], single.forward_log_det_jacobian(fresh(x[:, v]), event_ndims=1), **t
        )
        np.testing.assert_allclose(x0[:, v], single.inverse(fresh(y0[:, v])), **t)
        np.testing.assert_allclose(
            ildj[:, v], single.inverse_log_det_jacobian(fresh(y0[:, v]), event_ndims=1), **t
        )
    # A single unbatched x broadcasts against the temperature batch.
    assert bij.forward(x[0, 0]).shape == (3, k)
    assert bij.forward_log_det_jacobian(x[0, 0], event_ndims=1).shape == (3,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_planar_batched_parameters(dtype):
    rng = np.random.default_rng(100)
    w, u, b = planar_params("random", dtype, rng, v=3, d=4)
    flow = Planar(w, u, b)
    assert flow.experimental_batch_shape() == [3]
    z = (2.0 * rng.normal(size=(5, 3, 4))).astype(dtype)
    y = flow.forward(z).numpy()
    assert y.shape == (5, 3, 4)
    fldj = flow.forward_log_det_jacobian(z, event_ndims=1).numpy()
    assert fldj.shape == (5, 3)
    z2 = flow.inverse(fresh(y)).numpy()
    assert z2.shape == (5, 3, 4)
    t = tol(dtype, 1e-5, 1e-11)
    for v in range(3):
        single = Planar(w[v], u[v], b[v])
        assert single.experimental_batch_shape() == []
        np.testing.assert_allclose(y[:, v], single.forward(fresh(z[:, v])), **t)
        np.testing.assert_allclose(
            fldj[:, v], single.forward_log_det_jacobian(fresh(z[:, v]), event_ndims=1), **t
        )
        np.testing.assert_allclose(z2[:, v], single.inverse(fresh(y[:, v])), **t)
    # A single unbatched z broadcasts against the parameter batch.
    assert flow.forward(z[0, 0]).shape == (3, 4)
    assert flow.inverse(z[0, 0]).shape == (3, 4)
    assert flow.forward_log_det_jacobian(z[0, 0], event_ndims=1).shape == (3,)


# ------------------------------------------------------------------------------------------------
# 4. Composition: Chain, Invert, TransformedDistribution.
# ------------------------------------------------------------------------------------------------


def test_invert_softmax_plus_plus():
    rng = np.random.default_rng(110)
    bij = SoftmaxPlusPlus(0.4, 2.0)
    inv = tfb.Invert(bij)
    y = dirichlet(rng, 4, 5, np.float64)
    np.testing.assert_allclose(inv.forward(fresh(y)), bij.inverse(fresh(y)), rtol=1e-12)
    np.testing.assert_allclose(
        inv.forward_log_det_jacobian(fresh(y), event_ndims=1),
        bij.inverse_log_det_jacobian(fresh(y), event_ndims=1),
        rtol=1e-12,
    )
    assert inv.forward_event_shape([4]) == [3]
    x = inv.forward(fresh(y))
    np.testing.assert_allclose(inv.inverse(fresh(x)), y, rtol=1e-11)


def _igr_maps(dtype, k, v):
    rng = np.random.default_rng(120 + k)
    w1, u1, b1 = planar_params("random", dtype, rng, v=v, d=k - 1)
    w2, u2, b2 = planar_params("opposite", dtype, rng, v=v, d=k - 1)
    tau = 0.7
    return {
        "igr_i": SoftmaxPlusPlus(tau),
        "igr_sb": tfb.Chain([SoftmaxPlusPlus(tau), LogitStickBreaking()]),
        "igr_planar": tfb.Chain([SoftmaxPlusPlus(tau), Planar(w2, u2, b2), Planar(w1, u1, b1)]),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("family", ["igr_i", "igr_sb", "igr_planar"])
def test_transformed_distribution(dtype, k, family):
    v, n = 3, 6
    bij = _igr_maps(dtype, k, v)[family]
    rng = np.random.default_rng(130 + k)
    loc = rng.normal(size=(v, k - 1)).astype(dtype)
    scale = rng.uniform(0.5, 1.5, size=(v, k - 1)).astype(dtype)
    base = tfd.MultivariateNormalDiag(loc, scale)
    dist = tfd.TransformedDistribution(base, bij)
    assert dist.event_shape == [k]
    assert dist.batch_shape == [v]
    samples = dist.sample(n, seed=(1, 2))
    assert samples.shape == (n, v, k)
    assert samples.dtype == dtype
    lp = dist.log_prob(samples).numpy()
    assert lp.shape == (n, v)
    assert np.all(np.isfinite(lp))
    # Independent change of variables: p(y) = p_base(x) - fldj(x) with y = f(x); the density
    # is evaluated at a fresh copy of y, so it goes through the bijector's inverse.
    x = base.sample(n, seed=(3, 4))
    y = bij.forward(x)
    expected = base.log_prob(x) - bij.forward_log_det_jacobian(x, event_ndims=1)
    got = dist.log_prob(fresh(y))
    np.testing.assert_allclose(got, expected, **tol(dtype, 2e-3, 1e-8))


def test_igr_sb_log_prob_matches_naive_chain():
    k, v = 5, 3
    rng = np.random.default_rng(140)
    tau = 0.3
    loc = rng.normal(size=(v, k - 1))
    scale = rng.uniform(0.5, 1.5, size=(v, k - 1))
    stable = tfb.Chain([SoftmaxPlusPlus(tau), LogitStickBreaking()])
    naive = tfb.Chain(
        [SoftmaxPlusPlus(tau), tfb.Invert(tfb.SoftmaxCentered()), StickBreaking(), tfb.Sigmoid()]
    )
    z = rng.normal(size=(4, v, k - 1))
    np.testing.assert_allclose(stable.forward(z), naive.forward(fresh(z)), rtol=1e-10)
    y = stable.forward(fresh(z)).numpy()
    lp_stable = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc, scale), stable)
    lp_naive = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc, scale), naive)
    a = lp_stable.log_prob(fresh(y)).numpy()
    b = lp_naive.log_prob(fresh(y)).numpy()
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(
        stable.inverse(fresh(y)), naive.inverse(fresh(y)), rtol=1e-8, atol=1e-8
    )


# ------------------------------------------------------------------------------------------------
# 5. XLA.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_xla_matches_eager(dtype):
    rng = np.random.default_rng(150)
    k = 4
    spp = SoftmaxPlusPlus(tf.constant(0.3, dtype), delta=0.7)
    sb = StickBreaking()
    lsb = LogitStickBreaking()
    planar = Planar(*planar_params("opposite", dtype, rng, v=2, d=k - 1))
    x = (2.0 * rng.normal(size=(3, 2, k - 1))).astype(dtype)
    y = dirichlet(rng, k, 6, dtype).reshape(3, 2, k)
    v = rng.uniform(0.05, 0.95, size=(3, 2, k - 1)).astype(dtype)

    def all_maps(x, y, v):
        return [
            spp.forward(x),
            spp.inverse(y),
            spp.forward_log_det_jacobian(x, event_ndims=1),
            spp.inverse_log_det_jacobian(y, event_ndims=1),
            sb.forward(v),
            sb.inverse(y),
            sb.forward_log_det_jacobian(v, event_ndims=1),
            sb.inverse_log_det_jacobian(y, event_ndims=1),
            lsb.forward(x),
            lsb.inverse(x),
            lsb.forward_log_det_jacobian(x, event_ndims=1),
            planar.forward(x),
            planar.inverse(x),
            planar.forward_log_det_jacobian(x, event_ndims=1),
        ]

    compiled = tf.function(all_maps, jit_compile=True)
    got = compiled(fresh(x), fresh(y), fresh(v))
    want = all_maps(fresh(x), fresh(y), fresh(v))
    for i, (g, e) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, e, **tol(dtype, 2e-5, 1e-11), err_msg=f"output {i}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_xla_variable_temperature_is_read_each_call(dtype):
    tau = tf.Variable(1.0, dtype=dtype)
    bij = SoftmaxPlusPlus(tau)
    x = np.array([[0.5, -1.0, 2.0]], dtype)

    @tf.function(jit_compile=True)
    def f(x):
        return bij.forward(x), bij.forward_log_det_jacobian(x, event_ndims=1)

    y1, l1 = f(fresh(x))
    tau.assign(0.1)
    y2, l2 = f(fresh(x))
    assert f.experimental_get_tracing_count() == 1
    assert not np.allclose(y1, y2)
    t = tol(dtype, 1e-5, 1e-12)
    for tv, y, ldj in [(1.0, y1, l1), (0.1, y2, l2)]:
        ref = SoftmaxPlusPlus(tv)
        np.testing.assert_allclose(y, ref.forward(fresh(x)), **t)
        np.testing.assert_allclose(ldj, ref.forward_log_det_jacobian(fresh(x), event_ndims=1), **t)


# ------------------------------------------------------------------------------------------------
# 6. Numerical extremes.
# ------------------------------------------------------------------------------------------------


def _extreme_inputs(dtype, k, n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-50.0, 50.0, size=(n, k - 1))
    x[0] = 50.0
    x[1] = -50.0
    x[2, ::2] = 50.0
    x[2, 1::2] = -50.0
    return x.astype(dtype)


def _assert_finite(*tensors):
    for t in tensors:
        assert t is not None
        assert np.all(np.isfinite(np.asarray(t))), t


def _assert_in_simplex(y, dtype):
    y = np.asarray(y)
    assert np.all(np.isfinite(y))
    assert np.all(y >= 0) and np.all(y <= 1)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=10 * EPS[dtype] * y.shape[-1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature", [0.01, 10.0])
def test_softmax_plus_plus_extremes(dtype, k, temperature):
    x = tf.constant(_extreme_inputs(dtype, k))
    tau = tf.constant(temperature, dtype)
    delta = tf.constant(0.5, dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, tau, delta])
        bij = SoftmaxPlusPlus(tau, delta)
        y = bij.forward(x)
        total = tf.reduce_sum(y * tf.range(1, k + 1, dtype=dtype))  # sum(y) = 1 has no gradient
        fldj = bij.forward_log_det_jacobian(x, event_ndims=1)
        total_fldj = tf.reduce_sum(fldj)
    _assert_in_simplex(y, dtype)
    _assert_finite(fldj)
    _assert_finite(*tape.gradient(total, [x, tau, delta]))
    _assert_finite(*tape.gradient(total_fldj, [x, tau, delta]))
    # log ψ from logits: fldj stays exact where ψ underflows.
    logits = np.concatenate([x.numpy() / temperature, np.full((6, 1), np.log(0.5))], -1)
    logits = logits.astype(np.float64)
    log_psi = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    ref = 0.5 * np.log(k) + log_psi.sum(-1) - (k - 1) * np.log(temperature)
    np.testing.assert_allclose(fldj, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature", [0.01, 10.0])
def test_igr_sb_map_extremes(dtype, k, temperature):
    z = tf.constant(_extreme_inputs(dtype, k, seed=1))
    tau = tf.constant(temperature, dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z, tau])
        bij = tfb.Chain([SoftmaxPlusPlus(tau), LogitStickBreaking()])
        y = bij.forward(z)
        total = tf.reduce_sum(y * tf.range(1, k + 1, dtype=dtype))
        fldj = bij.forward_log_det_jacobian(z, event_ndims=1)
        total_fldj = tf.reduce_sum(fldj)
    _assert_in_simplex(y, dtype)
    _assert_finite(fldj)
    _assert_finite(*tape.gradient(total, [z, tau]))
    _assert_finite(*tape.gradient(total_fldj, [z, tau]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_logit_stick_breaking_extremes_where_the_naive_chain_fails(dtype, k):
    z_np = _extreme_inputs(dtype, k, seed=2)
    lsb = LogitStickBreaking()
    z = tf.constant(z_np)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        x = lsb.forward(z)
        total = tf.reduce_sum(x)
        z_back = lsb.inverse(fresh(x))
    _assert_finite(x, z_back, tape.gradient(total, z))
    # Closed form x_k = log σ(z_k) - Σ_{j≥k} log σ(-z_j), in float64.
    zz = z_np.astype(np.float64)
    ref = -np.logaddexp(0.0, -zz) + np.cumsum(np.logaddexp(0.0, zz)[..., ::-1], -1)[..., ::-1]
    np.testing.assert_allclose(x, ref, rtol=1e-6 if dtype == np.float32 else 1e-13)
    # The round trip is exact to the dtype's resolution (x holds sums of ~50-sized terms).
    np.testing.assert_allclose(
        z_back,
        z_np,
        rtol=1e-4 if dtype == np.float32 else 1e-10,
        atol=1e-3 if dtype == np.float32 else 1e-9,
    )
    with tf.GradientTape() as tape:
        xx = tf.constant(ref.astype(dtype))
        tape.watch(xx)
        total_back = tf.reduce_sum(lsb.inverse(xx))
    _assert_finite(tape.gradient(total_back, xx))
    if dtype == np.float32:
        # Why LogitStickBreaking exists: sigmoid(50) rounds to 1 in float32, 1 - v to 0, and the
        # naive chain takes log 0.
        naive = naive_sb_chain().forward(fresh(z_np)).numpy()
        assert not np.all(np.isfinite(naive))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["random", "opposite", "zero_w"])
def test_planar_extremes(dtype, case):
    rng = np.random.default_rng(160)
    w, u, b = (tf.constant(a) for a in planar_params(case, dtype, rng, v=3, d=3))
    z = tf.constant(planar_inputs("large", dtype, rng, n=6, v=3, d=3))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z, w, u, b])
        flow = Planar(w, u, b)
        y = flow.forward(z)
        total = tf.reduce_sum(y)
        fldj = flow.forward_log_det_jacobian(z, event_ndims=1)
        total_fldj = tf.reduce_sum(fldj)
        z_back = flow.inverse(tf.identity(y))
        total_inv = tf.reduce_sum(z_back)
    _assert_finite(y, fldj, z_back)
    _assert_finite(*tape.gradient(total, [z, w, u, b]))
    _assert_finite(*tape.gradient(total_fldj, [z, w, u, b]))
    _assert_finite(*tape.gradient(total_inv, [y, w, u, b]))


def test_planar_inverse_gradients_match_finite_differences():
    """The inverse's single live Newton step must give the implicit-function gradients."""
    rng = np.random.default_rng(161)
    w, u, b = planar_params("random", np.float64, rng, v=2, d=2)
    y = rng.normal(size=(2, 2))

    @tf.function  # one trace serves all the finite-difference evaluations
    def inverse_sum(w, u, b, y):
        weights = tf.constant([[1.0, -2.0], [3.0, 0.5]], tf.float64)  # a generic functional of z
        return tf.reduce_sum(weights * Planar(w, u, b).inverse(y))

    args = [tf.constant(a) for a in (w, u, b, y)]
    with tf.GradientTape() as tape:
        tape.watch(args)
        total = inverse_sum(*args)
    grads = tape.gradient(total, args)
    h = 1e-6
    for i, (arg, grad) in enumerate(zip(args, grads, strict=True)):
        base = arg.numpy()
        fd = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[idx] += h
            minus[idx] -= h
            args_p = [fresh(a) for a in args]
            args_m = [fresh(a) for a in args]
            args_p[i], args_m[i] = tf.constant(plus), tf.constant(minus)
            fd[idx] = (inverse_sum(*args_p) - inverse_sum(*args_m)).numpy() / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7, err_msg=f"argument {i}")


# ------------------------------------------------------------------------------------------------
# 7. validate_args and bad input.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=tf.constant([1.0, -2.0])), "temperature"),
        (dict(delta=0.0), "delta"),
        (dict(delta=np.array(-3.0)), "delta"),
    ],
)
def test_softmax_plus_plus_rejects_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SoftmaxPlusPlus(**kwargs)


def test_softmax_plus_plus_variable_temperature_validated_at_call():
    tau = tf.Variable(0.5)
    bij = SoftmaxPlusPlus(tau, validate_args=True)
    x = tf.constant([[0.1, 0.2]])
    bij.forward(x)  # fine while positive
    tau.assign(-1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature"):
        bij.forward(fresh(x))
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature"):
        bij.forward_log_det_jacobian(fresh(x), event_ndims=1)
    # Without validate_args there is no run-time check (documented TFP behaviour).
    SoftmaxPlusPlus(tau).forward(fresh(x))


@pytest.mark.parametrize(
    "y", [[0.5, 0.6, 0.1], [1.2, -0.1, -0.1], [0.5, 0.5, 0.0]], ids=["sum", "negative", "zero"]
)
@pytest.mark.parametrize(
    "bij_fn",
    [lambda: SoftmaxPlusPlus(0.5, validate_args=True), lambda: StickBreaking(validate_args=True)],
    ids=["spp", "sb"],
)
def test_inverse_rejects_non_simplex(bij_fn, y):
    bij = bij_fn()
    bij.inverse(tf.constant([0.2, 0.3, 0.5]))  # a valid point passes
    with pytest.raises(tf.errors.InvalidArgumentError):
        bij.inverse(tf.constant(y))
    with pytest.raises(tf.errors.InvalidArgumentError):
        bij.inverse_log_det_jacobian(tf.constant(y), event_ndims=1)


@pytest.mark.parametrize(
    "bij_fn",
    [lambda: SoftmaxPlusPlus(0.5, validate_args=True), lambda: StickBreaking(validate_args=True)],
    ids=["spp", "sb"],
)
def test_inverse_validation_runs_in_graph_mode(bij_fn):
    """In a tf.function the assertions must be wired into the graph, not just run eagerly."""
    bij = bij_fn()
    inverse = tf.function(lambda y: bij.inverse(y), input_signature=[tf.TensorSpec([3])])
    ildj = tf.function(
        lambda y: bij.inverse_log_det_jacobian(y, event_ndims=1),
        input_signature=[tf.TensorSpec([3])],
    )
    inverse(tf.constant([0.2, 0.3, 0.5]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        inverse(tf.constant([0.5, 0.6, 0.1]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        ildj(tf.constant([0.5, 0.6, 0.1]))


@pytest.mark.parametrize("v", [[0.5, 1.2], [-0.1, 0.5], [0.0, 0.5], [0.5, 1.0]])
def test_stick_breaking_rejects_outside_unit_interval(v):
    bij = StickBreaking(validate_args=True)
    bij.forward(tf.constant([0.5, 0.5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\(0, 1\)"):
        bij.forward(tf.constant(v))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\(0, 1\)"):
        bij.forward_log_det_jacobian(tf.constant(v), event_ndims=1)


# ------------------------------------------------------------------------------------------------
# 8. AutoCompositeTensor.
# ------------------------------------------------------------------------------------------------


def _composite_cases():
    rng = np.random.default_rng(170)
    w, u, b = planar_params("random", np.float32, rng, v=2, d=3)
    return {
        "spp_tensor": (SoftmaxPlusPlus(tf.constant([0.5, 2.0]), tf.constant(0.3)), 2),
        "spp_float": (SoftmaxPlusPlus(0.5), 0),
        "spp_variable": (SoftmaxPlusPlus(tf.Variable(0.7)), 1),
        "sb": (StickBreaking(), 0),
        "lsb": (LogitStickBreaking(), 0),
        "planar": (Planar(w, u, b), 3),
    }


@pytest.mark.parametrize("name", list(_composite_cases()))
def test_composite_tensor(name):
    bij, n_leaves = _composite_cases()[name]
    assert isinstance(bij, tf.__internal__.CompositeTensor)
    leaves = tf.nest.flatten(bij, expand_composites=True)
    assert len(leaves) == n_leaves
    rebuilt = tf.nest.pack_sequence_as(bij, leaves, expand_composites=True)
    assert type(rebuilt) is type(bij)
    x = tf.constant(np.linspace(0.05, 0.9, 2 * 3, dtype=np.float32).reshape(2, 3))

    @tf.function
    def apply(b, x):
        return b.forward(x), b.forward_log_det_jacobian(x, event_ndims=1)

    y, ldj = apply(bij, x)
    y_e, ldj_e = bij.forward(fresh(x)), bij.forward_log_det_jacobian(fresh(x), event_ndims=1)
    np.testing.assert_allclose(y, y_e, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ldj, ldj_e, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rebuilt.forward(fresh(x)), y_e, rtol=1e-6, atol=1e-6)


def test_composite_tensor_parameters_are_traced_not_baked_in():
    @tf.function
    def apply(b, x):
        return b.forward(x)

    x = tf.constant([[0.3, -0.4]])
    y1 = apply(SoftmaxPlusPlus(tf.constant(0.5)), x)
    y2 = apply(SoftmaxPlusPlus(tf.constant(2.0)), x)
    assert apply.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(y1, SoftmaxPlusPlus(0.5).forward(fresh(x)), rtol=1e-6)
    np.testing.assert_allclose(y2, SoftmaxPlusPlus(2.0).forward(fresh(x)), rtol=1e-6)
