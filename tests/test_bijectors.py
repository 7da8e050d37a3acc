"""Tests for igr_tf.bijectors: SoftmaxPlusPlus, StickBreaking, LogitStickBreaking, Planar.

1. The shared harness (`tests/bijector_harness.py`, TFP's `bijector_test_util` checks) on every
   bijector and on the IGR chains: round trips, fldj = -ildj, log-dets against autodiff (TFP's
   "embedded" convention for maps onto the simplex), event and batch shapes, Chain and Invert;
   float32 and float64; eagerly, and XLA-compiled for a representative case of each bijector.
2. Values against independent routes: the TFP chains each bijector equals, hand-worked cases,
   closed forms, finite differences, 50-digit decimal arithmetic at the extremes.
3. Distributions built on the bijectors: log_prob against sampling (importance sampling) and
   against quadrature.
4. Extremes: inputs up to ±50, τ = 0.01, float32: values and gradients finite.
5. XLA against eager, validate_args, composite tensors.

The harness feeds only fresh tensors, so TFP's bijector cache never answers a round trip; the
tests here do the same with `fresh`.
"""

from __future__ import annotations

import decimal
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from bijector_harness import (  # noqa: E402
    EMBEDDED,
    assert_density_integrates_to_one,
    assert_finite_with_gradients,
    assert_log_prob_matches_samples,
    check_bijector,
    fresh,
)

from igr_tf import distributions as igrd
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
EAGER = ("eager",)
EAGER_AND_XLA = ("eager", "xla")


def tol(dtype, f32=1e-5, f64=1e-11):
    t = f32 if dtype == np.float32 else f64
    return dict(rtol=t, atol=t)


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


def planar_params(case, dtype, rng, v=4, d=3):
    """(w, u, b) of shape [V, D], [V, D], [V] for one of the named test cases."""
    w = rng.normal(size=(v, d))
    u = rng.normal(size=(v, d))
    b = rng.normal(size=v)
    if case == "opposite":
        # u nearly antiparallel to w with wᵀu = -8: wᵀû = -1 + softplus(-8) ≈ -1 + 3e-4, so the
        # flow is almost flat along w around wᵀz + b = 0 (the invertibility limit).
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


def igr_maps(dtype, k, v, tau=0.7, near_limit=True):
    """The IGR families' maps R^{K-1} -> K-simplex, with V = `v` planar flows per layer.

    Temperature and δ are tensors of `dtype` (see test_batch_slicing_a_chain_keeps_float64 for
    why not Python floats). With `near_limit`, IGR-Planar's second flow is at the invertibility
    limit (a density with a sharp ridge, as the harness's bijector checks want); without, both
    flows are well conditioned (as quadrature and importance sampling want).
    """
    rng = np.random.default_rng(120 + k)
    w1, u1, b1 = planar_params("random", dtype, rng, v=v, d=k - 1)
    w2, u2, b2 = planar_params("opposite" if near_limit else "random", dtype, rng, v=v, d=k - 1)
    tau, delta = tf.constant(tau, dtype), tf.constant(1.0, dtype)
    return {
        "igr_i": SoftmaxPlusPlus(tau, delta),
        "igr_sb": tfb.Chain([SoftmaxPlusPlus(tau, delta), LogitStickBreaking()]),
        "igr_planar": tfb.Chain(
            [SoftmaxPlusPlus(tau, delta), Planar(w2, u2, b2), Planar(w1, u1, b1)]
        ),
    }


