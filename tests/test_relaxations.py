"""The relaxation recipes: registry, priors, induced categoricals, KL estimators, robustness."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from reference import exp_concrete_log_prob, normal_log_pdf, uniform_prior_loc
from validation_checks import assert_run_time_checks

from igr_tf import categorical
from igr_tf.distributions import relaxations

ALL = relaxations.names()


def planar_weights(relaxation, num_vars, seed=0, std=0.5):
    rng = np.random.default_rng(seed)
    return {
        k: tf.constant(rng.normal(0, std, s.shape), tf.float32)
        for k, s in relaxation.weight_specs(num_vars).items()
    }


def params_for(relaxation, shape, seed=0, std=1.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.normal(0, std, (*shape, relaxation.num_params)).astype(dtype)


# --- registry -------------------------------------------------------------------------------------


def test_registry_names_and_parameter_counts():
    assert ALL == ("igr_i", "igr_sb", "igr_planar", "gs", "perturb_exponential")
    for name in ALL:
        r = relaxations.get(name, 7)
        assert r.num_params == (12 if name.startswith("igr") else 7)
        assert relaxations.get_class(name).num_categories_for(r.num_params) == 7


def test_every_relaxation_has_the_default_temperatures_train_py_reads():
    """train.py's VAE and approximation tasks default --temperature from these tables; a
    relaxation missing from one fails there with a KeyError (it did for perturb_exponential)."""
    from igr_tf import paper

    assert set(paper.VAE_TEMPERATURE) == set(ALL)
    assert set(paper.APPROX_TEMPERATURE) == set(ALL)


def test_registry_rejects_bad_arguments_naming_them():
    with pytest.raises(ValueError, match="Unknown relaxation 'nope'; known relaxations: igr_i"):
        relaxations.get("nope", 3)
    with pytest.raises(ValueError, match="Bad option"):
        relaxations.get("igr_i", 3, flows=2)
    with pytest.raises(ValueError, match="kl"):
        relaxations.get("igr_i", 3, kl="exact")
    for name in ("igr_planar", "gs", "perturb_exponential"):
        with pytest.raises(ValueError, match="no closed-form KL"):
            relaxations.get(name, 3, kl="closed")
    with pytest.raises(ValueError, match="threshold"):
        relaxations.get("igr_sb", 3, adaptive=True, threshold=0.0)
    with pytest.raises(ValueError, match="delta = 1"):
        relaxations.get("igr_sb", 3, delta=2.0)
    with pytest.raises(ValueError, match="num_mc_samples"):
        relaxations.get("igr_sb", 3, num_mc_samples=0)
    with pytest.raises(ValueError, match="num_flows"):
        relaxations.get("igr_planar", 3, num_flows=0)
    with pytest.raises(ValueError, match="num_categories"):
        relaxations.get("igr_i", 1)
    with pytest.raises(ValueError, match="`num_categories` must be an integer"):
        relaxations.get("igr_i", None)
    with pytest.raises(ValueError, match="even"):
        relaxations.get_class("igr_i").num_categories_for(5)
    r = relaxations.get("igr_i", 4)
    with pytest.raises(ValueError, match="last axis 6"):
        r.draw(np.zeros((2, 3, 5), np.float32), 0.5)
    with pytest.raises(TypeError, match="floating point"):
        r.draw(tf.zeros((2, 3, 6), tf.int32), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        r.draw(np.zeros((2, 3, 6), np.float32), 0.0)


# --- priors: uniform induced categorical, computed once -----------------------------------------


@pytest.mark.parametrize("delta,tau", [(1.0, 1.0), (0.5, 0.1), (3.0, 0.7)])
@pytest.mark.parametrize("name", ["igr_i", "igr_planar"])
def test_prior_induces_the_uniform_categorical_for_any_delta(name, delta, tau):
    """The issue's case: δ = 0.5, τ = 0.1 used to put about half the prior's mass on category K."""
    k, n = 10, 40_000
    r = relaxations.get(name, k, delta=delta)
    weights = planar_weights(r, 1) if name == "igr_planar" else None
    y = r.prior(tf.constant(tau), weights, num_vars=1, log_space=True).sample(n, seed=(3, 1))
    freq = np.bincount(np.argmax(y[:, 0], -1), minlength=k) / n
    se = np.sqrt(0.1 * 0.9 / n)
    assert np.all(np.abs(freq - 0.1) < 4 * se), freq
    np.testing.assert_allclose(np.exp(r.prior_categorical_log_probs(tau)), 0.1, atol=1e-9)
    # The location is the closed form with the threshold τ log δ.
    loc0, _ = r.prior_loc_scale(tau, tf.float64)
    np.testing.assert_allclose(loc0, uniform_prior_loc(k, tau, delta), rtol=1e-12)


def test_igr_sb_prior_induces_the_uniform_categorical():
    k, n = 8, 40_000
    r = relaxations.get("igr_sb", k)
    y = r.prior(0.1, num_vars=1, log_space=True).sample(n, seed=(5, 2))
    freq = np.bincount(np.argmax(y[:, 0], -1), minlength=k) / n
    assert np.all(np.abs(freq - 1 / k) < 4 * np.sqrt((1 / k) * (1 - 1 / k) / n)), freq
    np.testing.assert_allclose(np.exp(r.prior_categorical_log_probs()), 1 / k, atol=1e-4)


def test_priors_are_computed_when_the_relaxation_is_built_not_at_trace_time(monkeypatch):
    built = {name: relaxations.get(name, 6) for name in ALL}
    built["adaptive"] = relaxations.get("igr_sb", 6, adaptive=True, threshold=0.9)

    def forbidden(*args, **kwargs):
        raise AssertionError("prior computed at trace time")

    for fn in ("fit_stick_breaking_prior", "stick_breaking_pmf", "uniform_prior_loc"):
        monkeypatch.setattr(categorical, fn, forbidden)
    for r in built.values():
        weights = planar_weights(r, 2) if r.name == "igr_planar" else None
        draw = tf.function(lambda p, r=r, w=weights: r.draw(p, 0.5, w, seed=(1, 1)).kl)
        assert np.all(np.isfinite(draw(params_for(r, (3, 2)))))
        assert np.all(np.isfinite(r.prior_categorical_log_probs(0.5)))


# --- the induced categorical --------------------------------------------------------------------


@pytest.mark.parametrize("name,delta", [("igr_i", 1.0), ("igr_i", 0.3), ("gs", 1.0)])
def test_exact_categorical_is_the_law_of_the_argmax(name, delta):
    """IGR-I (quadrature, with threshold τ log δ) and GS (softmax): against argmax frequencies."""
    options = {"delta": delta} if name == "igr_i" else {}
    r = relaxations.get(name, 5, **options)
    params = params_for(r, (2,), seed=4)
    tau, n = 0.4, 60_000
    log_pmf = r.categorical_log_probs(params, temperature=tau).numpy()
    tiled = np.broadcast_to(params, (n, *params.shape))
    y = r.draw(tiled, tau, seed=(8, 8)).log_sample.numpy()
    for v in range(2):
        freq = np.bincount(np.argmax(y[:, v], -1), minlength=5) / n
        p = np.exp(log_pmf[v])
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-4), (freq, p)


@pytest.mark.parametrize("name", ["igr_sb", "igr_planar"])
def test_monte_carlo_categorical_matches_fresh_argmax_frequencies(name):
    r = relaxations.get(name, 5, num_mc_samples=20_000)
    weights = planar_weights(r, 2) if name == "igr_planar" else None
    params = params_for(r, (2,), seed=5)
    p = np.exp(r.categorical_log_probs(params, weights, 0.5, seed=(1, 2)).numpy())
    y = r.draw(np.broadcast_to(params, (20_000, 2, r.num_params)), 0.5, weights, seed=(9, 9))
    for v in range(2):
        freq = np.bincount(np.argmax(y.log_sample[:, v], -1), minlength=5) / 20_000
        se = np.sqrt(2 * (p[v] * (1 - p[v]) + 1e-4) / 20_000)
        assert np.all(np.abs(freq - p[v]) < 4 * se), (freq, p[v])


def test_igr_sb_every_category_can_win():
    """The original code's softmax++ of raw stick lengths could never select the last one."""
    r = relaxations.get("igr_sb", 4)
    params = np.zeros((1, 6), np.float32)
    params[0, 2] = -8.0  # a tiny last stick -> the remainder η_K is the largest piece
    y = r.draw(np.broadcast_to(params, (2000, 1, 6)), 0.1, seed=(1, 1)).log_sample
    counts = np.bincount(np.argmax(y[:, 0], -1), minlength=4)
    assert counts[-1] > 100 and counts[2] == 0, counts  # a tiny third stick: its piece never wins
    y = r.draw(np.zeros((2000, 1, 6), np.float32), 0.1, seed=(1, 1)).log_sample
    assert np.all(np.bincount(np.argmax(y[:, 0], -1), minlength=4) > 0)


