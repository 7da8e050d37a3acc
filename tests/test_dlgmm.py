"""Tests for the deep latent Gaussian mixture (models/dlgmm.py) and `train.py dlgmm`.

The densities are checked against independent routes: numerical integration over z (D = 1),
TFP's MixtureSameFamily and Gaussian KL in float64, and the exact marginal likelihood of a tiny
model by quadrature over z (D = 1) for the importance-sampled bound.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import train  # noqa: E402
from igr_tf import datasets  # noqa: E402
from models.dlgmm import DeepLatentGaussianMixture, gaussian_kl, mixture_log_density  # noqa: E402

tfd = tfp.distributions

ADAPTIVE = {"adaptive": True, "threshold": 0.99}
TINY = (4, 4, 1)  # images small enough for the exact marginal likelihood by quadrature


def tiny_model(relaxation="gs", k=4, d=1, shape=TINY, options=None, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return DeepLatentGaussianMixture(
        relaxation, k, d, 0.5, hidden_units=(16,), image_shape=shape,
        relaxation_options=options, seed=seed, **kw,
    )  # fmt: skip


def binary_images(n, shape=TINY, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape)) < 0.3).astype(np.float32)


# --- the densities --------------------------------------------------------------------------------
def test_mixture_log_density_matches_tfp_mixture_in_float64():
    rng = np.random.default_rng(1)
    k, d = 5, 3
    logits = rng.normal(size=(2, k))
    loc, scale = rng.normal(size=(2, k, d)) * 3, rng.uniform(0.1, 2.0, size=(2, k, d))
    z = rng.normal(size=(7, 2, d)) * 4
    log_w = tf.math.log_softmax(logits)
    ours = mixture_log_density(tf.constant(z), log_w, tf.constant(loc), tf.constant(scale))
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=logits), tfd.MultivariateNormalDiag(loc, scale)
    )
    np.testing.assert_allclose(ours.numpy(), mixture.log_prob(z).numpy(), rtol=1e-12, atol=1e-12)


def test_mixture_log_density_is_finite_far_in_the_tails_and_with_absent_components():
    log_w = tf.constant([0.0, -np.inf, -np.inf])  # adaptive truncation: one component left
    loc, scale = tf.zeros([3, 1]), tf.ones([3, 1])
    out = mixture_log_density(tf.constant([[50.0], [-50.0]]), log_w, loc, scale)
    np.testing.assert_allclose(out.numpy(), -0.5 * 2500 - 0.5 * np.log(2 * np.pi), rtol=1e-6)


def test_gaussian_kl_matches_tfp_in_float64():
    rng = np.random.default_rng(2)
    mq, mp = rng.normal(size=(4, 6, 3)), rng.normal(size=(6, 3)) * 2
    sq, sp = rng.uniform(0.05, 3, size=(4, 6, 3)), rng.uniform(0.05, 3, size=(6, 3))
    expected = tfd.kl_divergence(
        tfd.MultivariateNormalDiag(mq, sq), tfd.MultivariateNormalDiag(mp, sp)
    )
    np.testing.assert_allclose(gaussian_kl(mq, sq, mp, sp).numpy(), expected.numpy(), rtol=1e-12)


@pytest.mark.parametrize("relaxation, options", [("gs", None), ("igr_sb", ADAPTIVE)])
def test_log_q_z_is_a_density_that_integrates_to_one(relaxation, options):
    """D = 1: ∫ q(z | x) dz = 1 for every x (trapezoid on a grid wide enough for every
    component), and log q(z | x) equals TFP's mixture of the encoder's components with the
    relaxation's induced categorical as weights."""
    model = tiny_model(relaxation, k=6, options=options)
    x = binary_images(3)
    seed = tf.constant([3, 4])
    _, loc, scale = model.encode(x, training=False)
    lo = float(tf.reduce_min(loc - 12 * scale))
    hi = float(tf.reduce_max(loc + 12 * scale))
    grid = np.linspace(lo, hi, 40_001, dtype=np.float32)
    z = tf.constant(np.broadcast_to(grid[:, None, None], (grid.size, 3, 1)))
    log_q = model.log_q_z(x, z, seed=seed).numpy()  # [G, B]
    integral = np.trapezoid(np.exp(log_q.astype(np.float64)), grid, axis=0)
    np.testing.assert_allclose(integral, 1.0, atol=2e-4)
    weights = model.posterior_log_probs(x, seed=seed)
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=weights), tfd.MultivariateNormalDiag(loc, scale)
    )
    np.testing.assert_allclose(log_q, mixture.log_prob(z).numpy(), rtol=1e-5, atol=1e-5)


