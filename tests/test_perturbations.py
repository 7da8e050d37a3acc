"""Tests for igr_tf.perturbations: perturb-and-MAP families, their estimators, the relaxations.

Independent routes: chi-square tests of sample frequencies against softmax(logits); Monte Carlo
means and variances against closed forms from the literature (within 3 standard errors, fixed
seeds); quadrature for the relaxed densities' normalisation; TFP's ExpRelaxedOneHotCategorical
for the Gumbel family's density.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf.distributions import relaxations
from igr_tf.perturbations import estimators as est
from igr_tf.perturbations import families, relaxed

tfd = tfp.distributions

LOGITS = np.array([1.3, -0.2, 0.0, 2.1, -1.5, 0.7])  # log Z ≈ 3.03; not normalised on purpose
LOG_Z = float(np.logaddexp.reduce(LOGITS))
PROBS = np.exp(LOGITS - LOG_Z)
FAMILY_CASES = [
    ("gumbel", None),
    ("exponential", None),
    ("weibull", 0.5),
    ("weibull", 2.0),
    ("frechet", 0.3),
    ("pareto", None),
]


def chi_square_p_value(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """Pearson chi-square goodness-of-fit p-value; cells expected below `min_expected` pooled."""
    counts = np.asarray(counts, np.float64)
    expected = counts.sum() * np.asarray(probs, np.float64)
    small = expected < min_expected
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    stat = float(np.sum((counts - expected) ** 2 / expected))
    dof = len(counts) - 1
    return float(tf.math.igammac(tf.constant(dof / 2, tf.float64), stat / 2))


def assert_mean_and_variance(samples, mean: float, variance: float) -> None:
    """Sample mean and variance of `samples` (axis 0) within 3 standard errors of the claims."""
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    m, s2 = x.mean(), x.var(ddof=1)
    se_mean = math.sqrt(s2 / n)
    m4 = np.mean((x - m) ** 4)
    se_var = math.sqrt(max(m4 - s2**2, 0.0) / n)
    assert abs(m - mean) < 3 * se_mean, (m, mean, se_mean)
    assert abs(s2 - variance) < 3 * se_var, (s2, variance, se_var)


# Perturb-and-MAP sampling.


@pytest.mark.parametrize("name, alpha", FAMILY_CASES)
def test_every_family_samples_the_categorical(name, alpha):
    out = families.perturb_and_map(
        tf.constant(LOGITS, tf.float64), name, alpha=alpha, sample_shape=[40_000], seed=[3, 11]
    )
    counts = np.bincount(out.sample.numpy(), minlength=LOGITS.size)
    assert chi_square_p_value(counts, PROBS) > 1e-3


def test_families_return_the_same_sample_for_the_same_noise():
    draws = [
        families.perturb_and_map(LOGITS, name, alpha=a, sample_shape=[2000], seed=[5, 6]).sample
        for name, a in FAMILY_CASES
    ]
    for other in draws[1:]:
        np.testing.assert_array_equal(draws[0].numpy(), other.numpy())


def test_gamma_noise_is_not_exact_and_the_test_sees_it():
    """Control: min_k Γ_k / p̃_k with Gamma(2) noise is not an exact sampler; chi-square rejects."""
    rng = np.random.default_rng(0)
    noise = rng.gamma(2.0, size=(40_000, LOGITS.size))
    sample = np.argmin(np.log(noise) - LOGITS, axis=-1)
    counts = np.bincount(sample, minlength=LOGITS.size)
    assert chi_square_p_value(counts, PROBS) < 1e-6


def test_gumbel_value_follows_gumbel_of_log_z():
    """max_k (φ_k + G_k) ~ Gumbel(log Z, 1): mean log Z + γ, variance π²/6 (exact law)."""
    out = families.perturb_and_map(LOGITS, "gumbel", sample_shape=[50_000], seed=[1, 2])
    assert_mean_and_variance(out.value.numpy(), LOG_Z + est.EULER_GAMMA, math.pi**2 / 6)


@pytest.mark.parametrize(
    "name, alpha, moment",
    [
        # E and Var of the family's extreme value, closed forms in Z.
        ("exponential", None, lambda z: (1 / z, 1 / z**2)),
        (
            "weibull",
            2.0,
            lambda z: (math.gamma(3) / z**2, (math.gamma(5) - math.gamma(3) ** 2) / z**4),
        ),
        (
            "frechet",
            0.3,
            lambda z: (
                math.gamma(0.7) * z**0.3,
                (math.gamma(0.4) - math.gamma(0.7) ** 2) * z**0.6,
            ),
        ),
    ],
)
def test_extreme_value_laws(name, alpha, moment):
    out = families.perturb_and_map(
        tf.constant(LOGITS, tf.float64), name, alpha=alpha, sample_shape=[50_000], seed=[7, 8]
    )
    mean, var = moment(math.exp(LOG_Z))
    assert_mean_and_variance(out.value.numpy(), mean, var)
    np.testing.assert_allclose(
        out.gumbel_value.numpy(),
        families.perturb_and_map(
            tf.constant(LOGITS, tf.float64), "gumbel", sample_shape=[50_000], seed=[7, 8]
        ).gumbel_value.numpy(),
        rtol=1e-5,
        atol=1e-4,
    )


def test_pareto_value_is_pareto_of_z():
    """P = min_k U_k^{-1/p̃_k} ~ Pareto(shape Z): P(P > p) = p^{-Z}, checked at three p."""
    logits = np.log(np.array([0.5, 1.0, 1.5]))  # Z = 3
    out = families.perturb_and_map(
        logits, "pareto", sample_shape=[50_000], seed=[9, 9]
    ).value.numpy()
    for p in (1.1, 1.3, 2.0):
        frac, expected = np.mean(out > p), p**-3.0
        assert abs(frac - expected) < 3 * math.sqrt(expected * (1 - expected) / out.size)


def _value_from_gumbel_scale(name: str, alpha, y: np.ndarray) -> np.ndarray:
    """The family's extreme value as a function of y = −log T (the table in families.py)."""
    with np.errstate(over="ignore"):
        return {
            "gumbel": lambda: y,
            "exponential": lambda: np.exp(-y),
            "weibull": lambda: np.exp(-alpha * y),
            "frechet": lambda: np.exp(alpha * y),
            "pareto": lambda: np.exp(np.exp(-y)),
        }[name]()


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("name, alpha", FAMILY_CASES)
def test_extreme_logits_stay_finite(name, alpha, dtype):
    logits = tf.constant([[50.0, -50.0, 0.0], [-50.0, -50.0, -49.0]], dtype)
    out = families.perturb_and_map(logits, name, alpha=alpha, sample_shape=[500], seed=[1, 1])
    y = out.gumbel_value.numpy()
    assert np.all(np.isfinite(y))
    counts = np.bincount(out.sample.numpy()[:, 0], minlength=3)
    assert counts[0] == 500  # p(0) = 1 − O(e^{-50})
    # The value itself is finite wherever the dtype can hold it (T^α with Z = e^{-49} cannot).
    expected = _value_from_gumbel_scale(name, alpha, y.astype(np.float64))
    with np.errstate(over="ignore"):
        expected = expected.astype(dtype.as_numpy_dtype)
    tiny = np.finfo(dtype.as_numpy_dtype).tiny  # TF flushes subnormals to zero
    np.testing.assert_allclose(out.value.numpy(), expected, rtol=1e-4, atol=tiny)


