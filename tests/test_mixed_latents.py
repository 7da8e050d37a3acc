"""Tests for mixed continuous + discrete latents (JointVAE-style, `DiscreteVAE(continuous_dim=D)`,
`train.py vae --continuous-dim D`) and for `evaluation.cluster_accuracy`.

The importance-sampled bound is checked against log p(x) computed independently: enumeration of
the discrete latents times Gauss-Hermite quadrature over the continuous one (float64).
"""

from __future__ import annotations

import itertools
import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from test_train_cli import assert_one_line_error, checkpoint_tensors, run_main, tiny_npz  # noqa: E402

from igr_tf import datasets, evaluation  # noqa: E402
from models.cbm import load_labelled_mnist_sample  # noqa: E402
from models.gaussian_latent import GaussianLatent  # noqa: E402
from models.vae import DiscreteVAE  # noqa: E402

tfd = tfp.distributions


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    data = datasets.load("mnist_sample")
    return np.stack(list(data.train.take(120).as_numpy_iterator()))


def make_vae(relaxation="igr_i", *, seed=1, **kwargs) -> DiscreteVAE:
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("arch", "linear")
    model = DiscreteVAE(relaxation, seed=seed, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    return model


# --- the Gaussian latent --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_latent_kl_log_ratio_and_samples_against_tfp(dtype):
    layer = GaussianLatent(3, seed=4, dtype=np.dtype(dtype).name)
    rng = np.random.default_rng(0)
    params = rng.normal(size=(5, 6)).astype(dtype)
    loc, scale = layer.loc_scale(params)
    np.testing.assert_allclose(scale, np.log1p(np.exp(params[:, 3:])) + 1e-6, rtol=1e-6)
    q = tfd.MultivariateNormalDiag(loc, scale)
    p = tfd.MultivariateNormalDiag(tf.zeros_like(loc), tf.ones_like(scale))
    out = layer(params)
    assert out["sample"].dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out["kl"], tfd.kl_divergence(q, p), rtol=rtol, atol=rtol)
    z = out["sample"]
    np.testing.assert_allclose(
        out["log_ratio"], q.log_prob(z) - p.log_prob(z), rtol=rtol, atol=rtol
    )
    # The draws follow N(μ, σ²): mean and standard deviation within ~4 standard errors.
    n = 2000  # one call: every row of the tiled batch draws its own noise
    many = layer(np.tile(params, (n, 1)))["sample"].numpy().reshape(n, *loc.shape)
    np.testing.assert_array_less(np.abs(many.mean(0) - loc) / (scale / np.sqrt(n)), 4.0)
    np.testing.assert_array_less(np.abs(many.std(0) / scale - 1) * np.sqrt(2 * n), 4.0)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_gaussian_latent_is_finite_with_gradients_at_extreme_encoder_outputs(dtype):
    layer = GaussianLatent(2, seed=0, dtype=dtype.name)
    params = tf.constant([[50.0, -50.0, 50.0, -50.0], [-50.0, 50.0, -50.0, 50.0]], dtype)
    with tf.GradientTape() as tape:
        tape.watch(params)
        out = layer(params)
        total = tf.reduce_sum(out["kl"] + out["log_ratio"] + tf.reduce_sum(out["sample"], -1))
    for value in (*out.values(), tape.gradient(total, params)):
        assert np.all(np.isfinite(value.numpy())), value


def test_bad_continuous_arguments():
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="continuous_dim"):
            DiscreteVAE("igr_i", 2, 3, continuous_dim=bad, arch="linear")
    with pytest.raises(ValueError, match="continuous_dim.*estimator"):
        DiscreteVAE("igr_i", 2, 3, continuous_dim=2, arch="linear", estimator="reinforce")
    with pytest.raises(ValueError, match="dim"):
        GaussianLatent(0)
    with pytest.raises(ValueError, match="num_vars=1"):
        make_vae(num_vars=2, num_categories=3, continuous_dim=1).cluster_log_probs(
            np.zeros((1, 28, 28, 1))
        )


