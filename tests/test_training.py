"""Tests for igr_tf.training, with a toy regression model as the thing under training."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from igr_tf import training
from igr_tf.training import (
    ArgumentParser,
    DivergenceGuard,
    EpochCheckpoint,
    ImageSummary,
    InverseTimeDecayFloor,
    ScalarSummary,
    SteadyTimer,
    build_for_restore,
    checkpoint_info,
    divergence_message,
    fail,
    make_strategy,
    restore_checkpoint,
    run_metadata,
    write_json_atomic,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

N, BATCH, DIM = 64, 8, 3  # 8 steps per epoch


class ToyRegression(keras.Model):
    """Linear regression with a seeded dropout (so RNG state matters) and Mean trackers."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.dropout = keras.layers.Dropout(0.25, seed=7)
        self.out = keras.layers.Dense(1)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_tracker = keras.metrics.Mean(name="mae")

    def call(self, x, training=False):
        return self.out(self.dropout(self.hidden(x), training=training))

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_tracker]

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            pred = self(x, training=True)
            loss = tf.reduce_mean(tf.square(pred - y))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.loss_tracker.update_state(loss)
        self.mae_tracker.update_state(tf.reduce_mean(tf.abs(pred - y)))
        return {m.name: m.result() for m in self.metrics}


def toy_data(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, DIM)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32") + 0.3).astype("float32")
    return x, y


def make_model() -> ToyRegression:
    keras.utils.set_random_seed(1)
    model = ToyRegression()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=InverseTimeDecayFloor(1e-2)))
    return model


def run_training(directory, epochs, extra_callbacks=()) -> tuple[ToyRegression, int]:
    """What a train script does: build, restore if possible, fit to `epochs`."""
    x, y = toy_data()
    model = make_model()
    build_for_restore(model, x[:BATCH])
    initial_epoch = restore_checkpoint(model, directory)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        verbose=0,
        callbacks=[EpochCheckpoint(directory), *extra_callbacks],
    )
    return model, initial_epoch


