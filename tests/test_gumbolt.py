"""Tests for GumBolt (models/gumbolt.py) and its relaxed binary posteriors
(igr_tf/boltzmann/posterior.py): the discrete posterior is the law of the rounded relaxed sample,
the relaxed proxy objective tends to the discrete one as τ → 0, training with fit, saving and
resuming, finite gradients at τ = 0.05, the importance-sampled log-likelihood against enumeration of
every latent state, and the train.py task."""

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
from scipy.special import logsumexp  # noqa: E402

import train  # noqa: E402
from igr_tf import categorical, datasets  # noqa: E402
from igr_tf import distributions as igrd  # noqa: E402
from igr_tf.boltzmann import posterior  # noqa: E402
from models.gumbolt import GumBoltVAE  # noqa: E402

# (name, learn_scale): GS, and IGR with its scale fixed at 1 (the default) or learned.
VARIANTS = [("gs", False), ("igr_i", False), ("igr_sb", False), ("igr_i", True), ("igr_sb", True)]


def random_params(n, seed=0, spread=1.5, dtype=np.float32, p=2) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, p)) * spread).astype(dtype)


# --- the relaxed binary posteriors ---------------------------------------------------------------
@pytest.mark.parametrize("name, learn_scale", VARIANTS)
def test_discrete_posterior_is_the_law_of_the_rounded_relaxed_sample(name, learn_scale):
    """ζ > 1/2 exactly when the noisy logit is positive (the τ → 0 outcome), at any τ: the
    frequency of ζ > 1/2 over 20,000 draws is within 3 SE of q(z = 1) for every unit."""
    p = posterior.num_params(name, learn_scale)
    params = random_params(6, seed=1, p=p)
    n = 20_000
    draw = posterior.relaxed(
        name, np.broadcast_to(params, (n, 6, p)), 0.7, seed=(4, 5), learn_scale=learn_scale
    )
    freq = (draw.relaxed.numpy() > 0.5).mean(0)
    q_on = np.exp(draw.log_prob_on.numpy()[0])
    se = np.sqrt(q_on * (1 - q_on) / n)
    assert np.all(np.abs(freq - q_on) < 3 * se), (freq, q_on)
    np.testing.assert_allclose(np.exp(draw.log_prob_on) + np.exp(draw.log_prob_off), 1, atol=1e-6)


def test_igr_binary_posterior_is_the_quadrature_pmf_of_igr_i():
    params = random_params(8, seed=2, dtype=np.float64)
    log_on, log_off = posterior.bernoulli_log_probs("igr_i", params, learn_scale=True)
    loc, scale = igrd.get("igr_i", 2).loc_scale(params)
    pmf = categorical.igr_i_log_pmf(loc, scale).numpy()  # tanh-sinh quadrature, K = 2
    np.testing.assert_allclose(log_on, pmf[:, 0], atol=1e-9)
    np.testing.assert_allclose(log_off, pmf[:, 1], atol=1e-9)
    fixed_on, _ = posterior.bernoulli_log_probs("igr_i", params[:, :1])  # σ = 1
    unit = categorical.igr_i_log_pmf(params[:, :1], np.ones([8, 1])).numpy()
    np.testing.assert_allclose(fixed_on, unit[:, 0], atol=1e-9)


def test_a_learned_igr_scale_makes_the_proxy_posterior_unbounded():
    """Why the IGR scale is fixed by default: with μ = 0.1 and σ → 0 the discrete posterior is
    sure (q(z = 0) = Φ(−μ/σ) → 0) while ζ = σ(z/τ) stays near σ(0.2) ≈ 0.55, so
    E[−log q̆(ζ)] ≈ E[1 − ζ] μ²/2σ² grows without bound (the objective rewards it); with σ = 1
    it is a bounded cross-entropy (here below log 2 + 0.1)."""

    def mean_neg_log_proxy(params, learn_scale):
        draw = posterior.relaxed("igr_i", params, 0.5, (1, 2), learn_scale=learn_scale)
        zeta = draw.relaxed
        return -float(tf.reduce_mean(zeta * draw.log_prob_on + (1 - zeta) * draw.log_prob_off))

    raw = [np.log(np.expm1(s)) for s in (1e-1, 1e-2, 1e-3)]  # softplus⁻¹(σ)
    values = [
        mean_neg_log_proxy(np.tile([[0.1, r]], (4000, 1)).astype(np.float32), True) for r in raw
    ]
    assert values[0] < values[1] < values[2] and values[2] > 1e3, values
    assert mean_neg_log_proxy(np.full((4000, 1), 0.1, np.float32), False) < np.log(2) + 0.1