def test_prior_is_a_mixture_of_trainable_components_that_integrates_to_one():
    model = tiny_model("igr_sb", k=5, options=ADAPTIVE)
    trainable = {v.path for v in model.trainable_variables}
    assert {model.prior_loc.path, model.prior_log_scale.path} <= trainable
    log_pi, loc, scale = model.prior_components()
    np.testing.assert_allclose(np.exp(log_pi.numpy()).sum(), 1.0, rtol=1e-5)
    # The prior is the weights, not a redraw: two reads are identical.
    np.testing.assert_array_equal(model.prior_components()[1].numpy(), loc.numpy())
    grid = np.linspace(-30, 30, 60_001, dtype=np.float32)[:, None]
    density = np.exp(model.log_prior_z(tf.constant(grid)).numpy().astype(np.float64))
    np.testing.assert_allclose(np.trapezoid(density, grid[:, 0]), 1.0, atol=1e-4)


def test_prior_components_receive_gradients_from_the_elbo():
    model = tiny_model("gs", k=4, d=2)
    x = binary_images(8)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.objective(x, training=True)["loss"])
    g_loc, g_scale = tape.gradient(loss, [model.prior_loc, model.prior_log_scale])
    for g in (g_loc, g_scale):
        assert g is not None and np.all(np.isfinite(g.numpy()))
        # GS weights are positive for every component: every component's prior gets a gradient.
        assert np.all(np.abs(g.numpy()).sum(axis=-1) > 0)


def test_importance_weights_are_unbiased_for_the_exact_marginal_likelihood():
    """A tiny model with D = 1: p(x) = ∫ p(x | z) p(z) dz by quadrature. The one-sample weight
    w = p(x | z) p(z) / q(z | x), z ~ q(z | x), has mean p(x) (within 3 standard errors over
    N draws), its log is below log p(x) on average (a bound), and S samples tighten it."""
    model = tiny_model("gs", k=3, d=1)
    x = binary_images(4, seed=5)
    grid = np.linspace(-25, 25, 20_001, dtype=np.float32)
    z = np.broadcast_to(grid[:, None, None], (grid.size, 4, 1))
    log_joint = model._chunk_log_likelihood(x, tf.constant(z)).numpy().astype(np.float64)
    log_joint += model.log_prior_z(tf.constant(z)).numpy().astype(np.float64)
    m = log_joint.max(axis=0)
    exact = m + np.log(np.trapezoid(np.exp(log_joint - m), grid, axis=0))
    n = 5000  # each row of the tiled batch is an independent draw (S = 1)
    log_w = model.loglik_terms(np.tile(x, [n, 1, 1, 1]), 1, seed=(1, 2))["loglik"].numpy()
    w = np.exp(log_w.astype(np.float64).reshape(n, 4) - exact)  # p(x)-relative weights
    np.testing.assert_array_less(np.abs(w.mean(0) - 1.0), 3 * w.std(0) / np.sqrt(n))
    assert np.all(w.std(0) > 0.01)  # a real Monte Carlo test, not a degenerate one
    assert np.all(np.log(w).mean(0) < 0)
    tighter = model.loglik_terms(x, num_samples=1000, seed=(3, 4))["loglik"].numpy()
    assert np.all(np.log(w).mean(0) < tighter - exact)
    again = model.loglik_terms(x, num_samples=1000, seed=(3, 4))["loglik"].numpy()
    np.testing.assert_array_equal(tighter, again)  # deterministic given the seed


def test_evaluate_loglik_averages_the_bound_and_counts_components_over_batches():
    """GS (exact q(c | x)): the dataset's mean bound is the mean of the per-batch bounds, the
    component mass is mean_x q(c | x), the entropy TFP's, and a component is used above 1%."""
    model = tiny_model("gs", k=6, d=2)
    x = binary_images(30, seed=7)
    result = model.evaluate_loglik(tf.data.Dataset.from_tensor_slices(x).batch(12), 7, seed=3)
    probs = tf.exp(model.posterior_log_probs(x)).numpy().astype(np.float64)
    np.testing.assert_allclose(result["component_mass"], probs.mean(0), rtol=1e-5)
    entropy = tfd.Categorical(probs=probs).entropy().numpy().mean()
    np.testing.assert_allclose(result["assignment_entropy"], entropy, rtol=1e-5)
    assert result["components_used"] == int(np.sum(probs.mean(0) > 0.01))
    per_batch = [
        model.loglik_terms(x[i : i + 12], 7, seed=tf.constant([3, b]))["loglik"].numpy()
        for b, i in enumerate(range(0, 30, 12))
    ]
    np.testing.assert_allclose(result["test_loglik"], np.concatenate(per_batch).mean(), rtol=1e-6)
    assert result["test_loglik_proposal"] == "exact"


