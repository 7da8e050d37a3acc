"""The IGR family as TFP distributions: factories, log space, Philox draws, adaptive truncation.

Every value is checked against an independent route: TFP's own bijectors and distributions,
float64 numpy, Monte Carlo within a few standard errors, or a change of variables done by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf import distributions as igrd
from igr_tf.distributions import philox

tfb, tfd = tfp.bijectors, tfp.distributions
DTYPES = (np.float32, np.float64)


def rng_params(shape, seed=0, dtype=np.float64, loc_std=1.0):
    rng = np.random.default_rng(seed)
    loc = rng.normal(0.0, loc_std, shape).astype(dtype)
    scale = np.exp(rng.normal(-0.3, 0.4, shape)).astype(dtype)
    return loc, scale


# --- the factories equal TFP chains built by hand ---------------------------------------------


def tfp_igr_i_chain(tau, delta):
    """IGR-I from TFP parts only: SoftmaxCentered ∘ Shift(-log δ) ∘ Scale(1/τ)."""
    return tfb.Chain(
        [
            tfb.SoftmaxCentered(),
            tfb.Shift(np.float64(-np.log(delta))),
            tfb.Scale(np.float64(1 / tau)),
        ]
    )


def tfp_igr_sb_chain(tau):
    """IGR-SB from TFP parts (float64): softmax(log η / τ) with η stick pieces of sigmoid(z)."""

    def forward(z):
        v = 1.0 / (1.0 + np.exp(-z))
        left = np.concatenate([np.ones_like(v[..., :1]), np.cumprod(1.0 - v, -1)], -1)
        eta = np.concatenate([v * left[..., :-1], left[..., -1:]], -1)
        logits = np.log(eta) / tau
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return forward


@pytest.mark.parametrize("tau,delta", [(0.5, 1.0), (0.1, 0.5), (2.0, 3.0)])
def test_igr_i_is_the_tfp_chain(tau, delta):
    loc, scale = rng_params([4, 3, 5])
    q = igrd.igr_i(loc, scale, tau, delta)
    psi = q.sample(seed=(1, 2))
    z = q.distribution.sample(seed=(1, 2))
    np.testing.assert_allclose(psi, tfp_igr_i_chain(tau, delta).forward(z), rtol=1e-12)
    # Density: TFP's TransformedDistribution on the reference chain, evaluated by inversion.
    reference = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(loc, scale), tfp_igr_i_chain(tau, delta)
    )
    fresh = tf.constant(psi.numpy())  # a new tensor: no cache, both go through the inverse
    np.testing.assert_allclose(q.log_prob(fresh), reference.log_prob(fresh), rtol=1e-9)


def test_igr_sb_is_stick_breaking_of_sigmoids():
    loc, scale = rng_params([4, 3, 6], seed=1)
    q = igrd.igr_sb(loc, scale, 0.3)
    z = q.distribution.sample(seed=(3, 4))
    np.testing.assert_allclose(q.bijector.forward(z), tfp_igr_sb_chain(0.3)(z.numpy()), rtol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "make",
    [
        lambda loc, scale, tau, ls: igrd.igr_i(loc, scale, tau, log_space=ls),
        lambda loc, scale, tau, ls: igrd.igr_i(loc, scale, tau, delta=0.5, log_space=ls),
        lambda loc, scale, tau, ls: igrd.igr_sb(loc, scale, tau, log_space=ls),
    ],
    ids=["igr_i", "igr_i_delta", "igr_sb"],
)
def test_log_space_is_the_log_of_the_simplex_sample(make, dtype):
    loc, scale = rng_params([3, 4, 5], seed=2, dtype=dtype)
    psi = make(loc, scale, 0.7, False).sample(seed=(5, 6))
    y = make(loc, scale, 0.7, True).sample(seed=(5, 6))
    np.testing.assert_allclose(np.exp(y), psi, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(tf.reduce_logsumexp(y, -1), 0.0, atol=1e-6)


@pytest.mark.parametrize("tau", [0.005, 0.01, 0.1, 1.0, 10.0])
def test_log_space_log_prob_is_finite_on_fresh_samples(tau):
    """The issue's case: ~75% of fresh float32 ψ at low τ had a non-finite log_prob."""
    loc, scale = rng_params([200, 9], seed=3, dtype=np.float32, loc_std=2.0)
    q = igrd.igr_i(loc, scale, tau, log_space=True)
    fresh = tf.constant(q.sample(seed=(7, 8)).numpy())  # not in the bijector's cache
    lp = q.log_prob(fresh).numpy()
    assert np.all(np.isfinite(lp))
    # And it is the cached value (the exact one) up to float32 rounding of the inversion.
    cached = q.sample(seed=(7, 8))
    np.testing.assert_allclose(lp, q.log_prob(cached), rtol=1e-4, atol=1e-2)