class Kill(keras.callbacks.Callback):
    """Simulates the process dying in the middle of an epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt("killed")


class EpochCounter(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


def weights_of(model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight, initial = run_training(straight_dir, epochs=4)
    assert initial == 0

    with pytest.raises(KeyboardInterrupt):
        run_training(resumed_dir, epochs=4, extra_callbacks=[Kill(epoch=2, batch=3)])
    assert checkpoint_info(resumed_dir)["epoch"] == 2

    counter = EpochCounter()
    resumed, initial = run_training(resumed_dir, epochs=4, extra_callbacks=[counter])
    assert initial == 2
    assert counter.epochs == [2, 3]  # 2 + 2 = 4 epochs in total
    assert int(resumed.optimizer.iterations.numpy()) == 4 * (N // BATCH)
    assert int(straight.optimizer.iterations.numpy()) == 4 * (N // BATCH)
    for a, b in zip(weights_of(straight), weights_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert checkpoint_info(resumed_dir)["epoch"] == 4
    assert os.listdir(resumed_dir) == [training.CHECKPOINT_FILENAME]


def test_restore_needs_a_built_model(tmp_path):
    run_training(tmp_path, epochs=1)
    model = make_model()
    with pytest.raises(ValueError, match="build_for_restore"):
        restore_checkpoint(model, tmp_path)
    assert restore_checkpoint(build_for_restore(model, toy_data()[0][:2]), tmp_path) == 1
    assert restore_checkpoint(model, tmp_path / "empty") == 0


def test_crash_during_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    real_replace = os.replace

    class CrashOnEpoch3(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:

                def crash(src, dst):
                    raise OSError("simulated crash between write and rename")

                monkeypatch.setattr(training.os, "replace", crash)

    # The crash callback runs before the checkpoint's on_epoch_end in epoch 3.
    with pytest.raises(OSError, match="simulated crash"):
        run_training(tmp_path, epochs=4, extra_callbacks=[CrashOnEpoch3()])
    monkeypatch.setattr(training.os, "replace", real_replace)

    assert os.listdir(tmp_path) == [training.CHECKPOINT_FILENAME]  # temp file cleaned up
    model = build_for_restore(make_model(), toy_data()[0][:2])
    assert restore_checkpoint(model, tmp_path) == 2
    assert int(model.optimizer.iterations.numpy()) == 2 * (N // BATCH)

    # A temp file left by a hard kill is never taken for the checkpoint and is cleaned up.
    stale = tmp_path / ".checkpoint-dead.npz.tmp"
    stale.write_bytes(b"partial")
    assert checkpoint_info(tmp_path)["epoch"] == 2
    _, initial = run_training(tmp_path, epochs=3)
    assert initial == 2
    assert sorted(os.listdir(tmp_path)) == [training.CHECKPOINT_FILENAME]


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    steps = N // BATCH
    x, y = toy_data(5 * N)
    bad_batch = 2 * steps + 4  # epoch 3, batch 5 (1-based), on the same iterator
    y[bad_batch * BATCH + 1, 0] = np.inf  # a corrupt target: the loss is inf at once
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    model = make_model()
    # The guard placed after the checkpoint also must not let it save.
    guard = DivergenceGuard(checkpoint_dir=tmp_path, verbose=False)
    checkpoint = EpochCheckpoint(tmp_path)
    ends = []

    class TrainEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            ends.append(dict(logs))

    history = model.fit(
        dataset,
        epochs=5,
        steps_per_epoch=steps,
        shuffle=False,
        verbose=0,
        callbacks=[checkpoint, guard, TrainEnd()],
    )
    expected = (
        f"training diverged at epoch 3, batch 5 (loss=inf); last good checkpoint: "
        f"{os.path.join(str(tmp_path), training.CHECKPOINT_FILENAME)} (epoch 2)"
    )
    assert checkpoint.message == expected
    assert checkpoint.diverged and guard.diverged
    assert divergence_message(model) == expected
    assert ends[0]["divergence"] == expected
    assert capsys.readouterr().err.strip() == expected
    assert len(history.history["loss"]) == 3  # stopped during epoch 3
    assert checkpoint.last_saved_epoch == 2
    assert checkpoint_info(tmp_path)["epoch"] == 2

    restored = build_for_restore(make_model(), x[:2])
    assert restore_checkpoint(restored, tmp_path) == 2
    assert all(np.all(np.isfinite(w)) for w in weights_of(restored))


def test_checkpoint_refuses_non_finite_weights(tmp_path):
    run_training(tmp_path, epochs=1)

    class Poison(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.out.kernel.assign(np.full((8, 1), np.nan, "float32"))

    # The poison runs first; the loss of the epoch is still finite.
    x, y = toy_data()
    model = build_for_restore(make_model(), x[:2])
    restore_checkpoint(model, tmp_path)
    checkpoint = EpochCheckpoint(tmp_path, verbose=False)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        initial_epoch=1,
        verbose=0,
        callbacks=[Poison(), checkpoint],
    )
    assert "non-finite variables" in checkpoint.message
    assert "(epoch 1)" in checkpoint.message
    assert checkpoint_info(tmp_path)["epoch"] == 1


def test_steady_timer(tmp_path):
    timer = SteadyTimer()
    x, y = toy_data()
    model = make_model()
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[timer])
    s = timer.summary()
    assert s["train_steps"] == 2 * (N // BATCH)
    assert s["steady_steps"] == 2 * (N // BATCH) - 1
    assert s["steps_per_sec"] > 0 and s["steady_steps_per_sec"] > s["steps_per_sec"]
    assert len(s["epoch_times_s"]) == 2 and s["first_epoch_s"] == s["epoch_times_s"][0]
    write_json_atomic(tmp_path / "timing.json", s)


def test_lr_schedule_values_and_serialization():
    schedule = InverseTimeDecayFloor(initial_learning_rate=1e-3, decay_rate=1e-3, floor=1e-4)
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(1000)) == pytest.approx(5e-4)
    assert float(schedule(int(1e6))) == pytest.approx(1e-4)
    assert float(schedule(5000)) == pytest.approx(1e-3 / 6)

    config = keras.optimizers.schedules.serialize(schedule)
    config = json.loads(json.dumps(config))
    clone = keras.optimizers.schedules.deserialize(config)
    assert isinstance(clone, InverseTimeDecayFloor)
    assert clone.get_config() == schedule.get_config()
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    clone_opt = keras.optimizers.Adam.from_config(optimizer.get_config())
    assert float(clone_opt.learning_rate) == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        InverseTimeDecayFloor(initial_learning_rate=0.0)


def test_argument_parser_error_is_one_line(capsys):
    parser = ArgumentParser(prog="train.py")
    parser.add_argument("--epochs", type=int, required=True)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--epochs", "many"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "train.py: error: argument --epochs: invalid int value: 'many'\n"

    with pytest.raises(SystemExit) as exc:
        fail("cannot read data/mnist.npz:\n  no such file", prog="train.py")
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "train.py: error: cannot read data/mnist.npz: no such file\n"
    )


def test_cli_error_in_a_process(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from igr_tf.cli import ArgumentParser, fail
        assert "tensorflow" not in sys.modules
        parser = ArgumentParser()
        parser.add_argument("--data", required=True)
        parser.add_argument("--epochs", type=int, default=1)
        args = parser.parse_args(sys.argv[2:])
        fail(f"missing data file {args.data}")
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script), REPO, "--data", "x.npz", "--epochs"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "train.py: error: argument --epochs: expected one argument\n"


def test_write_json_atomic_round_trip(tmp_path, monkeypatch):
    path = tmp_path / "out" / "results.json"
    obj = {
        "elbo": np.float32(-91.5),
        "curve": np.arange(3),
        "nan": float("nan"),
        "meta": run_metadata(),
    }
    write_json_atomic(path, obj)
    loaded = json.loads(path.read_text())
    assert loaded["elbo"] == -91.5 and loaded["curve"] == [0, 1, 2] and loaded["nan"] is None
    versions = loaded["meta"]["versions"]
    assert versions["tensorflow"] == tf.__version__ and versions["keras"] == keras.__version__
    assert versions["igr_tf"] and versions["tensorflow_probability"]
    assert loaded["meta"]["cpu_count"] >= 1 and loaded["meta"]["devices"]
    assert os.uname().nodename not in json.dumps(loaded["meta"])

    def crash(src, dst):
        raise OSError("crash")

    monkeypatch.setattr(training.os, "replace", crash)
    with pytest.raises(OSError):
        write_json_atomic(path, {"other": 1})
    monkeypatch.undo()
    assert json.loads(path.read_text())["elbo"] == -91.5
    assert os.listdir(path.parent) == ["results.json"]


def _events(log_dir):
    records = []
    for f in glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(f):
            for value in event.summary.value:
                records.append((event.step, value))
    return records


def test_image_and_scalar_summaries(tmp_path):
    x, y = toy_data()
    model = make_model()
    calls = []

    def make_images():
        calls.append(1)
        return np.linspace(0, 1, 2 * 5 * 4, dtype="float32").reshape(2, 5, 4, 1)

    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        verbose=0,
        callbacks=[
            ImageSummary(tmp_path / "img", make_images, name="samples", every=2),
            ScalarSummary(tmp_path / "scalars"),
        ],
    )
    assert len(calls) == 1  # epoch index 1 only
    images = _events(tmp_path / "img")
    assert len(images) == 1
    step, value = images[0]
    assert step == 1 and value.tag == "samples"
    assert value.metadata.plugin_data.plugin_name == "images"
    tensor = tf.make_ndarray(value.tensor)
    assert tensor[0] == b"4" and tensor[1] == b"5" and len(tensor) == 4
    decoded = tf.image.decode_png(tensor[3]).numpy()
    assert decoded.shape == (5, 4, 1) and decoded[-1, -1, 0] == 255

    scalars = _events(tmp_path / "scalars")
    tags = {(s, v.tag) for s, v in scalars}
    assert {(0, "epoch_loss"), (2, "epoch_mae")} <= tags
    assert all(v.metadata.plugin_data.plugin_name == "scalars" for _, v in scalars)


def test_make_strategy_names():
    assert make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="allowed: default, mirrored, multiworker"):
        make_strategy("tpu")


MIRRORED_SCRIPT = """
import json, os, sys, tempfile
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.dirname(sys.argv[2]))
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from igr_tf.training import (EpochCheckpoint, build_for_restore, make_strategy,
                             restore_checkpoint)