# --- KL estimators ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["igr_i", "igr_sb"])
def test_closed_kl_is_the_mean_of_the_sampled_kl(name):
    closed = relaxations.get(name, 5, kl="closed")
    sampled = relaxations.get(name, 5, kl="sampled")
    params = params_for(closed, (3,), seed=6, dtype=np.float64)
    n = 40_000
    kl = closed.draw(params, 0.3, seed=(1, 1)).kl.numpy()
    mc = sampled.draw(np.broadcast_to(params, (n, 3, 8)), 0.3, seed=(2, 2)).kl.numpy()
    se = mc.std(0) / np.sqrt(n)
    assert np.all(np.abs(mc.mean(0) - kl) < 4 * se)


def test_planar_sampled_kl_is_the_flow_change_of_variables():
    """log N(z; μ, σ) - Σ log|det ∂f/∂z| (autodiff) - log N(λ; μ0, 1), on the draw's own z."""
    r = relaxations.get("igr_planar", 4)
    w = planar_weights(r, 2, seed=1)
    params = tf.constant(params_for(r, (5, 2), seed=7))
    draw = r.draw(params, 0.5, w, seed=(3, 3))
    q, _ = r.distributions(params, 0.5, w)
    z = q.distribution.sample(seed=(3, 3))
    flows = r.map(w)
    with tf.GradientTape() as tape:
        tape.watch(z)
        lam = flows.forward(z)
    jac = tape.batch_jacobian(lam, z).numpy()  # [5, 2, 3, 2, 3]: variables are independent
    log_det = np.log(np.abs(np.linalg.det(np.stack([jac[:, v, :, v, :] for v in range(2)], 1))))
    loc, scale = (t.numpy() for t in r.loc_scale(params))
    expected = (
        normal_log_pdf(z.numpy(), loc, scale).sum(-1)
        - log_det
        - normal_log_pdf(lam.numpy(), uniform_prior_loc(4), 1.0).sum(-1)
    )
    np.testing.assert_allclose(draw.kl, expected, rtol=1e-4, atol=1e-4)


