"""Tests for igr_tf.categorical against independent routes.

IGR-I: Monte Carlo, a fine-grid trapezoid rule and scipy's adaptive quadrature (float64).
IGR-SB: Monte Carlo of the stick pieces, closed forms (K = 2, symmetries) and, for large K, the
induced pmf evaluated on a finer grid than the fit used (a full pass with fresh tables, not the
fit's sweeps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from reference import igr_i_pmf_by_quad
from scipy import special

from igr_tf import _stick_breaking
from igr_tf.categorical import (
    fit_stick_breaking_prior,
    igr_i_log_pmf,
    stick_breaking_pmf,
    uniform_prior_loc,
)

SPEC_LOC = np.array([-1.13, 0.37, -1.67, -0.65, -0.10])
SPEC_SCALE = np.array([1.10, 0.48, 0.40, 0.63, 1.25])
SPEC_PMF = np.array([0.064, 0.483, 0.000, 0.042, 0.326, 0.084])


def _pmf(loc, scale, delta=1.0, **kw) -> np.ndarray:
    return np.exp(igr_i_log_pmf(np.asarray(loc), np.asarray(scale), delta=delta, **kw).numpy())


def _mc_igr_i(loc, scale, delta, n, seed) -> np.ndarray:
    """Frequencies of argmax([z, log delta]) with z ~ N(loc, scale^2)."""
    rng = np.random.default_rng(seed)
    z = loc + scale * rng.standard_normal((n, loc.size))
    z = np.concatenate([z, np.full((n, 1), math.log(delta))], axis=1)
    return np.bincount(z.argmax(axis=1), minlength=loc.size + 1) / n


def _trapezoid_reference(loc, scale, delta=1.0, points=200_001) -> np.ndarray:
    """q(k) = int_{log d}^inf N(t; mu_k, s_k) prod_{j!=k} Phi((t-mu_j)/s_j) dt on a fine t-grid.

    Float64, Phi from erfc (a different route from the log-space quadrature under test).
    """
    a = math.log(delta)
    hi = max(a, float(np.max(loc + 14.0 * scale)))
    t = np.linspace(a, hi, points)
    cdf = 0.5 * tf.math.erfc(-(t[:, None] - loc) / (scale * math.sqrt(2.0))).numpy()
    pdf = np.exp(-0.5 * ((t[:, None] - loc) / scale) ** 2) / (scale * math.sqrt(2.0 * math.pi))
    q = []
    for k in range(loc.size):
        others = np.prod(np.delete(cdf, k, axis=1), axis=1)
        y = pdf[:, k] * others
        q.append(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(t)))
    q.append(np.prod(0.5 * tf.math.erfc(-(a - loc) / (scale * math.sqrt(2.0))).numpy()))
    return np.array(q)


def _random_cases(n, seed, log_scale_sd=0.5):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        k1 = int(rng.integers(2, 10))
        yield rng.normal(0.0, 1.5, k1), np.exp(rng.normal(0.0, log_scale_sd, k1))


# ------------------------------------------------------------------------------- IGR-I pmf


def test_spec_unequal_scale_case():
    q = _pmf(SPEC_LOC, SPEC_SCALE)
    np.testing.assert_allclose(q, SPEC_PMF, atol=6e-4)
    # The original's node-rescaling bug gives q[1] = .616: make sure we are far from it.
    assert abs(q[1] - 0.616) > 0.1


@pytest.mark.parametrize("case", range(4))
def test_against_monte_carlo(case):
    if case == 0:
        loc, scale, delta = SPEC_LOC, SPEC_SCALE, 1.0
    else:
        loc, scale = list(_random_cases(3, seed=11, log_scale_sd=0.7))[case - 1]
        delta = [1.0, 0.5, 2.0][case - 1]
    n = 200_000
    freq = _mc_igr_i(loc, scale, delta, n, seed=100 + case)
    q = _pmf(loc, scale, delta)
    se = np.sqrt(q * (1 - q) / n)
    assert np.all(np.abs(freq - q) <= 3 * se + 1e-5), (freq, q)


def test_against_trapezoid_reference():
    """1e-8 on moderate cases needs more than the default 45 nodes (max error 7e-7): 80."""
    cases = [(SPEC_LOC, SPEC_SCALE, 1.0)]
    cases += [
        (m, s, d) for (m, s), d in zip(_random_cases(3, seed=5), [1.0, 0.3, 3.0], strict=True)
    ]
    for loc, scale, delta in cases:
        ref = _trapezoid_reference(loc, scale, delta)
        assert abs(ref.sum() - 1) < 1e-9  # the reference itself is converged
        raw = _pmf(loc, scale, delta, renormalize=False, num_nodes=80)
        assert np.max(np.abs(raw - ref)) < 1e-8, np.max(np.abs(raw - ref))
        assert abs(raw.sum() - 1) < 1e-6
        norm = _pmf(loc, scale, delta, num_nodes=80)
        assert np.max(np.abs(norm - ref)) < 1e-8
        assert abs(norm.sum() - 1) < 1e-12


@pytest.mark.parametrize("num_vars_shape", ["mixed", "vae"])
def test_against_scipy_adaptive_quadrature(num_vars_shape):
    """The accuracy claim: max |q - q_ref| <= 1e-6 on moderate parameters, unequal scales."""
    rng = np.random.default_rng(17 if num_vars_shape == "mixed" else 18)
    cases = [(SPEC_LOC, SPEC_SCALE, 1.0)]
    for i in range(16):
        k1 = int(rng.integers(1, 10)) if num_vars_shape == "mixed" else 9
        delta = [1.0, 0.5, 2.0][i % 3] if num_vars_shape == "mixed" else 1.0
        cases.append((rng.normal(0.0, 2.0, k1), np.exp(rng.normal(0.0, 0.5, k1)), delta))
    worst = 0.0
    for loc, scale, delta in cases:
        ref = igr_i_pmf_by_quad(loc, scale, delta)
        assert abs(ref.sum() - 1.0) < 1e-10  # the reference is converged
        raw = _pmf(loc, scale, delta, renormalize=False)
        worst = max(worst, float(np.max(np.abs(raw - ref))))
    assert worst <= 1e-6, worst


def test_default_rule_accuracy_claim():
    """The docstring's claim at the default 45 nodes: max |q - q_ref| <= 1e-6 (measured 6.9e-7
    over 400 cases) for K-1 up to 11, mu ~ N(0, 2^2), log sigma ~ N(0, 0.5^2), three deltas;
    independent reference: scipy's adaptive quadrature with scipy's log_ndtr."""
    rng = np.random.default_rng(2027)
    worst = 0.0
    for i in range(24):
        k1 = 1 + i % 11
        delta = [0.5, 1.0, 2.0][i % 3]
        loc, scale = rng.normal(0.0, 2.0, k1), np.exp(rng.normal(0.0, 0.5, k1))
        ref = igr_i_pmf_by_quad(loc, scale, delta)
        raw = _pmf(loc, scale, delta, renormalize=False)
        worst = max(worst, float(np.max(np.abs(raw - ref))))
    assert worst <= 1e-6, worst


def test_default_rule_accuracy_at_a_zero_and_dynamic_batch_shape():
    """The default rule at a = log delta = 0 (the docstring's first case set: 6.9e-7 over 200
    cases) on 12 fresh cases, <= 1e-6 against scipy; evaluated in one call through a
    tf.function whose batch dimensions are unknown at trace time (the rule flattens the batch)."""
    rng = np.random.default_rng(2028)
    k1 = 7
    loc = rng.normal(0.0, 2.0, (3, 4, k1))
    scale = np.exp(rng.normal(0.0, 0.5, (3, 4, k1)))
    spec = tf.TensorSpec([None, None, k1], tf.float64)
    fn = tf.function(
        lambda a, b: igr_i_log_pmf(a, b, renormalize=False), input_signature=[spec, spec]
    )
    q = np.exp(fn(tf.constant(loc), tf.constant(scale)).numpy())
    assert q.shape == (3, 4, k1 + 1)
    worst = 0.0
    for i, j in np.ndindex(3, 4):
        ref = igr_i_pmf_by_quad(loc[i, j], scale[i, j], 1.0)
        worst = max(worst, float(np.max(np.abs(q[i, j] - ref))))
    assert worst <= 1e-6, worst


def test_two_categories_closed_form():
    # K = 2: q(1) = P(z > log delta) = Phi((mu - log delta)/sigma).
    loc = np.array([[-3.0], [0.2], [40.0], [-40.0]])
    scale = np.array([[0.5], [2.0], [1e-3], [10.0]])
    delta = 0.7
    expected = special.log_ndtr((loc[:, 0] - math.log(delta)) / scale[:, 0])
    log_q = igr_i_log_pmf(loc, scale, delta=delta).numpy()
    np.testing.assert_allclose(log_q[:, 0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_q).sum(-1), 1.0, atol=1e-12)


def test_exact_values_at_huge_and_tiny_scales():
    # Equal huge scales, locations 0, threshold 0: q(K) = Phi(0)^3 = 1/8, the rest share 7/8.
    q = _pmf([0.0, 0.0, 0.0], [100.0, 100.0, 100.0], renormalize=False)
    np.testing.assert_allclose(q, [7 / 24, 7 / 24, 7 / 24, 1 / 8], atol=1e-9)
    # Tiny scales: the largest location wins (0.5 is 200 scales above 0.3 and the threshold).
    q = _pmf([0.3, 0.5, -0.3], [1e-3, 1e-3, 1e-3], renormalize=False)
    np.testing.assert_allclose(q, [0.0, 1.0, 0.0, 0.0], atol=1e-12)
    # +-50 with tiny scales: category 1 wins; the others are astronomically unlikely but finite.
    log_q = igr_i_log_pmf(np.array([50.0, 0.0, -50.0, 3.0]), np.array([1e-3, 1.0, 1e-3, 1e-3]))
    log_q = log_q.numpy()
    assert np.all(np.isfinite(log_q))
    assert abs(log_q[0]) < 1e-12 and np.all(log_q[1:] < -1000.0)


def test_delta_may_be_a_tensor():
    """IGR-I passes delta**tau as a tensor: same values as the float, and a gradient."""
    loc = tf.constant(SPEC_LOC)
    scale = tf.constant(SPEC_SCALE)
    by_float = igr_i_log_pmf(loc, scale, delta=0.6).numpy()
    delta = tf.Variable(0.6, dtype=tf.float64)
    by_tensor = igr_i_log_pmf(loc, scale, delta=delta).numpy()
    np.testing.assert_allclose(by_tensor, by_float, rtol=1e-13, atol=1e-13)
    # d q / d delta against a central difference.
    w = tf.constant(np.linspace(-1.0, 1.0, 6))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(w * tf.exp(igr_i_log_pmf(loc, scale, delta=delta)))
    grad = tape.gradient(value, delta).numpy()
    eps = 1e-6
    plus = np.sum(w.numpy() * np.exp(igr_i_log_pmf(loc, scale, delta=0.6 + eps).numpy()))
    minus = np.sum(w.numpy() * np.exp(igr_i_log_pmf(loc, scale, delta=0.6 - eps).numpy()))
    assert abs(grad - (plus - minus) / (2 * eps)) < 1e-6


def test_log_space_relative_accuracy_of_tiny_probabilities():
    # Category 1 needs z_1 > 0 with mu_1 = -30: q(1) ~ Phi(-30) * P(others < z_1 | ...).
    loc = np.array([-30.0, -1.0, -2.0])
    scale = np.ones(3)
    log_q = igr_i_log_pmf(loc, scale).numpy()
    ref = _trapezoid_reference(np.array([-1.0, -2.0]), np.ones(2))  # law of the others
    # Given z_1 just above 0 (z_1 = O(1/30)), q(1) ~ Phi(-30) * Phi(1) * Phi(2).
    approx = -(30**2) / 2 - math.log(30 * math.sqrt(2 * math.pi)) + math.log(ref[-1])
    assert np.isfinite(log_q).all()
    assert abs(log_q[0] - approx) < 0.05


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_extremes_finite_normalized_and_differentiable(dtype):
    rows = []
    for loc_val in (-50.0, 50.0):
        for scale_val in (1e-3, 1e2):
            rows.append(([loc_val, 0.0, -loc_val, 3.0], [scale_val, 1.0, scale_val, 1e-3]))
            rows.append(([loc_val] * 4, [scale_val, 1.0, 1e-3, 1e2]))
    loc = tf.constant([r[0] for r in rows], dtype)
    scale = tf.constant([r[1] for r in rows], dtype)
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        log_q = igr_i_log_pmf(loc, scale)
        loss = tf.reduce_sum(log_q * tf.random.stateless_normal(log_q.shape, [1, 2], dtype=dtype))
    g_loc, g_scale = tape.gradient(loss, [loc, scale])
    assert log_q.dtype == dtype and log_q.shape == (len(rows), 5)
    assert np.isfinite(log_q.numpy()).all()
    np.testing.assert_allclose(np.exp(log_q.numpy()).sum(-1), 1.0, atol=1e-5)
    assert np.isfinite(g_loc.numpy()).all() and np.isfinite(g_scale.numpy()).all()


def test_gradient_matches_finite_differences():
    """Directional derivatives (random directions in loc and in scale) vs central differences."""
    rng = np.random.default_rng(4)
    w = tf.constant(rng.normal(size=6))
    d_loc, d_scale = rng.normal(size=5), rng.normal(size=5)

    def f(loc, scale):
        return tf.reduce_sum(w * igr_i_log_pmf(loc, scale))

    loc, scale = tf.constant(SPEC_LOC), tf.constant(SPEC_SCALE)
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        value = f(loc, scale)
    g_loc, g_scale = (g.numpy() for g in tape.gradient(value, [loc, scale]))
    eps = 1e-6
    fd_loc = (f(loc + eps * d_loc, scale) - f(loc - eps * d_loc, scale)).numpy() / (2 * eps)
    fd_scale = (f(loc, scale + eps * d_scale) - f(loc, scale - eps * d_scale)).numpy() / (2 * eps)
    assert abs(fd_loc - g_loc @ d_loc) < 1e-6 * (1 + abs(fd_loc))
    assert abs(fd_scale - g_scale @ d_scale) < 1e-6 * (1 + abs(fd_scale))


def test_xla_matches_eager_and_batches():
    rng = np.random.default_rng(3)
    loc = tf.constant(rng.normal(0, 2, (2, 3, 6)))
    scale = tf.constant(np.exp(rng.normal(0, 0.5, (2, 3, 6))))
    eager = igr_i_log_pmf(loc, scale, delta=0.7)
    # delta as a tensor, as IGR-I passes delta**tau from traced code.
    xla = tf.function(lambda a, b, d: igr_i_log_pmf(a, b, delta=d), jit_compile=True)(
        loc, scale, tf.constant(0.7, tf.float64)
    )
    assert eager.shape == (2, 3, 7)
    np.testing.assert_allclose(xla.numpy(), eager.numpy(), rtol=1e-10, atol=1e-10)
    # Batched result equals the per-variable results.
    single = igr_i_log_pmf(loc[1, 2], scale[1, 2], delta=0.7)
    np.testing.assert_allclose(eager[1, 2].numpy(), single.numpy(), rtol=1e-12, atol=1e-12)
    # float32 in, float32 out, close to the float64 computation.
    f32 = igr_i_log_pmf(tf.cast(loc, tf.float32), tf.cast(scale, tf.float32), delta=0.7)
    assert f32.dtype == tf.float32
    np.testing.assert_allclose(np.exp(f32.numpy()), np.exp(eager.numpy()), atol=1e-6)


# ------------------------------------------------------------------------------- priors


def test_uniform_prior_loc_value_and_uniformity():
    mu0 = uniform_prior_loc(10)
    assert abs(mu0 - (-0.753)) < 5e-4
    q = _pmf(np.full(9, mu0), np.ones(9))
    np.testing.assert_allclose(q, 0.1, atol=1e-9)
    for k, delta, scale in [(3, 1.0, 1.0), (10, 1.0, 1.0), (7, 0.5, 2.0)]:
        mu0 = uniform_prior_loc(k, delta=delta, scale=scale)
        freq = _mc_igr_i(np.full(k - 1, mu0), np.full(k - 1, scale), delta, 1_000_000, seed=k)
        np.testing.assert_allclose(freq, 1.0 / k, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_categories": 1}, "num_categories.*>= 2"),
        ({"num_categories": 0}, "num_categories.*>= 2"),
        ({"num_categories": 2.5}, "num_categories.*>= 2"),
        ({"num_categories": 5, "delta": 0.0}, "delta.*> 0"),
        ({"num_categories": 5, "delta": -1.0}, "delta.*> 0"),
        ({"num_categories": 5, "scale": 0.0}, "scale.*> 0"),
        ({"num_categories": 5, "scale": float("nan")}, "scale.*> 0"),
    ],
)
def test_uniform_prior_loc_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        uniform_prior_loc(**kwargs)


def test_bad_inputs_other_functions():
    with pytest.raises(ValueError, match="num_categories.*>= 2"):
        fit_stick_breaking_prior(1)
    with pytest.raises(ValueError, match="scale.*> 0"):
        fit_stick_breaking_prior(4, scale=-1.0)
    with pytest.raises(ValueError, match=r"scale.*\[0.25, 4.0\]"):
        fit_stick_breaking_prior(4, scale=10.0)
    with pytest.raises(ValueError, match="tol.*> 0"):
        fit_stick_breaking_prior(4, tol=0.0)
    with pytest.raises(ValueError, match="loc.*finite 1-D"):
        stick_breaking_pmf([[0.0, 1.0]])
    with pytest.raises(ValueError, match="loc.*finite 1-D"):
        stick_breaking_pmf([0.0, np.nan])
    with pytest.raises(ValueError, match="scale.*one per stick"):
        stick_breaking_pmf([0.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="scale.*> 0"):
        stick_breaking_pmf([0.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="num_nodes"):
        igr_i_log_pmf(SPEC_LOC, SPEC_SCALE, num_nodes=4)
    with pytest.raises(ValueError, match="delta"):
        igr_i_log_pmf(SPEC_LOC, SPEC_SCALE, delta=0.0)


def _mc_stick_breaking(loc, scale, n, seed, chunk=100_000) -> np.ndarray:
    """Frequencies of argmax eta for IGR-SB (z ~ N(loc, scale^2)), in log space."""
    rng = np.random.default_rng(seed)
    k = loc.size + 1
    counts = np.zeros(k)
    for start in range(0, n, chunk):
        z = loc + scale * rng.standard_normal((min(chunk, n - start), k - 1))
        log_v = -np.logaddexp(0.0, -z)
        log_1mv = -np.logaddexp(0.0, z)
        rest = np.concatenate([np.zeros((z.shape[0], 1)), np.cumsum(log_1mv, axis=1)], axis=1)
        log_eta = np.concatenate([log_v, np.zeros((z.shape[0], 1))], axis=1) + rest
        counts += np.bincount(log_eta.argmax(axis=1), minlength=k)
    return counts / n


def _assert_frequencies(freq, pmf, n):
    """Every frequency within z standard errors of its probability, z family-wise at 1e-3.

    z = Phi^-1(1 - 0.0005 / K) (Sidak over the K categories): 4.1 for K = 10, 4.6 for K = 100,
    the two-sided family-wise equivalent of 3.3 standard errors for one category.
    """
    se = np.sqrt(pmf * (1.0 - pmf) / n)
    z = -special.ndtri(0.0005 / pmf.size)
    assert np.all(np.abs(freq - pmf) <= z * se + 1.0 / n), np.max(np.abs(freq - pmf) / se)


@pytest.mark.parametrize("scale", [0.8, "per stick"])
def test_stick_breaking_pmf_against_monte_carlo(scale):
    rng = np.random.default_rng(8)
    loc = rng.normal(-1.0, 1.0, 6)
    scale = 0.8 if scale == 0.8 else np.exp(rng.normal(0.0, 0.5, 6))
    pmf = stick_breaking_pmf(loc, scale)
    assert abs(pmf.sum() - 1.0) < 5e-6  # generic (large) sticks: ~1e-6, see the docstring
    n = 400_000
    _assert_frequencies(_mc_stick_breaking(loc, scale, n, seed=9), pmf, n)


def test_stick_breaking_pmf_symmetries():
    # K = 2: category 1 wins iff v > 1/2 iff z > 0.
    np.testing.assert_allclose(
        stick_breaking_pmf([0.7], 1.3),
        [special.ndtr(0.7 / 1.3)] * 1 + [special.ndtr(-0.7 / 1.3)],
        rtol=1e-14,
    )
    # The last two categories are exchangeable when the last stick is centred (z -> -z).
    rng = np.random.default_rng(3)
    for k in (3, 8, 40):
        loc = np.append(rng.normal(-1.5, 1.0, k - 2), 0.0)
        pmf = stick_breaking_pmf(loc, 1.0)
        assert abs(pmf[-1] - pmf[-2]) < 1e-7 * k, (k, pmf[-2:])
        assert abs(pmf.sum() - 1.0) < 5e-6


def test_stick_breaking_prior_two_categories_is_exact():
    loc = fit_stick_breaking_prior(2)
    np.testing.assert_array_equal(loc, [0.0])
    np.testing.assert_allclose(stick_breaking_pmf(loc), [0.5, 0.5], rtol=1e-15)


@pytest.mark.parametrize(
    "k, scale, n", [(4, 1.0, 10**6), (10, 1.0, 2 * 10**6), (5, 0.5, 10**6), (5, 2.0, 10**6)]
)
def test_fit_stick_breaking_prior_uniform_monte_carlo(k, scale, n):
    mu0 = fit_stick_breaking_prior(k, scale=scale)
    assert mu0.dtype == np.float64 and mu0.shape == (k - 1,)
    assert mu0[-1] == 0.0  # categories K-1 and K are exchangeable
    np.testing.assert_array_equal(mu0, fit_stick_breaking_prior(k, scale=scale))  # deterministic
    freq = _mc_stick_breaking(mu0, scale, n, seed=2024 + k)
    _assert_frequencies(freq, np.full(k, 1.0 / k), n)
    # Resolution: K = 10, n = 2e6: 4.1 se = 8.7e-4 in q, 0.0087 in K q; K = 5, n = 1e6: 0.0080.
    # Both are below the claim, max_k |K q_k - 1| <= 0.01.


def test_fit_stick_breaking_prior_uniform_100():
    k = 100
    mu0 = fit_stick_breaking_prior(k)
    # The claim, on a grid twice as fine with more nodes and fresh tables (not the fit's sweeps).
    pmf = stick_breaking_pmf(mu0, 1.0, grid_step=0.02, num_nodes=24)
    assert abs(pmf.sum() - 1.0) < 1e-6
    assert np.max(np.abs(k * pmf - 1.0)) <= 0.01, np.max(np.abs(k * pmf - 1.0))


def test_fit_stick_breaking_prior_uniform_1000():
    k = 1000
    mu0 = fit_stick_breaking_prior(k)
    assert mu0[-1] == 0.0 and np.all(np.diff(mu0) > 0)  # later sticks take more of the rest
    pmf = stick_breaking_pmf(mu0, 1.0, grid_step=0.02, num_nodes=24)
    assert abs(pmf.sum() - 1.0) < 1e-6
    assert np.max(np.abs(k * pmf - 1.0)) <= 0.01, np.max(np.abs(k * pmf - 1.0))


def test_fit_reports_an_unreachable_tolerance():
    with pytest.raises(ValueError, match=r"num_categories=10.*max_k \|K q_k - 1\| = .*tol=1e-12"):
        fit_stick_breaking_prior(10, tol=1e-12)


def test_fit_failures_are_memoized(monkeypatch):
    sweeps = []
    real_sweep = _stick_breaking._sweep

    def counting_sweep(*args):
        sweeps.append(1)
        return real_sweep(*args)

    monkeypatch.setattr(_stick_breaking, "_sweep", counting_sweep)
    monkeypatch.setattr(_stick_breaking, "_MAX_ITERATIONS", 1)
    _stick_breaking._fit_cached.cache_clear()
    try:
        with pytest.raises(ValueError, match="did not converge for num_categories=7"):
            fit_stick_breaking_prior(7)
        first = len(sweeps)
        with pytest.raises(ValueError, match="did not converge"):
            fit_stick_breaking_prior(7)
        assert first == 1 and len(sweeps) == first  # the failure was not recomputed
    finally:
        _stick_breaking._fit_cached.cache_clear()
