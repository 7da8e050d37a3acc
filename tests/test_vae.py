"""Tests for models/vae.py: training on real digits, architectures, likelihoods, the
importance-weighted objective, XLA, saving, and the importance-sampled log-likelihood against
the exact one by enumeration of every latent configuration."""

from __future__ import annotations

import itertools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from igr_tf import datasets  # noqa: E402
from igr_tf.distributions import relaxations  # noqa: E402
from igr_tf.paper import VAE_TEMPERATURE  # noqa: E402
from models.vae import DiscreteVAE  # noqa: E402

RELAXATIONS = relaxations.names()
# The paper's cross-validated temperatures (SPEC section 5).
TEMPERATURE = VAE_TEMPERATURE


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """200 real binarized MNIST digits, [200, 28, 28, 1] float32 in {0, 1}."""
    data = datasets.load("mnist_sample")
    x = np.stack(list(data.train.take(200).as_numpy_iterator()))
    assert x.shape == (200, 28, 28, 1) and set(np.unique(x)) <= {0.0, 1.0}
    return x


def make_vae(relaxation="igr_i", *, seed=1, lr=1e-3, jit=False, **kwargs) -> DiscreteVAE:
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("arch", "linear")
    kwargs.setdefault("temperature", TEMPERATURE[relaxation])
    model = DiscreteVAE(relaxation, seed=seed, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=jit)
    return model


def train_losses(model, x, steps, batch=40) -> np.ndarray:
    """Per-step training losses (train_on_batch resets the trackers before every step)."""
    n = len(x) // batch
    return np.array(
        [
            model.train_on_batch(x[(i % n) * batch : (i % n + 1) * batch], return_dict=True)["loss"]
            for i in range(steps)
        ]
    )


# --- training ------------------------------------------------------------------------------------
@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_training_lowers_the_loss_on_real_digits(relaxation, digits):
    losses = train_losses(make_vae(relaxation), digits, steps=20)
    assert np.all(np.isfinite(losses)), losses
    first, last = losses[:5].mean(), losses[-5:].mean()
    # Random init gives ~550-900 nats; 20 Adam steps at lr 1e-3 bring it down by far more
    # than the step-to-step noise (a few nats).
    assert last < 0.95 * first, (first, last, losses)


def test_importance_weighted_objective_trains_and_is_tighter_than_the_elbo(digits):
    x = digits[:50]
    iw = make_vae("igr_i", num_samples=5)
    elbo = make_vae("igr_i", relaxation_options={"kl": "sampled"})
    assert iw.latent.relaxation.kl_method == "sampled"
    elbo.set_weights(iw.get_weights())  # same encoder/decoder: only the objective differs
    # E[-log (1/S) Σ w_s] <= E[-log w]: the k-sample bound is tighter; average over draws.
    iw_loss = np.mean([tf.reduce_mean(iw.objective(x)["loss"]) for _ in range(10)])
    elbo_loss = np.mean([tf.reduce_mean(elbo.objective(x)["loss"]) for _ in range(10)])
    assert iw_loss < elbo_loss, (iw_loss, elbo_loss)
    # Per draw, log mean_s w_s >= mean_s log w_s (Jensen): the IW loss of each example is at most
    # the mean of its S one-sample losses (examples are tiled [x; x; ...] S times).
    terms = iw.objective(x)
    one_sample = tf.reshape(terms["recon"] + terms["kl"], [5, -1])
    assert terms["loss"].shape == (50,)
    np.testing.assert_array_less(terms["loss"], tf.reduce_mean(one_sample, 0) + 1e-3)
    losses = train_losses(iw, digits, steps=15)
    assert np.all(np.isfinite(losses)) and losses[-5:].mean() < 0.95 * losses[:5].mean()


def test_importance_weighting_needs_the_sampled_kl():
    with pytest.raises(ValueError, match="kl='sampled'"):
        DiscreteVAE("igr_i", arch="linear", num_samples=2, relaxation_options={"kl": "closed"})
    with pytest.raises(ValueError, match="num_samples"):
        DiscreteVAE("igr_i", arch="linear", num_samples=0)


