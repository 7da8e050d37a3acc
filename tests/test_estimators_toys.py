"""Toys, gradient diagnostics, and every estimator in a compiled model step.

- The toys' exact expectations against numpy written here (closed form; a loop over outcomes).
- `gradient_statistics` against numpy statistics of synthetic draws with known answers; the Keras
  callback writes its values into the epoch logs (History sees them).
- Every estimator in a small encoder-decoder step under `tf.function(jit_compile=True)` at
  temperature 0.01, float32: finite gradients for every variable.

`train.py toy` is tested with the other tasks in test_train_cli.py.
"""

from __future__ import annotations

import itertools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from igr_tf import estimators, toys  # noqa: E402
from igr_tf.estimators import diagnostics  # noqa: E402

# --- toys -----------------------------------------------------------------------------------


def test_polynomial_toy_exact_loss_is_the_closed_form():
    toy = toys.PolynomialToy(3, power=1.5, target=0.45)
    q = np.array([0.2, 0.5, 0.9])
    log_pmf = tf.constant(np.log(np.stack([q, 1 - q], -1)))
    expect = np.mean(q * 0.55**1.5 + (1 - q) * 0.45**1.5)
    assert float(toy.exact_loss(log_pmf)) == pytest.approx(expect, rel=1e-12)
    d = tf.constant([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    assert float(toy.objective(d)[0]) == pytest.approx((2 * 0.55**1.5 + 0.45**1.5) / 3, rel=1e-6)


def test_categorical_toy_exact_loss_is_the_sum_over_outcomes():
    toy = toys.CategoricalToy(2, 3, power=3.0, seed=4)
    rng = np.random.default_rng(0)
    pmf = rng.dirichlet(np.ones(3), size=2)
    total = 0.0
    for a, b in itertools.product(range(3), repeat=2):
        point = toy.embedding[0, a] + toy.embedding[1, b] - toy.goal
        total += pmf[0, a] * pmf[1, b] * np.linalg.norm(point) ** 3
    got = float(toy.exact_loss(tf.constant(np.log(pmf))))
    assert got == pytest.approx(total, rel=1e-12)
    with pytest.raises(ValueError, match="K\\^V"):
        toys.CategoricalToy(10, 10)


# --- diagnostics ----------------------------------------------------------------------------


def test_gradient_statistics_match_numpy():
    rng = np.random.default_rng(0)
    mean = np.array([1.0, -2.0, 0.0, 0.5])
    draws = mean + rng.normal(0, [0.5, 1.0, 2.0, 0.1], (400, 4))
    draws[:100, 2] = 0.0
    stats = diagnostics.gradient_statistics(
        [draws[:, :2].reshape(400, 2, 1), draws[:, 2:]], exact=[mean[:2].reshape(2, 1), mean[2:]]
    )
    m, v = draws.mean(0), draws.var(0, ddof=1)
    assert stats["variance"] == pytest.approx(v.mean())
    assert stats["total_variance"] == pytest.approx(v.sum())
    assert stats["snr"] == pytest.approx(np.mean(np.abs(m) / np.sqrt(v)))
    assert stats["zero_fraction"] == pytest.approx(100 / 1600)
    assert stats["bias_norm"] == pytest.approx(np.linalg.norm(m - mean))
    assert stats["relative_bias"] == pytest.approx(np.linalg.norm(m - mean) / np.linalg.norm(mean))
    assert stats["bias_se"] == pytest.approx(math.sqrt(v.sum() / 400))
    assert stats["mse"] == pytest.approx(np.mean(np.sum((draws - mean) ** 2, 1)))
    with pytest.raises(ValueError, match="2 draws"):
        diagnostics.gradient_statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="entries"):
        diagnostics.gradient_statistics(np.zeros((3, 3)), exact=np.zeros(2))


def test_gradient_diagnostics_callback_logs_per_epoch():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)

    def gradient_fn(seed):  # a noisy gradient: randomly weighted examples
        weight = tf.random.stateless_uniform([8, 1], seed)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(weight * tf.square(model(x) - y))
        return tape.gradient(loss, model.trainable_variables)

    callback = diagnostics.GradientDiagnostics(gradient_fn, num_draws=4, seed=3)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    for key in ("grad_variance", "grad_snr", "grad_zero_fraction"):
        assert len(history.history[key]) == 2 and np.isfinite(history.history[key]).all()
    assert callback.latest["variance"] == history.history["grad_variance"][-1]
    with pytest.raises(ValueError, match="num_draws"):
        diagnostics.GradientDiagnostics(gradient_fn, num_draws=1)