def test_perturb_and_map_works_in_tf_function():
    fn = tf.function(lambda s: families.perturb_and_map(LOGITS, "weibull", alpha=1.5, seed=s))
    first = fn(tf.constant([1, 2])).sample.numpy()
    assert first == fn(tf.constant([1, 2])).sample.numpy()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"family_name": "gamma"}, "must be one of"),
        ({"family_name": "weibull"}, "needs a shape parameter"),
        ({"family_name": "weibull", "alpha": -1.0}, "must be > 0"),
        ({"family_name": "frechet", "alpha": 1.0}, r"lie in \(0, 1\)"),
        ({"family_name": "gumbel", "alpha": 1.0}, "takes no"),
    ],
)
def test_bad_family_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        families.perturb_and_map(LOGITS, seed=[1, 1], **kwargs)


# Estimators: closed-form moments against Monte Carlo (Z = e^{LOG_Z}, scale-free claims).

M = 8
REPLICATES = 20_000


@pytest.fixture(scope="module")
def gumbel_values() -> np.ndarray:
    """[M, REPLICATES] Gumbel-scale MAP values of the full-rank trick."""
    out = families.perturb_and_map(
        tf.constant(LOGITS, tf.float64), "exponential", sample_shape=[M, REPLICATES], seed=[4, 2]
    )
    return out.gumbel_value.numpy()