@pytest.mark.parametrize("relaxation, options", [("gs", None), ("igr_sb", ADAPTIVE)])
def test_loss_and_gradients_stay_finite_at_tau_001_with_extreme_encoder_outputs(
    relaxation, options
):
    model = DeepLatentGaussianMixture(
        relaxation, 6, 2, 0.01, hidden_units=(16,), image_shape=TINY, relaxation_options=options,
        seed=0,
    )  # fmt: skip
    kernel, bias = model.assignment_head.get_weights()
    model.assignment_head.set_weights(
        [kernel * 0, bias * 0 + 50 * np.sign(np.sin(np.arange(bias.size)))]
    )
    x = binary_images(8)
    with tf.GradientTape() as tape:
        terms = model.objective(x, training=True)
        loss = tf.reduce_mean(terms["loss"])
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy())
    assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)
    bound = model.loglik_terms(x, 20, seed=(0, 0))["loglik"].numpy()
    assert np.all(np.isfinite(bound)) and np.all(bound < 0)


def test_hard_assignments_are_exactly_one_hot_in_the_forward_pass():
    model = tiny_model("igr_sb", k=5, options=ADAPTIVE, hard=True)
    psi = model._draw(binary_images(16), training=True)["psi"].numpy()
    np.testing.assert_array_equal(np.sort(psi, axis=-1)[:, -1], 1.0)
    np.testing.assert_array_equal(psi.sum(-1), 1.0)


def test_mixed_precision_computes_the_loss_terms_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_model("igr_sb", k=5, d=2, options=ADAPTIVE)
        assert model.compute_dtype == "float16" and model.prior_loc.dtype == "float32"
        terms = model.objective(binary_images(8), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name, value in terms.items():
        assert value.dtype == tf.float32 and np.all(np.isfinite(value.numpy())), name


# --- training, saving ---------------------------------------------------------------------------
@pytest.mark.parametrize("relaxation, options", [("igr_sb", ADAPTIVE), ("gs", None)])
def test_fit_decreases_the_loss_and_the_model_round_trips_through_keras_files(
    relaxation, options, tmp_path
):
    model = tiny_model(relaxation, k=5, d=2, shape=(8, 8, 1), options=options)
    x = binary_images(40, shape=(8, 8, 1), seed=3)
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=False)
    prior_before = model.prior_loc.numpy().copy()
    history = model.fit(x, batch_size=20, epochs=6, verbose=0, shuffle=False).history
    losses = history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 2, losses
    assert not np.allclose(model.prior_loc.numpy(), prior_before)  # the prior is learned
    if relaxation == "igr_sb":
        assert 1 <= history["N"][-1] <= 4  # sticks used, at most the cap's K - 1
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, DeepLatentGaussianMixture)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The same next draw (the seed generators' states are saved) and the same evaluation.
    np.testing.assert_array_equal(model(x[:4]).numpy(), loaded(x[:4]).numpy())
    a = model.loglik_terms(x[:4], 10, seed=(0, 1))
    b = loaded.loglik_terms(x[:4], 10, seed=(0, 1))
    np.testing.assert_array_equal(a["loglik"].numpy(), b["loglik"].numpy())
    np.testing.assert_array_equal(model.generate(3, 1).numpy(), loaded.generate(3, 1).numpy())


def test_generate_draws_from_the_chosen_component_and_checks_it():
    model = tiny_model("gs", k=3, d=2)
    images = model.generate(5, component=2, seed=(0, 0)).numpy()
    assert images.shape == (5, *TINY) and np.all((images > 0) & (images < 1))
    with pytest.raises(ValueError, match="`component` must be in \\[0, 3\\)"):
        model.generate(5, component=3)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"num_components": 1}, "`num_components` must be ≥ 2"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"likelihood": "poisson"}, "`likelihood` must be one of"),
        ({"temperature": 0.0}, "`temperature` must be > 0"),
        ({"relaxation": "nope"}, "Unknown relaxation 'nope'"),
    ],
)
def test_bad_arguments_are_refused_with_their_name(kwargs, fragment):
    args = dict(relaxation="gs", num_components=3, latent_dim=2, image_shape=TINY)
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        DeepLatentGaussianMixture(**args)


