"""Tests for igr_tf.boltzmann: the RBM's energy, exact log Z, AIS, block Gibbs sampling, the PCD
gradient of log Z and the Keras layer, each against brute-force enumeration of every state (numpy,
written from the definition E(z1, z2) = −aᵀz1 − bᵀz2 − z1ᵀWz2, not from the library's formulas)."""

from __future__ import annotations

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

from igr_tf import boltzmann  # noqa: E402


# --- brute force (numpy, from the definition) ----------------------------------------------------
def all_states(n: int) -> np.ndarray:
    """Every binary vector of length n, `[2^n, n]`, in itertools.product order."""
    if n <= 12:
        return np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1  # the same order, faster
    return bits.astype(np.float64)


def brute_energy(z1, z2, a, b, w) -> np.ndarray:
    """−Σ_i a_i z1_i − Σ_j b_j z2_j − Σ_ij z1_i W_ij z2_j, one term at a time."""
    e = np.zeros(z1.shape[0])
    for i in range(len(a)):
        e -= a[i] * z1[:, i]
    for j in range(len(b)):
        e -= b[j] * z2[:, j]
    for i in range(len(a)):
        for j in range(len(b)):
            e -= z1[:, i] * w[i, j] * z2[:, j]
    return e


class Enumerated:
    """Every joint state of a small RBM with its probability."""

    def __init__(self, a, b, w):
        self.n1, self.n2 = len(a), len(b)
        s = all_states(self.n1 + self.n2)
        self.z1, self.z2 = s[:, : self.n1], s[:, self.n1 :]
        neg_e = -brute_energy(self.z1, self.z2, a, b, w)
        self.log_z = logsumexp(neg_e)
        self.p = np.exp(neg_e - self.log_z)

    def mean(self, f) -> np.ndarray:
        return np.tensordot(self.p, f, axes=(0, 0))


def random_params(n1, n2, scale=1.0, seed=0, dtype=np.float64) -> boltzmann.RBMParams:
    rng = np.random.default_rng(seed)
    return boltzmann.as_params(
        rng.normal(size=n1).astype(dtype) * 0.5,
        rng.normal(size=n2).astype(dtype) * 0.5,
        rng.normal(size=(n1, n2)).astype(dtype) * scale,
    )


def numpy_params(params):
    return [np.asarray(p, np.float64) for p in params]


# --- energy --------------------------------------------------------------------------------------
def test_energy_on_binary_states_is_the_brute_force_energy():
    params = random_params(4, 3, seed=1)
    enum = Enumerated(*numpy_params(params))
    got = boltzmann.energy(enum.z1, enum.z2, params).numpy()
    np.testing.assert_allclose(got, brute_energy(enum.z1, enum.z2, *numpy_params(params)), 1e-12)


def test_relaxed_energy_is_the_mean_discrete_energy_under_independent_bernoullis():
    """E(ζ) = E_{z ~ Bernoulli(ζ)}[E(z)]: the energy is multilinear, so its value on relaxed
    inputs in [0, 1] is the expected energy of independent binary units with those means (and it
    agrees with the discrete energy at the vertices)."""
    params = random_params(3, 4, seed=2)
    a, b, w = numpy_params(params)
    rng = np.random.default_rng(3)
    zeta1, zeta2 = rng.uniform(size=3), rng.uniform(size=4)
    enum = Enumerated(a, b, w)
    prob = np.prod(np.where(enum.z1, zeta1, 1 - zeta1), 1) * np.prod(
        np.where(enum.z2, zeta2, 1 - zeta2), 1
    )
    expected = np.sum(prob * brute_energy(enum.z1, enum.z2, a, b, w))
    got = boltzmann.energy(zeta1[None], zeta2[None], params).numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_energy_broadcasts_over_leading_axes_in_float32():
    params = random_params(5, 6, seed=4, dtype=np.float32)
    z = tf.random.uniform([3, 7, 11])
    e = boltzmann.energy(z[..., :5], z[..., 5:], params)
    assert e.shape == (3, 7) and e.dtype == tf.float32
    flat = boltzmann.energy(
        tf.reshape(z[..., :5], [-1, 5]), tf.reshape(z[..., 5:], [-1, 6]), params
    )
    np.testing.assert_allclose(e.numpy().ravel(), flat.numpy(), rtol=1e-6)


# --- exact log Z ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(8, 8), (9, 6), (5, 10)])
def test_exact_log_partition_against_brute_force(sizes):
    """Summing one group out analytically (the smaller one, either side) against the sum over
    all 2^(n1+n2) joint states."""
    params = random_params(*sizes, seed=5)
    enum = Enumerated(*numpy_params(params))
    assert float(boltzmann.exact_log_partition(params)) == pytest.approx(enum.log_z, abs=1e-10)


