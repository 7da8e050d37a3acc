"""Tests for igr_tf.categorical against independent routes (Monte Carlo, fine-grid trapezoid)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

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
    cases = [(SPEC_LOC, SPEC_SCALE, 1.0)]
    cases += [
        (m, s, d) for (m, s), d in zip(_random_cases(3, seed=5), [1.0, 0.3, 3.0], strict=True)
    ]
    for loc, scale, delta in cases:
        ref = _trapezoid_reference(loc, scale, delta)
        assert abs(ref.sum() - 1) < 1e-9  # the reference itself is converged
        raw = _pmf(loc, scale, delta, renormalize=False)
        assert np.max(np.abs(raw - ref)) < 1e-8, np.max(np.abs(raw - ref))
        assert abs(raw.sum() - 1) < 1e-6
        norm = _pmf(loc, scale, delta)
        assert np.max(np.abs(norm - ref)) < 1e-8
        assert abs(norm.sum() - 1) < 1e-12


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
    xla = tf.function(lambda a, b: igr_i_log_pmf(a, b, delta=0.7), jit_compile=True)(loc, scale)
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
    with pytest.raises(ValueError, match="num_nodes"):
        igr_i_log_pmf(SPEC_LOC, SPEC_SCALE, num_nodes=1)
    with pytest.raises(ValueError, match="delta"):
        igr_i_log_pmf(SPEC_LOC, SPEC_SCALE, delta=0.0)


def _mc_stick_breaking(loc, scale, n, seed, chunk=500_000) -> np.ndarray:
    """Frequencies of argmax eta for IGR-SB, in log space."""
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


def test_stick_breaking_pmf_against_monte_carlo():
    rng = np.random.default_rng(8)
    loc = rng.normal(-1.0, 1.0, 6)
    pmf = stick_breaking_pmf(loc, 0.8)
    assert abs(pmf.sum() - 1) < 1e-4
    n = 400_000
    freq = _mc_stick_breaking(loc, 0.8, n, seed=9)
    assert np.all(np.abs(freq - pmf) <= 3 * np.sqrt(pmf * (1 - pmf) / n) + 1e-4)


@pytest.mark.parametrize("k, scale", [(4, 1.0), (10, 1.0)])
def test_fit_stick_breaking_prior_uniform(k, scale):
    mu0 = fit_stick_breaking_prior(k, scale=scale)
    assert mu0.dtype == np.float64 and mu0.shape == (k - 1,)
    np.testing.assert_array_equal(mu0, fit_stick_breaking_prior(k, scale=scale))  # deterministic
    assert abs(mu0[-1]) < 1e-3  # categories K-1 and K are exchangeable
    # c < K are solved to 1e-9; P(K) carries the quadrature's ~1e-5 sum error.
    np.testing.assert_allclose(stick_breaking_pmf(mu0, scale), 1.0 / k, atol=2e-5)
    freq = _mc_stick_breaking(mu0, scale, 2_000_000, seed=2024 + k)
    np.testing.assert_allclose(freq, 1.0 / k, atol=1e-3)