# --- D = 0 is the discrete model ------------------------------------------------------------------
def test_continuous_dim_0_is_the_model_built_without_the_argument(digits):
    x = digits[:40]
    a = make_vae("igr_sb", num_vars=3, num_categories=4, temperature=0.5, seed=7)
    b = make_vae("igr_sb", num_vars=3, num_categories=4, temperature=0.5, seed=7, continuous_dim=0)
    assert a.continuous is None and b.continuous is None
    assert dict(a.get_config(), name=None) == dict(b.get_config(), name=None)
    # The encoder outputs only the discrete parameters; the decoder reads [B, V, K].
    assert b.encoder.layers[-1].units == b.latent.params_size
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]
    for u, v in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    np.testing.assert_array_equal(a(x), b(x))
    # ... and call() is decoder(latent(encoder(x))): the same draw composed by hand.
    state = b.latent.seed_generator.state.numpy()
    composed = b.decoder(b.latent(b.encoder(x))["sample"])
    b.latent.seed_generator.state.assign(state)
    np.testing.assert_array_equal(composed, b(x))
    a(x)  # both streams two draws on
    assert set(a.trackers) == set(b.trackers) and "kl_continuous" not in b.trackers
    np.testing.assert_array_equal(a.objective(x)["loss"], b.objective(x)["loss"])
    np.testing.assert_array_equal(
        a.loglik_terms(x, 7, (1, 2))["loglik"], b.loglik_terms(x, 7, (1, 2))["loglik"]
    )
    np.testing.assert_array_equal(a.train_on_batch(x)[0], b.train_on_batch(x)[0])
    # A config saved before the argument existed builds the discrete model.
    config = a.get_config()
    del config["continuous_dim"]
    assert DiscreteVAE.from_config(config).continuous_dim == 0


# --- the importance-sampled bound -----------------------------------------------------------------
SHAPE = (2, 3, 1)  # 6 binary pixels
V, K, D = 1, 3, 2
X = np.array(
    [[1, 0, 1, 0, 1, 0], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1], [1, 1, 0, 1, 1, 0]], np.float32
).reshape(4, *SHAPE)


def tiny_mixed_vae(relaxation: str, continuous_dim: int = D, z_weight: float = 1.5) -> DiscreteVAE:
    """A linear mixed VAE whose decoder depends on d and on z (scaled by z_weight), and whose
    Gaussian proposal is far enough from the prior that its density matters."""
    model = make_vae(
        relaxation,
        num_vars=V,
        num_categories=K,
        image_shape=SHAPE,
        temperature=0.5,
        continuous_dim=continuous_dim,
    )
    rng = np.random.default_rng(11)
    p = model.latent.params_size
    kernel, bias = model.encoder.layers[-1].get_weights()
    kernel[:, :p] *= 0.3  # no discrete configuration with a tiny proposal probability
    kernel[:, p:] = 0.4 * rng.normal(size=kernel[:, p:].shape)  # μ(x), σ(x) vary with x
    bias[p : p + continuous_dim] = 0.3  # μ away from 0
    bias[p + continuous_dim :] = -0.2  # σ = softplus(-0.2) ≈ 0.6 before the x-dependent part
    model.encoder.layers[-1].set_weights([kernel, bias])
    kernel, bias = model.decoder.layers[-1].get_weights()
    kernel = 2.0 * kernel / np.abs(kernel).max()
    kernel[:continuous_dim] = z_weight * rng.choice([-1.0, 1.0], size=kernel[:continuous_dim].shape)
    model.decoder.layers[-1].set_weights([kernel.astype(np.float32), bias])
    return model