def test_gs_sampled_kl_is_the_exp_concrete_density_ratio():
    r = relaxations.get("gs", 6, prior_temperature=0.3)
    params = params_for(r, (4, 3), seed=8)
    draw = r.draw(params, 0.05, seed=(4, 4))
    y = draw.log_sample.numpy()
    expected = exp_concrete_log_prob(y, params, 0.05) - exp_concrete_log_prob(y, np.zeros(6), 0.3)
    np.testing.assert_allclose(draw.kl, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ALL)
def test_stick_the_landing_same_value_other_gradient(name):
    plain = relaxations.get(name, 4, kl="sampled")
    stl = relaxations.get(name, 4, kl="sampled", stick_the_landing=True)
    w = planar_weights(plain, 3) if name == "igr_planar" else None
    params = tf.Variable(params_for(plain, (5, 3), seed=9))
    grads, values = [], []
    for r in (plain, stl):
        with tf.GradientTape() as tape:
            kl = tf.reduce_sum(r.draw(params, 0.5, w, seed=(6, 6)).kl)
        values.append(float(kl))
        grads.append(tape.gradient(kl, params).numpy())
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    assert not np.allclose(grads[0], grads[1])


@pytest.mark.parametrize("name", ["igr_i", "igr_sb"])
def test_stick_the_landing_gradient_vanishes_when_the_posterior_is_the_prior(name):
    r = relaxations.get(name, 5, kl="sampled", stick_the_landing=True)
    loc0, scale0 = (t.numpy() for t in r.prior_loc_scale(0.5, tf.float32))
    raw = np.log(np.expm1(scale0 - 1e-4))
    params = tf.Variable(np.tile(np.concatenate([loc0, raw]), (6, 2, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        kl = tf.reduce_sum(r.draw(params, 0.5, seed=(2, 1)).kl)
    np.testing.assert_allclose(tape.gradient(kl, params), 0.0, atol=1e-5)


def test_adaptive_draw_reports_sticks_and_uses_the_truncated_kl():
    r = relaxations.get("igr_sb", 10, adaptive=True, threshold=0.9)
    params = params_for(r, (50, 2), seed=10, std=2.0)
    draw = r.draw(params, 0.3, seed=(7, 1))
    q, p = r.distributions(params, 0.3)
    n = q.num_sticks(draw.log_sample)
    np.testing.assert_array_equal(draw.metrics["N"], tf.cast(n, tf.float32))
    assert 1 <= n.numpy().min() and n.numpy().max() <= 9 and n.numpy().mean() < 8
    np.testing.assert_allclose(draw.kl, q.kl_given_truncation(p, draw.log_sample), rtol=1e-6)
    sampled = relaxations.get("igr_sb", 10, adaptive=True, threshold=0.9, kl="sampled")
    s = sampled.draw(params, 0.3, seed=(7, 1))
    np.testing.assert_allclose(s.kl, q.log_prob(s.log_sample) - p.log_prob(s.log_sample), rtol=1e-5)


# --- robustness: extremes, float32 and float64 --------------------------------------------------

SWEEP = [
    ("igr_i", {}),
    ("igr_i", {"delta": 0.2}),
    ("igr_sb", {}),
    ("igr_sb", {"adaptive": True, "threshold": 0.99}),
    ("igr_planar", {}),
    ("gs", {}),
    ("perturb_exponential", {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", SWEEP, ids=lambda c: str(c))
def test_draw_is_finite_for_extreme_parameters_and_temperatures(name, options, dtype):
    r = relaxations.get(name, 8, **options)
    w = planar_weights(r, 4) if name == "igr_planar" else None
    if w:
        w = {k: tf.cast(v, dtype) for k, v in w.items()}
    rng = np.random.default_rng(11)
    params = rng.choice([-50.0, -5.0, 0.0, 5.0, 50.0], size=(16, 4, r.num_params)).astype(dtype)
    params = tf.Variable(params)
    for tau in (0.01, 1.0, 10.0):
        with tf.GradientTape() as tape:
            draw = r.draw(params, tf.constant(tau, dtype), w, seed=(1, 5))
            loss = tf.reduce_sum(draw.sample * np.arange(8.0, dtype=dtype)) + tf.reduce_sum(draw.kl)
        y = draw.log_sample.numpy()
        assert np.all(np.isfinite(draw.kl)), (tau, draw.kl)
        np.testing.assert_allclose(tf.reduce_logsumexp(y, -1), 0.0, atol=1e-5)
        assert np.all(y <= 0.0)
        grad = tape.gradient(loss, params).numpy()
        assert np.all(np.isfinite(grad)), tau


@pytest.mark.parametrize("name", ["gs", "perturb_exponential"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
def test_logits_relaxations_validate_their_parameters_by_name(name, compiled):
    """validate_args: NaN logits and a run-time temperature ≤ 0 or inf are named errors, not a
    NaN or uniform sample (TFP's own check said "Condition x > 0 did not hold", and let NaN
    logits and an infinite temperature through)."""
    r = relaxations.get(name, 4, validate_args=True)
    tau = tf.Variable(0.5)
    logits = np.zeros([2, 4], np.float32)

    def draw(params):
        return r.draw(params, tau, seed=1).sample

    call = tf.function(draw) if compiled else draw
    taus = {-1.0: "`temperature` must be > 0", np.inf: "`temperature` must be finite"}
    assert_run_time_checks(call, logits, "`logits` must be finite", tau.assign, taus)
