"""Bucketed adaptive IGR-SB truncation has the law of the masked one, at a cost that follows N.

`AdaptiveIGRStickBreaking` draws the noise in static buckets (16, 64, ... sticks, the cap last)
and works only on the smallest bucket holding every cut of the batch; `buckets=()` is the masked
route (all K - 1 sticks computed, those past the cut masked). The two must agree: pathwise for the
same noise (values, log_prob, KL, against the masked route and a float64 numpy reference), in law
for their own draws (N's distribution), in the largest bucket, under XLA, at the extremes.
"""

import copy

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from reference import adaptive_log_psi, adaptive_sticks, normal_log_pdf
from scipy import stats

from igr_tf.distributions import relaxations
from igr_tf.distributions.adaptive import AdaptiveIGRStickBreaking, StickRow, bucket_sizes

tfb = tfp.bijectors

K = 101  # 100 sticks
SMALL_BUCKETS = (4, 16, 64)  # -> (4, 16, 64, 100)


def params(shape, loc_mean, seed, dtype=np.float64, loc_std=0.3, scale=0.3):
    rng = np.random.default_rng(seed)
    loc = rng.normal(loc_mean, loc_std, shape).astype(dtype)
    return loc, np.full(shape, scale, dtype)


def both_routes(loc, scale, tau, threshold, buckets=SMALL_BUCKETS, log_space=True):
    bucketed = AdaptiveIGRStickBreaking(loc, scale, tau, threshold, log_space, buckets=buckets)
    masked = AdaptiveIGRStickBreaking(loc, scale, tau, threshold, log_space, buckets=())
    return bucketed, masked


def test_bucket_sizes_and_validation():
    assert bucket_sizes(999) == (16, 64, 256, 999)
    assert bucket_sizes(9) == (9,)
    assert bucket_sizes(16) == (16,)
    q, m = both_routes(np.zeros(K - 1), np.ones(K - 1), 0.5, 0.9)
    assert q.buckets == (4, 16, 64, 100) and m.buckets == (100,)
    assert AdaptiveIGRStickBreaking(np.zeros(999), np.ones(999), 0.5).buckets == bucket_sizes(999)
    # t = 1 uses every stick: one bucket whatever was asked.
    assert AdaptiveIGRStickBreaking(np.zeros(99), np.ones(99), 0.5, 1.0).buckets == (99,)
    with pytest.raises(ValueError, match="buckets"):
        AdaptiveIGRStickBreaking(np.zeros(9), np.ones(9), 0.5, buckets=(4, 4))
    with pytest.raises(ValueError, match="buckets"):
        AdaptiveIGRStickBreaking(np.zeros(9), np.ones(9), 0.5, buckets=(0, 4))


