"""Tests of igr_tf.distributions: the IGR family as TFP objects, the relaxation registry, KLs,
induced categoricals, uniform priors, IGR-SB adaptive truncation, robustness and input errors.

Numerical claims are checked against an independent route: Monte Carlo frequencies, float64 numpy
references written here from the SPEC's formulas, or TFP's own implementations.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from igr_tf import distributions as igrd  # noqa: E402

tfd = tfp.distributions

MIN_SCALE = 1e-4  # scale = softplus(ξ) + 1e-4 in the relaxations
ALL = ("igr_i", "igr_sb", "igr_planar", "gs")
IGR = ("igr_i", "igr_sb", "igr_planar")
DTYPES = (tf.float32, tf.float64)


# --- helpers -----------------------------------------------------------------------------------


def xi_for_scale(scale):
    """Encoder output ξ with softplus(ξ) + 1e-4 = scale (float64 numpy)."""
    s = np.asarray(scale, np.float64) - MIN_SCALE
    return np.where(s > 30.0, s, np.log(np.expm1(np.maximum(s, 1e-300))))


def igr_params(loc, scale, dtype=tf.float64):
    """Encoder outputs `[..., V, 2(K-1)]` encoding (loc, scale)."""
    loc = np.asarray(loc, np.float64)
    xi = xi_for_scale(np.broadcast_to(scale, loc.shape))
    return tf.constant(np.concatenate([loc, xi], axis=-1), dtype)


def planar_weights(k, v, dtype=tf.float64, num_flows=2, seed=0, std=0.7):
    """Non-trivial planar flow weights in the layout of `IGRPlanar.weight_specs`."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(num_flows):
        out[f"planar_w{i}"] = tf.constant(rng.normal(0, std, (v, k - 1)), dtype)
        out[f"planar_u{i}"] = tf.constant(rng.normal(0, std, (v, k - 1)), dtype)
        out[f"planar_b{i}"] = tf.constant(rng.normal(0, std, (v,)), dtype)
    return out


def random_params(name, k, shape, dtype=tf.float64, seed=0, loc_std=1.0):
    """Moderate random encoder outputs `[*shape, P]` for relaxation `name`."""
    rng = np.random.default_rng(seed)
    if name == "gs":
        return tf.constant(rng.normal(0, 1.5, (*shape, k)), dtype)
    loc = rng.normal(0, loc_std, (*shape, k - 1))
    scale = np.exp(rng.normal(0, 0.4, (*shape, k - 1)))
    return igr_params(loc, scale, dtype)


def weights_for(name, k, v, dtype=tf.float64):
    return planar_weights(k, v, dtype) if name == "igr_planar" else None


def np_gaussian_kl(mu, s, mu0, s0):
    """KL(N(mu, s²) ‖ N(mu0, s0²)) summed over the last axis, float64 numpy (SPEC §4)."""
    mu, s, mu0, s0 = (np.asarray(a, np.float64) for a in (mu, s, mu0, s0))
    return 0.5 * np.sum(
        s**2 / s0**2 - 1.0 + (mu - mu0) ** 2 / s0**2 + np.log(s0**2) - np.log(s**2), axis=-1
    )


def finite(x) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x))))


def assert_on_simplex(psi, dtype):
    psi = np.asarray(psi, np.float64)
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    assert finite(psi)
    assert psi.min() >= 0.0
    np.testing.assert_allclose(psi.sum(-1), 1.0, atol=tol)


def make_distribution(name, k, batch, dtype, temperature=0.5, seed=0):
    """(distribution, trainable variables) for one of the four constructors."""
    v = batch[-1]
    if name == "gs":
        logits = tf.Variable(random_params("gs", k, batch, dtype, seed))
        return igrd.get("gs", k).distribution(logits, temperature), [logits]
    rng = np.random.default_rng(seed)
    loc = tf.Variable(rng.normal(0, 1, (*batch, k - 1)), dtype=dtype)
    scale = tf.Variable(np.exp(rng.normal(0, 0.3, (*batch, k - 1))), dtype=dtype)
    if name == "igr_i":
        return igrd.igr_i(loc, scale, temperature), [loc, scale]
    if name == "igr_sb":
        return igrd.igr_sb(loc, scale, temperature), [loc, scale]
    w = {key: tf.Variable(t) for key, t in planar_weights(k, v, dtype).items()}
    flows = igrd.planar_flows(
        [w["planar_w0"], w["planar_w1"]],
        [w["planar_u0"], w["planar_u1"]],
        [w["planar_b0"], w["planar_b1"]],
    )
    return igrd.igr_planar(loc, scale, flows, temperature), [loc, scale, *w.values()]