def test_jit_compiled_training_matches_the_eager_loss(digits):
    x = digits[:100]
    jit, plain = make_vae("gs", jit=True), make_vae("gs", jit=False)
    plain.set_weights(jit.get_weights())
    assert jit.jit_compile and not plain.jit_compile
    # Same weights: the per-example losses agree with and without XLA up to Monte Carlo error
    # (XLA's Philox stream differs from the CPU kernels' for the same seed): the mean of the
    # paired differences is within 4 of its standard errors of 0.
    loss_jit = tf.function(lambda x: jit.objective(x)["loss"], jit_compile=True)(x).numpy()
    loss_plain = plain.objective(x)["loss"].numpy()
    diff = loss_jit - loss_plain
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(diff.size), diff
    assert np.abs(diff).max() > 0  # other draws indeed
    losses = train_losses(jit, digits, steps=12, batch=100)  # one shape: one XLA compile
    assert np.all(np.isfinite(losses)) and losses[-5:].mean() < 0.95 * losses[:5].mean()


# --- architectures and likelihoods ----------------------------------------------------------------
@pytest.mark.parametrize("arch", ["linear", "nonlinear", "relax", "conv"])
def test_architectures_build_decode_and_train_every_weight(arch, digits):
    model = make_vae("igr_i", arch=arch, num_vars=6, num_categories=4)
    x = digits[:8]
    assert model(x).shape == (8, 28 * 28)
    z = tf.one_hot(np.random.default_rng(0).integers(0, 4, (3, 6)), 4)
    assert model.decoder(z).shape == (3, 28 * 28)
    assert model.log_likelihood(x[:3], z).shape == (3,)
    # Every trainable weight gets a non-zero gradient: nothing is disconnected from the loss.
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.objective(x, training=True)["loss"])
    grads = tape.gradient(loss, model.trainable_weights)
    weights = model.trainable_weights
    dead = [w.path for w, g in zip(weights, grads, strict=True) if g is None or not np.any(g)]
    assert not dead and np.isfinite(float(loss)), dead


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="arch"):
        DiscreteVAE("gs", arch="transformer")
    with pytest.raises(ValueError, match="divisible by 4"):
        DiscreteVAE("gs", arch="conv", image_shape=(30, 30, 1))
    with pytest.raises(ValueError, match="likelihood"):
        DiscreteVAE("gs", arch="linear", likelihood="poisson")


def test_bernoulli_log_likelihood_against_tfp(digits):
    model = make_vae("gs", num_vars=5, num_categories=3)
    x = digits[:4]
    z = tf.one_hot(np.random.default_rng(1).integers(0, 3, (4, 5)), 3)
    logits = model.decoder(z)
    expected = tfp.distributions.Bernoulli(logits=logits).log_prob(x.reshape(4, -1))
    np.testing.assert_allclose(model.log_likelihood(x, z), tf.reduce_sum(expected, -1), rtol=1e-5)


def test_gaussian_likelihood_on_continuous_data(digits):
    # Continuous images in (0, 1): blurred digits plus noise, not binary.
    rng = np.random.default_rng(0)
    blurred = tf.nn.avg_pool2d(digits[:120], 3, 1, "SAME").numpy()
    x = np.clip(0.1 + 0.8 * blurred + 0.02 * rng.normal(size=blurred.shape), 0, 1)
    x = x.astype(np.float32)
    assert len(np.unique(x)) > 1000
    model = make_vae("igr_i", likelihood="gaussian", num_vars=10, num_categories=5)
    z = tf.one_hot(rng.integers(0, 5, (4, 10)), 5)
    out = model.decoder(z)
    assert out.shape == (4, 2 * 28 * 28)  # mean and scale parameters per pixel
    m, s = out[:, : 28 * 28], out[:, 28 * 28 :]
    normal = tfp.distributions.Normal(tf.sigmoid(m), 1e-6 + tf.math.softplus(s))
    expected = tf.reduce_sum(normal.log_prob(x[:4].reshape(4, -1)), -1)
    np.testing.assert_allclose(model.log_likelihood(x[:4], z), expected, rtol=1e-5)
    losses = train_losses(model, x, steps=25)
    assert np.all(np.isfinite(losses)) and losses[-5:].mean() < losses[:5].mean() - 50, losses


