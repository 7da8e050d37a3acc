"""Tests of igr_tf.approx: target pmfs against closed forms, fitting with IGR-SB and GS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from igr_tf import approx


def test_targets_are_pmfs() -> None:
    assert set(approx.TARGETS) >= {"poisson_20", "binomial", "negative_binomial", "discrete"}
    for name, pmf in approx.TARGETS.items():
        assert pmf.ndim == 1 and np.all(pmf > 0), name
        assert pmf.sum() == pytest.approx(1.0, abs=1e-12), name
    assert approx.TARGETS["poisson_100"].size == 100


def test_targets_match_closed_forms() -> None:
    # Binomial(12, 0.3): the whole support, no truncation.
    binom = [math.comb(12, k) * 0.3**k * 0.7 ** (12 - k) for k in range(13)]
    np.testing.assert_allclose(approx.binomial(12, 0.3), binom, rtol=1e-12)
    # Poisson(50) on 0..19, renormalized; exact rational weights 50^k / k!.
    w = np.array([50.0**k / math.factorial(k) for k in range(20)])
    np.testing.assert_allclose(approx.poisson(50.0, 20), w / w.sum(), rtol=1e-10)
    # K large enough that truncation is negligible: the usual moments.
    pois = approx.poisson(3.0, 60)
    assert (np.arange(60) * pois).sum() == pytest.approx(3.0, rel=1e-10)
    # Negative binomial: C(k+r-1, k) p^k (1-p)^r with integer r (math.comb); mean r p/(1-p).
    nb = [math.comb(k + 49, k) * 0.6**k * 0.4**50 for k in range(30)]
    np.testing.assert_allclose(
        approx.negative_binomial(50, 0.6, 30), np.array(nb) / sum(nb), rtol=1e-9
    )
    full = approx.negative_binomial(50, 0.6, 400)
    assert (np.arange(400) * full).sum() == pytest.approx(50 * 0.6 / 0.4, rel=1e-8)
    np.testing.assert_allclose(approx.discrete() * 46, [10, 1, 5, 1, 10, 10, 1, 6, 1, 1])
    assert approx.total_variation([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


# Measured (seeds 0-2, S = 2000, 100 steps, "discrete" target, whose TV from the uniform start
# is 0.39): final loss IGR-SB 0.003-0.005, GS 0.039-0.042 (from ~0.38); argmax TV IGR-SB
# 0.03-0.05, GS 0.087-0.096. The TV of 2000 argmax draws has sampling noise of ~0.02 on its
# own, so the bounds below leave that much room over the worst run.
@pytest.mark.parametrize(("relaxation", "max_tv"), [("igr_sb", 0.08), ("gs", 0.13)])
def test_fit_discrete_target(relaxation: str, max_tv: float) -> None:
    target = approx.TARGETS["discrete"]
    result = approx.fit_approximation(relaxation, target, steps=100, num_samples=2000, seed=0)
    assert result.losses.shape == (100,)
    assert np.all(np.isfinite(result.losses))  # no NaN even at IGR-SB's τ = 0.01
    assert result.losses[-10:].mean() < 0.15 * result.losses[0]
    assert result.total_variation < max_tv
    assert result.pmf_estimate.sum() == pytest.approx(1.0, abs=1e-5)
    # At small τ the relaxed samples are nearly one-hot: their mean ≈ the argmax frequencies.
    assert approx.total_variation(result.pmf_estimate, result.argmax_pmf) < 0.03
    expected = {"igr_sb": 18, "gs": 10}[relaxation]
    assert result.params["params"].shape == (1, expected)


def test_igr_sb_starts_uniform_and_jit_compiles() -> None:
    target = approx.TARGETS["binomial"]
    # Zero steps: the reported pmf is that of the initial parameters (the uniform prior).
    n = 20_000
    start = approx.fit_approximation("igr_sb", target, steps=0, num_samples=n, seed=1)
    assert start.losses.shape == (0,)
    se = np.sqrt((1 / 13) * (12 / 13) / n)
    np.testing.assert_allclose(start.argmax_pmf, np.full(13, 1 / 13), atol=4 * se)
    # XLA works. Its Philox stream differs from the CPU kernels' for the same seed, so the first
    # step's loss (same initial parameters) is compared with the spread of eager losses over seeds.
    xla = approx.fit_approximation("igr_sb", target, steps=1, num_samples=2000, jit_compile=True)
    eager = np.array(
        [approx.fit_approximation("igr_sb", target, steps=1, num_samples=2000, seed=s).losses[0]
         for s in range(4)]
    )  # fmt: skip
    assert np.isfinite(xla.losses[0])
    assert abs(xla.losses[0] - eager.mean()) < 4 * eager.std(ddof=1) * np.sqrt(1 + 1 / 4)


def test_planar_and_igr_i_fit() -> None:
    target = approx.TARGETS["discrete"]
    for name in ("igr_i", "igr_planar"):
        r = approx.fit_approximation(name, target, 0.01, steps=30, num_samples=500, seed=2)
        assert np.all(np.isfinite(r.losses)) and r.losses[-5:].mean() < r.losses[0]
    assert set(r.params) == {
        "params",
        "planar_w0",
        "planar_u0",
        "planar_b0",
        "planar_w1",
        "planar_u1",
        "planar_b1",
    }


def test_bad_target() -> None:
    with pytest.raises(ValueError, match="target_pmf"):
        approx.fit_approximation("gs", [1.0], steps=1)
    with pytest.raises(ValueError, match="relaxation"):
        approx.fit_approximation("nope", [0.5, 0.5], steps=1)
