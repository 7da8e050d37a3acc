"""Tests of igr_tf.layers: DiscreteLatent (every relaxation) and TemperatureSchedule.

The layer has no math of its own; these tests check that what it returns is what the math says,
computed independently (tests/reference.py, float64 numpy from SPEC's definitions) on the same
noise, and that its Keras behaviour (hard/discrete/binary, validation, mixed precision, saving,
schedules, XLA) is right.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from reference import (
    adaptive_log_psi,
    exp_concrete_log_prob,
    exponential_perturbation_log_prob,
    exponential_perturbation_log_psi,
    gaussian_kl,
    gumbel_softmax_log_psi,
    igr_i_log_psi,
    igr_sb_log_psi,
    normal_log_pdf,
    planar_forward,
    split_igr_params,
    uniform_prior_loc,
)
from validation_checks import assert_run_time_checks

from igr_tf import categorical
from igr_tf.distributions import philox
from igr_tf.layers import DiscreteLatent, TemperatureSchedule

ALL = ("igr_i", "igr_sb", "igr_planar", "gs", "perturb_exponential")
ADAPTIVE = {"adaptive": True, "threshold": 0.9}


def finite(x) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x))))


def num_params(name, k):
    return 2 * (k - 1) if name.startswith("igr") else k


def inputs_for(layer, batch=4, seed=0, std=1.0, dtype="float32"):
    rng = np.random.default_rng(seed)
    return rng.normal(0, std, (batch, layer.params_size)).astype(dtype)


def first_seed(seed: int) -> tf.Tensor:
    """The stateless seed a fresh layer built with `seed` uses in its first call."""
    return tf.cast(keras.random.SeedGenerator(seed).next(), tf.int32)


def noise(shape, seed, dtype, kind, jit=False):
    """The layer's standard noise for `seed`. XLA's Philox stream differs from TF's kernels' for
    the same seed, so a compiled layer is compared with noise drawn in a compiled function."""

    def draw(seed):
        seed = tfp.random.sanitize_seed(seed)
        if kind == "normal":  # Box–Muller ops eagerly, XLA's own normal when compiled
            return philox.standard_normal(shape, seed, dtype)
        tiny = np.finfo(dtype).tiny
        return tf.random.stateless_uniform(
            shape, seed=seed, minval=tiny, maxval=1.0, dtype=dtype, alg="philox"
        )

    return (tf.function(draw, jit_compile=True) if jit else draw)(seed).numpy()


def reference_draw(layer, x, seed, jit=False):
    """(log ψ, KL per variable) of one draw, from tests/reference.py on the layer's noise."""
    v, k = layer.num_vars, layer.num_categories
    tau = float(layer.temperature)
    params = np.asarray(x, np.float64).reshape(x.shape[0], v, -1)
    dtype = x.dtype
    if layer.relaxation_name == "gs":
        u = noise(params.shape, seed, dtype, "uniform", jit).astype(np.float64)
        y = gumbel_softmax_log_psi(params, u, tau)
        kl = exp_concrete_log_prob(y, params, tau) - exp_concrete_log_prob(y, np.zeros(k), 0.5)
        return y, kl
    if layer.relaxation_name == "perturb_exponential":
        u = noise(params.shape, seed, dtype, "uniform", jit).astype(np.float64)
        y = exponential_perturbation_log_psi(params, u, tau)
        kl = exponential_perturbation_log_prob(y, params, tau) - exponential_perturbation_log_prob(
            y, np.zeros(k), 0.5
        )
        return y, kl
    loc, scale = split_igr_params(params)
    z = loc + scale * noise(loc.shape, seed, dtype, "normal", jit).astype(np.float64)
    if layer.relaxation_name == "igr_i":
        loc0 = uniform_prior_loc(k)
        return igr_i_log_psi(z, tau), gaussian_kl(loc, scale, loc0, 1.0)
    if layer.relaxation_name == "igr_planar":
        lam, log_det = z, 0.0
        for i in range(layer.relaxation.num_flows):
            w, u, b = (layer.flow_weights[f"planar_{c}{i}"].numpy() for c in "wub")
            lam, ld = planar_forward(lam, w.astype(np.float64), u, b)
            log_det = log_det + ld
        log_q = normal_log_pdf(z, loc, scale).sum(-1) - log_det
        log_p = normal_log_pdf(lam, uniform_prior_loc(k), 1.0).sum(-1)
        return igr_i_log_psi(lam, tau), log_q - log_p
    loc0 = categorical.fit_stick_breaking_prior(k)  # a library input (its own tests check it)
    if layer.relaxation.adaptive:
        y, n = adaptive_log_psi(z, tau, layer.relaxation.threshold)
        used = np.arange(1, k)[None, None, :] <= n[..., None]
        kl_k = np.log(1.0 / scale) + (scale**2 + (loc - loc0) ** 2) / 2 - 0.5
        return y, np.sum(np.where(used, kl_k, 0.0), -1)
    return igr_sb_log_psi(z, tau), gaussian_kl(loc, scale, loc0, 1.0)


