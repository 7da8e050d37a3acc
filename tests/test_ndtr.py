"""igr_tf._ndtr (the quadrature's log Phi) against scipy and numpy, which compute it another way."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from scipy import special

from igr_tf import _ndtr

U_MODERATE = np.linspace(-40.0, 40.0, 160_001)
U_FAR = -np.geomspace(40.0, 1e12, 4000)


def _mills_reference(u: np.ndarray) -> np.ndarray:
    """phi(u)/Phi(u) = 1/(sqrt(2 pi) erfcx(-u/sqrt 2)/2), from scipy's erfcx."""
    return 1.0 / (math.sqrt(2.0 * math.pi) * 0.5 * special.erfcx(-u / math.sqrt(2.0)))


def test_log_ndtr_matches_scipy():
    got = _ndtr.log_ndtr(tf.constant(U_MODERATE)).numpy()
    np.testing.assert_allclose(got, special.log_ndtr(U_MODERATE), rtol=0, atol=5e-12)
    far = _ndtr.log_ndtr(tf.constant(U_FAR)).numpy()
    np.testing.assert_allclose(far, special.log_ndtr(U_FAR), rtol=1e-14, atol=0)


def test_mills_ratio_and_gradient_match_scipy():
    # Above u = 37 the ratio (< e^-684) is only bounded: exp is clamped at e^-690 (no subnormals).
    upper = np.linspace(37.0, 1e3, 1000)
    assert np.all(np.abs(_ndtr.mills_ratio(tf.constant(upper)).numpy()) < 1e-290)
    u = np.concatenate([U_MODERATE[U_MODERATE <= 37.0], U_FAR, [0.0]])
    ref = _mills_reference(u)
    np.testing.assert_allclose(_ndtr.mills_ratio(tf.constant(u)).numpy(), ref, rtol=1e-11)
    x = tf.constant(u)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = _ndtr.log_ndtr(x)
    # d/du log Phi(u) = phi(u)/Phi(u), including at u = 0 exactly (where |u| has no slope).
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), ref, rtol=1e-9, atol=1e-290)


def test_sum_log_ndtr_unrolled_grouped_and_reduced():
    rng = np.random.default_rng(0)
    for num in (1, 5, 20, 40):  # one group; two groups; the reduction path (> 32)
        u = rng.normal(0.0, 10.0, (3, num, 7))
        got = _ndtr.sum_log_ndtr(tf.constant(u), axis=-2).numpy()
        ref = special.log_ndtr(u).sum(axis=-2)
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-10)


def test_exp_of_moderate_matches_numpy():
    v = np.concatenate([np.linspace(-690.0, 700.0, 1_000_001), -np.geomspace(1e-12, 690.0, 1000)])
    got = _ndtr.exp_of_moderate(tf.constant(v)).numpy()
    np.testing.assert_allclose(got, np.exp(v), rtol=1e-15)


def test_shipped_coefficients_are_the_fit():
    np.testing.assert_allclose(_ndtr.fit_coefficients(), np.array(_ndtr._POLY), rtol=0, atol=1e-12)


def test_quadrature_coefficients_are_the_degree_13_fit():
    np.testing.assert_allclose(
        _ndtr.fit_coefficients(13), np.array(_ndtr._POLY_QUADRATURE), rtol=0, atol=1e-12
    )


def test_sum_log_ndtr_affine_loop_and_fallback():
    """Competitor-leading r, b [J, ...]; the unrolled loop (J <= 32) uses the quadrature's
    cheaper polynomials: |error| < 5e-10 per term; the broadcast fallback (J > 32) full accuracy.
    """
    rng = np.random.default_rng(1)
    for num in (3, 20, 40):  # one group; two groups of the product; the broadcast path (> 32)
        r = np.exp(rng.normal(0.0, 1.0, (num, 2, 4)))
        b = rng.normal(0.0, 5.0, (num, 2, 4))
        x = rng.normal(0.0, 3.0, (2, 4, 6))
        got = _ndtr.sum_log_ndtr_affine(tf.constant(r), tf.constant(b), tf.constant(x)).numpy()
        ref = special.log_ndtr(r[..., None] * x[None] + b[..., None]).sum(axis=0)
        atol = 1e-10 if num > 32 else 5e-10 * num
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=atol)
    # Per term, over the whole range, including the far tail (relative there).
    u = np.concatenate([U_MODERATE, U_FAR])
    r, x = tf.ones((1, u.size), tf.float64), tf.zeros((u.size, 1), tf.float64)
    got = _ndtr.sum_log_ndtr_affine(r, tf.constant(u[None]), x).numpy()[:, 0]
    ref = special.log_ndtr(u)
    np.testing.assert_allclose(got, ref, rtol=5e-10, atol=5e-10)