def extreme_inputs(dtype, k, n=6, seed=0):
    """Points of [-50, 50]^{K-1}, including the corners ±50 and alternating signs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-50.0, 50.0, size=(n, k - 1))
    x[0] = 50.0
    x[1] = -50.0
    x[2, ::2] = 50.0
    x[2, 1::2] = -50.0
    return x.astype(dtype)


# ------------------------------------------------------------------------------------------------
# 1. The harness on every bijector.
# ------------------------------------------------------------------------------------------------

SPP_CASES = {
    # name: (temperature, delta, input scale); inputs scale with τ so that softmax stays
    # representable and the round trip is well defined.
    "tau1": (1.0, 1.0, 2.0),
    "tau0.3_delta0.4": (0.3, 0.4, 1.0),
    "tau4_delta2.5": (4.0, 2.5, 6.0),
    "tau0.01_delta0.5": (0.01, 0.5, 0.03),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "k,case", [(5, case) for case in SPP_CASES] + [(2, "tau1"), (2, "tau0.01_delta0.5")]
)
def test_softmax_plus_plus_harness(dtype, k, case):
    temperature, delta, scale = SPP_CASES[case]
    rng = np.random.default_rng(k)
    x = (scale * rng.normal(size=(8, k - 1))).astype(dtype)
    y = dirichlet(rng, k, 8, dtype)
    check_bijector(SoftmaxPlusPlus(temperature, delta), x, y, convention=EMBEDDED, modes=EAGER)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_plus_plus_harness_variable_temperature(dtype):
    """A tf.Variable temperature (annealed or learned), δ ≠ 1; compiled too in float32."""
    rng = np.random.default_rng(1)
    bij = SoftmaxPlusPlus(tf.Variable(0.3, dtype=dtype), delta=0.7)
    x = rng.normal(size=(6, 4)).astype(dtype)
    y = dirichlet(rng, 5, 6, dtype)
    modes = EAGER_AND_XLA if dtype == np.float32 else EAGER
    check_bijector(bij, x, y, convention=EMBEDDED, modes=modes)
    bij.temperature.assign(0.05)
    check_bijector(bij, 0.1 * x, y, convention=EMBEDDED, modes=EAGER)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_plus_plus_harness_batched_parameters(dtype):
    """Temperature and δ batched over V = 3 variables: batch shape, slicing, broadcasting."""
    rng = np.random.default_rng(2)
    bij = SoftmaxPlusPlus(np.array([0.1, 0.5, 2.0], dtype), np.array([1.0, 0.2, 3.0], dtype))
    x = rng.normal(size=(4, 3, 3)).astype(dtype)
    y = dirichlet(rng, 4, 12, dtype).reshape(4, 3, 4)
    check_bijector(bij, x, y, convention=EMBEDDED, modes=EAGER)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_stick_breaking_harness(dtype, k):
    rng = np.random.default_rng(10 + k)
    v = rng.uniform(0.02, 0.98, size=(8, k - 1)).astype(dtype)
    y = dirichlet(rng, k, 8, dtype)
    modes = EAGER_AND_XLA if (k, dtype) == (5, np.float64) else EAGER  # one compiled case
    check_bijector(StickBreaking(), v, y, convention=EMBEDDED, modes=modes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_logit_stick_breaking_harness(dtype, k):
    rng = np.random.default_rng(20 + k)
    z = (4.0 * rng.normal(size=(8, k - 1))).astype(dtype)
    x = (4.0 * rng.normal(size=(8, k - 1))).astype(dtype)
    modes = EAGER_AND_XLA if (k, dtype) == (5, np.float32) else EAGER  # one compiled case
    # x holds sums of up to K-1 softplus terms of size ~|z|: float32 round trips lose ~K ulps of
    # those, hence 1e-4 absolute on values of order 10.
    t32 = dict(rtol=2e-5, atol=1e-4) if dtype == np.float32 else {}
    check_bijector(LogitStickBreaking(), z, x, modes=modes, **t32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["random", "opposite"])
def test_planar_harness(dtype, case):
    """One flow per variable (V = 4); w = 0 (a pure shift) is in the round-trip test below."""
    rng = np.random.default_rng(["random", "opposite"].index(case))
    flow = Planar(*planar_params(case, dtype, rng))
    z = planar_inputs(case, dtype, rng, n=6)
    y = planar_inputs(case, dtype, rng, n=6)
    # Near the invertibility limit the inverse amplifies rounding of y by 1/det ≈ 3e3 (float32:
    # 3e3 · 1e-7 · |y| ~ 1e-3); test_planar_round_trip_error_within_its_condition_number states
    # that bound point by point.
    loose = case == "opposite" and dtype == np.float32
    t = dict(rtol=1e-3, atol=1e-3, ldj_rtol=1e-3, ldj_atol=1e-3) if loose else {}
    compiled = (case, dtype) == ("opposite", np.float64)  # one compiled case (slow to compile)
    check_bijector(flow, z, y, modes=EAGER_AND_XLA if compiled else EAGER, **t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["igr_i", "igr_sb", "igr_planar"])
def test_igr_chains_harness(dtype, family):
    """The three IGR maps onto the simplex, each a chain ending in SoftmaxPlusPlus."""
    k, v = 4, 3
    rng = np.random.default_rng(30)
    x = rng.normal(size=(5, v, k - 1)).astype(dtype)
    y = dirichlet(rng, k, 5 * v, dtype).reshape(5, v, k)
    modes = EAGER_AND_XLA if (family, dtype) == ("igr_sb", np.float32) else EAGER
    loose = family == "igr_planar" and dtype == np.float32  # the near-limit flow, as above
    t = dict(rtol=1e-3, atol=1e-3, ldj_rtol=1e-3, ldj_atol=1e-3) if loose else {}
    check_bijector(igr_maps(dtype, k, v)[family], x, y, convention=EMBEDDED, modes=modes, **t)


def test_batch_slicing_a_chain_keeps_float64():
    rng = np.random.default_rng(31)
    flow = Planar(*planar_params("random", np.float64, rng, v=3, d=2))
    x = rng.normal(size=(3, 2))
    for spp in (SoftmaxPlusPlus(0.7), SoftmaxPlusPlus(tf.constant(0.7, tf.float64))):
        chain = tfb.Chain([spp, flow])
        member = chain[1]
        want = chain.forward(fresh(x))[1]
        np.testing.assert_allclose(member.forward(fresh(x[1])), want, rtol=1e-12)
    # And the distribution case: a float64 IGR-I with a Python-float temperature.
    loc, scale = rng.normal(size=(3, 2)), np.exp(rng.normal(size=(3, 2)))
    q = igrd.igr_i(loc, scale, 0.5)
    psi = q.sample(seed=(1, 2)).numpy()
    np.testing.assert_allclose(q[1].log_prob(fresh(psi[1])), q.log_prob(fresh(psi))[1], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_square_chain_through_stick_breaking_harness(dtype):
    """Invert(SoftmaxCentered) ∘ StickBreaking ∘ Sigmoid is square: the ½ log K terms cancel."""
    rng = np.random.default_rng(40)
    z = (2.0 * rng.normal(size=(6, 4))).astype(dtype)
    # unknown_sizes=False: TFP 0.25's SoftmaxCentered.inverse_event_shape([None]) raises.
    # The naive chain forms 1 - sigmoid(z) and loses ~|z| ulps: 1e-4 in float32.
    t32 = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else {}
    check_bijector(naive_sb_chain(), z, modes=EAGER, unknown_sizes=False, **t32)
    # The same through SoftmaxPlusPlus has a closed form: test_square_chain_..._closed_form.


# ------------------------------------------------------------------------------------------------
# 2. Values against independent routes.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature,delta", [(1.0, 1.0), (0.25, 0.5), (3.0, 2.0), (0.01, 0.7)])
def test_softmax_plus_plus_matches_tfp_chain(dtype, k, temperature, delta):
    """SoftmaxPlusPlus(τ, δ) = SoftmaxCentered ∘ Shift(-log δ) ∘ Scale(1/τ), log-dets included."""
    rng = np.random.default_rng(70 + k)
    bij = SoftmaxPlusPlus(temperature, delta)
    ref = sc_chain(temperature, delta, dtype)
    x = (2.0 * temperature * rng.normal(size=(7, k - 1))).astype(dtype)
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_square_chain_through_softmax_plus_plus_closed_form(dtype, k):
    """Invert(SoftmaxCentered) ∘ SoftmaxPlusPlus(τ, δ) is x ↦ x/τ - log δ: log-det -(K-1) log τ."""
    rng = np.random.default_rng(50 + k)
    tau, delta = 0.6, 0.3
    chain = tfb.Chain([tfb.Invert(tfb.SoftmaxCentered()), SoftmaxPlusPlus(tau, delta)])
    x = (2.0 * rng.normal(size=(6, k - 1))).astype(dtype)
    np.testing.assert_allclose(
        chain.forward(fresh(x)), x / tau - np.log(delta), **tol(dtype, 1e-5, 1e-12)
    )
    np.testing.assert_allclose(
        chain.forward_log_det_jacobian(fresh(x), event_ndims=1),
        np.full(6, -(k - 1) * np.log(tau)),
        **tol(dtype, 1e-5, 1e-12),
    )


def test_stick_breaking_hand_worked_cases():
    """Break halves: [½, ½] -> [½, ¼, ¼]; [½, ½, ½] -> [½, ¼, ⅛, ⅛]; [0.2, 0.5] -> [.2, .4, .4]."""
    sb = StickBreaking()
    cases = [
        ([0.5, 0.5], [0.5, 0.25, 0.25]),
        ([0.5, 0.5, 0.5], [0.5, 0.25, 0.125, 0.125]),
        ([0.2, 0.5], [0.2, 0.4, 0.4]),
    ]
    for v, eta in cases:
        v, eta = np.array(v), np.array(eta)
        np.testing.assert_allclose(sb.forward(fresh(v)), eta, rtol=1e-15)
        np.testing.assert_allclose(sb.inverse(fresh(eta)), v, rtol=1e-15)
    # [0.2, 0.5]: ∂η_1/∂v_1 = 1, ∂η_2/∂v_2 = 1 - v_1 = 0.8, so log|det| = log 0.8 + ½ log 3.
    np.testing.assert_allclose(
        sb.forward_log_det_jacobian(fresh(np.array([0.2, 0.5])), event_ndims=1),
        np.log(0.8) + 0.5 * np.log(3.0),
        rtol=1e-14,
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


@pytest.mark.parametrize("k", KS)
def test_logit_stick_breaking_matches_the_tfp_chain_in_float64(k):
    """LogitStickBreaking = Invert(SoftmaxCentered) ∘ StickBreaking ∘ Sigmoid (log-det 0)."""
    rng = np.random.default_rng(40 + k)
    bij = LogitStickBreaking()
    chain = naive_sb_chain()
    z = 2.0 * rng.normal(size=(6, k - 1))
    x = 2.0 * rng.normal(size=(6, k - 1))
    np.testing.assert_allclose(bij.forward(fresh(z)), chain.forward(fresh(z)), rtol=1e-12)
    np.testing.assert_allclose(bij.inverse(fresh(x)), chain.inverse(fresh(x)), rtol=1e-11)
    np.testing.assert_allclose(
        chain.forward_log_det_jacobian(fresh(z), event_ndims=1), 0.0, atol=1e-12
    )
    np.testing.assert_allclose(bij.forward_log_det_jacobian(fresh(z), event_ndims=1), 0.0)


def test_igr_sb_log_prob_matches_the_naive_chain():
    """IGR-SB's density through LogitStickBreaking equals the one through the TFP chain."""
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
    np.testing.assert_allclose(stable.forward(fresh(z)), naive.forward(fresh(z)), rtol=1e-10)
    y = stable.forward(fresh(z)).numpy()
    lp_stable = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc, scale), stable)
    lp_naive = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc, scale), naive)
    a = lp_stable.log_prob(fresh(y)).numpy()
    b = lp_naive.log_prob(fresh(y)).numpy()
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)


