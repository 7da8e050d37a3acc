"""Tests of models.sop: shapes, training on real digits, test NLL, save/load, XLA."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf import datasets
from igr_tf.distributions import relaxations
from igr_tf.training import InverseTimeDecayFloor
from models.sop import ARCHITECTURES, StructuredOutputPredictor, split_halves

ROOT = pathlib.Path(__file__).resolve().parents[1]

RELAXATIONS = relaxations.names()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = datasets.load("mnist_sample")
    train = np.stack(list(data.train.take(300).as_numpy_iterator()))
    test = np.stack(list(data.test.take(100).as_numpy_iterator()))
    return train, test


def batches(x: np.ndarray, size: int = 50) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(x).batch(size)


def test_split_halves() -> None:
    images = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)
    upper, lower = split_halves(images)
    assert upper.shape == (2, 392) and lower.shape == (2, 392)
    np.testing.assert_array_equal(upper[1], images[1, :14].ravel())
    np.testing.assert_array_equal(lower[1], images[1, 14:].ravel())


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_shapes_every_architecture(relaxation: str, digits) -> None:
    x = digits[1][:4]
    for architecture, (num_layers, nonlinear) in ARCHITECTURES.items():
        model = StructuredOutputPredictor(relaxation, architecture, seed=0)
        assert len(model.latents) == num_layers and len(model.hidden) == num_layers * nonlinear
        for latent, to_params in zip(model.latents, model.to_params, strict=True):
            assert latent.num_vars == 240 and latent.binary
            assert to_params.units == latent.params_size
        assert model(x).shape == (4, 392)
        # Rounded samples are exactly binary; relaxed ones lie in [0, 1].
        h = model.to_params[0](
            model.hidden[0](split_halves(x)[0]) if nonlinear else split_halves(x)[0]
        )
        hard = model.latents[0](h, discrete=True)["sample"].numpy()
        soft = model.latents[0](h)["sample"].numpy()
        assert hard.shape == soft.shape == (4, 240)
        assert set(np.unique(hard)) <= {0.0, 1.0}
        assert soft.min() >= 0.0 and soft.max() <= 1.0
        # The log-likelihood of rounded samples is TFP's Bernoulli log-density of the lower
        # half under the decoder's logits for the same draws (the layers' streams replayed).
        states = [latent.seed_generator.state.numpy() for latent in model.latents]
        ll = model.sample_log_likelihoods(x, 3, discrete=True)
        for latent, state in zip(model.latents, states, strict=True):
            latent.seed_generator.state.assign(state)
        upper, lower = split_halves(x)
        logits = model.lower_logits(tf.tile(upper, [3, 1]), discrete=True)
        expected = tfp.distributions.Bernoulli(logits=logits).log_prob(tf.tile(lower, [3, 1]))
        np.testing.assert_allclose(ll, tf.reshape(tf.reduce_sum(expected, -1), [3, 4]), rtol=1e-5)


def _trained(relaxation: str, digits, jit_compile: bool, epochs: int = 3, **kwargs):
    train, test = digits
    model = StructuredOutputPredictor(relaxation, seed=1, num_test_samples=20, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(InverseTimeDecayFloor()), jit_compile=jit_compile)
    history = model.fit(train, batch_size=50, epochs=epochs, shuffle=False, verbose=0)
    return model, history.history


@pytest.mark.parametrize("relaxation", ["igr_i", "igr_sb", "gs"])
def test_loss_goes_down(relaxation: str, digits) -> None:
    model, history = _trained(relaxation, digits, jit_compile=False, epochs=2)
    losses = history["loss"]
    # "loss" is our tracker's value: positive nats, decreasing (Keras does not overwrite it).
    assert 100.0 < losses[-1] < losses[0] - 20.0, losses


def test_xla(digits) -> None:
    # IGR-SB: the stick-breaking map is the most involved graph; the others compile too.
    model, history = _trained("igr_sb", digits, jit_compile=True, epochs=1, num_train_samples=2)
    logs = model.evaluate(digits[1][:50], batch_size=50, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "nll"}
    assert np.isfinite(logs["nll"]) and 0.0 < logs["nll"] < history["loss"][0]


def test_multi_sample_objective_is_tighter(digits) -> None:
    model, _ = _trained("igr_i", digits, jit_compile=False, epochs=1, num_train_samples=4)
    x = digits[1]
    one = np.mean([model.nll(x, 1).numpy().mean() for _ in range(8)])
    many = model.nll(x, 32).numpy().mean()
    assert many <= one


def test_test_nll_jensen_and_save_load(digits, tmp_path) -> None:
    model, _ = _trained("igr_planar", digits, jit_compile=False, epochs=1)
    test = batches(digits[1])
    nll_100 = model.test_nll(test, 100, seed=7)
    nll_1 = np.mean([model.test_nll(test, 1, seed=s) for s in range(10)])
    assert np.isfinite(nll_100) and nll_100 >= 0.0
    assert nll_100 <= nll_1  # Jensen: E[log mean] ≤ log E, so more samples -> lower NLL
    # Chunked sampling (other random draws, same estimator) agrees within Monte Carlo noise:
    # 4 standard errors, estimated from the spread over seeds.
    chunked = np.array([model.test_nll(test, 30, seed=s, max_rows=50 * 7) for s in range(5)])
    whole = np.array([model.test_nll(test, 30, seed=s) for s in range(5)])
    se = np.sqrt(chunked.var(ddof=1) / 5 + whole.var(ddof=1) / 5)
    assert abs(chunked.mean() - whole.mean()) < 4 * se, (chunked, whole)
    # A seeded evaluation neither depends on nor perturbs the layers' random streams.
    assert model.test_nll(test, 10, seed=3) == model.test_nll(test, 10, seed=3)

    path = str(tmp_path / "sop.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode on (the default)
    assert isinstance(loaded, StructuredOutputPredictor)
    assert loaded.get_config() == model.get_config()
    assert isinstance(loaded.optimizer.learning_rate, InverseTimeDecayFloor) or isinstance(
        loaded.optimizer._learning_rate, InverseTimeDecayFloor
    )
    assert loaded.test_nll(test, 100, seed=7) == nll_100
    # A new process that imports only the model loads it too (the optimizer names the SOP
    # schedule, which had to be registered by importing igr_tf.training first).
    code = (
        "import sys, keras, models.sop; m = keras.models.load_model(sys.argv[1]); "
        "print(type(m.optimizer.learning_rate).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_config_and_errors() -> None:
    model = StructuredOutputPredictor(
        "gs",
        "triple_linear",
        temperature=0.5,
        seed=2,
        relaxation_options={"prior_temperature": 0.5},
    )
    clone = StructuredOutputPredictor.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert [lat.seed for lat in clone.latents] == [2, 3, 4]
    assert float(clone.latents[0].temperature) == 0.5
    with pytest.raises(ValueError, match="architecture"):
        StructuredOutputPredictor("gs", "quadruple")
    with pytest.raises(ValueError, match="num_train_samples"):
        StructuredOutputPredictor("gs", num_train_samples=0)
