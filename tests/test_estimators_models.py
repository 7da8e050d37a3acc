"""Gradient estimators inside the models: DiscreteVAE / SOP with `estimator=NAME`, train.py flags.

Kept fast: one XLA program holds the VAE train steps of every estimator (compiling dominates),
the other model tests run eagerly on tiny models.
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from test_train_cli import assert_one_line_error, run_main, tiny_npz, vae_flags

from igr_tf import datasets, estimators
from models.sop import StructuredOutputPredictor
from models.vae import DiscreteVAE

tfd = tfp.distributions


def _binary_images(n: int, seed: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return tf.constant((rng.random((n, 28, 28, 1)) > 0.5).astype("float32"))


def test_every_estimator_runs_a_jit_compiled_vae_step_with_finite_gradients_at_low_tau(
    package_conversions,
):
    # K = 2 so that every estimator applies (disarm is binary); τ = 0.01 where there is one.
    x = _binary_images(4)
    models = {
        name: DiscreteVAE(
            num_vars=3, num_categories=2, temperature=0.01, arch="linear", estimator=name, seed=1
        )  # fmt: skip
        for name in estimators.names()
    }

    @tf.function(jit_compile=True)
    def steps(x):
        out = {}
        for name, m in models.items():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(m.objective(x, training=True)["loss"])
            enc, dec = tape.gradient(
                loss, [m.encoder.trainable_variables, m.decoder.trainable_variables]
            )
            out[name] = (loss, enc, dec)
        return out

    results = steps(x)
    assert package_conversions == []  # the objectives and estimators are not autograph-converted
    for name, (loss, enc, dec) in results.items():
        assert np.isfinite(loss.numpy()), name
        for g in enc + dec:
            assert g is not None and np.all(np.isfinite(g.numpy())), name
        # The decoder sees the discrete sample: its gradient cannot vanish.
        assert any(np.any(g.numpy() != 0) for g in dec), name


def test_default_vae_loss_is_unchanged_for_a_fixed_seed():
    # Values of the relaxed path before estimators came into the model (main at fd99ec6); the
    # loss re-pinned when the eager Gaussian noise became Box-Muller on one Philox draw (2e94f47:
    # same law, other numbers per seed). The KL, a function of the parameters only, is as before.
    keras.utils.set_random_seed(3)
    m = DiscreteVAE("igr_i", 3, 4, 0.5, arch="linear", seed=7)
    terms = m.objective(_binary_images(4), training=True)
    np.testing.assert_allclose(
        terms["loss"], [551.105712890625, 549.1395874023438, 547.3240966796875, 550.0820922851562],
        rtol=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(
        terms["kl"], [7.860856533050537, 5.42008113861084, 4.284293174743652, 6.20046854019165],
        rtol=1e-5,
    )  # fmt: skip


def test_logit_estimator_kl_is_the_categorical_kl_to_uniform():
    logits = tf.constant(np.random.default_rng(1).normal(size=(2, 3, 4)) * 3.0, tf.float64)
    latent = estimators.EstimatorLatent("reinmax", 3, 4)
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(-1, keepdims=True)
    expected = np.sum(p * np.log(p * 4.0), axis=(-2, -1))  # Σ_v Σ_k q log(q / (1/4))
    np.testing.assert_allclose(latent.kl(tf.reshape(logits, [2, 12])), expected, rtol=1e-10)


def test_st_igr_sb_kl_for_k_above_2_is_the_gaussian_kl_to_the_relaxation_prior():
    params = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 4)), tf.float64)  # K = 3
    est = estimators.get("st_igr_sb", 3)
    loc, raw = tf.split(params, 2, axis=-1)
    scale = tf.math.softplus(raw) + 1e-4
    prior = estimators.STIGRStickBreaking(3)._relaxation()
    loc0, scale0 = prior.prior_loc_scale(1.0, tf.float64)
    expected = tf.reduce_sum(
        tfd.kl_divergence(tfd.Normal(loc, scale), tfd.Normal(loc0, scale0)), axis=[-2, -1]
    )
    np.testing.assert_allclose(est.kl(params), expected, rtol=1e-10)
    assert not est.exact_categorical


def test_vimco_vae_loss_is_the_negative_importance_weighted_bound():
    # −loss is VIMCO's value, log mean_s p(x|b_s) p(b_s)/q(b_s): in expectation between the ELBO
    # and log p(x), both computed here by enumerating the 9 latent outcomes.
    x = _binary_images(3)
    m = DiscreteVAE(num_vars=2, num_categories=3, arch="linear", estimator="vimco", seed=0,
                    estimator_options={"num_samples": 4})  # fmt: skip
    params = tf.reshape(m.encoder(x), [3, 2, 3])
    log_q = tf.math.log_softmax(params, -1).numpy()
    outcomes = [(i, j) for i in range(3) for j in range(3)]
    d = tf.constant(np.stack([np.eye(3)[[i, j]] for i, j in outcomes])[:, None].repeat(3, 1),
                    tf.float32)  # fmt: skip
    log_lik = m._sample_log_likelihoods(x)(d).numpy()  # [9, 3]
    log_px = np.log(np.exp(log_lik + 2 * np.log(1 / 3)).sum(0))
    elbo = np.sum(
        [np.exp(log_q[:, 0, i] + log_q[:, 1, j]) * (log_lik[n] + 2 * np.log(1 / 3)
         - log_q[:, 0, i] - log_q[:, 1, j]) for n, (i, j) in enumerate(outcomes)], axis=0,
    )  # fmt: skip
    reps = 200  # independent draws: the batch tiled, one call
    draws = m.objective(tf.tile(x, [reps, 1, 1, 1]))["loss"].numpy().reshape(reps, 3)
    mean = -draws.mean(0)  # E[S-sample bound]: ELBO ≤ it ≤ log p(x)
    se = draws.std(0) / math.sqrt(len(draws))
    assert np.all(mean >= elbo - 3 * se) and np.all(mean <= log_px + 3 * se), (elbo, mean, log_px)


def test_an_unbiased_estimator_lowers_the_vae_loss_on_mnist_sample():
    x = np.stack(list(datasets.load("mnist_sample").train.take(100).as_numpy_iterator()))
    x = tf.constant((x > 0.5).astype("float32"))
    keras.utils.set_random_seed(0)
    m = DiscreteVAE(num_vars=5, num_categories=4, arch="linear", estimator="reinforce_loo",
                    seed=0)  # fmt: skip
    optimizer = keras.optimizers.Adam(1e-2)

    def loss():
        return tf.reduce_mean(m.objective(x, training=True)["loss"])

    before = float(loss())
    for _ in range(10):
        with tf.GradientTape() as tape:
            value = loss()
        optimizer.apply_gradients(zip(tape.gradient(value, m.trainable_variables),
                                      m.trainable_variables, strict=False))  # fmt: skip
    after = float(loss())
    assert after < before - 100.0, (before, after)  # ~543 nats at init


@pytest.mark.parametrize("name", ["relax", "st_igr_planar"])
def test_estimator_vae_saves_and_loads(tmp_path, name):
    x = _binary_images(3)
    m = DiscreteVAE(num_vars=2, num_categories=3, arch="linear", estimator=name, seed=0)
    rng = np.random.default_rng(4)
    for w in m.weights:  # every weight moved off its initial value (the estimator's own too)
        w.assign(w.numpy() + rng.normal(size=w.shape).astype(w.dtype) * 0.1)
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["estimator"] == name
    assert len(loaded.weights) == len(m.weights) > 4
    for a, b in zip(m.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    seed = tf.constant([1, 2], tf.int32)
    np.testing.assert_allclose(
        loaded.loglik_terms(x, 5, seed)["loglik"], m.loglik_terms(x, 5, seed)["loglik"], rtol=1e-6
    )


def test_sop_with_a_hard_sample_estimator_trains_saves_and_evaluates(tmp_path):
    x = _binary_images(4)
    m = StructuredOutputPredictor(num_units=6, estimator="reinmax", seed=0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(m.nll(x, 1))
    grads = tape.gradient(loss, m.to_params[0].trainable_variables)
    assert all(np.all(np.isfinite(g)) for g in grads) and np.any(grads[0].numpy() != 0)
    # Test samples are exactly binary.
    upper, _ = tf.split(tf.reshape(x, [4, 784]), 2, axis=1)
    b = m.latents[0](m.to_params[0](upper))["sample"].numpy()
    assert set(np.unique(b)) <= {0.0, 1.0}
    data = tf.data.Dataset.from_tensor_slices(x).batch(4)
    path = str(tmp_path / "sop.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["estimator"] == "reinmax"
    assert loaded.test_nll(data, 3, seed=5) == pytest.approx(m.test_nll(data, 3, seed=5), 1e-6)
    with pytest.raises(ValueError, match="hard-sample"):
        StructuredOutputPredictor(num_units=6, estimator="disarm")


@pytest.mark.parametrize(
    "task, name, fragments",
    [
        ("vae", "nope", ["--estimator nope: choose from st, st_gs"]),
        ("vae", "disarm", ["--estimator disarm: disarm is for binary", "choose from"]),
        ("sop", "vimco", ["--estimator vimco: sop's stacked", "choose from st, st_gs"]),
    ],
)
def test_bad_estimator_flag_is_one_line_exit_2(tmp_path, capsys, task, name, fragments):
    argv = [task, "--estimator", name, "--out", str(tmp_path / "o"), "--verbose", "0"]
    assert_one_line_error(run_main(argv, capsys), *fragments)


def test_cli_vae_with_an_estimator_writes_results_and_refuses_another_on_resume(tmp_path, capsys):
    data = tiny_npz(tmp_path / "tiny.npz", n=30)
    out = str(tmp_path / "run")
    run = run_main(vae_flags(data, out, 1, "--estimator", "st_gs"), capsys)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    assert results["flags"]["estimator"] == "st_gs"
    assert np.isfinite(results["metrics"]["test_loglik"])
    os.remove(os.path.join(out, "results.json"))
    again = run_main(vae_flags(data, out, 2, "--estimator", "st"), capsys)
    assert_one_line_error(again, "was written with other flags", "--estimator 'st_gs' (now 'st')")


def test_cli_sop_with_an_estimator_writes_results(tmp_path, capsys):
    data = tiny_npz(tmp_path / "tiny.npz", n=30)
    out = str(tmp_path / "sop")
    argv = ["sop", "--estimator", "gst", "--data-file", data, "--epochs", "1",
            "--batch-size", "20", "--eval-samples", "3", "--verbose", "0", "--no-jit",
            "--out", out]  # fmt: skip
    run = run_main(argv, capsys)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    assert results["flags"]["estimator"] == "gst"
    assert 0 < results["metrics"]["test_nll"] < 392 * math.log(2) * 2