def test_planar_hand_worked_case():
    """w = [1, 0], u = [1, 0], b = 0: wᵀu = 1, m = -1 + softplus(1), û = [m, 0].

    f([0.5, 2]) = [0.5 + m tanh(0.5), 2];  det = 1 + (1 - tanh²(0.5)) m.
    """
    m = -1.0 + np.log1p(np.e)
    flow = Planar(np.array([1.0, 0.0]), np.array([1.0, 0.0]), np.float64(0.0))
    z = np.array([0.5, 2.0])
    np.testing.assert_allclose(flow.forward(fresh(z)), [0.5 + m * np.tanh(0.5), 2.0], rtol=1e-15)
    np.testing.assert_allclose(
        flow.forward_log_det_jacobian(fresh(z), event_ndims=1),
        np.log(1.0 + (1.0 - np.tanh(0.5) ** 2) * m),
        rtol=1e-14,
    )
    np.testing.assert_allclose(flow.inverse(fresh(flow.forward(fresh(z)).numpy())), z, rtol=1e-14)


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_planar_log_det_cached_by_forward_matches_autodiff(dtype, mode):
    """The log-det the forward pass hands TFP's cache is log|det ∂f/∂z| (autodiff, float64).

    Read back both ways a sample's density reads it: `inverse_log_det_jacobian(f(z))` and
    `forward_log_det_jacobian(z)` after `forward(z)`, eagerly and XLA-compiled, at moderate and
    saturating pre-activations (|wᵀz + b| up to ~50, where tanh² rounds to 1).
    """
    rng = np.random.default_rng(11)
    w = rng.normal(size=(3, 4)).astype(dtype)
    u = rng.normal(size=(3, 4)).astype(dtype)
    b = rng.normal(size=(3,)).astype(dtype)
    z = np.concatenate([rng.normal(size=(5, 3, 4)), 12.0 * rng.normal(size=(2, 3, 4))])
    z = z.astype(dtype)

    def cached(w, u, b, z):
        flow = Planar(w, u, b)
        y = flow.forward(z)
        return flow.inverse_log_det_jacobian(y, 1), flow.forward_log_det_jacobian(z, 1)

    fn = tf.function(cached, jit_compile=True) if mode == "xla" else cached
    ildj, fldj = (t.numpy() for t in fn(*(fresh(a) for a in (w, u, b, z))))

    flow64 = Planar(w.astype(np.float64), u.astype(np.float64), b.astype(np.float64))
    z64 = tf.constant(z.astype(np.float64))
    with tf.GradientTape() as tape:
        tape.watch(z64)
        y64 = flow64.forward(z64)
    jac = tape.jacobian(y64, z64).numpy()  # [7, 3, 4, 7, 3, 4]
    # Each sample's and variable's own 4x4 block (the others are zero).
    blocks = np.stack([np.stack([jac[n, v, :, n, v, :] for v in range(3)]) for n in range(7)])
    expected = np.linalg.slogdet(blocks)[1]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    atol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(-ildj, expected, rtol=rtol, atol=atol)
    np.testing.assert_allclose(fldj, expected, rtol=rtol, atol=atol)


