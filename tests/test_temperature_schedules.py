"""The temperature study's plumbing (issue 13): the validation split, the step-wise annealing
schedule, the learned temperature, and their train.py flags (in process, tiny data)."""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_train_cli import assert_one_line_error, run_cli, run_main, tiny_npz

from igr_tf import datasets, paper
from igr_tf.layers import TemperatureSchedule, exponential_annealing
from models.vae import DiscreteVAE


# --- hold_out ------------------------------------------------------------------------------
def test_hold_out_cuts_the_end_of_the_training_set_and_keeps_the_test_set():
    data = datasets.load("mnist_sample")
    held = datasets.hold_out(data, 0.1)
    every = np.stack(list(data.train.as_numpy_iterator()))
    train = np.stack(list(held.train.as_numpy_iterator()))
    val = np.stack(list(held.validation.as_numpy_iterator()))
    assert (held.num_train, len(train), len(val)) == (3240, 3240, 360)
    np.testing.assert_array_equal(np.concatenate([train, val]), every)
    assert held.num_test == data.num_test and data.validation is None
    np.testing.assert_array_equal(
        np.stack(list(held.test.as_numpy_iterator())), np.stack(list(data.test.as_numpy_iterator()))
    )


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1e-6, 0.99999])
def test_hold_out_refuses_fractions_that_leave_a_part_empty(fraction):
    data = datasets.load("mnist_sample")
    with pytest.raises(ValueError, match="validation fraction"):
        datasets.hold_out(data, fraction)


# --- the annealing schedule -----------------------------------------------------------------------
def test_gs_annealing_is_max_half_exp_minus_3e5_t():
    schedule = exponential_annealing(**paper.GS_ANNEALING)
    assert schedule(0) == 1.0
    assert schedule(10_000) == pytest.approx(0.7408182206817179, rel=1e-12)  # exp(-0.3)
    assert schedule(23_000) == pytest.approx(0.5015760690660556, rel=1e-12)  # exp(-0.69)
    assert schedule(23_105) == 0.5 and schedule(10**7) == 0.5  # ln 2 / 3e-5 = 23104.9
    with pytest.raises(ValueError, match="`rate` must be finite and ≥ 0"):
        exponential_annealing(rate=-1.0)
    with pytest.raises(ValueError, match="floor"):
        exponential_annealing(floor=0.0)


class _RecordTemperature(keras.callbacks.Callback):
    """τ seen by each train step (after the schedule assigned it) and each epoch's τ."""

    def __init__(self):
        super().__init__()
        self.steps, self.epochs = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.steps.append(float(self.model.latent.temperature))

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(float(self.model.latent.temperature))


def _tiny_vae(**kwargs) -> DiscreteVAE:
    model = DiscreteVAE("igr_i", 3, 4, 1.0, arch="linear", seed=1, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    return model


def _images(n=40) -> tf.Tensor:
    return tf.cast(tf.random.stateless_uniform([n, 28, 28, 1], [1, 2]) > 0.5, tf.float32)


@pytest.mark.parametrize("per", ["step", "epoch"])
def test_schedule_assigns_tau_from_the_global_step_or_the_epoch(per):
    model = _tiny_vae()
    record = _RecordTemperature()
    schedule = TemperatureSchedule(lambda t: 1.0 / (1 + t), per=per)
    model.fit(_images(), batch_size=20, epochs=3, callbacks=[schedule, record], verbose=0)
    if per == "step":  # 2 steps per epoch: τ before step t (0-based) is 1 / (1 + t)
        np.testing.assert_allclose(record.steps, [1 / (1 + t) for t in range(6)], rtol=1e-7)
    else:
        np.testing.assert_allclose(record.steps, [1, 1, 1 / 2, 1 / 2, 1 / 3, 1 / 3], rtol=1e-7)
    with pytest.raises(ValueError, match="`per` must be 'epoch' or 'step'"):
        TemperatureSchedule(lambda t: 1.0, per="batch")


def test_learned_temperature_is_a_trained_weight_that_survives_saving(tmp_path):
    model = _tiny_vae(trainable_temperature=True)
    model.fit(_images(), batch_size=20, epochs=1, verbose=0)
    names = [w.path.split("/", 1)[1] for w in model.trainable_weights]
    assert "latent/log_temperature" in names, names
    tau = float(model.latent.temperature)
    assert tau != 1.0 and math.isfinite(tau)  # two SGD steps moved log τ
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.latent.trainable_temperature
    assert float(loaded.latent.temperature) == tau
    with pytest.raises(ValueError, match="trainable_temperature is for the relaxed sample"):
        DiscreteVAE("igr_i", 3, 4, estimator="st", trainable_temperature=True)


# --- train.py ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    return tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


def _flags(data_file, out, epochs, *extra):
    return ["vae", "--data-file", data_file, "--epochs", str(epochs), "--batch-size", "20",
            "--arch", "linear", "--eval-samples", "5", "--num-vars", "5", "--verbose", "0",
            "--no-jit", "--out", out, "--validation-split", "0.5", "--dist", "gs",
            *extra]  # fmt: skip


def _results(out) -> dict:
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def test_annealed_run_with_validation_split_resumes_exactly(data_file, tmp_path, capsys):
    """54 training images, half held out: 27 trained on in 2 steps per epoch; τ annealed per step;
    a run split 1 + 1 epochs ends exactly where the 2-epoch run does."""
    anneal = ["--temperature-schedule", "anneal"]
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    assert run_main(_flags(data_file, whole, 2, *anneal), capsys).returncode == 0
    assert run_main(_flags(data_file, split, 1, *anneal), capsys).returncode == 0
    second = run_main(_flags(data_file, split, 2, *anneal), capsys)
    assert second.returncode == 0 and "Resuming from epoch 1" in second.stdout
    a, b = _results(whole), _results(split)
    assert a["timing"]["train_steps"] == 4 and len(a["history"]["val_loss"]) == 2
    # τ was assigned before each of the 4 steps; the last saw step index 3.
    assert a["metrics"]["temperature"] == 1.0
    assert a["metrics"]["final_temperature"] == pytest.approx(math.exp(-3e-5 * 3), rel=1e-7)
    for key in ("test_elbo", "test_loglik", "val_elbo", "val_loglik", "final_temperature"):
        assert a["metrics"][key] == b["metrics"][key], key
    # The validation images are other images than the test images: other scores.
    assert a["metrics"]["val_elbo"] != a["metrics"]["test_elbo"]
    assert a["metrics"]["val_loglik_proposal"] == "exact"


def test_learned_temperature_run_reports_the_final_tau(data_file, tmp_path, capsys):
    out = str(tmp_path / "learned")
    flags = _flags(data_file, out, 1, "--temperature-schedule", "learned", "--temperature", "0.5")
    assert run_main(flags, capsys).returncode == 0
    metrics = _results(out)["metrics"]
    assert metrics["temperature"] == 0.5
    assert metrics["final_temperature"] != 0.5 and metrics["final_temperature"] > 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--validation-split", "1"], "--validation-split must be in [0, 1); got 1.0"),
        (["--validation-split", "-0.1"], "--validation-split must be in [0, 1); got -0.1"),
        (["--validation-split", "nan"], "argument --validation-split: must be a finite number"),
        (["--temperature-schedule", "cosine"], "--temperature-schedule: invalid choice: 'cosine'"),
        (["--estimator", "st", "--temperature-schedule", "anneal"], "for the relaxed sample"),
    ],
)
def test_bad_study_flags_exit_2_with_one_line(args, fragment):
    assert_one_line_error(run_cli(*args, timeout=60), fragment)