# --- 1. distributions: shapes, simplex, gradients, log_prob ------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ALL)
def test_sample_shapes_on_simplex_and_reparameterized_gradients(name, dtype):
    k, batch = 5, (2, 3)
    dist, variables = make_distribution(name, k, batch, dtype)
    assert dist.event_shape == [k]
    assert dist.batch_shape == list(batch)
    coef = tf.constant(np.random.default_rng(1).normal(size=(k,)), dtype)
    with tf.GradientTape() as tape:
        psi = dist.sample(7, seed=(1, 2))
        loss = tf.reduce_sum(psi * coef)
    assert psi.shape == (7, *batch, k)
    assert psi.dtype == dtype
    assert_on_simplex(psi, dtype)
    grads = tape.gradient(loss, variables)
    for var, g in zip(variables, grads, strict=True):
        assert g is not None, var.name
        assert finite(g), var.name
        assert np.any(np.asarray(g) != 0), var.name


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ALL)
def test_log_prob_of_own_samples_finite(name, dtype):
    k = 5
    dist, _ = make_distribution(name, k, (4, 3), dtype, temperature=0.7)
    psi = dist.sample(50, seed=(3, 4))
    # The sampled tensor itself (TFP may reuse the cached pre-image) and a copy, which forces
    # the real inverse (root finding for the planar flows).
    for x in (psi, tf.identity(psi)):
        lp = dist.log_prob(x)
        assert lp.shape == (50, 4, 3)
        assert finite(lp)


def test_log_prob_inverse_route_matches_cached_route():
    # The inverse (log ψ -> z, planar root finding) must give the same density as the cached z.
    k = 5
    for name in IGR:
        dist, _ = make_distribution(name, k, (3,), tf.float64, temperature=0.7)
        psi = dist.sample(200, seed=(5, 6))
        np.testing.assert_allclose(
            dist.log_prob(tf.identity(psi)),
            dist.log_prob(psi),
            rtol=1e-6,
            atol=1e-6,
            err_msg=name,
        )


# --- registry ----------------------------------------------------------------------------------


def test_registry_names_and_param_counts():
    assert set(igrd.names()) == set(ALL)
    k = 7
    expected = {"igr_i": 2 * (k - 1), "igr_sb": 2 * (k - 1), "igr_planar": 2 * (k - 1), "gs": k}
    for name, n in expected.items():
        relax = igrd.get(name, k)
        assert relax.name == name
        assert relax.num_categories == k
        assert relax.num_params == n
        # get_config round-trips through get.
        config = relax.get_config()
        again = igrd.get(name, config.pop("num_categories"), **config)
        assert again.get_config() == relax.get_config()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ALL)
def test_draw_shapes_and_registry_distribution(name, dtype):
    k, b, v = 5, 4, 3
    relax = igrd.get(name, k)
    params = random_params(name, k, (b, v), dtype)
    weights = weights_for(name, k, v, dtype)
    draw = relax.draw(params, tf.constant(0.5, dtype), weights, seed=(1, 1))
    assert draw.logits.shape == (b, v, k)
    assert draw.kl.shape == (b, v)
    assert draw.logits.dtype == dtype and draw.kl.dtype == dtype
    assert set(draw.metrics) == set(relax.metric_names)
    for m in draw.metrics.values():
        assert m.shape == (b, v)
    dist = relax.distribution(params, tf.constant(0.5, dtype), weights)
    assert dist.event_shape == [k] and dist.batch_shape == [b, v]
    assert_on_simplex(dist.sample(2, seed=(2, 2)), dtype)
    prior = relax.prior(tf.constant(0.5, dtype), weights, num_vars=v)
    assert prior.event_shape == [k] and prior.batch_shape == [v]