def test_planar_sample_log_prob_evaluates_tanh_once_per_flow():
    """Forward and log-det share tanh(wᵀz + b): a sample and its log_prob trace one Tanh per
    flow (two before the cache carried the log-det), so the gradient tape records one path."""
    rng = np.random.default_rng(3)
    flows = igrd.planar_flows(
        [rng.normal(size=(2, 4)) for _ in range(2)],
        [rng.normal(size=(2, 4)) for _ in range(2)],
        [rng.normal(size=(2,)) for _ in range(2)],
    )

    @tf.function
    def sample_and_log_prob():
        q = igrd.igr_planar(tf.zeros([2, 4], tf.float64), tf.ones([2, 4], tf.float64), flows, 0.5)
        y = q.sample(3, seed=(1, 2))
        return q.log_prob(y)

    graph = sample_and_log_prob.get_concrete_function().graph
    assert sum(op.type == "Tanh" for op in graph.get_operations()) == 2


@pytest.mark.parametrize("case", ["random", "opposite"])
def test_planar_constraint_keeps_the_flow_invertible(case):
    """û = u + (m(wᵀu) - wᵀu) w/‖w‖² satisfies wᵀû = -1 + softplus(wᵀu) > -1 and û - u ∥ w.

    Read off the flow itself: with z = 0 and b = 0, f(t·w/‖w‖²) - t·w/‖w‖² = û tanh(t), so the
    displacement at t = atanh(½) is û/2.
    """
    rng = np.random.default_rng(3)
    w, u, _ = planar_params(case, np.float64, rng, v=3, d=4)
    flow = Planar(w, u, np.zeros(3))
    w_sq = np.sum(w * w, -1, keepdims=True)
    t = np.arctanh(0.5)
    z = t * w / w_sq
    u_hat = 2.0 * (flow.forward(fresh(z)).numpy() - z)
    wu = np.sum(w * u, -1)
    np.testing.assert_allclose(np.sum(w * u_hat, -1), -1.0 + np.log1p(np.exp(wu)), rtol=1e-12)
    assert np.all(np.sum(w * u_hat, -1) > -1.0)
    # û - u is parallel to w: its component orthogonal to w vanishes.
    diff = u_hat - u
    orthogonal = diff - np.sum(diff * w, -1, keepdims=True) * w / w_sq
    np.testing.assert_allclose(orthogonal, 0.0, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["random", "opposite", "zero_w", "large"])