from test_training import BATCH, ToyRegression, toy_data

x, y = toy_data()
# A multi-worker strategy must be made first; with no TF_CONFIG it is one worker (the chief).
multiworker = make_strategy("multiworker")
with multiworker.scope():
    single = ToyRegression()
    single.compile(optimizer=keras.optimizers.Adam(0.05))
single.fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
           callbacks=[EpochCheckpoint(tempfile.mkdtemp())])

strategy = make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
directory = tempfile.mkdtemp()
with strategy.scope():
    model = ToyRegression()
    model.compile(optimizer=keras.optimizers.Adam(0.05))
history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, shuffle=False,
                    callbacks=[EpochCheckpoint(directory)])
with strategy.scope():
    again = ToyRegression()
    again.compile(optimizer=keras.optimizers.Adam(0.05))
    build_for_restore(again, x[:BATCH])
epoch = restore_checkpoint(again, directory)
same = all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(
    model.variables + model.optimizer.variables,
    again.variables + again.optimizer.variables))
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "multiworker_replicas": multiworker.num_replicas_in_sync,
                  "multiworker_iterations": int(single.optimizer.iterations.numpy()),
                  "loss": history.history["loss"], "epoch": epoch, "same": same,
                  "iterations": int(again.optimizer.iterations.numpy())}))