@pytest.mark.parametrize("learn_scale", [False, True])
def test_igr_sb_and_igr_i_coincide_for_binary_latents(learn_scale):
    """For K = 2 the stick-breaking log-ratio is z itself: the same samples from the same seed."""
    params = random_params(10, seed=3, p=posterior.num_params("igr_i", learn_scale))
    a = posterior.relaxed("igr_i", params, 0.3, (1, 2), learn_scale=learn_scale)
    b = posterior.relaxed("igr_sb", params, 0.3, (1, 2), learn_scale=learn_scale)
    np.testing.assert_allclose(a.relaxed, b.relaxed, atol=1e-6)
    np.testing.assert_array_equal(a.log_prob_on, b.log_prob_on)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, learn_scale", VARIANTS)
def test_extreme_parameters_and_temperature_stay_finite(name, learn_scale, dtype):
    values = np.array([[50, -50], [-50, 50], [50, -50], [0, 0]], dtype)
    params = tf.Variable(values[:, : posterior.num_params(name, learn_scale)])
    with tf.GradientTape() as tape:
        draw = posterior.relaxed(name, params, 0.01, (0, 1), learn_scale=learn_scale)
        total = tf.reduce_sum(draw.relaxed * draw.log_prob_on + draw.log_prob_off)
    grad = tape.gradient(total, params).numpy()
    zeta = draw.relaxed.numpy()
    assert np.all((zeta >= 0) & (zeta <= 1)) and np.all(np.isfinite(grad))
    assert np.all(np.isfinite(draw.log_prob_on)) and np.all(np.isfinite(draw.log_prob_off))


def test_unknown_binary_relaxation_and_wrong_parameter_counts():
    with pytest.raises(ValueError, match="the binary relaxations are gs, igr_i, igr_sb"):
        posterior.num_params("igr_planar")
    with pytest.raises(ValueError, match="fixed scale takes 1 parameter per unit"):
        posterior.relaxed("igr_i", np.zeros([3, 2], np.float32), 0.5, (0, 0))
    with pytest.raises(ValueError, match="needs params with last axis 2"):
        posterior.relaxed("gs", np.zeros([3, 1], np.float32), 0.5, (0, 0))


# --- the proxy objective as τ → 0 ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["gs", "igr_i"])  # igr_sb ≡ igr_i for K = 2 (tested above)
def test_relaxed_proxy_tends_to_the_discrete_objective_as_the_temperature_falls(name):
    """E_ζ[−E(ζ) − log q̆(ζ)], with the RBM energy on relaxed ζ (the proxy prior), tends to the
    discrete E_z[−E(z) − log q(z)] (by enumeration of all 64 states of a 3 + 3 RBM): within 3 SE
    at τ = 0.01, and clearly off at τ = 1, where the relaxation shifts the means of ζ."""
    model = GumBoltVAE(name, latent_sizes=(3, 3), arch="linear", image_shape=(2, 2, 1), seed=0)
    rng = np.random.default_rng(4)
    model.prior.bias1.assign(rng.normal(size=3))
    model.prior.bias2.assign(rng.normal(size=3))
    model.prior.coupling.assign(rng.normal(size=(3, 3)) * 2)
    p = posterior.num_params(name)
    params = random_params(6, seed=5, spread=1.0, p=p)
    log_on, log_off = (t.numpy() for t in posterior.bernoulli_log_probs(name, params))
    states = np.array(list(itertools.product([0.0, 1.0], repeat=6)), np.float32)
    log_q = states @ log_on + (1 - states) @ log_off
    exact = np.sum(np.exp(log_q) * (-model.prior.energy(states).numpy() - log_q))

    def estimate(tau, n=20_000):
        zeta = posterior.relaxed(name, np.broadcast_to(params, (n, 6, p)), tau, seed=(6, 7))
        values = -model.prior.energy(zeta.relaxed) - tf.reduce_sum(
            zeta.relaxed * log_on + (1 - zeta.relaxed) * log_off, -1
        )
        values = values.numpy().astype(np.float64)
        return values.mean(), values.std() / math.sqrt(n)

    cold, cold_se = estimate(0.01)
    warm, warm_se = estimate(1.0)
    assert abs(cold - exact) < 3 * cold_se, (cold, exact, cold_se)
    assert abs(warm - exact) > 10 * warm_se, (warm, exact, warm_se)