def exact_log_marginal(model: DiscreteVAE, x: np.ndarray, nodes: int) -> np.ndarray:
    """log p(x) = log Σ_d p(d) ∫ N(z; 0, I) p(x | d, z) dz: enumeration of d (uniform prior) times
    a product Gauss-Hermite rule over z (probabilists' nodes), in float64."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    log_w = np.log(w / math.sqrt(2 * math.pi))
    grid = np.array(list(itertools.product(range(nodes), repeat=D)))  # [G, D]
    z, log_wz = t[grid], log_w[grid].sum(-1)  # [G, D], [G]
    total = []
    for d in tf.one_hot(np.array(list(itertools.product(range(K), repeat=V))), K):
        kernel, bias = (w.astype(np.float64) for w in model.decoder.layers[-1].get_weights())
        flat_d = np.broadcast_to(d.numpy().reshape(-1), (len(z), V * K))
        logits = np.concatenate([z, flat_d], -1) @ kernel + bias  # [G, pixels]
        xf = x.reshape(len(x), -1).astype(np.float64)
        # log Bernoulli(x; sigmoid(l)) = x l - softplus(l)
        log_lik = xf @ logits.T - np.logaddexp(0, logits).sum(-1)  # [B, G]
        total.append(np.logaddexp.reduce(log_lik + log_wz, -1))
    return np.logaddexp.reduce(np.stack(total), 0) - V * math.log(K)


def replicated_estimates(model, num_samples, replicates, seed) -> np.ndarray:
    """`loglik` of independent replicates `[replicates, B]` (one batch holding X many times)."""
    x = np.tile(X, (replicates, 1, 1, 1))
    out = model.loglik_terms(x, num_samples, seed=(seed, 0))["loglik"].numpy()
    return out.reshape(replicates, len(X))


@pytest.mark.parametrize("relaxation", ["igr_i", "gs"])
def test_mixed_bound_against_enumeration_and_quadrature(relaxation):
    model = tiny_mixed_vae(relaxation)
    exact = exact_log_marginal(model, X, nodes=40)
    np.testing.assert_allclose(exact, exact_log_marginal(model, X, nodes=60), atol=1e-8)
    # The model computes the same log p(x | d, z) as the float64 route above.
    d = tf.one_hot([[1]] * len(X), K)
    z = tf.constant([[0.3, -1.2]] * len(X))
    kernel, bias = model.decoder.layers[-1].get_weights()
    logits = np.concatenate([z.numpy(), d.numpy().reshape(len(X), -1)], -1) @ kernel + bias
    expected = np.sum(X.reshape(len(X), -1) * logits - np.logaddexp(0, logits), -1)
    np.testing.assert_allclose(model.log_likelihood(X, d, z), expected, rtol=1e-5)

    small = replicated_estimates(model, 10, 200, seed=1)
    large = replicated_estimates(model, 1000, 10, seed=2)
    mean_small, se_small = small.mean(0), small.std(0) / np.sqrt(len(small))
    mean_large, se_large = large.mean(0), large.std(0) / np.sqrt(len(large))
    # A lower bound on average (Jensen), up to Monte Carlo error ...
    assert np.all(mean_small <= exact + 3 * se_small), (mean_small, exact, se_small)
    # ... visibly loose at S = 10 ...
    gap, se_gap = np.mean(exact - mean_small), np.sqrt(np.sum(se_small**2)) / len(exact)
    assert gap > 4 * se_gap, (mean_small, exact, se_gap)
    # ... and tight at S = 1000 (the bound's gap shrinks as 1/S: a hundredth of the S = 10 gap).
    slack = 4 * se_large + np.maximum(exact - mean_small, 0) / 100
    assert np.all(np.abs(mean_large - exact) <= slack), (mean_large, exact, se_large)


def test_a_decoder_that_ignores_z_gives_the_discrete_bound():
    """z's weights N(z; 0, I) / q(z | x) have mean 1 under q: with a decoder that ignores z the
    mixed bound equals the D = 0 model's within Monte Carlo error (the same one-hot draws)."""
    mixed = tiny_mixed_vae("igr_i", continuous_dim=D, z_weight=0.0)
    discrete = make_vae("igr_i", num_vars=V, num_categories=K, image_shape=SHAPE, temperature=0.5)
    p = mixed.latent.params_size
    kernel, bias = mixed.encoder.layers[-1].get_weights()
    discrete.encoder.layers[-1].set_weights([kernel[:, :p], bias[:p]])
    kernel, bias = mixed.decoder.layers[-1].get_weights()
    discrete.decoder.layers[-1].set_weights([kernel[D:], bias])
    loc, scale = mixed.continuous.loc_scale(mixed._split(mixed.encoder(X))[1])
    assert np.all(np.abs(loc) > 0.05) or np.all(np.abs(scale - 1) > 0.1)  # q(z|x) is not p(z)
    diffs = replicated_estimates(mixed, 1000, 20, 5) - replicated_estimates(discrete, 1000, 20, 5)
    se = diffs.std(0) / np.sqrt(len(diffs))
    assert np.all(se > 0) and np.all(np.abs(diffs.mean(0)) <= 4 * se), (diffs.mean(0), se)
    # (A z-dependent decoder is the quadrature test's case; here a wrong q(z|x) or p(z) density
    # makes the z weights' mean differ from 1, which shifts the bound.)
    exact_mixed = exact_log_marginal(mixed, X, nodes=20)
    d = tf.one_hot(np.arange(K)[:, None], K)
    log_lik = np.stack([discrete.log_likelihood(X, tf.repeat(di[None], len(X), 0)) for di in d])
    np.testing.assert_allclose(
        exact_mixed, np.logaddexp.reduce(log_lik, 0) - V * math.log(K), rtol=1e-5
    )