def test_gumbel_log_z_estimator(gumbel_values):
    m = est.gumbel_log_z_moments(M)
    assert_mean_and_variance(est.log_z(gumbel_values, 0.0).numpy(), LOG_Z + m.bias, m.variance)


@pytest.mark.parametrize("unbiased", [False, True])
def test_exponential_log_z_estimators(gumbel_values, unbiased):
    m = est.exponential_log_z_moments(M, unbiased=unbiased)
    if unbiased:
        values = est.log_z_unbiased_exponential(gumbel_values)
    else:
        values = est.log_z(gumbel_values, 1.0)
    assert_mean_and_variance(values.numpy(), LOG_Z + m.bias, m.variance)
    assert (m.bias == 0) == unbiased


@pytest.mark.parametrize("unbiased", [False, True])
def test_exponential_z_estimators(gumbel_values, unbiased):
    m = est.exponential_z_moments(M, unbiased=unbiased)
    fn = est.z_unbiased_exponential if unbiased else (lambda y: est.z(y, 1.0))
    relative = fn(gumbel_values).numpy() / math.exp(LOG_Z)
    assert_mean_and_variance(relative, 1 + m.bias, m.variance)


def test_gumbel_z_estimator(gumbel_values):
    m = est.gumbel_z_moments(M)
    relative = est.z(gumbel_values, 0.0).numpy() / math.exp(LOG_Z)
    assert_mean_and_variance(relative, 1 + m.bias, m.variance)


@pytest.mark.parametrize("alpha", [-0.2, 0.5, 2.0])
def test_power_estimator_is_unbiased_for_z_to_minus_alpha(gumbel_values, alpha):
    m = est.power_moments(alpha, M)
    relative = est.power_estimate(gumbel_values, alpha).numpy() * math.exp(alpha * LOG_Z)
    assert_mean_and_variance(relative, 1.0, m.variance)


def test_alpha_log_z_asymptotic_variance():
    """At M = 400 the delta-method variance of log Ẑ_α is within 3 SE (bias is O(1/M))."""
    y = families.perturb_and_map(
        tf.constant(LOGITS, tf.float64), "gumbel", sample_shape=[400, 4000], seed=[1, 5]
    ).gumbel_value
    for alpha in (0.5, 1.5):
        values = est.log_z(y, alpha).numpy()
        var = est.alpha_log_z_asymptotic_variance(alpha, 400)
        se_var = var * math.sqrt(2 / values.size)
        assert abs(values.var(ddof=1) - var) < 3 * se_var
    # Exponential (α = 1) is the most efficient: 1/M against the Gumbel trick's π²/(6M).
    assert est.alpha_log_z_asymptotic_variance(1.0, 10) == pytest.approx(0.1)
    variances = [est.alpha_log_z_asymptotic_variance(a, 10) for a in np.linspace(-0.4, 3, 35)]
    assert min(variances) == pytest.approx(0.1, rel=1e-3)
    assert est.alpha_log_z_asymptotic_variance(0.0, 10) == pytest.approx(math.pi**2 / 60)


def test_alpha_family_is_continuous_at_zero():
    y = np.random.default_rng(1).gumbel(size=(16, 3)) + 40.0  # far from 0: a cancellation test
    at_zero = est.log_z(y, 0.0).numpy()
    spread = y.var(axis=0)
    for alpha in (1e-7, 1e-5, 1e-3, -1e-3):
        in64 = est.log_z(y, alpha).numpy()
        in32 = est.log_z(y.astype(np.float32), alpha).numpy()
        np.testing.assert_allclose(in32, in64, atol=2e-5)
        # First order in α: log Γ(1+α)/α ≈ −γ + π²α/12, −(1/α) log mean e^{-αy} ≈ ȳ − α s²/2.
        slope_bound = abs(alpha) * (math.pi**2 / 12 + spread) * 1.01
        assert np.all(np.abs(in64 - at_zero) <= slope_bound)
    # α = 1 is log M − log Σ T (the Exponential MLE).
    np.testing.assert_allclose(
        est.log_z(y, 1.0), np.log(16) - np.log(np.exp(-y).sum(0)), rtol=1e-12
    )