def test_planar_round_trip_error_within_its_condition_number(dtype, case):
    """The inverse is backward stable, and its forward error is bounded by the conditioning.

    Rounding y (relative eps·|y|, amplified by ‖w‖ in wᵀy) is divided by the slope of the scalar
    map along w, det = exp(fldj) (fldj itself checked against autodiff by the harness), and moved
    into z along û (‖û‖ = 2‖f(z⁎) - z⁎‖ at the point z⁎ of test_planar_constraint...).
    """
    cases = ["random", "opposite", "zero_w", "large"]
    rng = np.random.default_rng(cases.index(case))
    w, u, b = planar_params(case, dtype, rng)
    flow = Planar(w, u, b)
    z = planar_inputs(case, dtype, rng)
    y = flow.forward(fresh(z)).numpy()
    z2 = flow.inverse(fresh(y)).numpy()
    assert np.all(np.isfinite(z2))
    eps = EPS[dtype]
    scale = 1.0 + np.max(np.abs(z))
    # Backward stability: the recovered point maps back onto y to rounding.
    np.testing.assert_allclose(flow.forward(fresh(z2)), y, rtol=0, atol=20 * eps * scale)
    det = np.exp(flow.forward_log_det_jacobian(fresh(z), event_ndims=1).numpy().astype(np.float64))
    w_sq = np.sum(w.astype(np.float64) ** 2, -1, keepdims=True)
    probe = np.where(w_sq > 0, np.arctanh(0.5) * w / np.where(w_sq > 0, w_sq, 1.0), 0.0)
    shifted = Planar(w, u, np.zeros_like(b))
    u_hat = 2.0 * (shifted.forward(fresh(probe.astype(dtype))).numpy() - probe)
    if case == "zero_w":  # a pure shift by u·tanh(b), recovered exactly
        np.testing.assert_allclose(y, z + u * np.tanh(b)[:, None], **tol(dtype))
        np.testing.assert_allclose(z2, z, **tol(dtype))
        return
    cond = np.linalg.norm(w, axis=-1) * np.linalg.norm(u_hat, axis=-1) / det
    bound = 50 * eps * scale * (1.0 + cond[..., None])
    assert np.all(np.abs(z2 - z) < bound), np.max(np.abs(z2 - z) / bound)


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
    y = flow.forward(fresh(z)).numpy()
    z2 = flow.inverse(fresh(y)).numpy()
    assert np.all(np.isfinite(z2))
    np.testing.assert_allclose(flow.forward(fresh(z2)), y, rtol=0, atol=50 * EPS[dtype])
    assert np.all(np.isfinite(flow.forward_log_det_jacobian(fresh(z), event_ndims=1)))


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
# 3. Distributions on the bijectors: log_prob against sampling and quadrature.
# ------------------------------------------------------------------------------------------------