# --- training, saving, loading --------------------------------------------------------------------
def test_mixed_vae_trains_with_fit_and_reloads_with_the_same_outputs(digits, tmp_path):
    model = make_vae("igr_sb", num_vars=1, num_categories=10, temperature=0.5, continuous_dim=3)
    history = model.fit(digits, epochs=5, batch_size=20, verbose=0, shuffle=False).history
    assert set(history) == {"loss", "recon", "kl", "kl_continuous"} | set(model.latent.metric_names)
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 30, losses
    assert history["kl_continuous"][-1] > 0
    # It compiles under XLA, and the compiled objective agrees with the eager one up to Monte
    # Carlo error (XLA's Philox stream differs from the CPU kernels' for the same seed): the mean
    # paired difference is within 4 standard errors of 0.
    x = digits[:100]
    diff = (
        tf.function(lambda x: model.objective(x)["loss"], jit_compile=True)(x).numpy()
        - model.objective(x)["loss"].numpy()
    )
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(diff.size), diff
    x = digits[:20]

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config() and loaded.continuous_dim == 3
    for a, b in zip(model.variables, loaded.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    for _ in range(2):  # the same random streams, discrete and continuous, call after call
        np.testing.assert_array_equal(model(x), loaded(x))
    test = tf.data.Dataset.from_tensor_slices(digits[100:120]).batch(10)
    assert loaded.evaluate_loglik(test, 20, seed=3) == model.evaluate_loglik(test, 20, seed=3)
    np.testing.assert_array_equal(model.predict_clusters(x), loaded.predict_clusters(x))


# --- train.py -------------------------------------------------------------------------------------
def mixed_flags(data_file, out, epochs, *extra) -> list[str]:
    return [
        "vae", "--data-file", data_file, "--epochs", str(epochs), "--batch-size", "20",
        "--arch", "linear", "--eval-samples", "5", "--dist", "gs", "--num-vars", "2",
        "--continuous-dim", "3", "--verbose", "0", "--no-jit", "--out", out, *extra,
    ]  # fmt: skip


def test_train_cli_continuous_dim_resumes_exactly(tmp_path, capsys):
    data = tiny_npz(tmp_path / "tiny.npz")
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    assert run_main(mixed_flags(data, whole, 2), capsys).returncode == 0
    assert run_main(mixed_flags(data, split, 1), capsys).returncode == 0
    second = run_main(mixed_flags(data, split, 2), capsys)
    assert second.returncode == 0 and "Resuming from epoch 1" in second.stdout, second.stderr
    ref, res = (json.load(open(os.path.join(d, "results.json"))) for d in (whole, split))
    assert res["metrics"] == ref["metrics"] and res["history"] == ref["history"]
    assert "test_kl_continuous" in res["metrics"] and "test_cluster_accuracy" not in res["metrics"]
    a, b = checkpoint_tensors(whole), checkpoint_tensors(split)
    # (Equal weights after the resume need z's noise stream in the checkpoint, too.)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    refused = run_main(mixed_flags(data, split, 3, "--continuous-dim", "4"), capsys)
    assert_one_line_error(refused, "--continuous-dim 3 (now 4)")


def test_train_cli_reports_the_cluster_accuracy_on_mnist_sample(tmp_path, capsys):
    out = str(tmp_path / "mnist")
    flags = ["vae", "--num-vars", "1", "--num-categories", "10", "--continuous-dim", "2",
             "--epochs", "1", "--arch", "linear", "--eval-samples", "2", "--verbose", "0",
             "--no-jit", "--out", out]  # fmt: skip
    run = run_main(flags, capsys)
    assert run.returncode == 0, run.stderr
    accuracy = json.load(open(os.path.join(out, "results.json")))["metrics"][
        "test_cluster_accuracy"
    ]
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    data = load_labelled_mnist_sample()
    clusters = model.predict_clusters(data.x_test, 100, seed=0)
    assert accuracy == evaluation.cluster_accuracy(data.y_test, clusters)
    # At least the largest digit class (matching can always give it the biggest cluster).
    assert np.bincount(data.y_test).max() / len(data.y_test) <= accuracy <= 1


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--continuous-dim", "-1"], "--continuous-dim must be ≥ 0; got -1"),
        (["--continuous-dim", "2", "--estimator", "st_gs"], "not --estimator st_gs"),
        (["--continuous-dim", "1.5"], "--continuous-dim: invalid int value"),
    ],
)
def test_bad_continuous_dim_flags_exit_2_with_one_line(extra, fragment, tmp_path, capsys):
    run = run_main(["vae", "--out", str(tmp_path / "o"), *extra], capsys)
    assert_one_line_error(run, fragment)