# --- 1. KL terms -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["igr_i", "igr_sb"])
def test_tfd_kl_equals_gaussian_kl_and_monte_carlo(name):
    k, v, n = 5, 3, 20000
    relax = igrd.get(name, k)
    rng = np.random.default_rng(11)
    mu = rng.normal(0, 1, (v, k - 1))
    s = np.exp(rng.normal(0, 0.3, (v, k - 1)))
    tau = tf.constant(0.5, tf.float64)
    q = relax.distribution(igr_params(mu, s), tau)
    p = relax.prior(tau, num_vars=v)
    mu0, s0 = (np.asarray(t) for t in relax.prior_loc_scale(tf.float64))
    reference = np_gaussian_kl(mu, s, mu0, s0)

    kl = tfd.kl_divergence(q, p)
    assert kl.shape == (v,)
    np.testing.assert_allclose(kl, reference, rtol=1e-9)
    # The relaxation's closed-form term is the same number.
    np.testing.assert_allclose(relax.draw(igr_params(mu, s), tau).kl, reference, rtol=1e-9)

    # Monte Carlo on the simplex: mean of log q(ψ) - log p(ψ), ψ ~ q (densities via the inverse).
    psi = tf.identity(q.sample(n, seed=(7, 8)))
    ratio = np.asarray(q.log_prob(psi) - p.log_prob(psi))
    assert finite(ratio)
    se = ratio.std(0) / math.sqrt(n)
    assert np.all(np.abs(ratio.mean(0) - reference) < 3 * se), (ratio.mean(0), reference, se)


@pytest.mark.parametrize("name", ["igr_i", "igr_sb"])
def test_closed_kl_equals_sampled_kl_mean(name):
    k, v, n = 5, 3, 20000
    closed = igrd.get(name, k, kl="closed")
    sampled = igrd.get(name, k, kl="sampled")
    params = random_params(name, k, (v,), seed=3)
    tau = tf.constant(0.3, tf.float64)
    kl_closed = np.asarray(closed.draw(params, tau, seed=(1, 1)).kl)
    tiled = tf.broadcast_to(params, [n, *params.shape])
    kl_sampled = np.asarray(sampled.draw(tiled, tau, seed=(4, 2)).kl)
    se = kl_sampled.std(0) / math.sqrt(n)
    assert np.all(se > 0)
    assert np.all(np.abs(kl_sampled.mean(0) - kl_closed) < 3 * se), (kl_sampled.mean(0), kl_closed)


def test_gs_kl_matches_tfp_exp_concrete_and_is_finite():
    k, v, n = 5, 3, 20000
    relax = igrd.get("gs", k, prior_temperature=0.5)
    logits = random_params("gs", k, (v,), seed=4)
    tau = tf.constant(0.7, tf.float64)
    tiled = tf.broadcast_to(logits, [n, v, k])
    draw = relax.draw(tiled, tau, seed=(9, 9))
    assert finite(draw.kl)
    # Independent route: TFP's ExpRelaxedOneHotCategorical densities at y = log ψ.
    y = tf.math.log_softmax(draw.logits / tau, axis=-1)
    q = tfd.ExpRelaxedOneHotCategorical(tau, logits=logits)
    p = tfd.ExpRelaxedOneHotCategorical(
        tf.constant(0.5, tf.float64), logits=tf.zeros([k], tf.float64)
    )
    np.testing.assert_allclose(draw.kl, q.log_prob(y) - p.log_prob(y), rtol=1e-8, atol=1e-8)
    # A KL estimate: its mean is ≥ 0 up to Monte Carlo error.
    kl = np.asarray(draw.kl)
    assert np.all(kl.mean(0) > -3 * kl.std(0) / math.sqrt(n))
    # At low temperature too (log space keeps it finite).
    assert finite(relax.draw(tiled, tf.constant(0.01, tf.float64), seed=(1, 3)).kl)


@pytest.mark.parametrize("name", ALL)
def test_stick_the_landing_same_value_different_gradient(name):
    k, v = 5, 3
    params = tf.Variable(random_params(name, k, (4, v), seed=5))
    weights = weights_for(name, k, v)
    tau = tf.constant(0.4, tf.float64)
    results = []
    for stl in (False, True):
        relax = igrd.get(name, k, kl="sampled", stick_the_landing=stl)
        with tf.GradientTape() as tape:
            kl = relax.draw(params, tau, weights, seed=(3, 3)).kl
            total = tf.reduce_sum(kl)
        results.append((np.asarray(kl), np.asarray(tape.gradient(total, params))))
    (kl0, g0), (kl1, g1) = results
    np.testing.assert_array_equal(kl0, kl1)
    assert finite(g0) and finite(g1)
    assert not np.allclose(g0, g1, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["igr_i", "igr_sb"])