def test_exact_log_partition_in_chunks_against_numpy_enumeration():
    """Past 2^16 states of the smaller group the sum runs in chunks: 17 + 18 units, against numpy's
    log-sum-exp over the 2^17 states of group 1 with group 2 summed out by hand."""
    params = random_params(17, 18, scale=0.3, seed=6)
    a, b, w = numpy_params(params)
    z1 = all_states(17)
    log_f = z1 @ a + np.sum(np.logaddexp(0.0, b + z1 @ w), axis=1)
    assert float(boltzmann.exact_log_partition(params)) == pytest.approx(logsumexp(log_f), 1e-12)


def test_exact_log_partition_gradient_is_minus_the_mean_energy_gradient():
    """∇ log Z = E_p[−∇E] = (E[z1], E[z2], E[z1 z2ᵀ]), by enumeration."""
    a, b, w = (tf.Variable(p) for p in random_params(6, 5, seed=7))
    with tf.GradientTape() as tape:
        log_z = boltzmann.exact_log_partition(boltzmann.RBMParams(a, b, w))
    ga, gb, gw = tape.gradient(log_z, [a, b, w])
    enum = Enumerated(a.numpy(), b.numpy(), w.numpy())
    np.testing.assert_allclose(ga, enum.mean(enum.z1), atol=1e-12)
    np.testing.assert_allclose(gb, enum.mean(enum.z2), atol=1e-12)
    outer = enum.z1[:, :, None] * enum.z2[:, None, :]
    np.testing.assert_allclose(gw, enum.mean(outer), atol=1e-12)


def test_exact_log_partition_refuses_too_many_states():
    with pytest.raises(ValueError, match="m = 25 > 24.*annealed importance sampling"):
        boltzmann.exact_log_partition(random_params(25, 30, seed=0))


def test_factorial_log_partition_is_the_uncoupled_brute_force():
    params = random_params(4, 5, seed=8)
    a, b, _ = numpy_params(params)
    enum = Enumerated(a, b, np.zeros((4, 5)))
    assert float(boltzmann.factorial_log_partition(params)) == pytest.approx(enum.log_z, 1e-12)


# --- AIS -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def medium():
    """A 16 + 20 RBM whose couplings matter: log Z is 11.2 nats above the biases-only base.
    (16 in the smaller group: its exact log Z sums 2^16 states, 16 times fewer than 20 + 20.)"""
    params = random_params(16, 20, scale=1.3, seed=1)
    exact = float(boltzmann.exact_log_partition(params))
    assert exact - float(boltzmann.factorial_log_partition(params)) > 10
    return params, exact


def test_ais_in_float32_under_tf_function_is_within_three_standard_errors(medium):
    """The estimate traced and in float32 (as a model's weights are), against the float64 exact
    value; the float64 eager path is checked by the calibration test below."""
    params, exact = medium
    params32 = boltzmann.RBMParams(*(tf.cast(p, tf.float32) for p in params))
    run = tf.function(lambda p: boltzmann.ais_log_partition(p, 100, 1000, seed=(3, 4)))
    result = run(params32)
    assert result.log_z.dtype == tf.float32 and result.log_weights.shape == (100,)
    se = float(result.stderr)
    assert 0 < se < 0.05  # small enough that "within 3 SE" is a sharp claim
    assert abs(float(result.log_z) - exact) < 3 * se, (float(result.log_z), exact, se)


def test_ais_standard_error_matches_the_spread_of_independent_runs(medium):
    """Ten independent AIS runs: their z-scores (estimate − exact) / SE have mean square near 1
    (for correct SEs, 10 z² have a χ²₁₀/10 mean: within [0.25, 2.05] with probability 0.99)."""
    params, exact = medium
    runs = [boltzmann.ais_log_partition(params, 50, 300, seed=(11, i)) for i in range(10)]
    z = np.array([(float(r.log_z) - exact) / float(r.stderr) for r in runs])
    assert 0.25 < np.mean(z**2) < 2.05, z