# --- cluster accuracy -----------------------------------------------------------------------------
def brute_force_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """The best one-to-one cluster → label map by trying every injection."""
    cs, ls = sorted(set(clusters.tolist())), sorted(set(labels.tolist()))
    agree = {(c, y): int(np.sum((clusters == c) & (labels == y))) for c in cs for y in ls}
    slots = ls + [None] * max(0, len(cs) - len(ls))  # a cluster may go unmatched
    best = max(
        sum(agree[c, y] for c, y in zip(cs, perm, strict=True) if y is not None)
        for perm in set(itertools.permutations(slots, len(cs)))
    )
    return best / len(labels)


def test_cluster_accuracy_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(150):
        n = int(rng.integers(1, 40))
        labels = rng.integers(0, rng.integers(1, 6), n)
        clusters = rng.integers(0, rng.integers(1, 7), n)
        if rng.random() < 0.5:  # clusters that mostly agree with the labels, under other names
            names = rng.permutation(8)
            noisy = rng.random(n) < 0.3
            clusters = np.where(noisy, clusters, names[labels])
        assert evaluation.cluster_accuracy(labels, clusters) == pytest.approx(
            brute_force_accuracy(labels, clusters), abs=1e-12
        ), (labels, clusters)


def test_cluster_accuracy_is_one_for_renamed_labels_and_the_map_says_how():
    labels = np.array([0, 0, 1, 2, 2, 2, 3])
    names = np.array([7, 2, 5, 0])
    assert evaluation.cluster_accuracy(labels, names[labels]) == 1.0
    assert evaluation.match_clusters(labels, names[labels]) == {7: 0, 2: 1, 5: 2, 0: 3}
    # One cluster for everything: the largest class.
    assert evaluation.cluster_accuracy(labels, np.zeros(7, int)) == pytest.approx(3 / 7)


def test_cluster_accuracy_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        evaluation.cluster_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="labels.*non-empty"):
        evaluation.cluster_accuracy([], [])
    with pytest.raises(ValueError, match="clusters.*integers ≥ 0"):
        evaluation.cluster_accuracy([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="labels.*integers ≥ 0"):
        evaluation.cluster_accuracy([-1, 1], [0, 1])


def test_importance_weighted_objective_with_continuous_latents_is_tighter_than_the_elbo(digits):
    """S > 1 weighs each joint sample (ψ_s, z_s) by p(x | ψ_s, z_s) p(ψ_s) p(z_s) / q(ψ_s, z_s):
    on average −loss(S = 50) ≥ −loss(S = 1) (Jensen), by more than the Monte Carlo error."""
    options = {"kl": "sampled"}
    elbo = make_vae("gs", num_vars=2, num_categories=4, temperature=0.5, continuous_dim=3,
                    relaxation_options=options)  # fmt: skip
    iw = make_vae("gs", num_vars=2, num_categories=4, temperature=0.5, continuous_dim=3,
                  relaxation_options=options, num_samples=50, seed=2)  # fmt: skip
    iw.set_weights(elbo.get_weights())
    x = digits[:100]
    one = -np.concatenate([elbo.objective(x)["loss"].numpy() for _ in range(5)])
    many = -iw.objective(x)["loss"].numpy()
    assert np.all(np.isfinite(many))
    gap = many.mean() - one.mean()
    se = math.sqrt(one.var(ddof=1) / one.size + many.var(ddof=1) / many.size)
    assert gap > 4 * se, (gap, se)
    with pytest.raises(ValueError, match="kl='sampled'"):
        make_vae("gs", num_vars=2, num_categories=4, continuous_dim=3, num_samples=2,
                 relaxation_options={"kl": "closed"})  # fmt: skip
