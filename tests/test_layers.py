"""Tests of igr_tf.layers: DiscreteLatent (every relaxation) and TemperatureSchedule."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from igr_tf.layers import DiscreteLatent, TemperatureSchedule  # noqa: E402

ALL = ("igr_i", "igr_sb", "igr_planar", "gs")
MIN_SCALE = 1e-4


def finite(x) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x))))


def num_params(name, k):
    return k if name == "gs" else 2 * (k - 1)


def inputs_for(layer, batch=4, seed=0, std=1.0, dtype="float32"):
    rng = np.random.default_rng(seed)
    return rng.normal(0, std, (batch, layer.params_size)).astype(dtype)


def assert_one_hot(x):
    x = np.asarray(x)
    assert np.all((x == 0.0) | (x == 1.0))
    np.testing.assert_array_equal(x.sum(-1), 1.0)


# --- shapes, params_size, hard / straight-through / binary --------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_output_shapes_and_params_size(name):
    v, k, b = 3, 4, 5
    layer = DiscreteLatent(name, num_vars=v, num_categories=k, temperature=0.5, seed=1)
    assert layer.params_size == v * num_params(name, k)
    x = inputs_for(layer, b)
    out = layer(x)
    expected_keys = {"sample", "kl"} | ({"N"} if name == "igr_sb" else set())
    assert set(out) == expected_keys
    assert out["sample"].shape == (b, v, k)
    assert out["kl"].shape == (b,)
    if name == "igr_sb":
        assert out["N"].shape == (b,)
    psi = np.asarray(out["sample"])
    assert psi.min() >= 0.0
    np.testing.assert_allclose(psi.sum(-1), 1.0, atol=1e-5)
    # [B, V, P] inputs work too.
    out3 = layer(x.reshape(b, v, -1))
    assert out3["sample"].shape == (b, v, k)
    # Symbolic shapes (functional API) agree with the eager ones.
    sym = layer(keras.Input((layer.params_size,)))
    assert tuple(sym["sample"].shape) == (None, v, k)
    assert tuple(sym["kl"].shape) == (None,)
    lp = layer.categorical_log_probs(x)
    assert lp.shape == (b, v, k)
    np.testing.assert_allclose(np.exp(np.asarray(lp, np.float64)).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_binary_gives_relaxed_bernoulli(name):
    v, b = 6, 5
    layer = DiscreteLatent(name, num_vars=v, num_categories=2, binary=True, seed=3)
    twin = DiscreteLatent(name, num_vars=v, num_categories=2, seed=3)
    x = inputs_for(layer, b)
    layer.build(x.shape)
    twin.build(x.shape)
    twin.set_weights(layer.get_weights())  # planar flow weights are random at build
    out = layer(x)["sample"]
    assert out.shape == (b, v)
    assert np.all((np.asarray(out) > 0) & (np.asarray(out) < 1))
    # Same seed, same draw: the binary sample is the first coordinate of the K=2 sample.
    np.testing.assert_allclose(out, twin(x)["sample"][..., 0], rtol=1e-6)
    sym = layer(keras.Input((layer.params_size,)))
    assert tuple(sym["sample"].shape) == (None, v)


@pytest.mark.parametrize("name", ALL)
def test_hard_and_straight_through(name):
    v, k, b = 4, 5, 64
    soft = DiscreteLatent(name, num_vars=v, num_categories=k, temperature=0.7, seed=5)
    st = DiscreteLatent(
        name, num_vars=v, num_categories=k, temperature=0.7, straight_through=True, seed=5
    )
    x = tf.constant(inputs_for(soft, b, std=2.0))
    soft.build(x.shape)
    st.build(x.shape)
    st.set_weights(soft.get_weights())
    coef = tf.constant(np.random.default_rng(0).normal(size=(k,)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        psi = soft(x)["sample"]
        st_sample = st(x)["sample"]
        loss_soft = tf.reduce_sum(psi * coef)
        loss_st = tf.reduce_sum(st_sample * coef)
    # Exact one-hot values (not 1 ± ulp) at the argmax of the relaxed sample of the same draw.
    assert_one_hot(st_sample)
    np.testing.assert_array_equal(np.argmax(st_sample, -1), np.argmax(psi, -1))
    # The gradient is the relaxed sample's.
    g_st, g_soft = tape.gradient(loss_st, x), tape.gradient(loss_soft, x)
    assert finite(g_st) and np.any(np.asarray(g_st) != 0)
    np.testing.assert_allclose(g_st, g_soft, rtol=1e-5, atol=1e-7)
    hard = soft(x, hard=True)["sample"]
    assert hard.shape == (b, v, k)
    assert_one_hot(hard)


# --- temperature: trainable, schedule -----------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_trainable_temperature_gets_gradient(name):
    layer = DiscreteLatent(
        name, num_vars=3, num_categories=4, temperature=0.5, trainable_temperature=True, seed=2
    )
    x = inputs_for(layer, 8)
    layer.build(x.shape)
    log_tau = [w for w in layer.trainable_weights if "temperature" in w.path]
    assert len(log_tau) == 1
    np.testing.assert_allclose(float(layer.temperature), 0.5, rtol=1e-6)
    coef = tf.constant([1.0, -2.0, 0.5, 3.0])
    with tf.GradientTape() as tape:
        out = layer(x)
        loss = tf.reduce_sum(out["sample"] * coef) + tf.reduce_sum(out["kl"])
    grad = tape.gradient(loss, log_tau[0])
    assert grad is not None and finite(grad) and float(grad) != 0.0
    keras.optimizers.SGD(0.1).apply_gradients([(grad, log_tau[0])])
    assert float(layer.temperature) != pytest.approx(0.5)
    with pytest.raises(ValueError, match="trainable"):
        layer.set_temperature(0.3)


def test_trainable_temperature_with_adaptive_truncation_has_finite_gradient():
    # Masked categories have logit -∞; dividing them by τ must not send NaN into d/dτ.
    layer = DiscreteLatent(
        "igr_sb",
        num_vars=4,
        num_categories=10,
        temperature=0.3,
        trainable_temperature=True,
        relaxation_options={"adaptive": True, "threshold": 0.9},
        seed=4,
    )
    x = inputs_for(layer, 16, std=3.0)
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        out = layer(x)
        loss = tf.reduce_sum(out["sample"] * tf.range(10.0))
    assert float(tf.reduce_mean(out["N"])) < 9  # truncation happened
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and finite(g) for g in grads)


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
    model.compile(optimizer="adam", loss="mse", jit_compile=False)  # XLA: test_layers_under_xla
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
    ("igr_i", {}),
    ("igr_sb", {"adaptive": True, "threshold": 0.9}),
    ("igr_planar", {"num_flows": 3}),
    ("gs", {"prior_temperature": 0.3}),
]


@pytest.mark.parametrize("name,options", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_functional_model_round_trips_through_keras_file(name, options, tmp_path):
    v, k = 3, 5
    inp = keras.Input((6,))
    latent = DiscreteLatent(
        name,
        num_vars=v,
        num_categories=k,
        temperature=0.8,
        relaxation_options=options,
        seed=11,
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


@keras.saving.register_keras_serializable(package="igr_tf_tests")
class PlanarEncoder(keras.Model):
    def __init__(self, relaxation="igr_planar", **kwargs):
        super().__init__(**kwargs)
        self.relaxation = relaxation
        self.dense = keras.layers.Dense(2 * num_params(relaxation, 4))
        self.latent = DiscreteLatent(relaxation, num_vars=2, num_categories=4, seed=7)

    def call(self, x):
        return self.latent(self.dense(x))["sample"]

    def get_config(self):
        return {**super().get_config(), "relaxation": self.relaxation}


def test_subclassed_model_round_trips_through_keras_file(tmp_path):
    model = PlanarEncoder("igr_planar")
    x = np.random.default_rng(3).normal(size=(5, 3)).astype("float32")
    model(x)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(model(x), loaded(x))


def test_same_seed_same_stream():
    a = DiscreteLatent("igr_sb", num_vars=2, num_categories=5, seed=42)
    b = DiscreteLatent("igr_sb", num_vars=2, num_categories=5, seed=42)
    c = DiscreteLatent("igr_sb", num_vars=2, num_categories=5, seed=43)
    x = inputs_for(a, 3)
    np.testing.assert_array_equal(a(x)["sample"], b(x)["sample"])
    assert not np.array_equal(a(x)["sample"], c(x)["sample"])


# --- XLA -----------------------------------------------------------------------------------------


def test_layers_under_xla():
    # One compiled function with all four relaxations (one XLA compilation for the test), IGR-SB
    # with adaptive truncation (vectorized, static size K: it must compile) at τ = 1, where the
    # relaxed sample of a used category is its stick piece η_k.
    k, threshold = 6, 0.9
    options = {"igr_sb": {"adaptive": True, "threshold": threshold}}
    layers = [
        DiscreteLatent(
            name,
            num_vars=3,
            num_categories=k,
            temperature=1.0 if name == "igr_sb" else 0.5,
            relaxation_options=options.get(name),
            seed=9,
        )
        for name in ALL
    ]
    xs = [tf.constant(inputs_for(layer, 16, std=2.0)) for layer in layers]
    for layer, x in zip(layers, xs, strict=True):
        layer.build(x.shape)

    @tf.function(jit_compile=True)
    def step(xs):
        outs = []
        for layer, x in zip(layers, xs, strict=True):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(x)
                loss = tf.reduce_sum(out["sample"] * tf.range(float(k))) + tf.reduce_sum(out["kl"])
            outs.append((out["sample"], out["kl"], tape.gradient(loss, x), out.get("N", out["kl"])))
        return outs

    states = [layer.seed_generator.state.numpy() for layer in layers]
    results = step(xs)
    for name, (sample, kl, grad, _) in zip(ALL, results, strict=True):
        assert sample.shape == (16, 3, k), name
        np.testing.assert_allclose(np.asarray(sample).sum(-1), 1.0, atol=1e-5, err_msg=name)
        assert finite(kl) and finite(grad) and np.any(np.asarray(grad) != 0), name
    # Adaptive truncation under XLA: N sticks used (1..K-1; the layer reports the mean over
    # variables, so per-variable N is read off the zero pattern), the used pieces cover ≥
    # threshold, and every category past N+1 has exactly zero mass.
    psi = np.asarray(results[1][0], np.float64)
    n = np.sum(psi > 0, axis=-1) - 1
    assert n.min() >= 1 and n.max() <= k - 1 and n.min() < k - 1
    np.testing.assert_allclose(results[1][3], n.mean(-1), rtol=1e-6)
    assert np.all(psi[np.arange(1, k + 1) > n[..., None] + 1] == 0.0)
    covered = np.take_along_axis(np.cumsum(psi, -1), n[..., None] - 1, -1)[..., 0]
    assert np.all((covered >= threshold - 1e-5) | (n == k - 1))
    # The seed generators advanced inside the compiled function; replaying their state replays it.
    for layer, state in zip(layers, states, strict=True):
        assert not np.array_equal(layer.seed_generator.state.numpy(), state)
        layer.seed_generator.state.assign(state)
    for (sample, *_), (again, *_) in zip(results, step(xs), strict=True):
        np.testing.assert_array_equal(again, sample)


# --- robustness through the layer ---------------------------------------------------------------


SWEEP_TEMPERATURES = (0.01, 0.03, 0.1, 1.0, 10.0)


def extreme_inputs(name, v, k, dtype):
    """Locations/logits up to ±50 and ξ giving scales 1e-3..1e2 (plus ξ = ±50), `[2, V*P]`."""
    locs = np.array([-50.0, -10.0, -1.0, 0.0, 1.0, 10.0, 50.0])
    scales = np.array([1e-3, 1e-2, 1.0, 10.0, 100.0])
    iv, ik = np.arange(v)[:, None], np.arange(k - 1 if name != "gs" else k)[None, :]
    loc = locs[(iv + ik) % len(locs)]
    if name == "gs":
        rows = [loc, -loc]
    else:
        s = scales[(iv // len(locs) + ik) % len(scales)] - MIN_SCALE
        xi = np.where(s > 30, s, np.log(np.expm1(s)))
        raw = np.where((iv + ik) % 2 == 0, -50.0, 50.0) * np.ones_like(xi)
        rows = [np.concatenate([loc, xi], -1), np.concatenate([-loc, raw], -1)]
    return tf.constant(np.stack(rows).reshape(2, -1), dtype)


LAYER_SWEEP = [
    ("igr_i", {}, False),
    ("igr_i", {"kl": "sampled"}, True),
    ("igr_sb", {}, False),
    ("igr_sb", {"adaptive": True, "threshold": 0.99}, True),
    ("igr_planar", {}, False),
    ("gs", {}, True),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,options,st", LAYER_SWEEP, ids=lambda x: str(x))
def test_robustness_sweep_through_layer(name, options, st, dtype):
    v, k = 35, 5
    x = extreme_inputs(name, v, k, tf.as_dtype(dtype))
    cases = [(False, tau) for tau in SWEEP_TEMPERATURES] + [(True, 0.01), (True, 10.0)]
    for trainable, tau in cases:
        layer = DiscreteLatent(
            name,
            num_vars=v,
            num_categories=k,
            temperature=tau,
            trainable_temperature=trainable,
            straight_through=st,
            relaxation_options={**options, "num_mc_samples": 64},
            seed=1,
            dtype=dtype,
        )
        layer.build(x.shape)
        for w in layer.flow_weights.values():
            w.assign(np.random.default_rng(0).normal(0, 1.0, w.shape))
        if tau == 1.0:
            assert finite(layer.categorical_log_probs(x))
        if True:
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(x)
                loss = tf.reduce_sum(out["sample"] * tf.constant(np.linspace(-1, 1, k), dtype))
                loss += tf.reduce_sum(out["kl"])
            where = f"{name} {options} τ={tau} {dtype} trainable={trainable}"
            assert out["sample"].dtype == dtype
            assert finite(out["sample"]) and finite(out["kl"]), where
            grads = tape.gradient(loss, [x, *layer.trainable_weights])
            assert all(g is not None and finite(g) for g in grads), where


# --- bad input -----------------------------------------------------------------------------------


def test_layer_rejects_bad_arguments():
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            DiscreteLatent("igr_i", temperature=bad)
        with pytest.raises(ValueError, match="temperature"):
            DiscreteLatent("igr_i", temperature=bad, trainable_temperature=True)
    with pytest.raises(ValueError, match="binary"):
        DiscreteLatent("igr_i", num_categories=3, binary=True)
    with pytest.raises(ValueError, match="num_categories"):
        DiscreteLatent("gs", num_categories=1)
    with pytest.raises(ValueError, match="num_vars"):
        DiscreteLatent("gs", num_vars=0)
    with pytest.raises(ValueError, match="igr_i.*igr_sb.*igr_planar.*gs"):
        DiscreteLatent("gumbel")
    with pytest.raises(ValueError, match="kl"):
        DiscreteLatent("igr_planar", relaxation_options={"kl": "closed"})
    with pytest.raises(ValueError, match="threshold"):
        DiscreteLatent("igr_sb", relaxation_options={"adaptive": True, "threshold": 0.0})
    with pytest.raises(ValueError, match="delta"):
        DiscreteLatent("igr_i", relaxation_options={"delta": -1.0})
    layer = DiscreteLatent("igr_i", num_vars=2, num_categories=3, temperature=0.5)
    with pytest.raises(ValueError, match="last axis") as info:
        layer(np.zeros((2, 7), "float32"))  # needs 2 * 4 = 8
    assert "8" in str(info.value)
    with pytest.raises(ValueError, match="temperature"):
        layer.set_temperature(0.0)