def test_stick_the_landing_gradient_vanishes_at_the_prior(name):
    # With q = p, log q(z) - log p(z) ≡ 0 as a function of z: the STL gradient is exactly zero for
    # every sample, while the plain estimator keeps the (zero-mean) score term.
    k, n = 5, 64
    relax = igrd.get(name, k, kl="sampled", stick_the_landing=True)
    plain = igrd.get(name, k, kl="sampled")
    mu0, s0 = (np.asarray(t) for t in relax.prior_loc_scale(tf.float64))
    params = tf.Variable(tf.broadcast_to(igr_params(mu0, s0), [n, 1, 2 * (k - 1)]))
    grads = []
    for r in (relax, plain):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(r.draw(params, 0.5, seed=(8, 1)).kl)
        grads.append(np.asarray(tape.gradient(total, params)))
    np.testing.assert_allclose(grads[0], 0.0, atol=1e-10)
    assert np.abs(grads[1]).max() > 1e-2


# --- 2. induced categorical --------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_categorical_log_probs_match_argmax_frequencies(name):
    k, v, n = 5, 3, 20000
    relax = igrd.get(name, k, num_mc_samples=n)
    params = random_params(name, k, (v,), tf.float32, seed=21, loc_std=0.8)
    weights = weights_for(name, k, v, tf.float32)
    log_pmf = relax.categorical_log_probs(params, weights, seed=(1, 2))
    assert log_pmf.shape == (v, k)
    pmf = np.exp(np.asarray(log_pmf, np.float64))
    np.testing.assert_allclose(pmf.sum(-1), 1.0, atol=1e-5)

    # Independent draws with another seed: frequencies of argmax of the hard logits.
    tiled = tf.broadcast_to(params, [n, *params.shape])
    logits = relax.draw(tiled, 0.5, weights, seed=(77, 5)).logits
    freq = np.mean(np.eye(k)[np.argmax(logits, -1)], axis=0)
    var = np.maximum(pmf * (1 - pmf), 1.0 / n) / n
    if relax.exact_categorical:
        tol = 3 * np.sqrt(var)
    else:  # both sides are Monte Carlo estimates (plus Jeffreys smoothing of half a count)
        tol = 3 * np.sqrt(2 * var) + 1.0 / n
    assert np.all(np.abs(freq - pmf) < tol), (name, freq, pmf)


@pytest.mark.parametrize("name", ["igr_sb", "igr_planar", "gs"])
def test_argmax_of_tfp_samples_matches_categorical_log_probs(name):
    # A second route to the same law: argmax of samples of the TFP distribution object (GS: TFP's
    # own Gumbel sampler; IGR: TransformedDistribution through the bijector chain).
    k, v, n = 5, 2, 20000
    relax = igrd.get(name, k, num_mc_samples=n)
    params = random_params(name, k, (v,), tf.float32, seed=22, loc_std=0.8)
    weights = weights_for(name, k, v, tf.float32)
    pmf = np.exp(np.asarray(relax.categorical_log_probs(params, weights, seed=(4, 4)), np.float64))
    psi = relax.distribution(params, 1.0, weights).sample(n, seed=(12, 13))
    freq = np.mean(np.eye(k)[np.argmax(psi, -1)], axis=0)
    var = np.maximum(pmf * (1 - pmf), 1.0 / n) / n
    tol = 3 * np.sqrt(var if relax.exact_categorical else 2 * var) + 1.0 / n
    assert np.all(np.abs(freq - pmf) < tol), (name, freq, pmf)


def test_igr_i_categorical_spec_case_unequal_scales():
    # SPEC §2's case with unequal scales (where the original quadrature was wrong), by Monte Carlo.
    mu = np.array([-1.13, 0.37, -1.67, -0.65, -0.10])
    sigma = np.array([1.10, 0.48, 0.40, 0.63, 1.25])
    relax = igrd.get("igr_i", 6)
    pmf = np.exp(np.asarray(relax.categorical_log_probs(igr_params(mu[None], sigma[None]))))[0]
    rng = np.random.default_rng(0)
    n = 400_000
    z = mu + sigma * rng.standard_normal((n, 5))
    wins = np.argmax(np.concatenate([z, np.zeros((n, 1))], -1), -1)
    freq = np.bincount(wins, minlength=6) / n
    assert np.all(np.abs(freq - pmf) < 3 * np.sqrt(np.maximum(pmf * (1 - pmf), 1 / n) / n) + 1e-4)