# --- the model -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    data = datasets.load("mnist_sample")
    return np.stack(list(data.train.take(60).as_numpy_iterator()))


def make_model(relaxation="gs", prior="rbm", *, jit=False, **kwargs) -> GumBoltVAE:
    keras.utils.set_random_seed(0)
    kwargs.setdefault("latent_sizes", (5, 5))
    kwargs.setdefault("arch", "linear")
    kwargs.setdefault("num_samples", 2)
    model = GumBoltVAE(relaxation, prior=prior, seed=1, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=jit)
    return model


@pytest.fixture(scope="module")
def trained(digits):
    """An IGR-I-relaxed GumBolt VAE after 3 epochs of fit, and its history (train.py's test
    trains a GS one)."""
    model = make_model("igr_i", "rbm")
    return model, model.fit(digits, batch_size=20, epochs=3, verbose=0).history


def test_fit_lowers_the_loss(trained):
    _, history = trained
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 20, losses
    assert set(history) == {"loss", "recon", "energy", "entropy"}


def test_rbm_with_zero_couplings_is_the_factorial_model(digits):
    rbm, factorial = make_model("gs", "rbm"), make_model("gs", "factorial")
    assert len(rbm.trainable_weights) == len(factorial.trainable_weights) + 1
    rbm.prior.coupling.assign(tf.zeros([5, 5]))
    rbm.encoder.set_weights(factorial.encoder.get_weights())
    rbm.decoder.set_weights(factorial.decoder.get_weights())
    rbm.prior.bias1.assign(factorial.prior.bias1)
    rbm.prior.bias2.assign(factorial.prior.bias2)
    a, b = rbm.objective(digits[:10]), factorial.objective(digits[:10])
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    lz = rbm.log_partition("exact")["log_z"]
    assert lz == pytest.approx(factorial.log_partition("ais")["log_z"], rel=1e-6)


@pytest.mark.parametrize("name", ["gs", "igr_i"])  # igr_sb ≡ igr_i for K = 2 (tested above)
def test_gradients_are_finite_at_temperature_005(name, digits):
    model = make_model(name, temperature=0.05)
    kernel = model.encoder.layers[-1].kernel
    kernel.assign(kernel * 30.0)  # confident posteriors: logits/locations of tens
    samples = model.prior.advance_chains()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.objective(digits[:20], training=True)["loss"])
        loss += model.prior.log_partition_surrogate(samples)
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(loss))
    for v, g in zip(model.trainable_variables, grads, strict=True):
        assert g is not None and np.all(np.isfinite(g.numpy())), v.path
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_save_load_round_trip_then_identical_training(trained, digits, tmp_path):
    """Weights, persistent chains, optimizer state and the seed streams all survive model.save:
    the reloaded model gives the same log-likelihood and the same next training step."""
    model, _ = trained
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, GumBoltVAE) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.prior.chains.numpy(), model.prior.chains.numpy())
    lz = model.log_partition("exact")["log_z"]
    assert loaded.log_partition("exact")["log_z"] == lz
    np.testing.assert_allclose(
        loaded.loglik_terms(digits[:8], lz, 10, seed=(1, 2)),
        model.loglik_terms(digits[:8], lz, 10, seed=(1, 2)),
        rtol=1e-6,
    )
    # One training step each, run eagerly (train_on_batch would trace a step per model).
    batch = tf.constant(digits[:20])
    model.reset_metrics()
    loaded.reset_metrics()
    a = float(model.train_step(batch)["loss"])
    b = float(loaded.train_step(batch)["loss"])
    assert a == pytest.approx(b, rel=1e-5)
    for v, w in zip(model.trainable_variables, loaded.trainable_variables, strict=True):
        np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.prior.chains.numpy(), model.prior.chains.numpy())


