"""Tests of igr_tf.evaluation on a model small enough to enumerate: V=2 variables, K=3 categories,
9 latent configurations, a fixed decoder table log p(x | d) and a uniform prior."""

from __future__ import annotations

import itertools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from igr_tf import evaluation  # noqa: E402

V, K = 2, 3


def decoder(table):
    """`log p(x | d)` for one-hot latents `[N, B, V=2, K=3]` -> `[N, B]` from a 3x3 table."""
    table = tf.constant(table, tf.float64)

    def log_likelihood(d):
        return tf.einsum("nbi,ij,nbj->nb", d[..., 0, :], table, d[..., 1, :])

    return log_likelihood


def exact_log_px(table, log_prior):
    """log Σ_d p(d) p(x | d) by enumerating the 9 configurations."""
    terms = [
        log_prior[0, i] + log_prior[1, j] + table[i, j]
        for i, j in itertools.product(range(K), range(K))
    ]
    return float(np.logaddexp.reduce(terms))


def log_softmax(a):
    a = np.asarray(a, np.float64)
    return a - np.logaddexp.reduce(a, axis=-1, keepdims=True)


RNG = np.random.default_rng(0)
TABLE = RNG.normal(0, 2.0, (K, K)) - 5.0
UNIFORM = np.full((V, K), -math.log(K))


def test_is_bound_below_exact_in_expectation_and_tightens():
    exact = exact_log_px(TABLE, UNIFORM)
    # A mediocre proposal (not the posterior); B copies of one x give B independent estimates.
    q = log_softmax(RNG.normal(0, 1.0, (V, K)))
    b = 400
    q_batch = tf.constant(np.broadcast_to(q, (b, V, K)), tf.float64)
    errors = {}
    for s in (10, 1000):
        est = np.asarray(
            evaluation.importance_sampled_loglik(
                decoder(TABLE), q_batch, num_samples=s, seed=(s, 1)
            )
        )
        assert est.shape == (b,) and np.all(np.isfinite(est))
        se = est.std() / math.sqrt(b)
        assert est.mean() <= exact + 3 * se, (s, est.mean(), exact)
        errors[s] = np.mean(np.abs(est - exact))
    # The estimate approaches log p(x) as S grows.
    assert errors[1000] < errors[10]
    assert errors[1000] < errors[10] / 3  # O(1/√S): about 10x smaller


def test_is_estimate_exact_with_the_true_posterior():
    # An additive table makes the posterior factorize over variables, so q can equal it.
    a, c = RNG.normal(0, 2, K), RNG.normal(0, 2, K)
    table = a[:, None] + c[None, :] - 3.0
    log_prior = log_softmax(RNG.normal(0, 1, (V, K)))
    posterior = np.stack([log_softmax(log_prior[0] + a), log_softmax(log_prior[1] + c)])
    exact = exact_log_px(table, log_prior)
    for s in (1, 7, 200):
        est = evaluation.importance_sampled_loglik(
            decoder(table),
            tf.constant(posterior[None], tf.float64),
            num_samples=s,
            prior_log_probs=tf.constant(log_prior, tf.float64),
            seed=(3, s),
            chunk_size=64,
        )
        np.testing.assert_allclose(est, [exact], rtol=0, atol=1e-10)


def test_original_loglik_can_exceed_log_px():
    # One configuration explains x (log p(x|d*) = 0, others -20). A proposal that leans towards
    # d* but keeps spread has log E_q p(x|d) - KL(q ‖ p) > log p(x): not a bound.
    table = np.full((K, K), -20.0)
    table[0, 0] = 0.0
    exact = exact_log_px(table, UNIFORM)
    q = np.log(np.array([[0.6, 0.2, 0.2], [0.6, 0.2, 0.2]]))
    # Analytic value of the large-S limit: log q(d*) - KL(q ‖ uniform).
    kl = 2 * (0.6 * math.log(0.6 * 3) + 0.4 * math.log(0.2 * 3))
    limit = math.log(0.36 + (1 - 0.36) * math.exp(-20.0)) - kl
    assert limit > exact + 0.5
    est = evaluation.original_loglik(
        decoder(table), tf.constant(q[None], tf.float64), num_samples=4000, seed=(5, 5)
    )
    assert float(est[0]) > exact + 0.5
    assert abs(float(est[0]) - limit) < 0.05
    # The importance-sampled estimate with the same proposal stays at log p(x) (its Monte Carlo
    # error here is about 0.02), far below the original quantity.
    bound = evaluation.importance_sampled_loglik(
        decoder(table), tf.constant(q[None], tf.float64), num_samples=4000, seed=(5, 5)
    )
    assert abs(float(bound[0]) - exact) < 0.1


def test_categorical_kl_is_tfps_categorical_kl_summed_over_variables():
    q = log_softmax(RNG.normal(0, 1, (4, V, K)))
    p = log_softmax(RNG.normal(0, 1, (V, K)))
    tfd = tfp.distributions
    expected = tf.reduce_sum(
        tfd.kl_divergence(tfd.Categorical(logits=q), tfd.Categorical(logits=p)), axis=-1
    )
    np.testing.assert_allclose(
        evaluation.categorical_kl(tf.constant(q), tf.constant(p)), expected, rtol=1e-12
    )