def test_igr_sb_every_category_reachable():
    # The original code's defect: softmax++ of raw stick lengths could never pick category K.
    k, n = 5, 500
    loc = np.full((k, k - 1), -8.0)
    for c in range(k - 1):
        loc[c, c] = 8.0  # earlier sticks ~empty, stick c takes (almost) everything
    # Row K-1: every stick nearly empty, so the remainder η_K wins.
    params = igr_params(loc, 0.1, tf.float32)
    relax = igrd.get("igr_sb", k)
    logits = relax.draw(tf.broadcast_to(params, [n, k, 2 * (k - 1)]), 0.01, seed=(1, 1)).logits
    np.testing.assert_array_equal(np.argmax(logits, -1), np.broadcast_to(np.arange(k), (n, k)))
    psi = tf.math.softmax(logits / 0.01, -1)
    assert np.all(np.asarray(psi)[:, np.arange(k), np.arange(k)] > 0.99)
    # The induced categorical agrees, and so does the TFP distribution at low temperature.
    pmf = np.exp(np.asarray(relax.categorical_log_probs(params, seed=(2, 2))))
    assert np.all(np.diag(pmf) > 0.99)
    samples = relax.distribution(params, 0.01).sample(n, seed=(5, 5))
    np.testing.assert_array_equal(np.argmax(samples, -1), np.broadcast_to(np.arange(k), (n, k)))


@pytest.mark.parametrize("name", ALL)
def test_argmax_of_relaxed_sample_is_argmax_of_hard_logits(name):
    k, v = 5, 4
    relax = igrd.get(name, k)
    params = random_params(name, k, (200, v), tf.float32, seed=30, loc_std=3.0)
    weights = weights_for(name, k, v, tf.float32)
    for tau in (0.01, 0.1, 1.0, 10.0):
        logits = relax.draw(params, tau, weights, seed=(6, 6)).logits
        psi = tf.math.softmax(logits / tau, -1)
        np.testing.assert_array_equal(np.argmax(psi, -1), np.argmax(logits, -1))


# --- 3. uniform priors -------------------------------------------------------------------------


@pytest.mark.parametrize("name", IGR)
def test_prior_induces_uniform_categorical_monte_carlo(name):
    # Independent route: z ~ N(μ0, σ0²) in numpy, winner = argmax [z, log δ] (IGR-I) or argmax η.
    k, n = 10, 2_000_000
    relax = igrd.get(name, k)
    mu0, s0 = (np.asarray(t, np.float64) for t in relax.prior_loc_scale(tf.float64))
    assert mu0.shape == (k - 1,) and s0.shape == (k - 1,)
    if name == "igr_planar":  # its prior is IGR-I's Gaussian on λ, no flow: checked there
        i_mu0, i_s0 = igrd.get("igr_i", k).prior_loc_scale(tf.float64)
        np.testing.assert_array_equal(mu0, i_mu0)
        np.testing.assert_array_equal(s0, i_s0)
        return
    rng = np.random.default_rng(2024)
    z = (mu0 + s0 * rng.standard_normal((n, k - 1), dtype=np.float32)).astype(np.float32)
    if name == "igr_sb":  # η_k = v_k Π_{j<k}(1 - v_j), η_K = Π_j (1 - v_j); no underflow here
        v = 1.0 / (1.0 + np.exp(-z))
        left = np.cumprod(1.0 - v, axis=-1)
        eta = np.concatenate([v[:, :1], v[:, 1:] * left[:, :-1], left[:, -1:]], axis=-1)
        wins = np.argmax(eta, -1)
    else:
        wins = np.argmax(np.concatenate([z, np.zeros((n, 1))], -1), -1)
    freq = np.bincount(wins, minlength=k) / n
    np.testing.assert_allclose(freq, 1.0 / k, atol=1e-3)