def test_log_space_density_is_the_log_ratio_change_of_variables():
    """log q(y) = log N(x; μ, σ) + (K-1) log τ with x = τ (y_{<K} - y_K + log δ), by hand."""
    loc, scale = rng_params([6, 4], seed=4)
    tau, delta = 0.3, 2.0
    q = igrd.igr_i(loc, scale, tau, delta, log_space=True)
    y = tf.constant(q.sample(seed=(1, 1)).numpy())
    x = tau * (y[..., :-1] - y[..., -1:] + np.log(delta))
    z = (x - loc) / scale
    expected = np.sum(-0.5 * z**2 - np.log(scale) - 0.5 * np.log(2 * np.pi), -1) + 4 * np.log(tau)
    np.testing.assert_allclose(q.log_prob(y), expected, rtol=1e-10)


def test_log_space_density_matches_tfp_exp_concrete_convention():
    """Both log-space families use the log-ratio measure: their density ratio is a likelihood
    ratio, so E_{y~GS}[q_IGR(y) / q_GS(y)] = 1 (Monte Carlo) for IGR and GS on the same K."""
    k = 3
    gs = philox.ExpRelaxedOneHotCategorical(tf.constant(0.8, tf.float64), logits=[0.3, -0.2, 0.1])
    ig = igrd.igr_i(np.array([0.2, -0.1]), np.array([0.8, 1.1]), 0.8, log_space=True)
    y = gs.sample(200_000, seed=(2, 3))
    w = np.exp(ig.log_prob(y) - gs.log_prob(y))
    se = w.std() / np.sqrt(w.size)
    assert abs(w.mean() - 1.0) < 4 * se, (w.mean(), se)
    assert k == y.shape[-1]


def test_closed_form_kl_between_igr_distributions_is_the_gaussian_kl_and_monte_carlo():
    loc, scale = rng_params([5, 4], seed=5)
    loc0, scale0 = rng_params([5, 4], seed=6)
    for make in (igrd.igr_i, igrd.igr_sb):
        bij = make(loc, scale, 0.4, log_space=True).bijector  # one bijector: TFP's KL rule
        q = igrd.transformed(igrd.gaussian_base(loc, scale), bij, "q")
        p = igrd.transformed(igrd.gaussian_base(loc0, scale0), bij, "p")
        kl = tfd.kl_divergence(q, p).numpy()
        by_hand = np.sum(
            np.log(scale0 / scale) + (scale**2 + (loc - loc0) ** 2) / (2 * scale0**2) - 0.5, -1
        )
        np.testing.assert_allclose(kl, by_hand, rtol=1e-10)
        y = q.sample(40_000, seed=(4, 4))
        ratio = (q.log_prob(y) - p.log_prob(y)).numpy()
        se = ratio.std(0) / np.sqrt(ratio.shape[0])
        assert np.all(np.abs(ratio.mean(0) - kl) < 4 * se)