def test_pareto_estimator():
    logits = np.log(np.array([1.0, 2.0, 1.5]))  # Z = 4.5
    y = families.perturb_and_map(logits, "pareto", sample_shape=[M, REPLICATES], seed=[2, 2])
    mean_p, z_hat = est.pareto_estimate(tf.cast(y.gumbel_value, tf.float64))
    m = est.pareto_moments(math.log(4.5), M)
    assert_mean_and_variance(mean_p.numpy() / (4.5 / 3.5), 1.0, m.variance)
    assert np.median(z_hat.numpy()) == pytest.approx(4.5, rel=0.1)


def test_tail_estimator():
    y = families.perturb_and_map(LOGITS, "exponential", sample_shape=[M, REPLICATES], seed=[3, 3])
    t = 0.02
    frac, _ = est.tail_estimate(tf.cast(y.gumbel_value, tf.float64), t)
    m = est.tail_moments(LOG_Z, t, M)
    f = math.exp(-t * math.exp(LOG_Z))
    assert_mean_and_variance(frac.numpy() / f, 1.0, m.variance)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: est.log_z([0.0, 1.0], -1.0), "alpha"),
        (lambda: est.gumbel_z_moments(2), "num_samples"),
        (lambda: est.power_moments(-0.5, 4), "alpha"),
        (lambda: est.tail_estimate([0.0], 0.0), "`t`"),
        (lambda: est.pareto_moments(math.log(1.5), 4), "Z > 2"),
    ],
)
def test_estimator_arguments_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# Relaxed families.


def _log_psi_from_log_ratios(t: np.ndarray) -> np.ndarray:
    full = np.concatenate([t, np.zeros(t.shape[:-1] + (1,))], -1)
    return full - np.logaddexp.reduce(full, -1, keepdims=True)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_exponential_relaxation_density_integrates_to_one_k2(temperature):
    """∫ p dt = 1 over the log-ratio t = y_1 − y_2 (the density's base measure)."""
    d = relaxed.ExpRelaxedPerturbation(np.float64(temperature), np.array([0.3, -0.4]))
    t = np.linspace(-4000, 4000, 2_000_001)[:, None]
    density = np.exp(d.log_prob(_log_psi_from_log_ratios(t)).numpy())
    assert np.trapezoid(density, t[:, 0]) == pytest.approx(1.0, abs=1e-5)


def test_exponential_relaxation_density_integrates_to_one_k3():
    d = relaxed.ExpRelaxedPerturbation(np.float64(1.0), np.array([0.3, -0.4, 1.0]))
    grid = np.linspace(-60, 60, 1201)
    t = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1)
    density = np.exp(d.log_prob(_log_psi_from_log_ratios(t)).numpy())
    total = np.trapezoid(np.trapezoid(density, grid, axis=1), grid)
    assert total == pytest.approx(1.0, abs=3e-3)  # trapezoid error at the density's kinks


def test_exponential_relaxation_density_matches_its_samples():
    """Histogram of t = y_1 − y_2 from samples against the density, bin by bin (3 SE)."""
    d = relaxed.ExpRelaxedPerturbation(np.float64(0.7), np.array([0.8, -0.1]))
    y = d.sample(100_000, seed=[4, 4]).numpy()
    t = y[:, 0] - y[:, 1]
    edges = np.linspace(-6, 6, 13)
    counts, _ = np.histogram(t, edges)
    fine = np.linspace(-6, 6, 120_001)[:, None]
    density = np.exp(d.log_prob(_log_psi_from_log_ratios(fine)).numpy())
    for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=True):
        inside = (fine[:, 0] >= lo) & (fine[:, 0] <= hi)
        p = np.trapezoid(density[inside], fine[inside, 0])
        assert abs(count / t.size - p) < 3 * math.sqrt(p * (1 - p) / t.size) + 1e-4