# --- saving ---------------------------------------------------------------------------------------
def test_save_load_round_trip(digits, tmp_path):
    # igr_planar has flow weights in the latent layer, and its log-likelihood uses a Monte Carlo
    # estimate of the proposal: random numbers beyond the importance samples.
    model = make_vae("igr_planar", num_vars=6, num_categories=5)
    # Weights away from their initial values (flow weights included), and a SeedGenerator that
    # has moved on: no training needed for that.
    rng = np.random.default_rng(5)
    for w in model.trainable_weights:
        w.assign(w.numpy() + 0.1 * rng.normal(size=w.shape).astype(np.float32))
    for _ in range(3):
        model(digits[:2], training=True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True: no lambdas, registered classes only
    assert type(loaded) is DiscreteVAE
    assert loaded.get_config() == model.get_config()
    # Every variable, the latent layer's SeedGenerator state included (DiscreteLatent saves it).
    for a, b in zip(model.variables, loaded.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    z = tf.one_hot(np.random.default_rng(2).integers(0, 5, (7, 6)), 5)
    np.testing.assert_array_equal(model.decoder(z), loaded.decoder(z))
    # The same random stream: the same relaxed draws and decoder outputs, call after call.
    for _ in range(2):
        np.testing.assert_array_equal(model(digits[:5]), loaded(digits[:5]))
    test = tf.data.Dataset.from_tensor_slices(digits[100:120]).batch(20)
    first = model.evaluate_loglik(test, num_samples=20, seed=3)
    assert first["test_loglik_proposal"] == "monte_carlo"
    assert loaded.evaluate_loglik(test, num_samples=20, seed=3) == first
    # A fixed seed fixes the estimate whatever the state of the SeedGenerator, which moves with
    # every call: the same on a second call, and different for another seed.
    x = digits[100:120]
    again = model.loglik_terms(x, 20, seed=(3, 0))
    np.testing.assert_array_equal(again["loglik"], model.loglik_terms(x, 20, (3, 0))["loglik"])
    assert not np.array_equal(again["loglik"], model.loglik_terms(x, 20, (4, 0))["loglik"])


# --- importance-sampled log-likelihood against exact enumeration ----------------------------------
V, K = 2, 3  # 9 latent configurations
TINY_SHAPE = (2, 3, 1)
TINY_X = np.array(
    [[1, 0, 1, 0, 1, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1], [1, 1, 0, 1, 1, 0]], np.float32
).reshape(4, *TINY_SHAPE)


def all_configurations() -> tf.Tensor:
    """The K**V one-hot latent configurations, [K**V, V, K]."""
    idx = np.array(list(itertools.product(range(K), repeat=V)))
    return tf.one_hot(idx, K)


def exact_log_marginal(model, x) -> np.ndarray:
    """log p(x) = logsumexp_d [log p(x | d) + log p(d)], p(d) = K**-V, by enumeration."""
    d = all_configurations()
    log_lik = np.stack([model.log_likelihood(x, tf.repeat(di[None], len(x), 0)) for di in d])
    return tf.reduce_logsumexp(log_lik, 0).numpy() - V * math.log(K)


def tiny_vae(relaxation) -> DiscreteVAE:
    model = make_vae(
        relaxation, num_vars=V, num_categories=K, image_shape=TINY_SHAPE, temperature=0.5
    )
    # Sharpen the decoder so p(x | d) varies across d (the posterior is then far from the
    # untrained encoder's proposal and the small-S bias is large enough to see), and damp the
    # encoder so that no configuration gets a tiny proposal probability (S = 1000 samples then
    # find every configuration that matters).
    kernel, bias = model.decoder.layers[-1].get_weights()
    model.decoder.layers[-1].set_weights([2.0 * kernel / np.abs(kernel).max(), bias])
    kernel, bias = model.encoder.layers[-1].get_weights()
    model.encoder.layers[-1].set_weights([0.3 * kernel, bias])
    return model


def loglik_estimates(model, num_samples, replicates, seed) -> np.ndarray:
    """`loglik` of independent replicates, [replicates, B]: one call on a batch holding every
    example `replicates` times (rows draw independent samples), which is much faster than one
    call per seed."""
    x = np.tile(TINY_X, (replicates, 1, 1, 1))
    out = model.loglik_terms(x, num_samples, seed=(seed, 0))["loglik"].numpy()
    return out.reshape(replicates, len(TINY_X))


def test_evaluation_computes_the_prior_once_eagerly_and_matches_the_per_batch_terms(digits):
    # The prior's induced categorical depends only on the weights: evaluate_loglik computes it
    # once, eagerly, instead of tracing IGR-I's quadrature for it into the step (a constant there,
    # ~3 s of tracing and graph optimization per process); the result is that of loglik_terms.
    model = make_vae("igr_i", num_vars=4, num_categories=5)
    calls = []
    prior = model.latent.prior_categorical_log_probs

    def spy(*args, **kwargs):
        calls.append(tf.executing_eagerly())
        return prior(*args, **kwargs)

    model.latent.prior_categorical_log_probs = spy
    test = tf.data.Dataset.from_tensor_slices(digits[:30]).batch(10)
    result = model.evaluate_loglik(test, num_samples=7, seed=4)
    assert calls == [True]
    per_batch = [
        model.loglik_terms(digits[10 * i : 10 * (i + 1)], 7, seed=(4, i))["loglik"].numpy()
        for i in range(3)
    ]
    assert len(calls) == 4  # loglik_terms alone computes the prior itself
    np.testing.assert_allclose(result["test_loglik"], np.mean(per_batch), rtol=1e-6)


@pytest.mark.parametrize("relaxation", ["igr_i", "gs", "igr_sb"])
def test_importance_sampled_loglik_against_enumeration(relaxation):
    model = tiny_vae(relaxation)
    exact = exact_log_marginal(model, TINY_X)
    q = tf.exp(model.latent.categorical_log_probs(model.encoder(TINY_X)))
    assert float(tf.reduce_min(q)) > 0.03  # the construction does what it says
    small = loglik_estimates(model, 10, 200, seed=1)  # [replicates, examples]
    large = loglik_estimates(model, 1000, 10, seed=2)
    mean_small, se_small = small.mean(0), small.std(0) / np.sqrt(len(small))
    mean_large, se_large = large.mean(0), large.std(0) / np.sqrt(len(large))
    # A lower bound on average (Jensen), up to Monte Carlo error ...
    assert np.all(mean_small <= exact + 3 * se_small), (mean_small, exact, se_small)
    # ... visibly loose at S = 10 for this model (a gap of ~0.1 nats, many standard errors) ...
    gap, se_gap = np.mean(exact - mean_small), np.sqrt(np.sum(se_small**2)) / len(exact)
    assert gap > 4 * se_gap, (mean_small, exact, se_gap)
    # ... and tight at S = 1000: within 4 standard errors of exact, allowing the bound's own gap,
    # which shrinks as 1/S (so at most a hundredth of the S = 10 gap), and closer.
    slack = 4 * se_large + np.maximum(exact - mean_small, 0) / 100
    assert np.all(np.abs(mean_large - exact) <= slack), (mean_large, exact, se_large)
    assert np.mean(np.abs(mean_large - exact)) < np.mean(np.abs(mean_small - exact))


def test_original_formula_is_another_quantity_that_can_exceed_log_p():
    """The original code's logmeanexp_s log p(x|d_s) - KL(q‖p) is not a bound on log p(x).

    Construction: q(d | x) puts 0.7 on the first category of each variable (whatever x), and the
    decoder explains x well only when both variables take their first category. As S → ∞ the
    original quantity tends to log Σ_d q(d) p(x|d) - KL(q‖p), computed here by enumeration, which
    exceeds log p(x) = log Σ_d p(d) p(x|d) by about 0.9 nats.
    """
    model = make_vae("gs", num_vars=V, num_categories=K, image_shape=TINY_SHAPE)
    q1 = np.array([0.7, 0.15, 0.15])
    kernel, bias = model.encoder.layers[-1].get_weights()
    model.encoder.layers[-1].set_weights(
        [np.zeros_like(kernel), np.tile(np.log(q1), V).astype(np.float32)]
    )
    x = TINY_X[:1]
    sign = 2.0 * x.reshape(-1) - 1.0  # +1 where the pixel is on
    w = np.empty((V * K, sign.size), np.float32)
    for v in range(V):
        w[v * K] = 2.5 * sign  # first category of variable v pushes towards x
        w[v * K + 1 : (v + 1) * K] = -2.5 * sign
    model.decoder.layers[-1].set_weights([w, np.zeros(sign.size, np.float32)])

    d = all_configurations()
    log_lik = np.array([model.log_likelihood(x, di[None]).numpy()[0] for di in d])
    log_q = np.array([np.sum(np.log(q1)[np.argmax(di, -1)]) for di in d.numpy()])
    exact = np.logaddexp.reduce(log_lik) - V * math.log(K)
    kl = V * np.sum(q1 * np.log(q1 * K))
    original_limit = np.logaddexp.reduce(log_q + log_lik) - kl
    assert original_limit > exact + 0.5  # the construction does what it says

    terms = [model.loglik_terms(x, 2000, seed=(s, 1)) for s in range(6)]
    original = np.array([t["loglik_original_formula"].numpy()[0] for t in terms])
    loglik = np.array([t["loglik"].numpy()[0] for t in terms])
    for estimates, limit in ((original, original_limit), (loglik, exact)):
        se = estimates.std(ddof=1) / np.sqrt(estimates.size)
        # Both estimators' biases are O(1/S): below 0.01 nats at S = 2000 for this model.
        assert abs(estimates.mean() - limit) < 4 * se + 0.01, (estimates, limit)
    original, loglik = original.mean(), loglik.mean()
    assert original > exact + 0.5