def test_planar_distribution_log_prob_by_autodiff_jacobian():
    """IGR-Planar's density at a sample equals log N(z) - log|det ∂λ/∂z| (autodiff) - fldj(spp)."""
    rng = np.random.default_rng(7)
    d = 3
    ws, us, bs = ([rng.normal(0, 0.7, d)], [rng.normal(0, 0.7, d)], [np.array(0.2)])
    ws.append(rng.normal(0, 0.7, d))
    us.append(rng.normal(0, 0.7, d))
    bs.append(np.array(-0.1))
    flows = igrd.planar_flows(ws, us, bs)
    loc, scale = rng_params([d], seed=8)
    q = igrd.igr_planar(loc, scale, flows, 0.5, log_space=True)
    z = tf.constant(rng.normal(size=(5, d)))
    with tf.GradientTape() as tape:
        tape.watch(z)
        lam = flows.forward(z)
    jac = tape.batch_jacobian(lam, z)
    log_det = np.log(np.abs(np.linalg.det(jac.numpy())))
    y = igrd.softmax_plus_plus(0.5, log_space=True).forward(lam)
    base = tfd.MultivariateNormalDiag(loc, scale).log_prob(z).numpy()
    expected = base - log_det + d * np.log(0.5)
    np.testing.assert_allclose(q.log_prob(tf.constant(y.numpy())), expected, rtol=1e-6)


# --- Philox draws -------------------------------------------------------------------------------