def test_gumbel_relaxation_is_gumbel_softmax():
    logits = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    d = relaxed.ExpRelaxedPerturbation(0.3, logits, family="gumbel")
    reference = tfd.ExpRelaxedOneHotCategorical(0.3, logits=logits)
    y = reference.sample(50, seed=[1, 3])
    np.testing.assert_allclose(d.log_prob(y), reference.log_prob(y), rtol=1e-10)


@pytest.mark.parametrize("name, alpha", [(n, a) for n, a in FAMILY_CASES if n != "pareto"])
def test_relaxed_argmax_follows_the_categorical(name, alpha):
    d = relaxed.ExpRelaxedPerturbation(0.5, LOGITS, family=name, alpha=alpha)
    y = d.sample(40_000, seed=[8, 1]).numpy()
    counts = np.bincount(y.argmax(-1), minlength=LOGITS.size)
    assert chi_square_p_value(counts, PROBS) > 1e-3
    np.testing.assert_allclose(np.logaddexp.reduce(y, axis=-1), 0.0, atol=1e-10)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("name, alpha", [(n, a) for n, a in FAMILY_CASES if n != "pareto"])
def test_relaxations_are_finite_at_the_extremes(name, alpha, dtype):
    logits = tf.constant([[50.0, -50.0, 0.0, 3.0], [-50.0, 50.0, 49.0, -3.0]], dtype)
    for temperature in (0.01, 1.0):
        d = relaxed.ExpRelaxedPerturbation(
            tf.constant(temperature, dtype), logits, family=name, alpha=alpha
        )
        with tf.GradientTape() as tape:
            tape.watch(logits)
            y = d.sample(200, seed=[2, 9])
            loss = tf.reduce_sum(tf.exp(y) * tf.range(4, dtype=dtype))
        assert np.all(np.isfinite(y.numpy()))
        assert np.all(np.isfinite(tape.gradient(loss, logits).numpy()))
        if name in relaxed.WITH_DENSITY:
            assert np.all(np.isfinite(d.log_prob(y).numpy()))


def test_exponential_relaxation_in_the_registry():
    r = relaxations.get("perturb_exponential", 10)
    assert r.num_params == 10
    params = tf.random.stateless_normal([3, 20, 10], seed=[1, 1])
    draw = r.draw(params, 0.5, seed=(2, 2))
    q, p = r.distributions(params, 0.5)
    assert isinstance(q, relaxed.ExpRelaxedPerturbation) and q.family == "exponential"
    np.testing.assert_allclose(draw.log_sample, q.sample(seed=(2, 2)), rtol=1e-6)
    np.testing.assert_allclose(
        draw.kl, q.log_prob(draw.log_sample) - p.log_prob(draw.log_sample), rtol=1e-5
    )
    np.testing.assert_allclose(
        tf.exp(r.categorical_log_probs(params)), tf.nn.softmax(params), atol=1e-6
    )
    weibull = relaxed.ExpRelaxedPerturbation(0.5, params, family="weibull", alpha=2.0)
    with pytest.raises(NotImplementedError, match="no closed-form density"):
        weibull.log_prob(draw.log_sample)
    assert q.batch_shape == (3, 20) and q.event_shape == (10,)
    assert q[0, :2].batch_shape == (2,)  # TFP slicing via _parameter_properties


def test_relaxation_works_in_tf_function():
    d = relaxed.ExpRelaxedPerturbation(0.2, LOGITS)
    fn = tf.function(lambda s: d.log_prob(d.sample(4, seed=s)), jit_compile=True)
    assert np.all(np.isfinite(fn(tf.constant([3, 4])).numpy()))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -1.0, "logits": LOGITS}, "temperature"),
        ({"temperature": 1.0, "logits": LOGITS, "family": "pareto"}, "must be one of"),
        ({"temperature": 1.0, "logits": LOGITS, "family": "frechet", "alpha": 2.0}, "alpha"),
        ({"temperature": 1.0, "logits": [1.0]}, "logits"),
    ],
)
def test_relaxation_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        relaxed.ExpRelaxedPerturbation(**kwargs)