# Location levels whose cuts land in each bucket of (4, 16, 64, 100) at threshold 0.99: softplus
# of the noise breaks ~2.1, ~0.7, ~0.13, ~0.02 of the log-stick per stick.
@pytest.mark.parametrize(
    "loc_mean, n_range", [(2.0, (1, 4)), (0.0, (5, 16)), (-2.0, (17, 64)), (-4.5, (65, 100))]
)
def test_same_noise_same_values_log_prob_and_kl_in_every_bucket(loc_mean, n_range):
    loc, scale = params([6, K - 1], loc_mean, seed=1)
    q, masked = both_routes(loc, scale, 0.3, 0.99)
    p, p_masked = both_routes(np.full(K - 1, -1.0), np.full(K - 1, 1.3), 0.3, 0.99)
    z = masked.base.sample(seed=(4, 2))
    y = q.log_sample_from_noise(z)
    expected, n = adaptive_log_psi(z.numpy(), 0.3, 0.99)
    assert n_range[0] <= n.max() <= n_range[1]  # the case exercises the bucket it names
    np.testing.assert_allclose(y, expected, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(y, masked.log_sample_from_noise(z), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(q.num_sticks(y), n)
    np.testing.assert_array_equal(masked.num_sticks(y), n)
    # log q(y): the first n sticks' Gaussian density (z recovered from y) + n log τ.
    used = np.arange(1, K) <= n[:, None]
    log_noise = np.where(used, normal_log_pdf(z.numpy(), loc, scale), 0.0).sum(-1)
    np.testing.assert_allclose(q.log_prob(y), log_noise + n * np.log(0.3), rtol=1e-9)
    np.testing.assert_allclose(q.log_prob(y), masked.log_prob(y), rtol=1e-12)
    # KL summed over the sticks used, from the closed form of two Gaussians.
    kl_stick = np.log(1.3 / scale) + (scale**2 + (loc + 1.0) ** 2) / (2 * 1.3**2) - 0.5
    kl = q.kl_given_truncation(p, y)
    np.testing.assert_allclose(kl, np.where(used, kl_stick, 0.0).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(kl, masked.kl_given_truncation(p_masked, y), rtol=1e-12)


@pytest.mark.parametrize("log_space", [True, False])
def test_own_draw_is_the_masked_rule_on_the_blocks_noise(log_space):
    """A bucketed sample is the masked route applied to z = all noise blocks of its seed (the
    blocks it drew and those it skipped): y = f(z) with z ~ N(loc, scale), blocks independent."""
    loc, scale = params([3, 5, K - 1], -2.0, seed=2, loc_std=1.0)
    q, masked = both_routes(loc, scale, 0.2, 0.99, log_space=log_space)
    seed = tf.constant([7, 3])
    value = q.sample(seed=seed)
    block = q._noise_blocks(1, seed, q.buckets)  # what sample() asks for: one draw
    z = tf.concat([block(j) for j in range(len(q.buckets))], axis=-1)[0]
    y = masked.log_sample_from_noise(z)
    np.testing.assert_allclose(value, y if log_space else tf.exp(y), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(q.log_prob(value), masked.log_prob(value), rtol=1e-12)


def test_n_has_the_same_law_as_the_masked_draw():
    """Chi-square two-sample test on N (fixed seeds), batches of 2 variables whose cuts straddle
    the bucket edges 4 and 16: the decision to draw the next block varies from draw to draw."""
    loc, scale = params([2, 32], 0.0, seed=3, loc_std=0.0, scale=1.0)
    q, masked = both_routes(loc, scale, 0.5, 0.99, buckets=(4, 8, 16))

    draws = 1000

    @tf.function
    def sticks(dist, stream):
        # One sample() per map_fn iteration: each makes its own bucket decisions.
        seeds = tf.stack([tf.range(draws), tf.fill([draws], stream)], axis=1)
        return tf.map_fn(lambda s: dist.num_sticks(dist.sample(seed=s)), seeds)

    n_q, n_m = sticks(q, 1).numpy().ravel(), sticks(masked, 2).numpy().ravel()
    assert np.mean(n_q <= 4) > 0.05 and np.mean(n_q > 8) > 0.05  # several buckets are used
    # Bins holding at least 5 of either sample; the tail is pooled.
    values = np.arange(1, 33)
    counts = np.array([[np.sum(n == v) for v in values] for n in (n_q, n_m)])
    keep = counts.sum(0) >= 10
    table = np.concatenate([counts[:, keep], counts[:, ~keep].sum(1, keepdims=True)], axis=1)
    table = table[:, table.sum(0) > 0]
    _, p_value, _, _ = stats.chi2_contingency(table)
    assert p_value > 1e-3, (p_value, table)
    # And the exact rule on fresh numpy noise agrees in mean (independent route, ~3.5 s.e.).
    z = np.random.default_rng(0).normal(0.0, 1.0, [2 * draws, 2, 32])
    n_ref = adaptive_sticks(z, 0.99).ravel()
    se = np.sqrt(n_q.var() / n_q.size + n_ref.var() / n_ref.size)
    assert abs(n_q.mean() - n_ref.mean()) < 3.5 * se


def test_largest_bucket_at_a_tiny_threshold_loss():
    """Threshold 0.999999 with flat low locations: cuts need the cap (the largest bucket)."""
    loc, scale = np.full([4, 200], -3.0), np.full([4, 200], 0.5)
    q, masked = both_routes(loc, scale, 0.1, 0.999999, buckets=None)
    assert q.buckets == (16, 64, 200)
    p, p_masked = both_routes(np.zeros(200), np.ones(200), 0.1, 0.999999, buckets=None)
    z = masked.base.sample(seed=(1, 1))
    y = q.log_sample_from_noise(z)
    expected, n = adaptive_log_psi(z.numpy(), 0.1, 0.999999)
    assert n.max() > 64
    np.testing.assert_allclose(y, expected, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(q.log_prob(y), masked.log_prob(y), rtol=1e-12)
    np.testing.assert_allclose(
        q.kl_given_truncation(p, y), masked.kl_given_truncation(p_masked, y), rtol=1e-12
    )
    own = q.sample(seed=(2, 2))
    assert q.num_sticks(own).numpy().max() > 64
    np.testing.assert_allclose(q.log_prob(own), masked.log_prob(own), rtol=1e-12)


def test_compiles_with_xla_and_gradients_are_finite_at_the_extremes():
    """Locations ±50 (N = 1 and N = the cap in one batch), τ = 0.01, float32, jit_compile."""
    k, buckets = 41, (4, 16)  # -> (4, 16, 40): small, XLA compiles every branch
    rng = np.random.default_rng(5)
    loc = np.concatenate(
        [rng.normal(0.0, 1.0, [4, k - 1]), np.full([2, k - 1], 50.0), np.full([2, k - 1], -50.0)]
    ).astype(np.float32)
    loc_v = tf.Variable(loc)
    raw = tf.Variable(np.zeros([8, k - 1], np.float32))
    log_tau = tf.Variable(np.log(0.01), dtype=tf.float32)
    zeros, ones = np.zeros(k - 1, np.float32), np.ones(k - 1, np.float32)
    prior = AdaptiveIGRStickBreaking(zeros, ones, 0.01, 0.99, buckets=buckets)

    def step(seed):
        with tf.GradientTape() as tape:
            scale = tf.nn.softplus(raw) + 1e-4
            q = AdaptiveIGRStickBreaking(loc_v, scale, tf.exp(log_tau), 0.99, buckets=buckets)
            y = q.sample(seed=seed)
            kl = q.kl_given_truncation(prior, y)
            weights = np.arange(k, dtype=np.float32)
            loss = tf.reduce_sum(tf.exp(y) * weights) + tf.reduce_sum(kl)
        return y, q.log_prob(y), kl, tape.gradient(loss, [loc_v, raw, log_tau])

    y, lp, kl, grads = tf.function(step, jit_compile=True)(tf.constant([3, 4]))
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))
    assert np.all(np.isfinite(lp.numpy())) and np.all(np.isfinite(kl.numpy()))
    n = AdaptiveIGRStickBreaking(loc, ones, 0.01, 0.99, buckets=()).num_sticks(y).numpy()
    np.testing.assert_array_equal(n[4:], [1, 1, k - 1, k - 1])
    # Eager on the compiled draw (XLA's Philox normals differ from the CPU kernel's: not compared).
    q = AdaptiveIGRStickBreaking(loc, tf.nn.softplus(raw) + 1e-4, 0.01, 0.99, buckets=buckets)
    np.testing.assert_allclose(lp, q.log_prob(y), rtol=1e-4)
    np.testing.assert_allclose(kl, q.kl_given_truncation(prior, y), rtol=1e-5)


def test_relaxation_draw_kl_is_the_masked_kl_of_its_sample():
    """Through the registry (deferred softplus scale, the fitted prior), traced and with
    gradients: the draw's KL is the masked route's Rao-Blackwellised KL of the same sample, N its
    sticks, and the gradient of the KL the masked one's."""
    r = relaxations.get("igr_sb", 30, adaptive=True, threshold=0.99)
    r._buckets = (4, 16)  # three buckets: (4, 16, 29)
    r_masked = copy.copy(r)  # the same fitted prior, the masked route
    r_masked._buckets = ()
    params_ = tf.Variable(np.random.default_rng(6).normal(-1.0, 1.0, [5, 3, r.num_params]))

    @tf.function
    def step():
        with tf.GradientTape(persistent=True) as tape:
            draw = r.draw(params_, 0.3, seed=(5, 1))
            q, p = r_masked.distributions(params_, 0.3)
            kl_masked = q.kl_given_truncation(p, draw.log_sample)
            totals = [tf.reduce_sum(draw.kl), tf.reduce_sum(kl_masked)]
        grads = [tape.gradient(total, params_) for total in totals]
        return draw.log_sample, draw.kl, draw.metrics["N"], kl_masked, grads

    y, kl, sticks, kl_masked, (g, g_masked) = step()
    q, _ = r_masked.distributions(params_, 0.3)
    assert q.buckets == (29,) and r.distributions(params_, 0.3)[0].buckets == (4, 16, 29)
    n = q.num_sticks(y).numpy()
    assert n.max() > 4  # the batch needed more than the first bucket
    np.testing.assert_array_equal(sticks, n)
    np.testing.assert_allclose(kl, kl_masked, rtol=1e-12)
    np.testing.assert_allclose(g, g_masked, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        r.distributions(params_, 0.3)[0].log_prob(y), q.log_prob(y), rtol=1e-12
    )


@pytest.mark.parametrize(
    "loc_mean, sticks_range",
    # A batch in the first bucket and one in the third.
    [(4.0, (1, 4)), (-2.0, (17, 64))],
)
def test_gradients_are_the_masked_routes_on_the_same_noise(loc_mean, sticks_range):
    """The bucket switches are differentiated by recomputation (a custom gradient): against
    autodiff of the masked route on the same noise, for loc and scale as rows of one tensor
    (`StickRow`, as the relaxation passes them), a trainable τ, and every output of the draw
    (y, ψ, the KL) and log_prob (through the value and the parameters)."""
    rng = np.random.default_rng(8)
    rows = tf.Variable(
        np.stack(
            [rng.normal(loc_mean, 1.0, [4, 3, K - 1]), rng.normal(-1.0, 0.5, [4, 3, K - 1])], -2
        )
    )
    log_tau = tf.Variable(np.log(0.3))
    low = tf.constant(1e-4, tf.float64)
    weights = tf.constant(rng.normal(0.0, 1.0, [4, 3, K]))

    def dists(buckets):
        loc = tfp.util.DeferredTensor(rows, StickRow(0), shape=[4, 3, K - 1])
        scale = tfp.util.DeferredTensor(
            rows, StickRow(1, tfb.Softplus(low=low)), shape=[4, 3, K - 1]
        )
        q = AdaptiveIGRStickBreaking(loc, scale, tf.exp(log_tau), 0.99, buckets=buckets)
        p = AdaptiveIGRStickBreaking(np.full(K - 1, -1.0), np.full(K - 1, 1.3), 0.3, 0.99)
        return q, p

    def loss(y, psi, kl, log_prob=0.0):
        finite_y = tf.where(tf.math.is_finite(y), y, tf.zeros_like(y))
        return (
            tf.reduce_sum(psi * weights)
            + tf.reduce_sum(finite_y * weights**2)
            + tf.reduce_sum(kl)
            + tf.reduce_sum(tf.cast(log_prob, tf.float64))
        )

    seed = tf.constant([9, 4])
    with tf.GradientTape(persistent=True) as tape:
        q, p = dists(SMALL_BUCKETS)
        y, psi, n, kl = q._sample_and_kl(p, seed=seed)
        fused = loss(y, psi, kl, q.log_prob(y))
        sampled = q.sample(seed=seed)
        plain = loss(sampled, tf.exp(sampled), q.kl_given_truncation(p, sampled))
        masked, p_masked = dists(())
        block = q._noise_blocks(1, seed, q.buckets)
        z = tf.concat([block(j) for j in range(len(q.buckets))], axis=-1)[0]
        y_m = masked.log_sample_from_noise(z)
        kl_m = masked.kl_given_truncation(p_masked, y_m)
        reference = loss(y_m, tf.exp(y_m), kl_m, masked.log_prob(y_m))
        reference_plain = loss(y_m, tf.exp(y_m), kl_m)
    assert q.buckets == (4, 16, 64, 100)
    assert sticks_range[0] <= n.numpy().max() <= sticks_range[1]  # the bucket meant
    np.testing.assert_array_equal(y, y_m)
    np.testing.assert_array_equal(sampled, y_m)
    np.testing.assert_array_equal(n, masked.num_sticks(y_m))
    np.testing.assert_allclose(psi, tf.exp(y_m), rtol=1e-15, atol=0)
    np.testing.assert_allclose(kl, kl_m, rtol=1e-12)
    for total, expected in ((fused, reference), (plain, reference_plain)):
        np.testing.assert_allclose(total, expected, rtol=1e-12)
        grads = tape.gradient(total, [rows, log_tau])
        for g, g_ref in zip(grads, tape.gradient(expected, [rows, log_tau]), strict=True):
            assert np.all(np.isfinite(g.numpy()))
            np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)