# --- train.py dlgmm -------------------------------------------------------------------------------
@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_main(argv, capsys) -> Run:
    try:
        code = train.main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def test_dlgmm_defaults_to_adaptive_igr_sb_and_the_config_and_flags_win():
    p = train.build_parser()
    assert train.parse_args(p, ["dlgmm"]).dist == "igr_sb"
    assert train.parse_args(train.build_parser(), ["dlgmm", "--dist", "gs"]).dist == "gs"
    assert train.parse_args(train.build_parser(), ["--config", "dlgmm_sample"]).dist == "igr_sb"
    assert train.parse_args(train.build_parser(), []).dist == "igr_i"  # vae keeps its default


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--components", "1"], "--components must be ≥ 2; got 1"),
        (["--latent-dim", "0"], "--latent-dim must be ≥ 1; got 0"),
        (["--hidden-units", "64,x"], "--hidden-units must be comma-separated integers"),
        (["--samples", "2"], "--samples 2: dlgmm trains the one-sample ELBO"),
        (["--estimator", "st_gs"], "--estimator st_gs: dlgmm trains the relaxed --dist sample"),
        (["--dist", "gs", "--sb-adaptive"], "--sb-adaptive needs --dist igr_sb"),
        (["--sb-threshold", "0"], "--sb-threshold must be in (0, 1]"),
        (["--temperature-schedule", "anneal"], "--temperature-schedule: vae only"),
        (["--validation-split", "0.1"], "--validation-split: vae only"),
    ],
)
def test_bad_dlgmm_flags_exit_2_with_one_line(args, fragment, capsys, tmp_path):
    run = run_main(["dlgmm", "--out", str(tmp_path / "o"), *args], capsys)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and fragment in lines[0], (
        lines
    )


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    data = datasets.load("mnist_sample")
    x = np.stack(list(data.train.take(60).as_numpy_iterator()))[..., 0]
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=(x * 255).astype(np.uint8))
    return str(path)


def test_dlgmm_run_split_in_two_ends_exactly_as_the_uninterrupted_run(
    data_file, tmp_path, capsys, monkeypatch
):
    # A relative --out, as train.py's default runs/...: resuming from it once doubled the path.
    monkeypatch.chdir(tmp_path)

    def flags(out):
        return ["dlgmm", "--data-file", data_file, "--batch-size", "20", "--no-jit",
                "--components", "4", "--latent-dim", "2", "--hidden-units", "16",
                "--eval-samples", "5", "--verbose", "0",
                "--out", os.path.join("runs", out)]  # fmt: skip

    whole = run_main([*flags("whole"), "--epochs", "2"], capsys)
    assert whole.returncode == 0, whole.stderr
    first = run_main([*flags("split"), "--epochs", "1"], capsys)
    assert first.returncode == 0, first.stderr
    second = run_main([*flags("split"), "--epochs", "2"], capsys)
    assert second.returncode == 0, second.stderr
    assert "Resuming from epoch 1" in second.stdout
    res = {}
    for name in ("whole", "split"):
        with open(tmp_path / "runs" / name / "results.json") as f:
            res[name] = json.load(f)
    assert res["split"]["resumed_from_epoch"] == 1 and res["split"]["epochs_completed"] == 2
    assert res["whole"]["history"] == res["split"]["history"]
    assert res["whole"]["metrics"] == res["split"]["metrics"]
    assert res["whole"]["component_mass"] == res["split"]["component_mass"]
    metrics = res["whole"]["metrics"]
    assert metrics["test_loglik_proposal"] == "monte_carlo" and 1 <= metrics["components_used"] <= 4
    assert 0 <= metrics["assignment_entropy"] <= np.log(4) + 1e-6
    # log p(x) of 784 binary pixels: a bound between -784 log 2 (worse than coin tosses: an
    # untrained net may be) times 1.5 and 0.
    assert -784 * np.log(2) * 1.5 < metrics["test_loglik"] < 0
    model = keras.models.load_model(str(tmp_path / "runs" / "whole" / "model.keras"))
    assert isinstance(model, DeepLatentGaussianMixture) and model.num_components == 4