def test_control_variate_layer_round_trips_through_model_save(tmp_path):
    from igr_tf.estimators import ControlVariate

    layer = ControlVariate(temperature=0.3, eta=0.7, hidden_units=(4,), zero_init=False, seed=2)
    relaxed, values = keras.Input((2, 3)), keras.Input(())
    model = keras.Model([relaxed, values], layer(relaxed, values))
    x = [
        np.random.default_rng(0).dirichlet(np.ones(3), (5, 2)).astype("float32"),
        np.ones(5, "float32"),
    ]
    model.save(tmp_path / "cv.keras")
    loaded = keras.models.load_model(tmp_path / "cv.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert loaded.layers[-1].get_config()["hidden_units"] == (4,)
    assert float(loaded.layers[-1].temperature) == pytest.approx(0.3)


# --- every estimator in a compiled step -----------------------------------------------------


def compiled_step(name, k, v=2, batch=4, **extra):
    """(one training step of a tiny encoder/decoder, to be compiled; its variables)."""
    options = {} if name in ("reinforce_loo", "vimco", "disarm") else {"temperature": 0.01}
    est = estimators.get(name, k, **options, **extra)
    keras.utils.set_random_seed(1)
    encoder = keras.layers.Dense(v * est.num_params)
    decoder = keras.layers.Dense(6)
    encoder.build((None, 6))
    decoder.build((None, v * k))
    weights = {
        n: tf.Variable(np.random.default_rng(0).normal(0, 0.3, s.shape), dtype=tf.float32)
        for n, s in est.weight_specs(v).items()
    }
    if hasattr(est, "build"):
        est.build(v)
    variables = [*encoder.trainable_variables, *decoder.trainable_variables, *weights.values()]
    variables += getattr(est, "trainable_variables", [])
    x = tf.constant(np.random.default_rng(2).integers(0, 2, (batch, 6)), tf.float32)
    kwargs = {"weights": weights} if weights else {}

    def objective(samples):  # negative Bernoulli log-likelihood per sample and example
        flat = tf.reshape(samples, tf.concat([tf.shape(samples)[:-2], [v * k]], 0))
        logits = decoder(flat)
        labels = tf.broadcast_to(x, tf.shape(logits))
        nll = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), -1)
        return -nll if name == "vimco" else nll  # VIMCO takes log weights

    def step(seed):
        with tf.GradientTape() as tape:
            params = 10.0 * tf.reshape(encoder(x), [batch, v, est.num_params])  # large logits
            loss = tf.reduce_mean(est.surrogate(objective, params, seed=seed, **kwargs))
        return loss, tape.gradient(loss, variables)

    return step, variables


# (name, K, options). RELAX with IGR-SB (the noise score, K = 3); REBAR is the same class without
# the control network (a ClassVar), so RELAX's program holds REBAR's. Left out for test time (each
# costs seconds of XLA on 2 cores; benchmarks/estimators.py runs them compiled): a separate REBAR,
# and the IGR-I conditional z | b (~15 s), whose values test_estimators_unbiased.py checks eagerly.
COMPILED = [(n, 2 if n == "disarm" else 3, {}) for n in estimators.names()
            if n not in ("rebar", "relax")]  # fmt: skip
COMPILED += [("relax", 3, {"relaxation": "igr_sb", "zero_init": False, "seed": 0})]


def test_every_estimator_compiles_with_finite_gradients_at_low_temperature(package_conversions):
    # One XLA program holds every estimator's step (one compilation instead of 12: test time).
    built = [(name, *compiled_step(name, k, **extra)) for name, k, extra in COMPILED]

    @tf.function(jit_compile=True)
    def steps(seed):
        return [step(seed) for _, step, _ in built]

    results = steps(tf.constant([1, 2]))
    # Tracing went through every estimator's methods without autograph converting any of them.
    assert package_conversions == []
    for (name, _, variables), (loss, grads) in zip(built, results, strict=True):
        assert np.isfinite(float(loss)), name
        for g, var in zip(grads, variables, strict=True):
            assert g is not None and np.all(np.isfinite(g.numpy())), (name, var.name)