def test_ais_of_an_uncoupled_rbm_is_exact():
    a, b, _ = random_params(6, 7, seed=9)
    params = boltzmann.RBMParams(a, b, tf.zeros([6, 7], tf.float64))
    result = boltzmann.ais_log_partition(params, 20, 10, seed=(0, 1))
    exact = float(boltzmann.factorial_log_partition(params))
    assert float(result.log_z) == pytest.approx(exact, abs=1e-12) and float(result.stderr) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"betas": [0.0, 0.5, 0.4, 1.0]}, "increase strictly from 0 to 1"),
        ({"betas": [0.1, 1.0]}, "increase strictly from 0 to 1"),
        ({"num_betas": 0}, "num_betas"),
        ({"num_chains": 0}, "num_chains"),
    ],
)
def test_ais_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        boltzmann.ais_log_partition(random_params(3, 3), **kwargs)


# --- Gibbs sampling ------------------------------------------------------------------------------
def test_gibbs_marginals_match_enumeration():
    """8 + 8 units, 4000 independent chains after 100 sweeps: every unit's marginal within 3 SE
    of the exact one, and every pairwise moment E[z1_i z2_j] within 4 SE (64 of them: 4 SE keeps
    the chance of a false alarm among all of them near 0.4%)."""
    params = random_params(8, 8, scale=1.0, seed=10)
    enum = Enumerated(*numpy_params(params))
    n = 4000
    z1 = boltzmann.initial_state(n, params, seed=(1, 2))
    z1, z2 = boltzmann.gibbs_chain(z1, params, 100, seed=(3, 4))
    z1, z2 = z1.numpy(), z2.numpy()
    assert set(np.unique(z1)) <= {0.0, 1.0} and set(np.unique(z2)) <= {0.0, 1.0}
    for sample, exact in ((z1, enum.mean(enum.z1)), (z2, enum.mean(enum.z2))):
        se = np.sqrt(exact * (1 - exact) / n)
        assert np.all(np.abs(sample.mean(0) - exact) < 3 * se), (sample.mean(0), exact)
    pair = enum.mean(enum.z1[:, :, None] * enum.z2[:, None, :])
    se = np.sqrt(pair * (1 - pair) / n)
    got = (z1[:, :, None] * z2[:, None, :]).mean(0)
    assert np.all(np.abs(got - pair) < 4 * se), np.max(np.abs(got - pair) / se)


def test_gibbs_chain_is_deterministic_given_its_seed_and_traces():
    params = random_params(5, 4, seed=11, dtype=np.float32)
    z1 = boltzmann.initial_state(10, params, seed=(0, 0))
    eager = boltzmann.gibbs_chain(z1, params, 7, seed=(1, 1))
    traced = tf.function(lambda z: boltzmann.gibbs_chain(z, params, 7, seed=(1, 1)))(z1)
    for e, t in zip(eager, traced, strict=True):
        np.testing.assert_array_equal(e, t)
    other = boltzmann.gibbs_chain(z1, params, 7, seed=(1, 2))
    assert not np.array_equal(eager[0], other[0])
    with pytest.raises(ValueError, match="num_steps"):
        boltzmann.gibbs_chain(z1, params, 0, seed=(1, 1))


def test_extreme_parameters_stay_finite_in_float32():
    rng = np.random.default_rng(12)
    params = boltzmann.as_params(
        np.float32(50) * np.sign(rng.normal(size=6)).astype(np.float32),
        np.float32(-50) * np.ones(5, np.float32),
        np.float32(50) * rng.normal(size=(6, 5)).astype(np.float32),
    )
    assert np.isfinite(float(boltzmann.exact_log_partition(params)))
    result = boltzmann.ais_log_partition(params, 10, 50, seed=(0, 1))
    assert np.isfinite(float(result.log_z)) and np.isfinite(float(result.stderr))
    z1, z2 = boltzmann.gibbs_chain(boltzmann.initial_state(4, params, (0, 0)), params, 3, (0, 1))
    assert np.all(np.isfinite(boltzmann.energy(z1, z2, params).numpy()))


# --- the Keras layer: PCD gradient, factorial mode, serialization ---------------------------------
def layer_with(params, **kwargs) -> boltzmann.RBM:
    a, b, w = numpy_params(params)
    layer = boltzmann.RBM(len(a), len(b), dtype="float64", **kwargs)
    layer.bias1.assign(a)
    layer.bias2.assign(b)
    if layer.coupled:
        layer.coupling.assign(w)
    return layer


