"""Tests for igr_tf.perturbations.grid and .lowrank against enumeration and quadrature.

Independent routes: brute-force enumeration of every configuration in NumPy float64 (log Z,
MAP, Gibbs probabilities); two-dimensional quadrature for the exact value of the upper bound
U(α) on a two-variable model; chi-square tests of the sequential sampler's accepted samples.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf
from test_perturbations import chi_square_p_value

from igr_tf.perturbations import grid, lowrank


def enumerate_log_potentials(model: grid.GridModel) -> tuple[np.ndarray, np.ndarray]:
    """(configurations [K^n, H, W], φ [K^n]) by brute force from the model's tables."""
    unary = model.unary.numpy().astype(np.float64)
    horizontal = model.horizontal.numpy().astype(np.float64)
    vertical = model.vertical.numpy().astype(np.float64)
    h, w, k = unary.shape
    xs = np.array(list(itertools.product(range(k), repeat=h * w))).reshape(-1, h, w)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    phi = unary[rows, cols, xs].sum(axis=(1, 2))
    r, c = np.meshgrid(np.arange(h), np.arange(w - 1), indexing="ij")
    phi += horizontal[r, c, xs[:, :, :-1], xs[:, :, 1:]].sum(axis=(1, 2))
    r, c = np.meshgrid(np.arange(h - 1), np.arange(w), indexing="ij")
    phi += vertical[r, c, xs[:, :-1, :], xs[:, 1:, :]].sum(axis=(1, 2))
    return xs, phi