@pytest.mark.parametrize("name", ALL)
def test_prior_distribution_object_is_uniform(name):
    # The same claim through the library's own objects: argmax of samples of `prior(τ)` (any τ:
    # softmax is monotone, so argmax ψ is the induced category). A second route with 1e6 draws:
    # 1.5e-3 is 5 standard errors (the 1e-3 claim is checked above with 2e6 draws).
    k, n = 10, 1_000_000
    relax = igrd.get(name, k)
    weights = planar_weights(k, 1, tf.float32) if name == "igr_planar" else None
    psi = relax.prior(1.0, weights).sample(n, seed=(31, 7))
    freq = np.bincount(np.argmax(psi, -1), minlength=k) / n
    np.testing.assert_allclose(freq, 1.0 / k, atol=1.5e-3)


# --- 4. IGR-SB adaptive truncation -------------------------------------------------------------


def test_adaptive_truncation_properties():
    k, b, v, threshold = 10, 64, 4, 0.99
    full = igrd.get("igr_sb", k)
    adaptive = igrd.get("igr_sb", k, adaptive=True, threshold=threshold)
    mu0 = np.asarray(full.prior_loc_scale(tf.float64)[0])
    rng = np.random.default_rng(5)
    mu = mu0 + rng.normal(0, 2.0, (b, v, k - 1))
    s = np.exp(rng.normal(0, 0.3, (b, v, k - 1)))
    params = igr_params(mu, s)
    tau = 0.3
    d_full = full.draw(params, tau, seed=(2, 3))
    d_adapt = adaptive.draw(params, tau, seed=(2, 3))  # same seed: the same z
    n = np.asarray(d_adapt.metrics["N"])
    assert d_adapt.logits.shape == (b, v, k)  # static size K whatever N is
    assert n.shape == (b, v)
    np.testing.assert_array_equal(n, np.round(n))
    assert n.min() >= 1 and n.max() <= k - 1
    assert n.min() < k - 1  # truncation actually happened somewhere

    eta = np.exp(np.asarray(d_full.logits))  # the non-adaptive hard logits are log η
    covered = np.cumsum(eta[..., :-1], -1)
    n_int = n.astype(int)
    cover_n = np.take_along_axis(covered, n_int[..., None] - 1, -1)[..., 0]
    # The pieces used cover ≥ threshold unless all K-1 sticks were needed; N is minimal.
    assert np.all((cover_n >= threshold - 1e-9) | (n_int == k - 1))
    prev = np.where(
        n_int > 1, np.take_along_axis(covered, np.maximum(n_int - 2, 0)[..., None], -1)[..., 0], 0.0
    )
    assert np.all(prev < threshold)

    psi = np.asarray(tf.math.softmax(d_adapt.logits / tau, -1))
    position = np.arange(1, k + 1)
    masked = position > n_int[..., None] + 1
    assert masked.any()
    assert np.all(psi[masked] == 0.0)
    assert_on_simplex(psi, tf.float64)
    # Used pieces are the stick pieces; category N+1 takes the rest of the stick.
    used = position <= n_int[..., None]
    np.testing.assert_allclose(np.asarray(d_adapt.logits)[used], np.log(eta)[used], rtol=1e-10)
    rest = 1.0 - cover_n
    nxt = np.take_along_axis(np.asarray(d_adapt.logits), n_int[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.exp(nxt), rest, rtol=1e-6, atol=1e-12)
    # Closed-form KL counts only the sticks used.
    mu0_, s0_ = (np.asarray(t) for t in full.prior_loc_scale(tf.float64))
    s_enc = np.log1p(np.exp(np.asarray(xi_for_scale(s)))) + MIN_SCALE
    per_dim = 0.5 * (s_enc**2 / s0_**2 - 1 + (mu - mu0_) ** 2 / s0_**2 + np.log(s0_**2 / s_enc**2))
    expected = np.sum(per_dim * (np.arange(1, k) <= n_int[..., None]), -1)
    np.testing.assert_allclose(d_adapt.kl, expected, rtol=1e-8)


# (Adaptive truncation under XLA: tests/test_layers.py::test_layers_under_xla.)


def test_adaptive_threshold_one_uses_every_stick():
    k = 10
    adaptive = igrd.get("igr_sb", k, adaptive=True, threshold=1.0)
    full = igrd.get("igr_sb", k)
    rng = np.random.default_rng(3)
    loc = rng.normal(0, 2, (32, 2, k - 1))
    loc[0, 0, 0] = 20.0  # the first piece is the whole stick to float32 precision
    loc[1, 1, :] = 30.0
    params = igr_params(loc, 0.5, tf.float32)
    d = adaptive.draw(params, 0.5, seed=(1, 9))
    np.testing.assert_array_equal(d.metrics["N"], k - 1)
    np.testing.assert_allclose(d.logits, full.draw(params, 0.5, seed=(1, 9)).logits, rtol=1e-6)


# --- 5. robustness sweep -----------------------------------------------------------------------

SWEEP_TEMPERATURES = (0.01, 0.03, 0.1, 1.0, 10.0)
SWEEP_LOCS = np.array([-50.0, -10.0, -1.0, 0.0, 1.0, 10.0, 50.0])
SWEEP_SCALES = np.array([1e-3, 1e-2, 1.0, 10.0, 100.0])


def sweep_params(name, k, dtype):
    """Encoder outputs `[2, V, P]` covering every (location, scale) pair, mixed across coordinates
    (so sticks of wildly different sizes meet), plus raw ξ = ±50 for the scale."""
    v = len(SWEEP_LOCS) * len(SWEEP_SCALES)
    idx_v = np.arange(v)[:, None]
    idx_k = np.arange(k - 1 if name != "gs" else k)[None, :]
    loc = SWEEP_LOCS[(idx_v + idx_k) % len(SWEEP_LOCS)]
    if name == "gs":
        return tf.constant(np.stack([loc, -loc]), dtype)
    scale = SWEEP_SCALES[(idx_v // len(SWEEP_LOCS) + idx_k) % len(SWEEP_SCALES)]
    xi = xi_for_scale(scale)
    raw = np.where((idx_v + idx_k) % 2 == 0, -50.0, 50.0) * np.ones_like(xi)
    return tf.constant(
        np.stack([np.concatenate([loc, xi], -1), np.concatenate([-loc, raw], -1)]), dtype
    )


SWEEP_CASES = [
    ("igr_i", {"kl": "closed"}),
    ("igr_i", {"kl": "sampled"}),
    ("igr_sb", {"kl": "closed"}),
    ("igr_sb", {"kl": "sampled", "stick_the_landing": True}),
    ("igr_sb", {"adaptive": True, "threshold": 0.99}),
    ("igr_planar", {}),
    ("gs", {}),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name,options", SWEEP_CASES, ids=lambda x: str(x))
def test_robustness_sweep_draw(name, options, dtype):
    k = 5
    relax = igrd.get(name, k, num_mc_samples=64, **options)
    params = tf.Variable(sweep_params(name, k, dtype))
    v = params.shape[1]
    weights = None
    if name == "igr_planar":
        weights = {key: tf.Variable(t) for key, t in planar_weights(k, v, dtype, std=1.0).items()}
    coef = tf.constant(np.linspace(-1, 1, k), dtype)
    lp = relax.categorical_log_probs(params, weights, seed=(1, 1))
    assert finite(lp), "categorical_log_probs"
    for tau_value in SWEEP_TEMPERATURES:
        tau = tf.Variable(tau_value, dtype=dtype)
        with tf.GradientTape() as tape:
            draw = relax.draw(params, tau, weights, seed=(2, 7))
            psi = draw.relaxed(tau)
            loss = tf.reduce_sum(psi * coef) + tf.reduce_sum(draw.kl)
        where = f"{name} {options} τ={tau_value} {dtype.name}"
        assert finite(psi), f"sample {where}"
        assert_on_simplex(psi, dtype)
        assert finite(draw.kl), f"kl {where}"
        variables = [params, tau] + (list(weights.values()) if weights else [])
        for var, g in zip(variables, tape.gradient(loss, variables), strict=True):
            assert g is not None and finite(g), f"gradient wrt {var.name} {where}"


# --- 6. bad input -> clear errors --------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_nonpositive_temperature_is_rejected(name):
    k = 4
    relax = igrd.get(name, k)
    params = random_params(name, k, (2,), tf.float32)
    weights = weights_for(name, k, 2, tf.float32)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            relax.draw(params, bad, weights)
        with pytest.raises(ValueError, match="temperature"):
            relax.distribution(params, bad, weights)
        with pytest.raises(ValueError, match="temperature"):
            relax.prior(bad, weights)


def test_distribution_constructors_reject_bad_arguments():
    loc, scale = tf.zeros([3]), tf.ones([3])
    flows = igrd.planar_flows([tf.zeros([3])], [tf.zeros([3])], [tf.zeros([])])
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match="temperature"):
            igrd.igr_i(loc, scale, temperature=bad)
        with pytest.raises(ValueError, match="temperature"):
            igrd.igr_sb(loc, scale, temperature=bad)
        with pytest.raises(ValueError, match="temperature"):
            igrd.igr_planar(loc, scale, flows, temperature=bad)
        with pytest.raises(ValueError, match="delta"):
            igrd.igr_i(loc, scale, delta=bad)
        with pytest.raises(ValueError, match="delta"):
            igrd.igr_planar(loc, scale, flows, delta=bad)
    with pytest.raises(ValueError, match="loc.*scale"):
        igrd.igr_i(tf.zeros([3]), tf.ones([4]))
    with pytest.raises(ValueError, match="ws"):
        igrd.planar_flows([], [], [])


def test_registry_rejects_bad_arguments():
    with pytest.raises(ValueError, match="igr_i.*igr_sb.*igr_planar.*gs") as info:
        igrd.get("igr_nope", 5)
    assert "igr_nope" in str(info.value)
    for name in ALL:
        for bad_k in (1, 0, 2.5):
            with pytest.raises(ValueError, match="num_categories"):
                igrd.get(name, bad_k)
    for name in ("igr_i", "igr_planar"):
        for bad in (0.0, -1.0):
            with pytest.raises(ValueError, match="delta"):
                igrd.get(name, 5, delta=bad)
    for name in ("igr_planar", "gs"):
        with pytest.raises(ValueError, match="kl"):
            igrd.get(name, 5, kl="closed")
    with pytest.raises(ValueError, match="kl"):
        igrd.get("igr_i", 5, kl="exact")
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            igrd.get("igr_sb", 5, adaptive=True, threshold=bad)
    with pytest.raises(ValueError, match="prior_temperature"):
        igrd.get("gs", 5, prior_temperature=0.0)
    with pytest.raises(ValueError, match="num_flows"):
        igrd.get("igr_planar", 5, num_flows=0)
    with pytest.raises(ValueError, match="no_such_option"):
        igrd.get("igr_i", 5, no_such_option=1)


@pytest.mark.parametrize("name", ALL)
def test_mismatched_params_shape_is_rejected(name):
    k = 5
    relax = igrd.get(name, k)
    weights = weights_for(name, k, 2, tf.float32)
    bad = tf.zeros([3, 2, relax.num_params + 1])
    with pytest.raises(ValueError, match="params") as info:
        relax.draw(bad, 0.5, weights)
    assert str(relax.num_params) in str(info.value)
    with pytest.raises(ValueError, match="params"):
        relax.categorical_log_probs(bad, weights)
    with pytest.raises(ValueError, match="params"):
        relax.distribution(bad, 0.5, weights)


def test_adaptive_sb_sampled_kl_counts_only_the_sticks_used():
    """With the first stick taking everything (N = 1), only coordinate 0 enters the sampled KL."""
    from igr_tf.distributions import gaussian_log_prob

    k = 6
    relax = igrd.get("igr_sb", k, adaptive=True, threshold=0.99, kl="sampled")
    loc = np.zeros([4, 1, k - 1])
    loc[..., 0] = 20.0
    raw_scale = np.full([4, 1, k - 1], 0.5)
    params = tf.constant(np.concatenate([loc, raw_scale], -1), tf.float64)
    draw = relax.draw(params, 0.5, seed=(1, 2))
    np.testing.assert_array_equal(draw.metrics["N"].numpy(), 1.0)
    # Rebuild the same z (same seed and sampler) and compute the 1-D log-ratio independently.
    scale = tf.math.softplus(params[..., k - 1 :]) + 1e-4
    eps = tf.random.stateless_normal(tf.shape(params[..., : k - 1]), seed=(1, 2), dtype=tf.float64)
    z0 = params[..., 0] + scale[..., 0] * eps[..., 0]
    loc0, scale0 = relax.prior_loc_scale(tf.float64)
    expected = gaussian_log_prob(z0, params[..., 0], scale[..., 0]) - gaussian_log_prob(
        z0, loc0[0], scale0[0]
    )
    np.testing.assert_allclose(draw.kl.numpy(), expected.numpy(), rtol=1e-10)