"""


def test_multiworker_and_mirrored_strategies_on_two_logical_cpus():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, REPO, os.path.abspath(__file__)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["multiworker_replicas"] == 1
    assert result["multiworker_iterations"] == N // BATCH
    assert len(result["loss"]) == 2 and all(math.isfinite(v) for v in result["loss"])
    assert result["loss"][1] < result["loss"][0]
    assert result["epoch"] == 2 and result["same"]
    assert result["iterations"] == 2 * (N // BATCH)


class RawLossModel(keras.Model):
    """Returns its loss under "loss" with no tracker of that name (the Keras 3 trap)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = keras.layers.Dense(1)
        self.mae_tracker = keras.metrics.Mean(name="mae")

    def call(self, x):
        return self.out(x)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            pred = self(x)
            loss = tf.reduce_mean(tf.square(pred - y))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.mae_tracker.update_state(tf.reduce_mean(tf.abs(pred - y)))
        return {"loss": loss, "mae": self.mae_tracker.result()}


def test_keras_loss_reporting_contract():
    """Pins the Keras 3 behaviour the models rely on (see the igr_tf.training docstring)."""
    x, y = toy_data()
    tracked = make_model()
    history = tracked.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    assert [m.name for m in tracked.metrics] == ["loss", "mae"]
    assert history.history["loss"][0] == pytest.approx(float(tracked.loss_tracker.result()))
    assert history.history["loss"][0] > 0

    raw = RawLossModel()
    raw.compile(optimizer="adam")
    assert [m.name for m in raw.metrics] == ["loss", "mae"]  # "loss": compile()'s tracker
    batch_losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_losses.append(logs["loss"])
    )
    history = raw.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[record])
    assert batch_losses[-1] > 0  # the progress bar shows the returned value...
    assert history.history["loss"] == [0.0]  # ...but the epoch logs take compile()'s tracker
