"""Tests for igr_tf.training and igr_tf.cli, with a toy regression model as the thing trained."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from igr_tf import datasets, training
from igr_tf.cli import TF_STARTUP_NOISE, ArgumentParser, _stderr_without, fail
from igr_tf.training import (
    CheckpointError,
    DivergenceGuard,
    EpochCheckpoint,
    ImageSummary,
    InverseTimeDecayFloor,
    RunCheckpoint,
    SteadyTimer,
    build_for_restore,
    make_strategy,
    replica_loss,
    run_metadata,
    state_preserved,
    write_json_atomic,
    write_test_summary,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

N, BATCH, DIM = 64, 8, 3  # 8 steps per epoch
STEPS = N // BATCH


class ToyRegression(keras.Model):
    """Linear regression with a seeded dropout (so a SeedGenerator's state matters)."""

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
    return build_for_restore(model, toy_data()[0][:2])


def run_training(directory, epochs, callbacks=(), data=None) -> tuple[keras.Model, EpochCheckpoint]:
    """What train.py does: build, restore if possible, fit the remaining epochs."""
    x, y = data if data is not None else toy_data()
    model = make_model()
    checkpoint = RunCheckpoint(directory, model)
    info = checkpoint.restore()
    initial = info["epoch"] if info else 0
    train = datasets.epoch_pipeline(
        tf.data.Dataset.from_tensor_slices((x, y)), BATCH, seed=5, epochs=range(initial, epochs)
    )
    saver = EpochCheckpoint(checkpoint)
    model.fit(
        train,
        steps_per_epoch=len(x) // BATCH,
        epochs=epochs,
        initial_epoch=initial,
        verbose=0,
        shuffle=False,
        callbacks=[*callbacks, saver],
    )
    return model, saver


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


def state_of(model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]


# --- checkpoints ----------------------------------------------------------------------------------
def test_interrupted_and_resumed_training_is_bit_exact(tmp_path):
    straight, straight_saver = run_training(tmp_path / "straight", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        run_training(tmp_path / "resumed", epochs=4, callbacks=[Kill(epoch=2, batch=3)])
    assert RunCheckpoint.read_info(tmp_path / "resumed")["epoch"] == 2
    resumed, saver = run_training(tmp_path / "resumed", epochs=4)  # new objects, as after a kill
    for a, b in zip(state_of(straight), state_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    # The dropout's SeedGenerator state moved on, and was restored, too.
    seed_states = [v for v in resumed.variables if "seed_generator" in v.path]
    assert seed_states and int(seed_states[0].numpy()[1]) == 4 * STEPS
    history = saver.checkpoint.info["history"]
    assert history == straight_saver.checkpoint.info["history"]
    assert len(history["loss"]) == 4 and history["loss"][-1] < history["loss"][0]


def test_checkpoint_holds_every_variable_the_history_and_the_caller_info(tmp_path):
    model, saver = run_training(tmp_path, epochs=2)
    info = RunCheckpoint.read_info(tmp_path)
    assert info["epoch"] == 2 and len(info["history"]["mae"]) == 2
    assert [p for p, _ in info["variables"]["model"]] == [v.path for v in model.variables]
    assert len(info["variables"]["optimizer"]) == len(model.optimizer.variables)
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
        "ckpt-2.data-00000-of-00001", "ckpt-2.index",
    ]  # fmt: skip
    fresh = make_model()
    checkpoint = RunCheckpoint(tmp_path, fresh)
    assert state_of(fresh)[0].tolist() != state_of(model)[0].tolist()
    checkpoint.restore()
    for a, b in zip(state_of(model), state_of(fresh), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == 2 * STEPS
    checkpoint.info["flags"] = {"seed": 3}
    checkpoint.save(3)
    assert RunCheckpoint.read_info(tmp_path)["flags"] == {"seed": 3}
    assert RunCheckpoint.read_info(tmp_path / "nothing") is None
    assert RunCheckpoint(tmp_path / "empty", make_model()).restore() is None


def test_restore_checks_everything_before_assigning(tmp_path):
    run_training(tmp_path, epochs=1)

    class Wider(ToyRegression):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(9, activation="tanh")

    keras.utils.set_random_seed(1)
    other = Wider()
    other.compile(optimizer="adam")
    build_for_restore(other, toy_data()[0][:2])
    before = state_of(other)
    with pytest.raises(CheckpointError, match=r"ckpt-1: model variable \d+ \(.*kernel\) has shape"):
        RunCheckpoint(tmp_path, other).restore()
    for a, b in zip(before, state_of(other), strict=True):  # nothing was assigned
        np.testing.assert_array_equal(a, b)
    sgd = make_model()
    sgd.compile(optimizer=keras.optimizers.SGD(0.1))  # other optimizer: other variables
    build_for_restore(sgd, toy_data()[0][:2])
    with pytest.raises(CheckpointError, match="holds .* optimizer variables, this model has"):
        RunCheckpoint(tmp_path, sgd).restore()


def test_foreign_and_damaged_checkpoints_raise_checkpoint_errors(tmp_path):
    plain = tf.train.Checkpoint(v=tf.Variable(1.0))
    tf.train.CheckpointManager(plain, tmp_path / "plain", 1).save()
    with pytest.raises(CheckpointError, match="ckpt-1: not a run checkpoint of igr_tf"):
        RunCheckpoint.read_info(tmp_path / "plain")
    run_training(tmp_path / "run", epochs=1)
    data = glob.glob(str(tmp_path / "run" / "ckpt-1.data-*"))[0]
    with open(data, "r+b") as f:
        f.seek(8)
        f.write(b"\xff\xff\xff\xff")  # a flipped word: TF's checksums catch it
    damaged = r"ckpt-1: unreadable checkpoint \(.*Checksum does not match"
    with pytest.raises(CheckpointError, match=damaged):
        RunCheckpoint(tmp_path / "run", make_model()).restore()


def test_a_write_killed_before_the_index_update_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
):
    from tensorflow.python.checkpoint import checkpoint_management

    run_training(tmp_path, epochs=2)

    def crash(*args, **kwargs):
        raise OSError("simulated crash after the files, before the index")

    monkeypatch.setattr(checkpoint_management, "update_checkpoint_state_internal", crash)
    with pytest.raises(OSError, match="simulated crash"):
        run_training(tmp_path, epochs=3)
    monkeypatch.undo()
    assert RunCheckpoint.read_info(tmp_path)["epoch"] == 2
    # What a kill in TF's writer leaves (its temporary directory) is removed when training goes on.
    os.makedirs(tmp_path / "ckpt-3_temp" / "part-00000-of-00001")
    _, saver = run_training(tmp_path, epochs=3)
    assert saver.checkpoint.info["epoch"] == 3 and not glob.glob(str(tmp_path / "*_temp*"))


def test_divergence_stops_names_the_place_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = toy_data()
    y[13, 0] = np.inf  # a corrupt target in every epoch's data ...
    good = run_training(tmp_path, epochs=2, data=toy_data())[1].checkpoint.info["history"]
    ends = []
    end = keras.callbacks.LambdaCallback(on_train_end=ends.append)  # the logs every callback gets
    model, saver = run_training(tmp_path, epochs=5, callbacks=[end], data=(x, y))
    # ... so epoch 3 (the first one trained now) diverges at the batch that holds it.
    message = saver.message
    assert re.match(r"training diverged at epoch 3, batch \d \(loss=inf\)", message), message
    assert message.endswith(f"; last good checkpoint: {tmp_path}/ckpt-2 (epoch 2)")
    assert ends[0]["divergence"] == message
    info = RunCheckpoint.read_info(tmp_path)
    assert info["epoch"] == 2 and info["history"] == good


def test_non_finite_weights_are_named(tmp_path):
    class Poison(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.out.kernel.assign(np.full((8, 1), np.nan, "float32"))

    model, saver = run_training(tmp_path, epochs=3, callbacks=[Poison()])
    assert "training diverged at epoch 1 (non-finite variables: " in saver.message
    assert model.out.kernel.path in saver.message  # the poisoned variable, by its path
    assert RunCheckpoint.read_info(tmp_path) is None  # nothing diverged was saved
    assert isinstance(saver, DivergenceGuard) and isinstance(saver, keras.callbacks.TerminateOnNaN)


def test_build_for_restore_needs_a_compiled_model():
    with pytest.raises(ValueError, match="compile the model"):
        build_for_restore(ToyRegression())


# --- summaries ------------------------------------------------------------------------------------
def _events(run_dir):
    found = {}
    for path in glob.glob(os.path.join(str(run_dir), "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def test_image_summary_and_test_summary_in_the_keras_layout(tmp_path):
    x, y = toy_data()
    model = make_model()
    calls = []

    def make_images(epoch):
        model(x[:2], training=True)  # advances the dropout's seed generator ...
        calls.append(epoch)
        return np.linspace(0, 1, 2 * 5 * 4, dtype="float32").reshape(2, 5, 4, 1)

    seeds = [v for v in model.non_trainable_variables if "seed_generator" in v.path]
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        verbose=0,
        callbacks=[ImageSummary(tmp_path, make_images, name="samples", every=2)],
    )
    assert calls == [1]  # epoch index 1 only
    assert int(seeds[0].numpy()[1]) == 3 * STEPS  # ... but the images left it as training did
    ((step, value),) = _events(tmp_path / "validation")["samples"]
    assert step == 1 and value.metadata.plugin_data.plugin_name == "images"
    tensor = tf.make_ndarray(value.tensor)
    assert tensor[0] == b"4" and tensor[1] == b"5" and len(tensor) == 4
    decoded = tf.image.decode_png(tensor[3]).numpy()
    assert decoded.shape == (5, 4, 1) and decoded[-1, -1, 0] == 255

    write_test_summary(tmp_path, {"test_loss": 1.5, "kind": "exact"}, step=2, hparams={"lr": 0.1})
    test = _events(tmp_path / "test")
    ((step, value),) = test["test_loss"]
    assert step == 2 and float(tf.make_ndarray(value.tensor)) == 1.5
    assert "kind" not in test and "_hparams_/session_start_info" in test


def test_state_preserved_puts_back_every_non_trainable_variable():
    model = make_model()
    before = [np.array(v.numpy()) for v in model.non_trainable_variables]
    with state_preserved(model):
        model(toy_data()[0], training=True)
        for v in model.non_trainable_variables:
            v.assign(v.numpy() * 0 + 3)
    for a, v in zip(before, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(a, v.numpy())


# --- timing, schedule, results files --------------------------------------------------------------
def test_steady_timer(tmp_path):
    timer = SteadyTimer()
    x, y = toy_data()
    model = make_model()
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[timer])
    s = timer.summary()
    assert s["train_steps"] == 2 * STEPS and s["steady_steps"] == 2 * STEPS - 1
    assert s["steps_per_sec"] > 0 and s["steady_steps_per_sec"] > s["steps_per_sec"]
    assert len(s["epoch_times_s"]) == 2 and s["first_epoch_s"] == s["epoch_times_s"][0]


def test_lr_schedule_values_and_serialization():
    schedule = InverseTimeDecayFloor(initial_learning_rate=1e-3, decay_rate=1e-3, floor=1e-4)
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(1000)) == pytest.approx(5e-4)
    assert float(schedule(int(1e6))) == pytest.approx(1e-4)
    assert float(schedule(5000)) == pytest.approx(1e-3 / 6)
    config = json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
    clone = keras.optimizers.schedules.deserialize(config)
    assert isinstance(clone, InverseTimeDecayFloor)
    assert clone.get_config() == schedule.get_config()
    for bad in (0.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite initial_learning_rate > 0"):
            InverseTimeDecayFloor(initial_learning_rate=bad)


def test_run_metadata_names_the_cpu_model():
    """Benchmarks' ratios depend on the CPU: the metadata names it (Linux: /proc/cpuinfo)."""
    model = run_metadata()["cpu_model"]
    assert isinstance(model, str)
    if os.path.exists("/proc/cpuinfo"):
        names = [
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.lower().startswith("model name")
        ]
        if names:
            assert model == names[0] and model


def test_write_json_atomic_round_trip(tmp_path, monkeypatch):
    path = tmp_path / "out" / "results.json"
    obj = {"elbo": np.float32(-91.5), "curve": np.arange(3), "nan": float("nan"),
           "meta": run_metadata()}  # fmt: skip
    write_json_atomic(path, obj)
    loaded = json.loads(path.read_text())
    assert loaded["elbo"] == -91.5 and loaded["curve"] == [0, 1, 2] and loaded["nan"] is None
    versions = loaded["meta"]["versions"]
    assert versions["tensorflow"] == tf.__version__ and versions["keras"] == keras.__version__
    assert os.uname().nodename not in json.dumps(loaded["meta"])

    def crash(src, dst):
        raise OSError("crash")

    monkeypatch.setattr(training.os, "replace", crash)
    with pytest.raises(OSError):
        write_json_atomic(path, {"other": 1})
    monkeypatch.undo()
    assert json.loads(path.read_text())["elbo"] == -91.5
    assert os.listdir(path.parent) == ["results.json"]


# --- command-line helpers -------------------------------------------------------------------------
def test_argument_parser_error_and_fail_are_one_line(capsys):
    parser = ArgumentParser(prog="train.py")
    parser.add_argument("--epochs", type=int, required=True)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--epochs", "many"])
    assert exc.value.code == 2
    expected = "train.py: error: argument --epochs: invalid int value: 'many'\n"
    assert capsys.readouterr().err == expected
    with pytest.raises(SystemExit) as exc:
        fail("cannot read data/mnist.npz:\n  no such file", prog="train.py")
    assert exc.value.code == 2
    assert capsys.readouterr().err == "train.py: error: cannot read data/mnist.npz: no such file\n"


def test_cli_module_imports_no_tensorflow(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from igr_tf.cli import ArgumentParser, fail
        import igr_tf.paper, igr_tf.names
        assert "tensorflow" not in sys.modules
        parser = ArgumentParser()
        parser.add_argument("--epochs", type=int, default=1)
        args = parser.parse_args(sys.argv[2:])
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script), REPO, "--epochs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "train.py: error: argument --epochs: expected one argument\n"


def test_tensorflow_startup_lines_are_dropped_and_everything_else_is_kept(capfd):
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796111852.197082   11780 port.cc:153] oneDNN custom operations are on. "
        "You may see slightly different numerical results.",
        "I0000 00:00:1796111852.197638   11780 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.",
        "E0000 00:00:1796111856.079846   11780 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    ]
    kept = "E0000 00:00:1796111856.079846   11780 some_op.cc:12] a real error\n"
    with _stderr_without(TF_STARTUP_NOISE):
        for line in noise:
            os.write(2, (line + "\n").encode())
        os.write(2, kept.encode())
    assert capfd.readouterr().err == kept


# --- strategies, loss scaling and the XLA boundary ------------------------------------------------
def test_make_strategy_names_and_replica_loss_needs_per_example_losses():
    assert make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="allowed: default, mirrored, multiworker"):
        make_strategy("tpu")
    model = make_model()
    assert float(replica_loss(model, tf.constant([1.0, 2.0, 6.0]))) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="per-example losses"):
        replica_loss(model, tf.constant(3.0))


MIRRORED_STEP = """
import json, sys
sys.path.insert(0, sys.argv[1])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from igr_tf import datasets, training
from models.sop import StructuredOutputPredictor
from models.vae import DiscreteVAE

def build(kind, strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = (DiscreteVAE("igr_i", 4, 5, 1.0, arch="linear", seed=1) if kind == "vae"
                 else StructuredOutputPredictor("igr_sb", num_units=16, seed=1))
        training.compile_model(model, keras.optimizers.SGD(0.5), jit_compile=True)
        training.build_for_restore(model)
    return model

x = next(iter(datasets.load("mnist_sample").train.batch(8))).numpy()
out = {}
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one per process
for kind in ("vae", "sop"):
    single = build(kind, tf.distribute.get_strategy())
    start = [v.numpy() for v in single.trainable_variables]
    single.fit(x, epochs=1, batch_size=8, verbose=0, shuffle=False)
    mirrored = build(kind, strategy)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(start, mirrored.trainable_variables))
    # Each replica gets one copy of x (and the same seed): the mean over replicas of their
    # gradients is the single model's gradient, if the loss is scaled by the replicas.
    mirrored.fit(np.concatenate([x, x]), epochs=1, batch_size=16, verbose=0, shuffle=False)
    out[kind] = {
        "replicas": mirrored.distribute_strategy.num_replicas_in_sync,
        "whole_step_xla": [single.jit_compile, mirrored.jit_compile],
        "replica_xla": [single.replica_jit_compile, mirrored.replica_jit_compile],
        "single": [(v.numpy() - a).ravel().tolist()
                   for v, a in zip(single.trainable_variables, start)],
        "mirrored": [(v.numpy() - a).ravel().tolist()
                     for v, a in zip(mirrored.trainable_variables, start)],
    }
print(json.dumps(out))
"""


def test_one_step_under_two_mirrored_replicas_equals_one_step_without_a_strategy():
    """For the VAE and the SOP model, with SGD (Adam would hide an N-times gradient) and XLA on:
    the per-replica XLA step, the loss scaled by the replicas, gives the single-device update."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_STEP, REPO],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for kind in ("vae", "sop"):
        r = result[kind]
        assert r["replicas"] == 2
        assert r["whole_step_xla"] == [True, False] and r["replica_xla"] == [False, True]
        single = np.concatenate([np.array(d) for d in r["single"]])
        mirrored = np.concatenate([np.array(d) for d in r["mirrored"]])
        assert np.abs(single).max() > 1e-3  # the step moved the weights
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-6, err_msg=kind)


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