def _igr_distribution(family, dtype, k, v=2, tau=0.7, seed=130):
    rng = np.random.default_rng(seed + k)
    loc = rng.normal(size=(v, k - 1)).astype(dtype)
    scale = rng.uniform(0.5, 1.5, size=(v, k - 1)).astype(dtype)
    base = tfd.MultivariateNormalDiag(loc, scale)
    bijector = igr_maps(dtype, k, v, tau, near_limit=False)[family]
    return tfd.TransformedDistribution(base, bijector)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["igr_i", "igr_sb", "igr_planar"])
def test_log_prob_matches_sampling(dtype, family):
    """E_q[p/q] = 1 and E_q[(p/q) ψ] = E_p[ψ] (sampled) within 4 standard errors, K = 5."""
    assert_log_prob_matches_samples(_igr_distribution(family, dtype, 5), "simplex", EMBEDDED)


@pytest.mark.parametrize(
    "family,k,tau",
    [
        ("igr_i", 2, 0.1),
        ("igr_i", 3, 0.7),
        ("igr_sb", 2, 0.7),
        ("igr_sb", 3, 0.1),
        ("igr_planar", 2, 0.1),
        ("igr_planar", 3, 0.7),
    ],
)
def test_density_integrates_to_one(family, k, tau):
    """Quadrature over the log-ratio line / plane, in float64 (at τ = 0.1 a float32 ψ underflows
    over part of the grid)."""
    dist = _igr_distribution(family, np.float64, k, tau=tau)
    if k == 2:
        assert_density_integrates_to_one(dist, "simplex", EMBEDDED, rtol=1e-4)
    else:
        assert_density_integrates_to_one(dist, "simplex", EMBEDDED, num_points=301, rtol=1e-3)