def test_importance_sampled_loglik_against_enumeration():
    """3 + 3 latents: log p(x) = LSE_z [log p(x|z) − E(z)] − log Z over all 64 states. The
    estimate with S = 20,000 is within 4 standard errors, the SE computed exactly from the
    variance of the importance weights under q (by enumeration)."""
    # 4 x 4 binary images: the decoder runs on 4 x 20,000 latent states, so keep it small.
    model = make_model("gs", "rbm", latent_sizes=(3, 3), image_shape=(4, 4, 1))
    rng = np.random.default_rng(8)
    model.prior.coupling.assign(rng.normal(size=(3, 3)))
    model.decoder.layers[-1].kernel.assign(model.decoder.layers[-1].kernel * 3.0)
    x = (np.random.default_rng(9).uniform(size=(4, 4, 4, 1)) < 0.5).astype(np.float32)
    log_z = model.log_partition("exact")["log_z"]
    states = np.array(list(itertools.product([0.0, 1.0], repeat=6)), np.float32)
    log_lik = model.log_likelihood(x, np.broadcast_to(states[:, None], (64, 4, 6))).numpy()
    log_joint = log_lik - model.prior.energy(states).numpy()[:, None] - log_z  # [64, 4]
    log_on, log_off = (t.numpy() for t in posterior.bernoulli_log_probs("gs", model.encode(x)))
    log_q = np.einsum("sn,bn->sb", states, log_on) + np.einsum("sn,bn->sb", 1 - states, log_off)
    exact = logsumexp(log_joint, axis=0)
    # Var_q(w) / p(x)² with w = p(x, z) / q(z): (Σ_z p(x, z)² / q(z)) / p(x)² − 1.
    rel_var = np.exp(logsumexp(2 * log_joint - log_q, axis=0) - 2 * exact) - 1
    s = 20_000
    got = model.loglik_terms(x, log_z, s, seed=(3, 4), chunk_size=s).numpy()
    tol = 4 * np.sqrt(rel_var / s)
    assert np.all(np.abs(got - exact) < tol), (got, exact, tol)
    assert np.all(tol < 0.3), tol  # a sharp check, not a vacuous one


def test_loglik_sampler_never_switches_on_a_unit_whose_probability_underflows(digits, monkeypatch):
    """Uniform draws can be exactly 0 (probability 2^-23 in float32). With every draw 0, and
    units surely on (logit +200) or surely off (−200: q underflows to 0), the importance sample
    must be the sure state z*, giving log p(x | z*) − E(z*) − log Z (log q(z*) = 0); switching on
    the "off" units (log 0 = −inf < log q) would add 200 nats per unit."""
    model = make_model("gs", "rbm", latent_sizes=(3, 3))
    last = model.encoder.layers[-1]
    last.kernel.assign(tf.zeros_like(last.kernel))
    on = np.array([1, 0, 1, 1, 0, 0], bool)
    logits = np.stack([np.where(on, 100.0, -100.0), np.where(on, -100.0, 100.0)], -1)
    last.bias.assign(logits.ravel().astype(np.float32))  # [unit, logit] row-major, as encode()
    monkeypatch.setattr(
        tf.random, "stateless_uniform", lambda shape, seed, dtype, **kw: tf.zeros(shape, dtype)
    )
    x = digits[:3]
    log_z = model.log_partition("exact")["log_z"]
    z = on.astype(np.float32)
    log_lik = model.log_likelihood(x, np.broadcast_to(z, (1, 3, 6))).numpy()[0]
    want = log_lik - float(model.prior.energy(z)) - log_z
    np.testing.assert_allclose(model.loglik_terms(x, log_z, 5).numpy(), want, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="binary relaxations"):
        GumBoltVAE("igr_planar")
    with pytest.raises(ValueError, match="`prior` must be one of"):
        GumBoltVAE(prior="dbm")
    with pytest.raises(ValueError, match="`arch` must be one of"):
        GumBoltVAE(arch="conv")
    with pytest.raises(ValueError, match="latent_sizes"):
        GumBoltVAE(latent_sizes=(5,))
    with pytest.raises(ValueError, match="temperature"):
        GumBoltVAE(temperature=0.0)
    with pytest.raises(ValueError, match="`learn_scale` is for the IGR relaxations"):
        GumBoltVAE("gs", learn_scale=True)