def test_philox_normal_draws_are_standard_normal_and_deterministic():
    d = philox.Normal(tf.constant([1.0, -2.0]), tf.constant([0.5, 3.0]))
    x = d.sample(100_000, seed=(9, 9)).numpy()
    np.testing.assert_array_equal(x, d.sample(100_000, seed=(9, 9)).numpy())
    eps = (x - [1.0, -2.0]) / [0.5, 3.0]
    # Kolmogorov-Smirnov distance to Φ: 1.63/sqrt(n) is the 1% critical value.
    for col in eps.T:
        s = np.sort(col)
        cdf = tfd.Normal(0.0, 1.0).cdf(s).numpy()
        ks = np.max(np.abs(cdf - (np.arange(1, s.size + 1) / s.size)))
        assert ks < 1.63 / np.sqrt(s.size)
    # The same numbers as the documented recipe: Box–Muller on one Philox uniform draw [2, 3].
    seed = tfp.random.sanitize_seed((9, 9))
    u = tf.random.stateless_uniform([2, 3], seed=seed, alg="philox").numpy().astype(np.float64)
    r, theta = np.sqrt(-2.0 * np.log1p(-u[0])), 2.0 * np.pi * u[1]
    eps_ref = np.concatenate([r * np.cos(theta), r * np.sin(theta)]).reshape(3, 2)
    np.testing.assert_allclose(
        d.sample(3, seed=(9, 9)), [1.0, -2.0] + eps_ref * [0.5, 3.0], rtol=1e-5
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jit", [False, True])
def test_philox_standard_normal_is_standard_normal(dtype, jit):
    """Both routes (Box–Muller ops eagerly, XLA's normal compiled), odd sizes included: the
    Kolmogorov-Smirnov distance to Φ of 60,001 draws and their first four moments (3 SE)."""
    n = 60_001
    draw = lambda seed: philox.standard_normal([n], seed, dtype)  # noqa: E731
    eps = (tf.function(draw, jit_compile=True) if jit else draw)(tf.constant([5, 6])).numpy()
    assert eps.shape == (n,) and eps.dtype == dtype and np.all(np.isfinite(eps))
    s = np.sort(eps.astype(np.float64))
    cdf = tfd.Normal(np.float64(0.0), np.float64(1.0)).cdf(s).numpy()
    assert np.max(np.abs(cdf - np.arange(1, n + 1) / n)) < 1.63 / np.sqrt(n)
    # Moments 1..4 are 0, 1, 0, 3 with variances 1, 2, 15, 96 over n draws.
    for k, (mean, var) in enumerate([(0, 1), (1, 2), (0, 15), (3, 96)], start=1):
        assert abs(np.mean(s**k) - mean) < 3 * np.sqrt(var / n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jit", [False, True])
def test_cos_sin_turns_match_numpy_to_a_few_eps(dtype, jit):
    """The polynomial cos 2πv and sin 2πv of the compiled Box–Muller route against numpy's
    float64 trigonometry on 200,001 points of [-½, ½] (ends included): within 8 eps."""
    v = np.linspace(-0.5, 0.5, 200_001)
    fn = tf.function(philox._cos_sin_turns, jit_compile=True) if jit else philox._cos_sin_turns
    cos, sin = fn(tf.constant(v, dtype))
    eps = np.finfo(dtype).eps
    assert np.max(np.abs(np.asarray(cos, np.float64) - np.cos(2 * np.pi * v))) < 8 * eps
    assert np.max(np.abs(np.asarray(sin, np.float64) - np.sin(2 * np.pi * v))) < 8 * eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_standard_normal_is_box_muller_of_the_compiled_uniform(dtype):
    """Under XLA the draw is the documented recipe, r cos 2πu₁ then r sin 2πu₁, on XLA's own
    Philox uniforms (evaluated here with XLA's tf.cos / tf.sin), for an odd size."""
    n = 10_001

    @tf.function(jit_compile=True)
    def both(seed):
        u = tf.random.stateless_uniform([2, (n + 1) // 2], seed=seed, dtype=dtype, alg="philox")
        r = tf.sqrt(-2.0 * tf.math.log1p(-u[0]))
        angle = 2.0 * np.pi * u[1]
        recipe = tf.concat([r * tf.cos(angle), r * tf.sin(angle)], axis=0)[:n]
        return philox.standard_normal([n], seed, dtype), recipe

    eps, recipe = both(tf.constant([7, 8]))
    atol = 2e-5 if dtype == np.float32 else 1e-13  # |ε| ≤ 5.6 times a few eps of cos, sin
    np.testing.assert_allclose(eps, recipe, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_philox_normal_log_prob_and_gradient_match_the_normal_density(dtype):
    """log N(x; μ, σ) against scipy's (float64), at ordinary and extreme values (locations ±50,
    scales 1e-4 and 1e3); its gradient w.r.t. x, μ and σ against autodiff of TFP's own Normal."""
    from scipy import stats

    loc = np.array([0.0, 50.0, -50.0, 1.0, 3.0, -2.0], dtype)
    scale = np.array([1.0, 1e-4, 1e3, 0.5, 1e-4, 2.0], dtype)
    x = np.array([0.3, 50.0002, 0.0, -4.0, 3.0, 30.0], dtype)
    lp = philox.Normal(loc, scale).log_prob(x).numpy()
    expected = stats.norm.logpdf(x.astype(np.float64), loc.astype(np.float64), scale)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(lp, expected, rtol=rtol)

    args = [tf.constant(a.astype(np.float64)) for a in (x, loc, scale)]

    def grads(cls):
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = cls(args[1], args[2]).log_prob(args[0])
        return [g.numpy() for g in tape.gradient(value, args)]

    for ours, theirs in zip(grads(philox.Normal), grads(tfd.Normal), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jit", [False, True])
def test_philox_normal_sample_and_log_prob_is_the_draw_and_its_density(dtype, jit):
    """`experimental_sample_and_log_prob` returns the same draw as `sample` (same seed) and its
    density against scipy's (float64). Its gradient along the draw x = μ + σε against the
    analytic one, in float64 from the noise ε: ∂ log N(x(μ, σ); μ, σ) is 0 in μ and -1/σ in σ
    (TFP's two-step route, `log_prob(sample())`, agrees in float64; in float32 it loses the
    digits of (x − μ) / σ at μ = 50, σ = 1e-4)."""
    from scipy import stats

    loc = tf.Variable(np.array([[0.0, 50.0, -50.0], [1.0, 3.0, -2.0]], dtype))
    scale = tf.Variable(np.array([[1.0, 1e-4, 1e3], [0.5, 2.0, 0.03]], dtype))
    seed = tf.constant([3, 4])
    weights = np.random.default_rng(0).normal(size=[5, 2, 2, 3])
    w = tf.constant(weights.astype(dtype))

    def both(seed):
        with tf.GradientTape(persistent=True) as tape:
            d = philox.Normal(loc, scale)
            x, lp = d.experimental_sample_and_log_prob([5, 2], seed=seed)
            x_ref = d.sample([5, 2], seed=seed)
            lp_ref = tfd.Normal(loc, scale).log_prob(x_ref)
            loss = tf.reduce_sum(lp * w) + tf.reduce_sum(x * w)
            loss_ref = tf.reduce_sum(lp_ref * w) + tf.reduce_sum(x_ref * w)
        eps = philox.standard_normal([5, 2, 2, 3], tfp.random.sanitize_seed(seed), dtype)
        grads = tape.gradient(loss, [loc, scale])
        return x, lp, x_ref, eps, grads, tape.gradient(loss_ref, [loc, scale])

    x, lp, x_ref, eps, grads, grads_ref = (tf.function(both, jit_compile=True) if jit else both)(
        seed
    )
    assert x.shape == lp.shape == (5, 2, 2, 3)
    np.testing.assert_array_equal(x, x_ref)
    expected = stats.norm.logpdf(
        np.asarray(x, np.float64), loc.numpy().astype(np.float64), scale.numpy()
    )
    # float32: x = μ + σε rounds to ~1 ulp of |μ| = 50, i.e. ~0.02 in ε at σ = 1e-4.
    tol = dict(rtol=2e-5, atol=0.05) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(lp, expected, **tol)
    sigma = scale.numpy().astype(np.float64)
    analytic = [
        weights.sum((0, 1)),
        (weights * (np.asarray(eps, np.float64) - 1 / sigma)).sum((0, 1)),
    ]
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    for ours, exact in zip(grads, analytic, strict=True):
        np.testing.assert_allclose(ours, exact, rtol=rtol, atol=rtol * np.abs(exact).max())
    if dtype == np.float64:
        for ours, theirs in zip(grads, grads_ref, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-7)


def test_normal_kl_with_a_constant_unit_prior_scale_is_the_normal_kl():
    """The KL rule's shortcut for σb = 1 (a constant) gives TFP's Normal KL, its gradients and its
    broadcast shape, as the general route does for a variable σb = 1 and for σb ≠ 1 (float64)."""
    loc, scale = (tf.Variable(a) for a in rng_params([4, 3], seed=7))
    loc0 = tf.constant(rng_params([3], seed=8)[0])
    priors = {
        "constant ones": tf.ones([3], tf.float64),
        "numpy ones": np.ones([3]),
        "variable ones": tf.Variable(np.ones([3])),
        "constant 1.7": tf.fill([3], tf.constant(1.7, tf.float64)),
        "constant ones with a larger batch": tf.ones([2, 4, 3], tf.float64),
    }
    for label, scale0 in priors.items():
        values = []
        for cls in (philox.Normal, tfd.Normal):
            with tf.GradientTape() as tape:
                kl = tfd.kl_divergence(cls(loc, scale), cls(loc0, scale0))
                loss = tf.reduce_sum(kl * np.arange(1.0, 13.0).reshape(4, 3))
            values.append([kl.numpy(), *(g.numpy() for g in tape.gradient(loss, [loc, scale]))])
        for ours, theirs in zip(*values, strict=True):
            assert ours.shape == theirs.shape, label
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, err_msg=label)


def test_philox_exp_concrete_has_the_gumbel_max_law():
    """argmax of the log Gumbel-Softmax sample is Categorical(softmax(logits)) (chi-square)."""
    logits = tf.constant([1.0, 0.0, -1.0, 0.5])
    d = philox.ExpRelaxedOneHotCategorical(0.3, logits=logits)
    y = d.sample(50_000, seed=(1, 2))
    np.testing.assert_allclose(tf.reduce_logsumexp(y, -1), 0.0, atol=1e-5)
    counts = np.bincount(np.argmax(y, -1), minlength=4)
    expected = tf.nn.softmax(logits).numpy() * counts.sum()
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 16.3  # 99.9% quantile, 3 degrees of freedom


# --- adaptive truncation -------------------------------------------------------------------------


def adaptive(loc, scale, tau=0.4, threshold=0.9, log_space=True):
    return igrd.igr_sb(loc, scale, tau, log_space=log_space, threshold=threshold)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_sample_is_the_truncated_chain_on_the_sticks_used(dtype):
    """Given n, the sample is the (n+1)-category IGR-SB chain applied to z_1..z_n."""
    loc, scale = rng_params([30, 9], seed=9, dtype=dtype)
    q = adaptive(loc, scale)
    y = q.sample(seed=(2, 2)).numpy()
    z = q.base.sample(seed=(2, 2)).numpy()
    n = q.num_sticks(y).numpy()
    assert n.min() >= 1 and n.max() <= 9 and len(set(n)) > 1
    for i in range(z.shape[0]):
        m = n[i]
        face = igrd.igr_sb(loc[i, :m], scale[i, :m], 0.4, log_space=True).bijector
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12)
        np.testing.assert_allclose(y[i, : m + 1], face.forward(z[i, :m]), **tol)
        assert np.all(y[i, m + 1 :] == -np.inf)
        # The cutting rule, from the definition: pieces cover the threshold first at stick n.
        v = 1.0 / (1.0 + np.exp(-z[i].astype(np.float64)))
        covered = 1.0 - np.cumprod(1.0 - v)
        expected_n = min(int(np.argmax(covered >= 0.9)) + 1 if covered.max() >= 0.9 else 9, 9)
        assert m == expected_n


def test_adaptive_log_prob_is_the_faces_density():
    """log q(y) equals the (n+1)-category IGR-SB log_prob of the live entries (TFP's inverse)."""
    loc, scale = rng_params([40, 7], seed=10)
    q = adaptive(loc, scale, tau=0.2, threshold=0.8)
    y = tf.constant(q.sample(seed=(3, 1)).numpy())
    lp = q.log_prob(y).numpy()
    n = q.num_sticks(y).numpy()
    for i in range(40):
        m = n[i]
        face = igrd.igr_sb(loc[i, :m], scale[i, :m], 0.2, log_space=True)
        np.testing.assert_allclose(lp[i], face.log_prob(y[i, : m + 1]), rtol=1e-8)
    # A point the rule cannot produce (n = 1 although the first stick covers too little).
    bad = np.full(7 + 1, -np.inf)
    bad[:2] = np.log([0.3, 0.7])
    assert q[0].log_prob(bad).numpy() == -np.inf


def test_adaptive_psi_space_density_is_the_log_space_one_times_the_face_volume():
    loc, scale = rng_params([10, 6], seed=11)
    qy, qp = adaptive(loc, scale), adaptive(loc, scale, log_space=False)
    y = qy.sample(seed=(5, 5)).numpy()
    psi = np.exp(y)
    np.testing.assert_allclose(qp.sample(seed=(5, 5)), psi, rtol=1e-12)
    n = qy.num_sticks(y).numpy()
    live = np.where(np.isfinite(y), y, 0.0).sum(-1)
    expected = qy.log_prob(y).numpy() - 0.5 * np.log(n + 1) - live
    np.testing.assert_allclose(qp.log_prob(psi), expected, rtol=1e-9)


def test_adaptive_density_integrates_to_one_importance_check():
    """E_{y~q}[p(y)/q(y)] = 1 for another adaptive p with the same cutting rule."""
    loc, scale = rng_params([2, 5], seed=12)
    # p near q, so that the importance weights have a finite, well-estimated variance.
    q, p = adaptive(loc, scale, 0.5, 0.9), adaptive(loc + 0.3, scale * 1.15, 0.5, 0.9)
    y = q.sample(100_000, seed=(8, 1))
    w = np.exp(p.log_prob(y) - q.log_prob(y))
    se = w.std(0) / np.sqrt(w.shape[0])
    assert np.all(np.abs(w.mean(0) - 1.0) < 4 * se), (w.mean(0), se)


def test_adaptive_truncated_kl_is_unbiased_for_the_monte_carlo_kl():
    loc, scale = rng_params([3, 8], seed=14)
    loc0, scale0 = np.full([3, 8], -1.0), np.ones([3, 8])
    q, p = adaptive(loc, scale, 0.3, 0.95), adaptive(loc0, scale0, 0.3, 0.95)
    y = q.sample(60_000, seed=(6, 2))
    rb = q.kl_given_truncation(p, y).numpy()
    mc = (q.log_prob(y) - p.log_prob(y)).numpy()
    se = np.sqrt(rb.var(0) / rb.shape[0] + mc.var(0) / mc.shape[0])
    assert np.all(np.abs(rb.mean(0) - mc.mean(0)) < 4 * se)
    assert np.all(rb.var(0) < mc.var(0))  # Rao-Blackwellised: lower variance


def test_adaptive_threshold_one_is_the_untruncated_igr_sb():
    loc, scale = rng_params([4, 6], seed=15)
    y = adaptive(loc, scale, threshold=1.0).sample(seed=(1, 9))
    np.testing.assert_allclose(
        y, igrd.igr_sb(loc, scale, 0.4, log_space=True).sample(seed=(1, 9)), rtol=1e-12
    )


def test_adaptive_gradients_finite_with_trainable_temperature_at_low_tau():
    loc, scale = rng_params([50, 9], seed=16, dtype=np.float32, loc_std=3.0)
    log_tau = tf.Variable(np.log(0.01), dtype=tf.float32)
    loc_v = tf.Variable(loc)
    with tf.GradientTape() as tape:
        q = adaptive(loc_v, scale, tf.exp(log_tau), 0.9)
        loss = tf.reduce_sum(tf.exp(q.sample(seed=(2, 7))) * np.arange(10.0))
    g_tau, g_loc = tape.gradient(loss, [log_tau, loc_v])
    assert np.isfinite(g_tau.numpy()) and np.all(np.isfinite(g_loc.numpy()))


def test_adaptive_compiles_with_xla():
    loc, scale = rng_params([20, 9], seed=17, dtype=np.float32)

    @tf.function(jit_compile=True)
    def run(seed):
        q = adaptive(loc, scale, 0.2, 0.9)
        y = q.sample(seed=seed)
        return y, q.log_prob(y), q.num_sticks(y)

    y, lp, n = run(tf.constant([3, 3]))
    eager = adaptive(loc, scale, 0.2, 0.9)
    np.testing.assert_array_equal(n, eager.num_sticks(y))
    np.testing.assert_allclose(lp, eager.log_prob(y), rtol=1e-4)


def test_adaptive_rejects_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        adaptive(np.zeros(3), np.ones(3), threshold=0.0)
    with pytest.raises(ValueError, match="threshold"):
        adaptive(np.zeros(3), np.ones(3), threshold=1.5)


# --- bad input ----------------------------------------------------------------------------------


def test_factories_reject_bad_arguments_with_their_names():
    with pytest.raises(ValueError, match="temperature"):
        igrd.igr_i(np.zeros(3), np.ones(3), temperature=0.0)
    with pytest.raises(ValueError, match="delta"):
        igrd.igr_i(np.zeros(3), np.ones(3), delta=-1.0)
    with pytest.raises(ValueError, match="event size"):
        igrd.igr_i(np.zeros([2, 3]), np.ones([2, 4]))
    with pytest.raises(ValueError, match="scalar"):
        igrd.igr_i(0.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        igrd.planar_flows([], [], [])


def test_validate_args_catches_run_time_values_eagerly_and_in_tf_function():
    tau = tf.Variable(0.5)
    scale = tf.Variable([1.0, 1.0])
    q = igrd.igr_i(tf.zeros(2), scale, tau, validate_args=True, log_space=True)
    q.sample(seed=(1, 1))  # valid: fine
    tau.assign(-1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature"):
        q.sample(seed=(1, 1))
    tau.assign(float("inf"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature"):
        tf.function(lambda: q.sample(seed=(1, 1)))()
    tau.assign(0.5)
    scale.assign([1.0, -1.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="scale"):
        tf.function(lambda: q.sample(seed=(1, 1)))()


@pytest.mark.parametrize("tau, spread", [(0.05, 1.0), (0.3, 50.0)])
def test_adaptive_psi_space_log_prob_of_underflowed_samples_is_never_nan(tau, spread):
    """In ψ space a fresh float32 sample can have live entries that underflowed to 0: its cut
    cannot be read back, and log_prob said NaN (-inf - -inf when inverting the stick), with NaN
    gradients. Now such values are off the support (-inf) with finite gradients, and every
    other value has the log-space density of log ψ (with the face's volume term)."""
    rng = np.random.default_rng(1)
    loc = tf.Variable(rng.uniform(-1, 1, (3, 4, 4)).astype(np.float32) * spread)
    scale = tf.ones([3, 4, 4])
    q = igrd.igr_sb(loc, scale, tau, log_space=False, threshold=0.99)
    q_log = igrd.igr_sb(loc, scale, tau, log_space=True, threshold=0.99)
    y = q_log.sample(4, seed=(3, 4))
    psi = tf.exp(y)
    with tf.GradientTape() as tape:
        lp = q.log_prob(tf.stop_gradient(psi))
        total = tf.reduce_sum(tf.where(tf.math.is_finite(lp), lp, tf.zeros_like(lp)))
    grad = tape.gradient(total, loc)
    lp = lp.numpy()
    assert not np.isnan(lp).any()
    assert np.all(np.isfinite(grad.numpy()))
    holes = np.any((psi.numpy() == 0) & np.isfinite(y.numpy()), axis=-1)
    assert holes.any() and np.all(np.isneginf(lp[holes]))
    # The rest: the log-space density minus the volume ½ log(n + 1) + Σ_kept log ψ of the face
    # (n sticks, categories 1..n+1).
    n = q_log.num_sticks(y).numpy()
    kept = np.arange(1, 6) <= n[..., None] + 1
    volume = 0.5 * np.log1p(n) + np.sum(np.where(kept, y.numpy(), 0.0), axis=-1)
    expected = q_log.log_prob(y).numpy() - volume
    np.testing.assert_allclose(lp[~holes], expected[~holes], rtol=2e-4, atol=2e-3)


def test_adaptive_and_perturbation_distributions_are_composite_tensors():
    """TFP's convention (AutoCompositeTensorDistribution): a distribution passes through
    tf.function as a value, as IGR-I's, GS's and TFP's own do; these two raised TypeError."""
    from igr_tf.perturbations.relaxed import ExpRelaxedPerturbation

    rng = np.random.default_rng(3)
    loc = tf.constant(rng.normal(0.0, 1.0, [2, 6]).astype(np.float32))
    made = {
        "adaptive": lambda: igrd.igr_sb(loc, tf.ones([2, 6]), 0.5, threshold=0.9),
        "perturbation": lambda: ExpRelaxedPerturbation(0.5, loc),
    }
    for name, make in made.items():
        d = make()
        assert isinstance(d, tf.__internal__.CompositeTensor), name
        passed = tf.function(lambda x: x)(d)  # in and out of a traced function
        y = d.sample(3, seed=(1, 2))
        np.testing.assert_array_equal(passed.log_prob(y), d.log_prob(y), err_msg=name)
        np.testing.assert_array_equal(tf.function(make)().sample(3, seed=(1, 2)), y, err_msg=name)


def test_adaptive_kl_divergence_says_what_to_use_instead():
    q = igrd.igr_sb(tf.zeros([4]), tf.ones([4]), 0.5, threshold=0.9)
    with pytest.raises(NotImplementedError, match="kl_given_truncation"):
        tfp.distributions.kl_divergence(q, q)