# ------------------------------------------------------------------------------------------------
# 4. Numerical extremes: |inputs| up to 50, τ = 0.01, float32 and float64.
# ------------------------------------------------------------------------------------------------


def _decimal_log_softmax(logits_row):
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        d = [decimal.Decimal(float(v)) for v in logits_row]
        top = max(d)
        lse = top + sum((v - top).exp() for v in d).ln()
        return np.array([float(v - lse) for v in d])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature", [0.01, 10.0])
def test_softmax_plus_plus_extremes(dtype, k, temperature):
    x = extreme_inputs(dtype, k)
    bij = SoftmaxPlusPlus(tf.constant(temperature, dtype), tf.constant(0.5, dtype))
    # Inverse at simplex points with entries down to 1e-30 (the math is finite there).
    y = np.full((2, k), 1e-30)
    y[0, 0] = y[1, -1] = 1.0 - (k - 1) * 1e-30
    assert_finite_with_gradients(bij, x, y=y.astype(dtype))
    psi = bij.forward(fresh(x)).numpy()
    assert np.all((psi >= 0) & (psi <= 1))
    np.testing.assert_allclose(psi.sum(-1), 1.0, atol=10 * EPS[dtype] * k)
    # fldj = ½ log K + Σ log ψ - (K-1) log τ with log ψ in 60-digit arithmetic: exact where ψ
    # underflows (entries of exp(-5000)).
    x64 = x.astype(np.float64)
    logits = np.concatenate([x64 / temperature, np.full((6, 1), np.log(0.5))], -1)
    log_psi = np.stack([_decimal_log_softmax(row) for row in logits])
    ref = 0.5 * np.log(k) + log_psi.sum(-1) - (k - 1) * np.log(temperature)
    fldj = bij.forward_log_det_jacobian(fresh(x), event_ndims=1)
    np.testing.assert_allclose(fldj, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # TFP's chain agrees (its SoftmaxCentered log-det is log-space too).
    np.testing.assert_allclose(
        sc_chain(temperature, 0.5, np.float64).forward_log_det_jacobian(fresh(x64), event_ndims=1),
        ref,
        rtol=1e-12,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature", [0.01, 10.0])
def test_igr_sb_map_extremes(dtype, k, temperature):
    bij = tfb.Chain([SoftmaxPlusPlus(tf.constant(temperature, dtype)), LogitStickBreaking()])
    z = extreme_inputs(dtype, k, seed=1)
    assert_finite_with_gradients(bij, z)
    psi = bij.forward(fresh(z)).numpy()
    assert np.all((psi >= 0) & (psi <= 1))
    np.testing.assert_allclose(psi.sum(-1), 1.0, atol=10 * EPS[dtype] * k)


def _decimal_log_ratios_of_sticks(z_row):
    """x_k = log η_k - log η_K for η = StickBreaking(sigmoid(z)), from the definition:
    v = 1/(1 + e^{-z}), 1 - v = 1/(1 + e^{z}), η_k = v_k Π_{j<k}(1 - v_j), η_K = Π_j (1 - v_j).
    """
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        one = decimal.Decimal(1)
        z = [decimal.Decimal(float(v)) for v in z_row]
        log_v = [-(one + (-zj).exp()).ln() for zj in z]
        log_1mv = [-(one + zj.exp()).ln() for zj in z]
        log_eta = [log_v[k] + sum(log_1mv[:k], decimal.Decimal(0)) for k in range(len(z))]
        log_last = sum(log_1mv, decimal.Decimal(0))
        return np.array([float(le - log_last) for le in log_eta])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_logit_stick_breaking_extremes_where_the_naive_chain_fails(dtype, k):
    z = extreme_inputs(dtype, k, seed=2)
    lsb = LogitStickBreaking()
    ref = np.stack([_decimal_log_ratios_of_sticks(row) for row in z.astype(np.float64)])
    assert_finite_with_gradients(lsb, z, y=ref.astype(dtype))
    x = lsb.forward(fresh(z)).numpy()
    # Relative accuracy, except where x_k nearly cancels (x_k = 2 softplus(-50) ≈ 4e-22 from
    # terms of size 50): there the error is a few ulps of the summed terms.
    terms = np.sum(np.logaddexp(0.0, z.astype(np.float64)), -1, keepdims=True) + 50.0
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    error = np.abs(x - ref)
    bound = rtol * np.abs(ref) + 4 * EPS[dtype] * terms
    assert np.all(error <= bound), np.max(error / bound)
    # The round trip is exact to the dtype's resolution (x holds sums of ~50-sized terms).
    np.testing.assert_allclose(
        lsb.inverse(fresh(x)),
        z,
        rtol=1e-4 if dtype == np.float32 else 1e-10,
        atol=1e-3 if dtype == np.float32 else 1e-9,
    )
    if dtype == np.float32:
        # Why LogitStickBreaking exists: sigmoid(50) rounds to 1 in float32, 1 - v to 0, and the
        # naive chain takes log 0.
        naive = naive_sb_chain().forward(fresh(z)).numpy()
        assert not np.all(np.isfinite(naive))


@pytest.mark.parametrize("dtype", DTYPES)
def test_stick_breaking_extremes(dtype):
    tiny = 1e-6 if dtype == np.float32 else 1e-14
    v = np.array([[tiny, 1 - tiny, 0.5], [1 - tiny, 1 - tiny, 1 - tiny], [tiny, tiny, tiny]])
    y = np.array([[1e-30, 1e-30, 1e-30, 1.0 - 3e-30], [1.0 - 3e-30, 1e-30, 1e-30, 1e-30]])
    assert_finite_with_gradients(StickBreaking(), v.astype(dtype), y=y.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["random", "opposite", "zero_w"])
def test_planar_extremes(dtype, case):
    rng = np.random.default_rng(160)
    flow = Planar(*(tf.constant(a) for a in planar_params(case, dtype, rng, v=3, d=3)))
    z = planar_inputs("large", dtype, rng, n=6, v=3, d=3)
    y = flow.forward(fresh(z)).numpy()
    # The harness differentiates w, u and b too (they are the composite tensor's leaves).
    compiled = (case, dtype) == ("opposite", np.float32)
    assert_finite_with_gradients(flow, z, y=y, mode="xla" if compiled else "eager")


# ------------------------------------------------------------------------------------------------
# 5. XLA against eager, validate_args and bad input, composite tensors.
# ------------------------------------------------------------------------------------------------


def test_xla_matches_eager():
    """Compiled values equal eager ones (the harness checks XLA results only for consistency).

    float32, where XLA's fusion and reassociation could matter; float64 compiles are covered by
    the harness's compiled cases."""
    dtype = np.float32
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
        ref = sc_chain(tv, 1.0, dtype)
        np.testing.assert_allclose(y, ref.forward(fresh(x)), **t)
        np.testing.assert_allclose(ldj, ref.forward_log_det_jacobian(fresh(x), event_ndims=1), **t)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),  # a uniform ψ, not a relaxation
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
    np.testing.assert_allclose(y1, sc_chain(0.5, 1.0, np.float32).forward(fresh(x)), rtol=1e-6)
    np.testing.assert_allclose(y2, sc_chain(2.0, 1.0, np.float32).forward(fresh(x)), rtol=1e-6)