def test_persistent_chains_give_the_log_partition_gradient():
    """After the chains have mixed, the surrogate's gradient (value 0) estimates ∇ log Z: every
    component within 4 SE of the exact gradient by enumeration (80 components; see above)."""
    params = random_params(8, 8, scale=1.0, seed=13)
    layer = layer_with(params, num_chains=4000, seed=3)
    samples = layer.advance_chains(num_steps=100).numpy()
    with tf.GradientTape() as tape:
        surrogate = layer.log_partition_surrogate()
    assert float(surrogate) == 0.0
    grads = tape.gradient(surrogate, [layer.bias1, layer.bias2, layer.coupling])
    enum = Enumerated(*numpy_params(params))
    z1, z2 = samples[:, :8], samples[:, 8:]
    pairs = z1[:, :, None] * z2[:, None, :]
    exact = [
        enum.mean(enum.z1),
        enum.mean(enum.z2),
        enum.mean(enum.z1[:, :, None] * enum.z2[:, None, :]),
    ]
    for grad, want, draws in zip(grads, exact, (z1, z2, pairs), strict=True):
        se = draws.std(0) / np.sqrt(len(draws))
        assert np.all(np.abs(grad.numpy() - want) < 4 * se + 1e-12), np.max(
            np.abs(grad - want) / se
        )
    np.testing.assert_array_equal(layer.chains.numpy(), samples)  # the state persists


def test_advance_chains_moves_from_the_saved_state_and_works_traced():
    layer = layer_with(random_params(4, 3, seed=14), num_chains=6, gibbs_steps=2, seed=0)
    first = layer.advance_chains().numpy()
    second = tf.function(layer.advance_chains)().numpy()
    assert first.shape == second.shape == (6, 7)
    np.testing.assert_array_equal(layer.chains.numpy(), second)


def test_factorial_layer_is_exact():
    params = random_params(4, 5, seed=15)
    layer = layer_with(params, coupled=False)
    assert layer.coupling is None and layer.chains is None and len(layer.trainable_weights) == 2
    a, b, _ = numpy_params(params)
    enum = Enumerated(a, b, np.zeros((4, 5)))
    assert float(layer.log_partition_exact()) == pytest.approx(enum.log_z, abs=1e-12)
    with tf.GradientTape() as tape:
        surrogate = layer.log_partition_surrogate()
    ga, gb = tape.gradient(surrogate, [layer.bias1, layer.bias2])
    np.testing.assert_allclose(ga, enum.mean(enum.z1), atol=1e-12)
    np.testing.assert_allclose(gb, enum.mean(enum.z2), atol=1e-12)
    z = layer.sample(20000, seed=(1, 2)).numpy()  # exact independent draws
    se = np.sqrt(enum.mean(enum.z1) * (1 - enum.mean(enum.z1)) / len(z))
    assert np.all(np.abs(z[:, :4].mean(0) - enum.mean(enum.z1)) < 3 * se)
    with pytest.raises(ValueError, match="no persistent chains"):
        layer.advance_chains()


def test_layer_energy_log_prob_and_sampling_against_enumeration():
    params = random_params(3, 3, seed=16)
    layer = layer_with(params)
    enum = Enumerated(*numpy_params(params))
    z = np.concatenate([enum.z1, enum.z2], 1)
    np.testing.assert_allclose(
        layer(z).numpy(), brute_energy(enum.z1, enum.z2, *numpy_params(params))
    )
    log_p = layer.log_prob(z, layer.log_partition_exact()).numpy()
    np.testing.assert_allclose(np.exp(log_p), enum.p, atol=1e-12)  # the BM on the vertices
    draws = layer.sample(4000, num_steps=50, seed=(2, 3)).numpy()
    freq = (draws[:, None, :] == z[None]).all(-1).mean(0)
    se = np.sqrt(enum.p * (1 - enum.p) / len(draws))
    assert np.all(np.abs(freq - enum.p) < 4 * se), np.max(np.abs(freq - enum.p) / se)


def test_layer_config_round_trip_and_bad_arguments():
    layer = boltzmann.RBM(3, 4, num_chains=5, gibbs_steps=2, coupling_stddev=0.1, seed=7)
    clone = boltzmann.RBM.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(clone.coupling.numpy(), layer.coupling.numpy())  # seeded init
    assert keras.saving.get_registered_object("igr_tf>RBM") is boltzmann.RBM
    with pytest.raises(ValueError, match="num_units1"):
        boltzmann.RBM(0, 4)
    with pytest.raises(ValueError, match="num_chains"):
        boltzmann.RBM(3, 4, num_chains=0)
    with pytest.raises(ValueError, match="coupling_stddev"):
        boltzmann.RBM(3, 4, coupling_stddev=-1.0)
    with pytest.raises(ValueError, match="last axis n1 \\+ n2 = 7"):
        layer.energy(tf.zeros([2, 6]))
    with pytest.raises(ValueError, match=r"coupling` must have shape \[n1, n2\]"):
        boltzmann.as_params(np.zeros(3), np.zeros(4), np.zeros((4, 3)))