# --- train.py gumbolt ----------------------------------------------------------------------------
def run_main(argv, capsys):
    try:
        code = train.main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_py_gumbolt_trains_resumes_exactly_and_reports_log_z(digits, tmp_path, capsys):
    """The wiring of the task: a GS run with an RBM prior trains (the loss falls from epoch
    1 to 2) and reports AIS log Z within 3 SE of the exact value; a run stopped after epoch 1 and
    continued to epoch 2 ends exactly where the uninterrupted one does (weights, persistent
    chains and seed streams are all in the checkpoint); a rerun of the finished run restores
    it, trains nothing and reports the same metrics; the saved model loads."""
    data_file = str(tmp_path / "tiny.npz")
    np.savez(data_file, images=(digits[:40, ..., 0] * 255).astype(np.uint8))

    def flags(out, epochs):
        return ["gumbolt", "--data-file", data_file, "--batch-size", "20", "--no-jit",
                "--arch", "linear", "--dist", "gs", "--z1-units", "3", "--z2-units", "4",
                "--samples", "2", "--eval-samples", "5", "--ais-chains", "50",
                "--ais-betas", "200", "--lr", "0.01", "--epochs", str(epochs), "--verbose", "0",
                "--out", str(tmp_path / out)]  # fmt: skip

    def results(out):
        with open(tmp_path / out / "results.json") as f:
            return json.load(f)

    for argv in (flags("whole", 2), flags("stopped", 1), flags("stopped", 2)):
        code, _, err = run_main(argv, capsys)
        assert code == 0, err
    first, continued = results("whole"), results("stopped")
    assert continued["resumed_from_epoch"] == 1 and continued["epochs_completed"] == 2
    assert continued["metrics"] == first["metrics"]
    assert continued["history"] == first["history"]
    out = "whole"
    code, stdout, err = run_main(flags(out, 2), capsys)
    assert code == 0, err
    assert "Resuming from epoch 2" in stdout
    res = results(out)
    assert res["epochs_completed"] == 2 and res["resumed_from_epoch"] == 2
    assert res["metrics"] == first["metrics"]  # the restored model evaluates exactly as trained
    out = str(tmp_path / out)
    m = res["metrics"]
    loss = res["history"]["loss"]
    assert len(loss) == 2 and loss[1] < loss[0], loss
    assert abs(m["log_z_ais"] - m["log_z_exact"]) < 3 * m["log_z_ais_se"] + 1e-4
    assert m["test_loglik"] < 0 and m["test_loglik_se_examples"] > 0
    assert m["test_loglik_exact_log_z"] == pytest.approx(
        m["test_loglik"] + m["log_z_ais"] - m["log_z_exact"]
    )
    assert res["flags"]["prior"] == "rbm"
    assert (res["flags"]["z1_units"], res["flags"]["z2_units"]) == (3, 4)
    assert isinstance(keras.models.load_model(os.path.join(out, "model.keras")), GumBoltVAE)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--dist", "igr_planar"], "gumbolt's binary relaxations are gs, igr_i, igr_sb"),
        (["--dist", "gs", "--igr-learn-scale"], "--igr-learn-scale needs --dist igr_i or igr_sb"),
        (["--z2-units", "0"], "--z2-units must be ≥ 1"),
        (["--ais-betas", "0"], "--ais-betas must be ≥ 1"),
        (["--arch", "conv"], "gumbolt's architectures are linear, nonlinear"),
    ],
)
def test_train_py_gumbolt_bad_flags_exit_2_with_one_line(extra, fragment, tmp_path, capsys):
    code, _, err = run_main(["gumbolt", *extra, "--out", str(tmp_path / "x")], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err


def test_gumbolt_table_compares_the_priors_in_seed_standard_deviations(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import gumbolt_table

    lls = {("gs", "rbm"): [-100.0, -102.0], ("gs", "factorial"): [-104.0, -106.0]}
    for (dist, prior), values in lls.items():
        for seed, ll in zip((1, 2), values, strict=True):
            run = tmp_path / f"{dist}-{prior}-{seed}"
            run.mkdir()
            lz = 30.0 + seed
            metrics = {"test_loglik": ll, "log_z_ais": lz, "log_z_ais_se": 0.01 * seed,
                       "log_z_exact": lz + 0.005, "test_relaxed_bound": ll - 1}  # fmt: skip
            flags = {"task": "gumbolt", "dist": dist, "prior": prior}
            res = {"flags": flags, "seed": seed, "epochs_completed": 7, "metrics": metrics}
            (run / "results.json").write_text(json.dumps(res))
    groups = gumbolt_table.collect(tmp_path)
    rows = gumbolt_table.table(groups).splitlines()[2:]
    assert rows[1].startswith("| gs | rbm | 2 | 7 | -101.00 ± 1.41 | 31.50 ± 0.71 | 0.02 | 0.005 |")
    assert rows[0].startswith("| gs | factorial | 2 | 7 | -105.00 ± 1.41 |")
    (line,) = gumbolt_table.comparison(groups)
    # +4 nats over a pooled seed SD of sqrt(2): 2.8 SDs; both seeds +4.
    assert line == (
        "gs: RBM − factorial = +4.00 nats = +2.8 seed SDs (pooled SD 1.41); per seed: +4.00, +4.00"
    )
