"""The unbiased estimators of igr_tf.estimators: mean gradient = exact gradient within 3 SE.

Every unbiased estimator is checked on a binary problem and on a categorical one (DisARM, binary
only, on two binary problems); each IGR variant of an estimator on one of them. Exact gradients come
from routes independent of the estimators: closed forms (softmax and normal-CDF derivatives, written
here in numpy), enumeration of every outcome (numpy objective values, or TF autodiff of the
enumerated expectation with IGR-I's quadrature pmf, itself checked against Monte Carlo in
test_categorical.py), and central finite differences of IGR-SB's numpy quadrature pmf. Draws are
independent copies of the parameters in one batch (each example's gradient is one draw), with fixed
seeds. Also: REBAR/RELAX give the decoder the gradient of f at the discrete sample only, and RELAX's
learned control variate has lower variance than REBAR's.
"""

from __future__ import annotations

import itertools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from igr_tf import categorical, estimators, toys  # noqa: E402

MIN_SCALE = 1e-4
POWER, TARGET = 3.0, 0.45


def xi_for_scale(scale):
    return np.log(np.expm1(np.asarray(scale, np.float64) - MIN_SCALE))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def normal_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def normal_cdf(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


# --- problems ---------------------------------------------------------------------------------

BINARY_V = 4
BINARY_TOY = toys.PolynomialToy(BINARY_V, power=POWER, target=TARGET)
CAT_TOY = toys.CategoricalToy(3, 4, power=3.0, seed=0)


def binary_exact(params, family):
    """Exact gradient of (1/V) Σ_i E|b_i − t|^p, b_i = 1 w.p. q_i (numpy closed forms)."""
    delta = ((1 - TARGET) ** POWER - TARGET**POWER) / BINARY_V
    grad = np.zeros_like(params)
    for i, row in enumerate(params):
        if family == "logits":  # q = σ(θ0 − θ1)
            q = 1 / (1 + math.exp(-(row[0] - row[1])))
            grad[i] = delta * q * (1 - q) * np.array([1.0, -1.0])
        else:  # IGR, K = 2: q = P(z > 0) = Φ(μ/σ), σ = softplus(ξ) + 1e-4
            mu, xi = row
            sigma = math.log1p(math.exp(xi)) + MIN_SCALE
            dq_dmu = normal_pdf(mu / sigma) / sigma
            dq_dxi = normal_pdf(mu / sigma) * (-mu / sigma**2) / (1 + math.exp(-xi))
            grad[i] = delta * np.array([dq_dmu, dq_dxi])
    return grad


def categorical_values():
    """The categorical toy's loss at each of its K^V outcomes, in numpy (outcomes, values)."""
    w, y = CAT_TOY.embedding, CAT_TOY.goal
    outcomes = list(itertools.product(range(4), repeat=3))
    values = [np.linalg.norm(sum(w[v, b] for v, b in enumerate(o)) - y) ** 3 for o in outcomes]
    return outcomes, np.array(values)


def categorical_exact_logits(theta):
    pi = softmax(theta)
    grad = np.zeros_like(theta)
    for o, value in zip(*categorical_values(), strict=True):
        prob = np.prod([pi[v, b] for v, b in enumerate(o)])
        for v, b in enumerate(o):
            grad[v] += value * prob * (np.eye(4)[b] - pi[v])
    return grad


def categorical_exact_igr_i(params):
    outcomes, values = categorical_values()
    one_hot = tf.constant(np.eye(4)[np.array(outcomes)])  # [64, V, K]
    p = tf.constant(params)
    with tf.GradientTape() as tape:
        tape.watch(p)
        loc, raw = tf.split(p, 2, -1)
        log_pmf = categorical.igr_i_log_pmf(loc, tf.math.softplus(raw) + MIN_SCALE)
        probs = tf.exp(tf.einsum("vk,ovk->o", log_pmf, one_hot))
        expectation = tf.reduce_sum(probs * values)
    return tape.gradient(expectation, p).numpy()


def categorical_exact_igr_sb(loc, scale, h=1e-2):
    """Gradient of E[f] in each location and in each variable's common scale (central finite
    differences of categorical.stick_breaking_pmf, which takes one scale per variable)."""
    outcomes, values = categorical_values()

    def pmf(mu, sigma):
        return categorical.stick_breaking_pmf(mu, sigma, grid_step=0.01, num_nodes=32)

    base = [pmf(loc[v], scale[v]) for v in range(3)]

    def expectation(v, pmf_v):
        pmfs = [pmf_v if u == v else base[u] for u in range(3)]
        return sum(
            val * np.prod([pmfs[u][b] for u, b in enumerate(o)])
            for o, val in zip(outcomes, values, strict=True)
        )

    d_loc, d_scale = np.zeros_like(loc), np.zeros(3)
    for v in range(3):
        for j in range(3):
            up, down = loc[v].copy(), loc[v].copy()
            up[j] += h
            down[j] -= h
            d_loc[v, j] = expectation(v, pmf(up, scale[v])) - expectation(v, pmf(down, scale[v]))
            d_loc[v, j] /= 2 * h
        d_scale[v] = expectation(v, pmf(loc[v], scale[v] + h)) - expectation(
            v, pmf(loc[v], scale[v] - h)
        )
        d_scale[v] /= 2 * h
    return d_loc, d_scale


# --- the check ---------------------------------------------------------------------------------


def draws(est, objective, params, n, seed, chunk=2000):
    out = []
    for start in range(0, n, chunk):
        tiled = tf.constant(np.broadcast_to(params, (min(chunk, n - start), *params.shape)))
        out.append(est.gradient(objective, tiled, seed=[seed, start])[1].numpy())
    return np.concatenate(out)


def assert_unbiased(g, exact):
    mean, se = g.mean(0), g.std(0, ddof=1) / math.sqrt(len(g))
    z = np.abs(mean - exact) / np.where(se > 0, se, np.inf)
    assert np.all(se[np.abs(exact) > 1e-12] > 0)
    assert np.all(z < 3.0), f"max |z| = {z.max():.2f}; mean {mean}, exact {exact}, se {se}"


RNG = np.random.default_rng(2024)
LOGITS_B = RNG.normal(0, 1.0, (BINARY_V, 2))
IGR_B = np.stack(
    [RNG.normal(0, 0.8, BINARY_V), xi_for_scale(np.exp(RNG.normal(0, 0.3, BINARY_V)))], -1
)
LOGITS_C = RNG.normal(0, 1.0, (3, 4))
IGR_C = np.concatenate(
    [RNG.normal(0, 0.7, (3, 3)), xi_for_scale(np.exp(RNG.normal(0, 0.3, (3, 3))))], -1
)

# (name, options, family of its parameters, draws on the binary / categorical problem; 0: not
# run). Each estimator is checked on both problems with the logits family; its IGR variants,
# which share the estimator's code and differ in the family's pmf and conditional z | b, on one
# problem each (the categorical one where the IGR-I conditional needs its K > 2 root-finding).
UNBIASED = [
    ("reinforce_loo", {"num_samples": 3}, "logits", 4000, 4000),
    ("reinforce_loo", {"distribution": "igr_i"}, "igr", 0, 400),
    ("rebar", {"relaxation": "gs"}, "logits", 4000, 4000),
    ("rebar", {"relaxation": "gs", "conditioning": "noise"}, "logits", 4000, 4000),
    ("rebar", {"relaxation": "igr_i"}, "igr", 0, 200),
    ("relax", {"relaxation": "gs", "zero_init": False, "seed": 0}, "logits", 4000, 4000),
    ("relax", {"relaxation": "igr_i", "zero_init": False, "seed": 0}, "igr", 2000, 0),
]


@pytest.mark.parametrize("name,options,family,n_binary,n_cat", UNBIASED)
def test_mean_gradient_equals_exact_gradient(name, options, family, n_binary, n_cat):
    if n_binary:
        est = estimators.get(name, 2, **options)
        params = LOGITS_B if family == "logits" else IGR_B
        g = draws(est, BINARY_TOY.objective, params, n_binary, seed=1)
        assert_unbiased(g, binary_exact(params, family))
    if n_cat:
        est = estimators.get(name, 4, **options)
        params = LOGITS_C if family == "logits" else IGR_C
        exact = (
            categorical_exact_logits(params)
            if family == "logits"
            else categorical_exact_igr_i(params)
        )
        g = draws(est, CAT_TOY.objective, params, n_cat, seed=2)
        assert_unbiased(g, exact)


def test_igr_sb_control_variates_are_unbiased():
    # K = 2 (RELAX): IGR-SB's b is IGR-I's (b = 1 iff z > 0), with its exact conditional.
    options = {"relaxation": "igr_sb", "zero_init": False, "seed": 1}
    est = estimators.get("relax", 2, **options)
    assert est.conditioning == "discrete"
    assert_unbiased(
        draws(est, BINARY_TOY.objective, IGR_B, 3000, seed=3), binary_exact(IGR_B, "igr")
    )
    # K = 4 (REBAR): no pmf, the score of the noise z; equal scales within a variable for the
    # reference.
    est = estimators.get("rebar", 4, **options)
    assert est.conditioning == "noise"
    loc, scale = IGR_C[:, :3], np.array([0.8, 1.0, 1.3])
    params = np.concatenate([loc, np.repeat(xi_for_scale(scale)[:, None], 3, 1)], -1)
    g = draws(est, CAT_TOY.objective, params, 6000, seed=4)
    d_loc, d_scale = categorical_exact_igr_sb(loc, scale)
    # d/dξ_j = d/dσ · dσ/dξ_j, and the common scale moves all three ξ_j of a variable.
    dsigma_dxi = 1 / (1 + np.exp(-xi_for_scale(scale)))
    combined = np.concatenate([g[..., :3], g[..., 3:].sum(-1, keepdims=True)], -1)
    assert_unbiased(combined, np.concatenate([d_loc, (d_scale * dsigma_dxi)[:, None]], -1))


def coupled_binary(samples):
    b = samples[..., 0]
    w = tf.constant([0.9, -1.4, 0.6], samples.dtype)
    return tf.sin(tf.reduce_sum(b * w, -1) + 0.3) + tf.reduce_prod(b, -1)


def test_disarm_is_unbiased_on_two_binary_problems():
    est = estimators.get("disarm", 2)
    g = draws(est, BINARY_TOY.objective, LOGITS_B, 6000, seed=5)
    assert_unbiased(g, binary_exact(LOGITS_B, "logits"))
    theta = LOGITS_B[:3]
    q = 1 / (1 + np.exp(-(theta[:, 0] - theta[:, 1])))
    exact = np.zeros_like(theta)
    for bits in itertools.product([0, 1], repeat=3):
        b = np.array(bits, np.float64)
        value = math.sin(b @ np.array([0.9, -1.4, 0.6]) + 0.3) + np.prod(b)
        prob = np.prod(np.where(b == 1, q, 1 - q))
        d_alpha = prob * (b - q)  # ∂ log p / ∂ α_i = b_i − q_i
        exact += value * np.stack([d_alpha, -d_alpha], -1)
    assert_unbiased(draws(est, coupled_binary, theta, 6000, seed=6), exact)
    with pytest.raises(ValueError, match="binary"):
        estimators.get("disarm", 3)


# --- VIMCO: the multi-sample bound, with a log q term inside the objective ----------------------


def vimco_case(k, v, s, seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1.0, (v, k))
    score = rng.normal(0, 1.5, (v, k))

    def log_weight(samples, params):  # g(b) − log q(b | θ): a log p(x, b) − log q(b) stand-in
        g = tf.reduce_sum(samples * tf.constant(score, samples.dtype), [-2, -1])
        log_q = tf.reduce_sum(samples * tf.math.log_softmax(params, -1), [-2, -1])
        return tf.sin(g) - log_q

    # Exact ∇ E[log (1/S) Σ_s exp w(b_s)] by enumerating all S-tuples of outcomes (TF autodiff).
    outcomes = np.eye(k)[np.array(list(itertools.product(range(k), repeat=v)))]  # [O, V, K]
    p = tf.constant(theta)
    with tf.GradientTape() as tape:
        tape.watch(p)
        o = tf.constant(outcomes)
        log_q = tf.einsum("vk,ovk->o", tf.math.log_softmax(p, -1), o)
        w = log_weight(o, p)
        tuples = np.array(list(itertools.product(range(len(outcomes)), repeat=s)))  # [O^S, S]
        probs = tf.exp(tf.reduce_sum(tf.gather(log_q, tuples), -1))
        bounds = tf.reduce_logsumexp(tf.gather(w, tuples), -1) - math.log(s)
        total = tf.reduce_sum(probs * bounds)
    return theta, log_weight, tape.gradient(total, p).numpy()


@pytest.mark.parametrize("k,v,s", [(2, 3, 3), (3, 2, 2)])
def test_vimco_is_unbiased_for_the_multi_sample_bound(k, v, s):
    theta, log_weight, exact = vimco_case(k, v, s, seed=k)
    est = estimators.get("vimco", k, num_samples=s)
    n = 6000
    tiled = tf.constant(np.broadcast_to(theta, (n, v, k)))
    _, g = est.gradient(lambda d: log_weight(d, tiled), tiled, seed=[7, k])
    assert_unbiased(g.numpy(), exact)


# --- REBAR/RELAX: what each variable's gradient is --------------------------------------------


def test_control_variate_estimators_give_the_decoder_the_gradient_at_b_only():
    decoder = tf.Variable(np.random.default_rng(0).normal(size=(4, 2)), dtype=tf.float64)
    seen = []

    def f(samples):
        seen.append(samples[0])  # the discrete sample comes first
        return tf.reduce_sum(tf.einsum("...vk,kd->...vd", samples, decoder) ** 2, [-2, -1])

    for name in ("rebar", "relax"):
        est = estimators.get(name, 4, relaxation="gs", zero_init=False)
        params = tf.constant(LOGITS_C[None].repeat(5, 0))
        with tf.GradientTape() as tape:
            seen.clear()
            loss = tf.reduce_mean(est.surrogate(f, params, seed=[1, 1]))
        got = tape.gradient(loss, decoder)
        hard = seen[0]
        assert np.all(np.isin(hard.numpy(), [0.0, 1.0]))
        with tf.GradientTape() as tape:
            direct = tf.reduce_mean(
                tf.reduce_sum(tf.einsum("bvk,kd->bvd", hard, decoder) ** 2, [-2, -1])
            )
        np.testing.assert_allclose(got.numpy(), tape.gradient(direct, decoder).numpy(), rtol=1e-12)


def train_control(est, toy, params, steps, seed):
    variables = est.trainable_variables
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(variables)
    tiled = tf.constant(np.broadcast_to(params, (64, *params.shape)))

    @tf.function
    def step(s):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(est.surrogate(toy.objective, tiled, seed=s))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    for i in range(steps):
        step(tf.constant([seed, i]))


def test_relax_learned_control_variate_beats_rebar_on_the_toy():
    toy = toys.PolynomialToy(8, power=3.0)
    params = np.random.default_rng(0).normal(0, 1.0, (8, 2))
    variances = {}
    for name in ("rebar", "relax"):
        est = estimators.get(name, 2, relaxation="gs", temperature=0.5)
        est.build(8, "float64")
        before = toys.gradient_report(est, toy, params, 400, seed=5)["total_variance"]
        train_control(est, toy, params, 50, seed=9)
        variances[name] = toys.gradient_report(est, toy, params, 400, seed=6)["total_variance"]
        assert variances[name] < 0.5 * before, (name, before, variances[name])
        assert float(est.temperature) != pytest.approx(0.5)  # λ was learned
    assert variances["relax"] < 0.5 * variances["rebar"], variances


def test_control_variate_options_and_errors():
    with pytest.raises(ValueError, match="conditioning"):
        estimators.get("rebar", 4, relaxation="igr_sb", conditioning="discrete")
    with pytest.raises(ValueError, match="Unknown relaxation"):
        estimators.get("relax", 4, relaxation="igr_planar")
    with pytest.raises(ValueError, match="exact pmf"):
        estimators.get("reinforce_loo", 4, distribution="igr_sb")
    with pytest.raises(ValueError, match="num_samples"):
        estimators.get("vimco", 4, num_samples=1)
    est = estimators.get("rebar", 3, learn_control=False)
    est.build(2)
    assert est.trainable_variables == []