MODELS = {
    "ising4x4-attractive-weak": lambda: grid.ising_grid(4, 4, coupling=0.5, seed=1),
    "ising4x4-attractive-strong": lambda: grid.ising_grid(4, 4, coupling=3.0, seed=2),
    "ising4x4-mixed-strong": lambda: grid.ising_grid(
        4, 4, coupling=3.0, interaction="mixed", seed=3
    ),
    "potts3x3-k3": lambda: grid.potts_grid(3, 3, 3, coupling=2.0, seed=4),
    "potts3x3-k3-mixed": lambda: grid.potts_grid(
        3, 3, 3, field=0.5, coupling=2.0, interaction="mixed", seed=5
    ),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_and_truth(request):
    model = MODELS[request.param]()
    xs, phi = enumerate_log_potentials(model)
    return model, xs, phi


def test_exact_log_partition_and_map_match_enumeration(model_and_truth):
    model, xs, phi = model_and_truth
    np.testing.assert_allclose(model.log_partition(), np.logaddexp.reduce(phi), rtol=1e-6)
    np.testing.assert_allclose(model.map_value(), phi.max(), rtol=1e-6)
    np.testing.assert_allclose(model.log_potential(xs[::97]), phi[::97], rtol=1e-5, atol=1e-4)
    clamp = -np.ones((model.height, model.width), np.int32)
    clamp[0, 1], clamp[-1, -1] = 1, 0
    agree = (xs[:, 0, 1] == 1) & (xs[:, -1, -1] == 0)
    np.testing.assert_allclose(
        model.log_partition(clamp), np.logaddexp.reduce(phi[agree]), rtol=1e-6
    )
    np.testing.assert_allclose(model.map_value(clamp=clamp), phi[agree].max(), rtol=1e-6)


def test_bounds_hold(model_and_truth):
    """U(α) ≥ log Z ≥ L(α) (up to 3 Monte Carlo SE), and the deterministic bound exactly."""
    model, _, phi = model_and_truth
    log_z = float(np.logaddexp.reduce(phi))
    for i, alpha in enumerate((-0.2, 0.0, 1.0)):
        upper = lowrank.upper_bound(model, alpha, num_samples=2000, seed=[1, i])
        assert float(upper.estimate) > log_z - 3 * float(upper.standard_error), alpha
    marginal = float(lowrank.max_marginal_lower_bound(model))
    assert marginal <= log_z + 1e-5
    for i, alpha in enumerate((-2.0, 0.0, 1.0)):
        lower = lowrank.lower_bound(model, alpha, num_samples=2000, seed=[2, i])
        # L(α) ≤ (1/n) Σ_i log Z_i ≤ max_i log Z_i (proved in lowrank's docstring).
        assert float(lower.estimate) < marginal + 3 * float(lower.standard_error), alpha


def test_strong_coupling_bounds_are_strict():
    """On a strongly coupled grid the bounds are clearly separated from log Z (not just noise)."""
    model = MODELS["ising4x4-attractive-strong"]()
    log_z = float(model.log_partition())
    for alpha in (0.0, 1.0):
        upper = lowrank.upper_bound(model, alpha, num_samples=2000, seed=[3, 3])
        assert float(upper.estimate) - 3 * float(upper.standard_error) > log_z + 0.1
        lower = lowrank.lower_bound(model, alpha, num_samples=2000, seed=[4, 4])
        assert float(lower.estimate) + 3 * float(lower.standard_error) < log_z - 0.05


def test_independent_variables_make_the_upper_bound_exact():
    """No couplings: Y is a sum of independent Gumbel(log Z_i), so U(α) = log Z for every α."""
    model = grid.ising_grid(3, 3, field=2.0, coupling=0.0, seed=7, dtype=tf.float64)
    log_z = float(model.log_partition())
    for alpha in (-0.3, 0.0, 0.7):
        upper = lowrank.upper_bound(model, alpha, num_samples=4000, seed=[5, 5])
        assert abs(float(upper.estimate) - log_z) < 3 * float(upper.standard_error)


def _two_variable_upper_bounds(phi: np.ndarray, alphas) -> list[float]:
    """U(α) for φ(x1, x2) by quadrature (float64): x2's perturbation integrated in closed form.

    E e^{-αY} = Γ(1+α) E_{G1}[(Σ_{x2} e^{W(x2)})^{-α}], W(x2) = max_{x1} φ(x1, x2) + G1(x1),
    integrated over the two Gumbels G1(0), G1(1) on a fine grid.
    """
    g = np.linspace(-4.0, 32.0, 2401)
    density = np.exp(-g - np.exp(-g))
    g0, g1 = np.meshgrid(g, g, indexing="ij")
    w = np.maximum(phi[0][None, None, :] + g0[..., None], phi[1][None, None, :] + g1[..., None])
    log_sum = np.logaddexp.reduce(w, axis=-1)
    weights = density[:, None] * density[None, :]

    def integral(values):
        return np.trapezoid(np.trapezoid(values * weights, g, axis=1), g)

    bounds = []
    for alpha in alphas:
        if alpha == 0:  # U(0) = E[Y] − 2γ with E[Y] = E[log Σ e^{W}] + γ
            bounds.append(integral(log_sum) - np.euler_gamma)
        else:
            expectation = math.gamma(1 + alpha) * integral(np.exp(-alpha * log_sum))
            bounds.append(2 * math.lgamma(1 + alpha) / alpha - math.log(expectation) / alpha)
    return bounds


@pytest.mark.parametrize("coupling", [0.5, 3.0])
def test_upper_bound_against_quadrature(coupling):
    unary = np.array([[[0.3, -0.2], [0.1, 0.6]]])
    pair = coupling * np.array([[[[1.0, -1.0], [-1.0, 1.0]]]])
    model = grid.GridModel(unary, pair, np.zeros((0, 2, 2, 2)))
    phi = unary[0, 0][:, None] + unary[0, 1][None, :] + pair[0, 0]
    alphas = (-0.3, 0.0, 1.0, 2.0)
    exact_bounds = _two_variable_upper_bounds(phi, alphas)
    for i, (alpha, exact) in enumerate(zip(alphas, exact_bounds, strict=True)):
        assert exact >= float(np.logaddexp.reduce(phi.ravel())) - 1e-9  # the bound holds
        upper = lowrank.upper_bound(model, alpha, num_samples=20_000, seed=[6, i])
        assert abs(float(upper.estimate) - exact) < 3 * float(upper.standard_error), alpha


def _gibbs(model):
    xs, phi = enumerate_log_potentials(model)
    return xs, np.exp(phi - np.logaddexp.reduce(phi))


def _codes(samples: np.ndarray, k: int) -> np.ndarray:
    flat = samples.reshape(len(samples), -1)
    return flat @ (k ** np.arange(flat.shape[1])[::-1])


@pytest.mark.parametrize(
    "shape, coupling, alpha",
    [((2, 2), 2.0, 0.0), ((2, 2), 2.0, 1.0), ((2, 2), 1.0, -0.2), ((2, 3), 1.5, 0.0)],
)
def test_sequential_sampler_is_exact(shape, coupling, alpha):
    model = grid.ising_grid(*shape, coupling=coupling, seed=5, dtype=tf.float64)
    out = lowrank.sequential_sample(
        model, alpha, num_chains=12_000, num_samples=2000, margin=0.1, seed=[7, 7]
    )
    accepted = out.accepted.numpy()
    assert not out.clipped.numpy().any()
    _, probs = _gibbs(model)
    counts = np.bincount(_codes(out.samples.numpy()[accepted], 2), minlength=probs.size)
    assert chi_square_p_value(counts, probs) > 1e-3
    # Acceptance rate = Z e^{-Ũ(∅)} exactly (Ũ: the margin-raised estimate it started from).
    rate = math.exp(float(model.log_partition()) - float(out.log_upper))
    se = math.sqrt(rate * (1 - rate) / accepted.size)
    assert abs(accepted.mean() - rate) < 3 * se


def test_sequential_sampler_reports_clipping_without_margin():
    """Nearly tight bounds (weak coupling) and no margin: estimation noise breaks
    self-reducibility somewhere, and the sampler says so instead of returning biased draws
    silently."""
    model = grid.ising_grid(2, 2, coupling=0.3, seed=5, dtype=tf.float64)
    out = lowrank.sequential_sample(
        model, 0.0, num_chains=4000, num_samples=200, margin=0.0, seed=[0, 1]
    )
    assert out.clipped.numpy().any()


def test_int_seeds_are_reproducible():
    first, second = grid.ising_grid(3, 3, seed=4), grid.ising_grid(3, 3, seed=4)
    np.testing.assert_array_equal(first.horizontal, second.horizontal)
    assert not np.array_equal(first.unary, grid.ising_grid(3, 3, seed=5).unary)
    np.testing.assert_array_equal(
        lowrank.upper_bound(first, 0.3, num_samples=50, seed=7).estimate,
        lowrank.upper_bound(second, 0.3, num_samples=50, seed=7).estimate,
    )


def test_bounds_and_sampler_work_in_tf_function():
    model = grid.ising_grid(3, 3, coupling=1.0, seed=1)
    upper = tf.function(lambda s: lowrank.upper_bound(model, 0.5, num_samples=64, seed=s))
    eager = lowrank.upper_bound(model, 0.5, num_samples=64, seed=[1, 2])
    np.testing.assert_allclose(upper(tf.constant([1, 2])).estimate, eager.estimate, rtol=1e-6)
    lower = tf.function(
        lambda: lowrank.lower_bound(model, -1.0, num_samples=64, seed=[3, 3]).estimate,
        jit_compile=True,
    )
    assert float(lower()) < float(model.log_partition())
    sampler = tf.function(
        lambda s: lowrank.sequential_sample(model, num_chains=50, num_samples=64, seed=s)
    )
    out = sampler(tf.constant([1, 2]))
    assert out.samples.shape == (50, 3, 3) and out.accepted.dtype == tf.bool


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: grid.ising_grid(0, 3), "height"),
        (lambda: grid.ising_grid(3, 3, coupling=-1.0), "coupling"),
        (lambda: grid.ising_grid(3, 3, interaction="ferro"), "interaction"),
        (lambda: grid.potts_grid(3, 3, 1), "num_states"),
        (lambda: grid.ising_grid(13, 2), "joint states"),
        (
            lambda: grid.GridModel(np.zeros((2, 2, 2)), np.zeros((2, 2, 2, 2)), np.zeros(0)),
            "horizontal",
        ),
        (lambda: lowrank.upper_bound(grid.ising_grid(2, 2), -1.0), "alpha"),
        (lambda: lowrank.upper_bound(grid.ising_grid(2, 2), num_samples=0), "num_samples"),
        (lambda: lowrank.sequential_sample(grid.ising_grid(2, 2), margin=-0.1), "margin"),
    ],
)
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