# --- the layer's draw is the math: pointwise agreement with the independent route --------------

CASES = [
    ("igr_i", {}),
    ("igr_sb", {}),
    ("igr_sb", ADAPTIVE),
    ("igr_planar", {}),
    ("gs", {}),
    ("perturb_exponential", {}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,options", CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("tau", [0.05, 0.7])
def test_layer_sample_kl_and_outcome_equal_the_independent_route(name, options, dtype, tau):
    v, k = 3, 6
    layer = DiscreteLatent(
        name, v, k, tau, relaxation_options=options, seed=5, dtype=dtype, name="lat"
    )
    x = inputs_for(layer, 7, seed=1, std=1.5, dtype=dtype)
    layer.build(x.shape)
    for w in layer.flow_weights.values():  # flows far from the identity
        w.assign(np.random.default_rng(2).normal(0, 0.6, w.shape))
    out = layer(x)
    hard = DiscreteLatent.from_config(layer.get_config())
    hard.build(x.shape)
    for key, w in layer.flow_weights.items():
        hard.flow_weights[key].assign(w)
    one_hot = hard(x, hard=True)["sample"].numpy()

    y, kl = reference_draw(layer, x, first_seed(5))
    psi = np.exp(y)
    tol = dict(rtol=2e-4, atol=2e-6) if dtype == "float32" else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["sample"], psi, **tol)
    np.testing.assert_allclose(out["kl"], kl.sum(-1), rtol=1e-4 if dtype == "float32" else 1e-9)
    # The discrete outcome is the argmax of the hard logits τ log ψ (= argmax of the reference).
    np.testing.assert_array_equal(np.argmax(one_hot, -1), np.argmax(y, -1))
    if name == "igr_sb":
        n = np.isfinite(y).sum(-1) - 1
        np.testing.assert_allclose(out["N"], n.mean(-1), rtol=1e-6)


@pytest.mark.parametrize("name,options", CASES, ids=lambda c: str(c))
def test_layer_samples_have_finite_density_under_the_relaxations_own_distribution(name, options):
    """The issue's case: adaptive IGR-SB's layer samples had a non-finite log_prob (80-90%)
    under `distribution()`, which ignored the truncation."""
    layer = DiscreteLatent(name, 5, 6, 0.5, relaxation_options=options, seed=8)
    x = inputs_for(layer, 40, seed=3, std=2.0)
    layer.build(x.shape)
    params = x.reshape(40, 5, -1)
    psi = layer(x)["sample"]
    if options:
        assert np.any(psi.numpy() == 0.0)  # the cut is visible
    q = layer.relaxation.distribution(params, 0.5, layer.flow_weights)
    log_prob = q.log_prob(psi).numpy()
    # In ψ space a density needs log ψ: where a float32 ψ entry underflowed to 0 outside a
    # truncation (the Exponential perturbation's heavy tail does so in most rows at τ = 0.5),
    # only the log-space density below is defined. Everywhere else it must be finite.
    representable = np.all(psi.numpy() > 0, -1) | bool(options)
    assert representable.mean() > 0.1
    assert np.all(np.isfinite(log_prob[representable]))
    # In log space, down to τ = 0.01, on the draws themselves.
    draw = layer.relaxation.draw(params, 0.01, layer.flow_weights, seed=(1, 2))
    q = layer.relaxation.distribution(params, 0.01, layer.flow_weights, log_space=True)
    assert np.all(np.isfinite(q.log_prob(tf.constant(draw.log_sample.numpy()))))


def test_layer_kl_is_tfp_kl_of_its_distributions():
    """The layer's closed-form KL is `tfd.kl_divergence` of the relaxation's own TFP objects."""
    layer = DiscreteLatent("igr_i", 4, 5, 0.3, seed=1)
    x = inputs_for(layer, 6)
    q = layer.relaxation.distribution(x.reshape(6, 4, -1), 0.3)
    p = layer.relaxation.prior(0.3, num_vars=4)
    expected = tfp.distributions.kl_divergence(
        q.distribution, p.distribution
    )  # TFP's Normal KL on the bases
    np.testing.assert_allclose(layer(x)["kl"], tf.reduce_sum(expected, -1), rtol=1e-6)


# --- hard (straight-through), discrete, binary ---------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_hard_is_straight_through_exact_one_hot_with_the_relaxed_gradient(name):
    layer = DiscreteLatent(name, num_vars=3, num_categories=4, temperature=0.5, seed=3)
    x = tf.constant(inputs_for(layer, 5))
    coef = tf.constant(np.random.default_rng(4).normal(size=(5, 3, 4)), tf.float32)
    layer(x)  # build
    state = layer.seed_generator.state.numpy()
    grads = {}
    for hard in (False, True):
        layer.seed_generator.state.assign(state)  # the same draw both times
        with tf.GradientTape() as tape:
            tape.watch(x)
            sample = layer(x, hard=hard)["sample"]
            loss = tf.reduce_sum(sample * coef)
        grads[hard] = tape.gradient(loss, x).numpy()
        if hard:
            s = sample.numpy()
            assert np.all((s == 0.0) | (s == 1.0)) and np.all(s.sum(-1) == 1.0)
        else:
            relaxed = sample.numpy()
    np.testing.assert_array_equal(np.argmax(s, -1), np.argmax(relaxed, -1))
    np.testing.assert_allclose(grads[True], grads[False], rtol=1e-6)
    assert np.abs(grads[True]).max() > 0
    # The constructor's `hard=True` is the same as hard=True in every call.
    always = DiscreteLatent(name, num_vars=3, num_categories=4, temperature=0.5, seed=3, hard=True)
    always(x)
    for key, w in layer.flow_weights.items():
        always.flow_weights[key].assign(w)
    always.seed_generator.state.assign(state)
    np.testing.assert_array_equal(always(x)["sample"], s)


@pytest.mark.parametrize("name", ALL)
def test_discrete_is_one_hot_without_gradient(name):
    layer = DiscreteLatent(name, num_vars=3, num_categories=4, temperature=0.5, seed=3)
    x = tf.constant(inputs_for(layer, 5))
    with tf.GradientTape() as tape:
        tape.watch(x)
        s = layer(x, discrete=True)["sample"]
        loss = tf.reduce_sum(s * tf.range(4.0))
    assert np.all((s.numpy() == 0) | (s.numpy() == 1)) and np.all(s.numpy().sum(-1) == 1)
    assert tape.gradient(loss, x) is None


@pytest.mark.parametrize("name", ALL)
def test_binary_is_the_first_coordinate(name):
    layer = DiscreteLatent(name, num_vars=4, num_categories=2, temperature=0.5, binary=True, seed=2)
    full = DiscreteLatent(name, num_vars=4, num_categories=2, temperature=0.5, seed=2)
    x = inputs_for(layer, 6)
    layer.build(x.shape)
    full.build(x.shape)
    for key, w in layer.flow_weights.items():
        full.flow_weights[key].assign(w)
    b = layer(x)["sample"].numpy()
    assert b.shape == (6, 4)
    np.testing.assert_allclose(b, full(x)["sample"].numpy()[..., 0], rtol=1e-6)
    with pytest.raises(ValueError, match="binary"):
        DiscreteLatent(name, num_vars=4, num_categories=3, binary=True)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
def test_validate_catches_nonfinite_inputs_and_bad_temperatures(compiled):
    layer = DiscreteLatent("igr_i", num_vars=2, num_categories=3, temperature=0.5, validate=True)
    x = inputs_for(layer, 3)
    call = tf.function(layer) if compiled else layer
    # The weight assigned directly: set_temperature has its own (static) check.
    taus = {0.0: "temperature", -1.0: "temperature", np.inf: "temperature"}
    assign = lambda tau: layer._temperature_weight.assign(tau)  # noqa: E731 (built on first call)
    assert_run_time_checks(call, x, "encoder outputs", assign, taus)


def test_layer_rejects_bad_arguments_with_their_names():
    with pytest.raises(ValueError, match="temperature"):
        DiscreteLatent("igr_i", temperature=0.0)
    with pytest.raises(ValueError, match="num_vars"):
        DiscreteLatent("igr_i", num_vars=0)
    with pytest.raises(ValueError, match="num_categories"):
        DiscreteLatent("igr_i", num_categories=1)
    with pytest.raises(ValueError, match="Unknown relaxation"):
        DiscreteLatent("nope")
    with pytest.raises(ValueError, match="num_mc_samples"):
        DiscreteLatent("igr_sb", relaxation_options={"num_mc_samples": 0})
    layer = DiscreteLatent("igr_i", num_vars=2, num_categories=3)
    with pytest.raises(ValueError, match=r"needs inputs \[B, 8\]"):
        layer(np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match=r"rank 4"):  # was read as 2 x 7 variables
        DiscreteLatent("igr_i", num_vars=2, num_categories=3)(np.zeros((2, 7, 2, 4), np.float32))
    with pytest.raises(ValueError, match="temperature"):
        DiscreteLatent("igr_i", temperature=float("inf"))
    with pytest.raises(ValueError, match="`num_categories` must be an integer"):
        DiscreteLatent("igr_i", num_categories=None)
    # V unknown when traced: checked when run, not reshuffled or broadcast.
    traced = tf.function(
        lambda x: layer(x)["sample"], input_signature=[tf.TensorSpec([None, None, 4])]
    )
    traced(np.zeros((2, 2, 4), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[\?,2,4\]"):
        traced(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="temperature"):
        layer.set_temperature(-1.0)


def test_integer_inputs_are_cast():
    layer = DiscreteLatent("gs", num_vars=2, num_categories=3, temperature=0.5, seed=0)
    ints = np.arange(12).reshape(2, 6).astype("int32")
    floats = DiscreteLatent("gs", num_vars=2, num_categories=3, temperature=0.5, seed=0)
    np.testing.assert_allclose(layer(ints)["sample"], floats(ints.astype("float32"))["sample"])


# --- mixed precision -----------------------------------------------------------------------------


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("name", ALL)
def test_mixed_precision_computes_in_float32_and_returns_the_compute_dtype(name, policy):
    layer = DiscreteLatent(name, num_vars=3, num_categories=5, temperature=0.05, seed=1)
    reference = DiscreteLatent(
        name, num_vars=3, num_categories=5, temperature=0.05, seed=1, dtype="float32"
    )
    x = inputs_for(layer, 4, std=3.0)
    layer.build(x.shape)
    reference.build(x.shape)
    for key, w in layer.flow_weights.items():
        reference.flow_weights[key].assign(w)
    out = layer(x)
    compute = policy.split("_")[1]
    assert out["sample"].dtype == compute and out["kl"].dtype == "float32"
    ref = reference(x)
    np.testing.assert_allclose(out["kl"], ref["kl"], rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(out["sample"], np.float32),
        ref["sample"],
        atol=1e-2 if compute == "bfloat16" else 1e-3,
    )
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(x)["sample"], "float32")) + tf.reduce_sum(layer(x)["kl"])
    assert all(finite(g) for g in tape.gradient(loss, layer.trainable_weights))


# --- temperature: trainable, scheduled ------------------------------------------------------------


@pytest.mark.parametrize("name,options", CASES, ids=lambda c: str(c))
def test_trainable_temperature_gets_a_finite_gradient(name, options):
    layer = DiscreteLatent(
        name,
        num_vars=4,
        num_categories=6,
        temperature=0.3,
        trainable_temperature=True,
        relaxation_options=options,
        seed=4,
    )
    x = inputs_for(layer, 16, std=3.0)
    layer.build(x.shape)
    log_tau = [w for w in layer.trainable_weights if "temperature" in w.path]
    assert len(log_tau) == 1
    np.testing.assert_allclose(float(layer.temperature), 0.3, rtol=1e-6)
    with tf.GradientTape() as tape:
        out = layer(x)
        loss = tf.reduce_sum(out["sample"] * tf.range(6.0)) + tf.reduce_sum(out["kl"])
    if options:
        assert float(tf.reduce_mean(out["N"])) < 5  # truncation happened
    grads = dict(
        zip(
            [w.path for w in layer.trainable_weights],
            tape.gradient(loss, layer.trainable_weights),
            strict=True,
        )
    )
    assert all(g is not None and finite(g) for g in grads.values())
    assert float(grads[log_tau[0].path]) != 0.0
    with pytest.raises(ValueError, match="trainable"):
        layer.set_temperature(0.3)


class TauAutoencoder(keras.Model):
    """Subclassed model with the latent nested one level down, reporting τ as a metric."""

    def __init__(self, name="igr_i", **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(3 * num_params(name, 3))
        self.latent = DiscreteLatent(name, num_vars=3, num_categories=3, temperature=1.0, seed=0)
        self.decoder = keras.layers.Dense(4)
        self.tau_tracker = keras.metrics.Mean(name="tau")

    def call(self, x, training=None):
        out = self.latent(self.encoder(x))
        self.tau_tracker.update_state(self.latent.temperature)
        return self.decoder(keras.ops.reshape(out["sample"], (-1, 9)))


def test_temperature_schedule_changes_temperature_during_fit():
    model = TauAutoencoder()
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    schedule = [1.0, 0.5, 0.25]
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(float(model.latent.temperature))
    )
    history = model.fit(
        x,
        x,
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[TemperatureSchedule(lambda e: schedule[e]), record],
    )
    np.testing.assert_allclose(seen, schedule, rtol=1e-6)
    # The compiled train step read the scheduled value (τ is a variable, not a traced constant).
    np.testing.assert_allclose(history.history["tau"], schedule, rtol=1e-6)


# --- save / load ---------------------------------------------------------------------------------


LOAD_CASES = [
    ("igr_i", {"delta": 0.5}),
    ("igr_sb", ADAPTIVE),
    ("igr_planar", {"num_flows": 3}),
    ("gs", {"prior_temperature": 0.3}),
]


@pytest.mark.parametrize("name,options", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_functional_model_round_trips_through_keras_file(name, options, tmp_path):
    v, k = 3, 5
    inp = keras.Input((6,))
    latent = DiscreteLatent(
        name, num_vars=v, num_categories=k, temperature=0.8, relaxation_options=options, seed=11
    )
    h = keras.layers.Dense(latent.params_size)(inp)
    out = latent(h)
    model = keras.Model(inp, {"sample": out["sample"], "kl": out["kl"]})
    # Non-default state that must survive: trained-looking flow weights and a new temperature.
    for w in latent.flow_weights.values():
        w.assign(np.random.default_rng(1).normal(0, 0.5, w.shape))
    latent.set_temperature(0.4)
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    model(x)  # advance the random stream before saving
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode stays on
    new_latent = next(layer for layer in loaded.layers if isinstance(layer, DiscreteLatent))
    assert new_latent.get_config() == latent.get_config()
    assert float(new_latent.temperature) == pytest.approx(0.4)
    for key, w in latent.flow_weights.items():
        np.testing.assert_array_equal(new_latent.flow_weights[key].numpy(), w.numpy())
    # The random stream continues where the saved model stood: identical next outputs.
    for _ in range(2):
        a, b = model(x), loaded(x)
        np.testing.assert_array_equal(a["sample"], b["sample"])
        np.testing.assert_array_equal(a["kl"], b["kl"])
    # And it does move on (a test that identical outputs are not a frozen stream).
    assert not np.array_equal(model(x)["sample"], a["sample"])


def test_same_seed_same_stream():
    a = DiscreteLatent("igr_sb", num_vars=2, num_categories=5, seed=42)
    b = DiscreteLatent("igr_sb", num_vars=2, num_categories=5, seed=42)
    c = DiscreteLatent("igr_sb", num_vars=2, num_categories=5, seed=43)
    x = inputs_for(a, 3)
    np.testing.assert_array_equal(a(x)["sample"], b(x)["sample"])
    assert not np.array_equal(a(x)["sample"], c(x)["sample"])


# --- XLA -----------------------------------------------------------------------------------------


def test_layers_under_xla_are_the_independent_route():
    """All four relaxations (and adaptive IGR-SB) in one compiled function with gradients."""
    cases = [("igr_i", {}), ("igr_sb", ADAPTIVE), ("igr_planar", {}), ("gs", {})]
    layers = [
        DiscreteLatent(
            n, num_vars=3, num_categories=6, temperature=0.3, seed=9, relaxation_options=o
        )
        for n, o in cases
    ]
    xs = [inputs_for(layer, 8, seed=i, std=2.0) for i, layer in enumerate(layers)]
    for layer, x in zip(layers, xs, strict=True):
        layer.build(x.shape)
        for w in layer.flow_weights.values():
            w.assign(np.random.default_rng(3).normal(0, 0.5, w.shape))

    @tf.function(jit_compile=True)
    def run(xs):
        outs = []
        for layer, x in zip(layers, xs, strict=True):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(x)
                loss = tf.reduce_sum(out["sample"] * tf.range(6.0)) + tf.reduce_sum(out["kl"])
            outs.append((out["sample"], out["kl"], tape.gradient(loss, x)))
        return outs

    outs = run([tf.constant(x) for x in xs])
    for (sample, kl, grad), layer, x in zip(outs, layers, xs, strict=True):
        y, kl_ref = reference_draw(layer, x, first_seed(9), jit=True)
        np.testing.assert_allclose(sample, np.exp(y), rtol=2e-4, atol=2e-6)
        np.testing.assert_allclose(kl, kl_ref.sum(-1), rtol=1e-4)
        assert finite(grad) and np.abs(grad).max() > 0
