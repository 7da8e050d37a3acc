"""Training plumbing around ``keras.Model.fit``: only what Keras and TensorFlow do not provide.

Keras and TF provide the machinery, and it is used as is: ``tf.train.Checkpoint`` and
``tf.train.CheckpointManager`` (checkpoint files, written so that an interrupted write never
replaces the previous checkpoint), ``keras.callbacks.TensorBoard`` (``train/`` and
``validation/`` runs, ``epoch_*`` tags), ``keras.callbacks.TerminateOnNaN`` and ``tf.distribute``.
What is here, and why each piece exists:

* :class:`RunCheckpoint` and the :class:`EpochCheckpoint` callback: everything that determines
  the rest of a run, saved at the end of every good epoch so that a killed run, rerun, ends bit
  for bit where the uninterrupted run ends. ``keras.callbacks.BackupAndRestore`` saves weights
  and optimizer but neither the ``SeedGenerator`` states (they are not weights) nor the history
  so far, and ``tf.train.Checkpoint(model=model)`` does not reach a Keras 3 model's variables
  through its attributes (it finds the weights only through the optimizer and never a seed
  generator's state), so the variables are listed explicitly. The data order is not state:
  :func:`igr_tf.datasets.epoch_pipeline` makes each epoch's order a function of (seed, epoch).
* :class:`DivergenceGuard`: ``TerminateOnNaN`` stops at a non-finite batch loss, but says neither
  where nor what, and never looks at the weights; the guard names the epoch, the batch, the value
  and the non-finite variables, and the last good checkpoint. The checkpoint callback is a guard,
  so a diverged state is never saved whatever the order of the callbacks.
* :class:`SteadyTimer`: Keras reports no steps per second that leave out tracing and compilation.
* :func:`write_json_atomic`, :func:`run_metadata`: results files (strict JSON, atomic writes).
* :class:`ImageSummary`, :func:`write_test_summary`: images and the final test metrics, written
  into the log directory that ``keras.callbacks.TensorBoard`` writes, in its layout.
* :func:`compile_model`, :func:`replica_step`, :func:`replica_loss`, :func:`minimize`,
  :func:`step_logs`: one way for
  every model's custom ``train_step`` to scale its loss under ``tf.distribute`` and to keep XLA
  where it works with several replicas (Keras compiles the whole multi-replica step into one XLA
  cluster, which TF cannot place; see :func:`compile_model`).
* :func:`state_preserved`, :func:`make_strategy`, :class:`InverseTimeDecayFloor` (the SOP
  schedule; Keras' ``InverseTimeDecay`` has no floor).

How a custom ``train_step`` should report metrics in Keras 3 (checked with Keras 3.15): keep one
``keras.metrics.Mean`` per reported quantity, the objective's named ``"loss"``, list them all in
an overridden ``metrics`` property, and return ``{m.name: m.result() for m in self.metrics}``.
Why: at the end of an epoch Keras replaces the returned dict by
``{m.name: m.result() for m in model.metrics}`` whenever the two have the same keys; without the
override ``model.metrics`` starts with the ``"loss"`` tracker that ``compile()`` creates and only
the built-in ``train_step`` updates, so the epoch logs and the history say ``loss: 0.0``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "CheckpointError",
    "DivergenceGuard",
    "EpochCheckpoint",
    "ImageSummary",
    "InverseTimeDecayFloor",
    "RunCheckpoint",
    "STRATEGIES",
    "SteadyTimer",
    "build_for_restore",
    "compile_model",
    "make_strategy",
    "minimize",
    "replica_loss",
    "replica_step",
    "run_metadata",
    "state_preserved",
    "step_logs",
    "write_json_atomic",
    "write_test_summary",
]


# --------------------------------------------------------------------------------------
# Results files
# --------------------------------------------------------------------------------------


def _write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a fsynced temporary file renamed over it.

    Readers see the old file or the complete new one, never a part. On error the temporary file
    is removed and the error re-raised.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _finite_json(obj: Any) -> Any:
    """Numpy and eager-tensor values become Python ones and non-finite floats ``None``."""
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_json(v) for v in obj]
    if isinstance(obj, tf.Tensor):
        obj = obj.numpy()
    if isinstance(obj, np.ndarray):
        return _finite_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Writes ``obj`` as strict JSON to ``path`` atomically (temporary file + ``os.replace``).

    Numpy arrays/scalars and eager tensors are converted to Python values; NaN and infinities
    become ``null``, so that any JSON reader can read the file. Parent directories are created.
    """
    text = json.dumps(_finite_json(obj), indent=indent, allow_nan=False)
    _write_bytes_atomic(os.fspath(path), (text + "\n").encode("utf-8"))


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; else `platform.processor()`, maybe "").

    Timings and their ratios depend on it, not only on the platform: XLA's and TensorFlow's CPU
    kernels vectorise differently on each microarchitecture.
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_metadata() -> dict[str, Any]:
    """The software and machine of this run, without the host name: versions (python,
    tensorflow, tensorflow_probability, keras, numpy, igr_tf), platform, CPU model and count,
    and the physical devices TensorFlow sees."""
    import importlib.metadata

    import igr_tf

    try:  # without importing TFP, which is slow
        tfp_version: str | None = importlib.metadata.version("tensorflow-probability")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        tfp_version = None
    devices: list[dict[str, Any]] = []
    for device in tf.config.list_physical_devices():
        entry: dict[str, Any] = {"name": device.name, "device_type": device.device_type}
        if device.device_type == "GPU":
            try:
                details = tf.config.experimental.get_device_details(device)
            except Exception:  # pragma: no cover - depends on the driver
                details = {}
            keys = ("device_name", "compute_capability")
            entry.update({k: details[k] for k in keys if k in details})
        devices.append(entry)
    return {
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "tensorflow_probability": tfp_version,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "igr_tf": igr_tf.__version__,
        },
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "tf_built_with_cuda": tf.test.is_built_with_cuda(),
    }


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------

#: File name prefix of the checkpoints (``ckpt-<epoch>.index``, ``ckpt-<epoch>.data-*``).
CHECKPOINT_NAME = "ckpt"
_RUN_KEY = "run/.ATTRIBUTES/VARIABLE_VALUE"
_FORMAT = "igr_tf.run_checkpoint"
_FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the model; the message names the file."""


def _is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes files (always, outside multi-worker training)."""
    strategy = strategy or tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def _describe(variables: Sequence[Any]) -> list[list[Any]]:
    return [[str(getattr(v, "path", v.name)), list(v.shape)] for v in variables]


def build_for_restore(model: keras.Model, x: Any = None) -> keras.Model:
    """Creates every variable a checkpoint restores: the model's and its optimizer's.

    Restoring assigns into existing variables, so the model must be built (it is called once on
    the batch ``x`` if it is not) and compiled, and its optimizer built on the trainable
    variables, as ``fit`` would do. Returns the model.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model before build_for_restore (it has no optimizer)")
    if not model.built:
        if x is None:
            raise ValueError("the model is not built; pass a batch of inputs as `x`")
        model(x, training=False)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return model


class RunCheckpoint:
    """Everything that determines the rest of a run, as a ``tf.train.Checkpoint``.

    The checkpoint holds ``model`` (``model.variables``: weights, non-trainable state such as the
    temperature, and the state of every ``SeedGenerator``), ``optimizer`` (its variables:
    ``iterations``, hence the position of a learning-rate schedule, and the slots), ``extra``
    (``extra_variables``, e.g. a ``tf.random.Generator``'s state) and ``run``, a JSON string with
    the number of completed epochs, the history so far, a description of the variables and
    whatever the caller adds to :attr:`info` (train.py: the flags). A
    ``tf.train.CheckpointManager`` writes ``directory/ckpt-<epoch>`` and keeps the last
    ``max_to_keep``; it updates its ``checkpoint`` index file only after the new checkpoint is
    complete, so a write killed half-way leaves the previous checkpoint the latest one.

    Under a multi-worker strategy every worker saves (saving may need collective ops) but only the
    chief into ``directory``; the others write into a temporary directory that is deleted again.
    Every worker restores from ``directory``, which must therefore be shared.

    Create it outside any ``strategy.scope()``, after :func:`build_for_restore`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        model: keras.Model,
        extra_variables: Sequence[Any] = (),
        max_to_keep: int = 2,
    ) -> None:
        if model.optimizer is None or not model.optimizer.built:
            raise ValueError("call build_for_restore(model) before creating a RunCheckpoint")
        self.directory = os.fspath(directory)
        self.model = model
        self._groups = {
            "model": list(model.variables),
            "optimizer": list(model.optimizer.variables),
            "extra": list(extra_variables),
        }
        self._run = tf.Variable("", dtype=tf.string, trainable=False, name="run_info")
        self._checkpoint = tf.train.Checkpoint(run=self._run, **self._groups)
        self.chief = _is_chief(model.distribute_strategy)
        write_dir = self.directory if self.chief else tempfile.mkdtemp(prefix="igr_tf_worker_")
        self._write_dir = write_dir
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, write_dir, max_to_keep=max_to_keep, checkpoint_name=CHECKPOINT_NAME
        )
        #: The run information saved with the next checkpoint (epoch, history, caller's keys).
        self.info: dict[str, Any] = {"epoch": 0, "history": {}}

    # --- reading ------------------------------------------------------------------------
    @staticmethod
    def latest(directory: str | os.PathLike[str]) -> str | None:
        """Path prefix of the latest checkpoint in ``directory``, or ``None`` if it has none.

        Raises :class:`CheckpointError` for an unreadable ``checkpoint`` index file or a missing
        checkpoint it points to.
        """
        directory = os.fspath(directory)
        if not os.path.exists(directory):
            return None
        if not os.path.isdir(directory):
            raise CheckpointError(f"{directory}: is a file, not a checkpoint directory")
        state_file = os.path.join(directory, "checkpoint")
        if not os.path.exists(state_file):
            return None
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # TF logs a garbage index file as two warnings, then ignores it
        try:
            state = tf.train.get_checkpoint_state(directory)
        except Exception as e:  # text-format parse errors, unreadable files
            raise CheckpointError(
                f"{state_file}: not a TensorFlow checkpoint index ({_first_line(e)})"
            ) from e
        finally:
            logger.setLevel(level)
        if state is None or not state.model_checkpoint_path:
            raise CheckpointError(
                f"{state_file}: not a TensorFlow checkpoint index (it names no checkpoint)"
            )
        # TF has joined a relative name in the index onto `directory` already (joining it again
        # doubled the path for a relative `directory`, e.g. train.py's default --out runs/...).
        path = state.model_checkpoint_path
        if not os.path.isfile(path + ".index"):
            raise CheckpointError(f"{path}.index: missing (named by {state_file})")
        return path

    @classmethod
    def read_info(cls, directory: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The run information of the latest checkpoint in ``directory`` (``None`` if none),
        read without a model. Raises :class:`CheckpointError` naming the file when it is
        truncated, empty, garbage or not written by this class."""
        path = cls.latest(directory)
        if path is None:
            return None
        info, _ = cls._read(path)
        return info

    @staticmethod
    def _read(path: str) -> tuple[dict[str, Any], Any]:
        try:
            reader = tf.train.load_checkpoint(path)
            shapes = reader.get_variable_to_shape_map()
            if _RUN_KEY not in shapes:
                raise CheckpointError(f"{path}: not a run checkpoint of igr_tf (no run record)")
            info = json.loads(reader.get_tensor(_RUN_KEY).decode("utf-8"))
            # Read every tensor once: a truncated or corrupted data file fails here (TF checks
            # each tensor's checksum), before anything is assigned to the model.
            for key in shapes:
                reader.get_tensor(key)
        except CheckpointError:
            raise
        except Exception as e:  # DataLossError, OpError, UnicodeError, JSONDecodeError, ...
            raise CheckpointError(
                f"{path}: unreadable checkpoint ({type(e).__name__}: {_first_line(e)})"
            ) from e
        if not isinstance(info, dict) or info.get("format") != _FORMAT:
            raise CheckpointError(f"{path}: not a run checkpoint of igr_tf (format {_FORMAT})")
        if info.get("format_version") != _FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint format version {info.get('format_version')}, this igr_tf "
                f"reads version {_FORMAT_VERSION}"
            )
        return info, shapes

    def restore(self) -> dict[str, Any] | None:
        """Restores the latest checkpoint into the model, optimizer and extra variables.

        Returns its run information (also kept in :attr:`info`), or ``None``, changing nothing,
        when the directory holds no checkpoint. Everything is checked before anything is
        assigned: the file is readable and every group has the same number of variables with the
        same shapes; otherwise :class:`CheckpointError` names the file and the first mismatch.
        """
        path = self.latest(self.directory)
        if path is None:
            return None
        info, shapes = self._read(path)
        for group, variables in self._groups.items():
            saved = info.get("variables", {}).get(group, [])
            if len(saved) != len(variables):
                raise CheckpointError(
                    f"{path}: holds {len(saved)} {group} variables, this model has "
                    f"{len(variables)}; it was written by a different model"
                )
            for i, (variable, (name, _)) in enumerate(zip(variables, saved, strict=True)):
                shape = shapes.get(f"{group}/{i}/.ATTRIBUTES/VARIABLE_VALUE")
                if shape is None or list(shape) != list(variable.shape):
                    raise CheckpointError(
                        f"{path}: {group} variable {i} ({name}) has shape {shape}, the model's "
                        f"({getattr(variable, 'path', variable.name)}) {list(variable.shape)}"
                    )
        self._checkpoint.restore(path).assert_consumed()
        self.info = info
        return info

    # --- writing ------------------------------------------------------------------------
    def remove_stale_files(self) -> None:
        """Deletes what a killed write left behind (TF's ``*_temp`` directories)."""
        if not self.chief:
            return
        for stale in glob.glob(os.path.join(self.directory, f"{CHECKPOINT_NAME}-*_temp*")):
            shutil.rmtree(stale, ignore_errors=True)

    def save(self, epoch: int) -> str:
        """Writes a checkpoint of the current state as epoch ``epoch``; returns its path."""
        self.info.update(
            format=_FORMAT,
            format_version=_FORMAT_VERSION,
            epoch=int(epoch),
            time=time.time(),
            variables={group: _describe(v) for group, v in self._groups.items()},
        )
        self._run.assign(json.dumps(_finite_json(self.info), allow_nan=False))
        os.makedirs(self._write_dir, exist_ok=True)
        path = self._manager.save(checkpoint_number=int(epoch))
        if not self.chief:
            shutil.rmtree(self._write_dir, ignore_errors=True)
            path = os.path.join(self.directory, os.path.basename(path))
        return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --------------------------------------------------------------------------------------
# Divergence guard and checkpoint callback
# --------------------------------------------------------------------------------------


def _as_float(value: Any) -> float | None:
    try:
        return float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        return None


def _non_finite_variables(variables: Iterable[Any]) -> list[str]:
    bad = []
    for v in variables:
        value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            bad.append(str(getattr(v, "path", getattr(v, "name", "?"))))
    return bad


class DivergenceGuard(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that says where, what, and which variables, and checks the weights.

    Stops training (``model.stop_training = True``) when a monitored log value of a train batch or
    of an epoch is NaN or infinite, or when, at the end of an epoch, a model or optimizer
    variable is. Keeps a one-line :attr:`message`, e.g. ``training diverged at epoch 3, batch 5
    (loss=nan); last good checkpoint: runs/x/checkpoint/ckpt-2 (epoch 2)``, and adds it to the
    logs of ``on_train_end`` under ``"divergence"``. Epochs and batches count from 1, as in the
    progress bar.

    Args:
        monitor: log keys to check; missing keys are ignored.
        checkpoint: the run's :class:`RunCheckpoint`, to name the last good checkpoint.
        verbose: also print the message to stderr.
    """

    def __init__(
        self,
        monitor: str | Sequence[str] = ("loss",),
        checkpoint: RunCheckpoint | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__()
        self.monitor = (monitor,) if isinstance(monitor, str) else tuple(monitor)
        self.checkpoint = checkpoint
        self.verbose = verbose
        self.message: str | None = None
        self._epoch = 0

    @property
    def diverged(self) -> bool:
        """Whether the current (or last) ``fit`` diverged."""
        return self.message is not None

    def _non_finite(self, logs: dict[str, Any] | None) -> tuple[str, float] | None:
        for key in self.monitor:
            value = _as_float(logs[key]) if logs and key in logs else None
            if value is not None and not math.isfinite(value):
                return key, value
        return None

    def _last_good(self) -> str:
        if self.checkpoint is None:
            return ""
        try:
            path = RunCheckpoint.latest(self.checkpoint.directory)
        except CheckpointError as e:  # the message itself must not fail
            return f"; last good checkpoint: unreadable ({e})"
        if path is None:
            return f"; no checkpoint in {self.checkpoint.directory} yet"
        return f"; last good checkpoint: {path} (epoch {path.rsplit('-', 1)[-1]})"

    def _flag(self, where: str, detail: str) -> None:
        self.model.stop_training = True
        if self.diverged:
            return
        self.message = f"training diverged at {where} ({detail}){self._last_good()}"
        if self.verbose:
            print(self.message, flush=True, file=sys.stderr)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.message = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        bad = self._non_finite(logs)
        if bad is not None and not self.diverged:
            self._flag(f"epoch {self._epoch + 1}, batch {batch + 1}", f"{bad[0]}={bad[1]}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.diverged:
            return
        bad = self._non_finite(logs)
        if bad is not None:
            self._flag(f"epoch {epoch + 1}", f"{bad[0]}={bad[1]}")
            return
        names = _non_finite_variables([*self.model.variables, *self.model.optimizer.variables])
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            self._flag(f"epoch {epoch + 1}", f"non-finite variables: {shown}")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.message is not None and logs is not None:
            logs["divergence"] = self.message


class EpochCheckpoint(DivergenceGuard):
    """Saves the run's :class:`RunCheckpoint` at the end of every good epoch.

    Appends the epoch's logs (train and validation metrics) to ``checkpoint.info["history"]``
    and saves, unless this guard found the epoch diverged (see :class:`DivergenceGuard`), so a
    diverged state is never saved and the last good checkpoint stays the latest. Put it after the
    callbacks that write summaries: a kill between them then repeats a summary rather than losing
    one. Use with ``model.fit(..., initial_epoch=checkpoint.info["epoch"])`` after
    ``checkpoint.restore()``.
    """

    def __init__(self, checkpoint: RunCheckpoint, monitor: str | Sequence[str] = ("loss",)):
        super().__init__(monitor=monitor, checkpoint=checkpoint)
        self.last_saved: str | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self.checkpoint.remove_stale_files()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if self.diverged:
            return
        history = self.checkpoint.info.setdefault("history", {})
        for key, value in (logs or {}).items():
            number = _as_float(value)
            if number is not None:
                history.setdefault(key, []).append(number)
        self.last_saved = self.checkpoint.save(epoch + 1)


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


class SteadyTimer(keras.callbacks.Callback):
    """Measures training wall time and train steps per second, with and without compilation.

    ``steps_per_sec`` covers the whole ``fit`` (from ``on_train_begin``), including tracing and
    compilation of the train function; ``steady_steps_per_sec`` starts after the first train
    batch of the ``fit``, where the compilation happens. Both are wall-clock rates and include
    callbacks and validation run between train steps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        """Clears all measurements."""
        self.train_start: float | None = None
        self.train_end: float | None = None
        self.first_batch_end: float | None = None
        self.first_batch_steps = 0
        self.last_batch_end: float | None = None
        self.total_steps = 0
        self.epoch_times_s: list[float] = []
        self.epoch_steps: list[int] = []
        self._epoch_start = 0.0
        self._epoch_steps = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.reset()
        self.train_start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_steps = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        steps = batch + 1 - self._epoch_steps  # > 1 with steps_per_execution
        self._epoch_steps = batch + 1
        self.total_steps += steps
        if self.first_batch_end is None:
            self.first_batch_end = now
            self.first_batch_steps = steps
        self.last_batch_end = now

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_times_s.append(time.perf_counter() - self._epoch_start)
        self.epoch_steps.append(self._epoch_steps)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.train_end = time.perf_counter()

    def summary(self) -> dict[str, Any]:
        """The measurements as a JSON-ready dict (rates are ``None`` where undefined)."""
        end = self.train_end if self.train_end is not None else time.perf_counter()
        wall = None if self.train_start is None else end - self.train_start
        steady_steps = self.total_steps - self.first_batch_steps
        steady_time = (
            None
            if self.first_batch_end is None or self.last_batch_end is None
            else self.last_batch_end - self.first_batch_end
        )
        return {
            "wall_time_s": wall,
            "train_steps": self.total_steps,
            "steps_per_sec": (self.total_steps / wall) if wall else None,
            "first_step_s": (
                None
                if self.first_batch_end is None or self.train_start is None
                else self.first_batch_end - self.train_start
            ),
            "steady_steps": steady_steps,
            "steady_steps_per_sec": (
                steady_steps / steady_time if steady_time and steady_steps > 0 else None
            ),
            "first_epoch_s": self.epoch_times_s[0] if self.epoch_times_s else None,
            "epoch_times_s": list(self.epoch_times_s),
            "epoch_steps": list(self.epoch_steps),
        }


# --------------------------------------------------------------------------------------
# TensorBoard: images and test metrics next to keras.callbacks.TensorBoard's runs
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def state_preserved(model: keras.Model) -> Iterator[None]:
    """Puts back every non-trainable variable of ``model`` (seed-generator states, temperature)
    on exit: what runs inside (e.g. drawing images) cannot change how training continues."""
    variables = list(model.non_trainable_variables)
    saved = [np.array(v.numpy()) for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)


class ImageSummary(keras.callbacks.Callback):
    """Writes images to TensorBoard after every ``every``-th epoch.

    ``make_images(epoch)`` returns ``[N, H, W, C]`` floats in [0, 1] (C in 1, 3, 4), e.g. test
    images, their reconstructions and samples from the prior; use stateless seeds derived from
    ``epoch`` for any sampling. It runs inside :func:`state_preserved`, so a run that writes
    images continues exactly as one that does not. They go to ``log_dir/run`` (default
    ``validation``, a run of ``keras.callbacks.TensorBoard``), step = the 0-based epoch as for
    its ``epoch_*`` scalars. Only the chief writes under multi-worker strategies.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        make_images: Callable[[int], Any],
        name: str = "samples",
        run: str = "validation",
        every: int = 1,
        max_outputs: int = 24,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.log_dir = os.path.join(os.fspath(log_dir), run)
        self.make_images = make_images
        self.name = name
        self.every = every
        self.max_outputs = max_outputs
        self._writer: Any = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every or not _is_chief(self.model.distribute_strategy):
            return
        with state_preserved(self.model):
            images = tf.clip_by_value(tf.cast(self.make_images(epoch), tf.float32), 0.0, 1.0)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(self.name, images, step=epoch, max_outputs=self.max_outputs)
        self._writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_test_summary(
    log_dir: str | os.PathLike[str],
    metrics: dict[str, Any],
    step: int,
    hparams: dict[str, Any] | None = None,
    run: str = "test",
) -> None:
    """Writes the final test metrics (numbers only) as scalars into ``log_dir/run`` at ``step``
    (the last epoch's index, so they sit at the end of the ``train``/``validation`` curves), and
    ``hparams`` (flag values) for TensorBoard's HParams dashboard, which then lists each run of a
    grid with its flags and test metrics."""
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(os.path.join(os.fspath(log_dir), run))
    with writer.as_default():
        if hparams:
            hp.hparams(
                {
                    k: (v if isinstance(v, bool | int | float | str) else str(v))
                    for k, v in hparams.items()
                    if v is not None
                }
            )
        for key, value in metrics.items():
            number = _as_float(value) if not isinstance(value, str) else None
            if number is not None:
                tf.summary.scalar(key, number, step=step)
    writer.close()


# --------------------------------------------------------------------------------------
# Custom train steps under tf.distribute: loss scaling and the XLA boundary
# --------------------------------------------------------------------------------------


def compile_model(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, *, jit_compile: bool, **kwargs
) -> None:
    """``model.compile(optimizer, ...)`` with XLA where it works, for models whose steps use
    :func:`minimize` / :func:`replica_step`.

    With one replica Keras compiles the whole train step (forward, backward and optimizer
    update) with XLA. With several, Keras would put ``strategy.run`` — every replica's step and
    the gradient all-reduce — into one XLA cluster, which TF places on one device; the other
    replicas' variables live on other devices, so it fails ("Trying to access resource ...
    replica_1 ... located in device CPU:1 from device CPU:0"; TF's XLA known issues). There the
    boundary moves inside the replica: each replica's forward and backward pass is one XLA
    cluster on its own device (:func:`replica_step`), and the all-reduce and the optimizer update
    run outside XLA, as ``tf.distribute`` needs. ``model.replica_jit_compile`` records which.
    """
    replicas = model.distribute_strategy.num_replicas_in_sync
    model.compile(optimizer=optimizer, jit_compile=bool(jit_compile and replicas == 1), **kwargs)
    model.replica_jit_compile = bool(jit_compile and replicas > 1)


def replica_step(model: keras.Model, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled with XLA per replica when :func:`compile_model` put the boundary there,
    else ``fn`` itself (Keras then compiles the whole step, or nothing)."""
    if getattr(model, "replica_jit_compile", False):
        return tf.function(fn, jit_compile=True)
    return fn


def replica_loss(model: keras.Model, per_example_loss: tf.Tensor) -> tf.Tensor:
    """The loss a custom ``train_step`` differentiates, scaled the same way for every model.

    ``Σ_replica-batch loss / (global batch size)``, via ``tf.nn.compute_average_loss``: under a
    strategy with N replicas the gradients are summed over replicas, so each replica must divide
    by N times its batch (the plain batch mean would train with N× gradients); outside a strategy
    it is the batch mean. Then ``optimizer.scale_loss`` (the loss scale of mixed precision, if
    any; the optimizer unscales the gradients).
    """
    per_example_loss = tf.convert_to_tensor(per_example_loss)
    if per_example_loss.shape.rank == 0:
        raise ValueError("replica_loss needs per-example losses [B], not a scalar")
    loss = tf.nn.compute_average_loss(tf.reshape(per_example_loss, [-1]))
    return model.optimizer.scale_loss(loss)


def minimize(
    model: keras.Model, objective: Callable[[Any], dict[str, tf.Tensor]], data: Any
) -> dict[str, tf.Tensor]:
    """One optimizer step of a custom ``train_step``; returns ``objective(data)``.

    ``objective`` returns a dict of tensors whose ``"loss"`` holds per-example losses ``[B]``;
    the step differentiates :func:`replica_loss` of it and applies the gradients to
    ``model.trainable_variables``. The forward and backward pass run in :func:`replica_step`.
    """

    def loss_and_gradients(data):
        with tf.GradientTape() as tape:
            terms = objective(data)
            loss = replica_loss(model, terms["loss"])
        return terms, tape.gradient(loss, model.trainable_variables)

    terms, grads = replica_step(model, loss_and_gradients)(data)
    model.optimizer.apply(grads, model.trainable_variables)
    return terms


def step_logs(logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """What a custom ``train_step``/``test_step`` returns: ``logs``, made reducible by Keras.

    Under a ``MultiWorkerMirroredStrategy`` Keras 3.15 reduces the per-replica step results with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails for scalars ("Invalid reduction
    dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388); there each value gets
    a leading axis of length 1 (the mean over replicas is then a scalar again). Elsewhere the
    logs are returned unchanged.
    """
    if not isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {k: tf.reshape(v, [1]) for k, v in logs.items()}


# --------------------------------------------------------------------------------------
# Distribution strategies
# --------------------------------------------------------------------------------------

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str, devices: Iterable[str] | None = None) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name.

    ``"default"``: the default (no-op) strategy; ``"mirrored"``: ``MirroredStrategy`` over
    ``devices`` or all local GPUs (or the CPU; configure logical devices before TF initializes to
    mirror over several CPUs); ``"multiworker"``: ``MultiWorkerMirroredStrategy`` configured from
    ``TF_CONFIG`` (one worker without it; create it at program start). Unknown names raise
    ``ValueError`` listing the allowed ones.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=None if devices is None else list(devices))
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribution strategy {name!r}; allowed: {', '.join(STRATEGIES)}")


# --------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="igr_tf")
class InverseTimeDecayFloor(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(t) = max(floor, initial_learning_rate / (1 + decay_rate * t))``, t the step.

    The defaults give the SOP schedule ``max(1e-4, 1e-3 / (1 + 1e-3 t))``.
    """

    def __init__(
        self,
        initial_learning_rate: float = 1e-3,
        decay_rate: float = 1e-3,
        floor: float = 1e-4,
        name: str | None = None,
    ) -> None:
        super().__init__()
        values = (initial_learning_rate, decay_rate, floor)
        if not all(math.isfinite(v) for v in values) or (
            initial_learning_rate <= 0 or decay_rate < 0 or floor < 0
        ):
            raise ValueError(
                "need finite initial_learning_rate > 0, decay_rate >= 0, floor >= 0; got "
                f"{initial_learning_rate}, {decay_rate}, {floor}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_rate = float(decay_rate)
        self.floor = float(floor)
        self.name = name

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        lr = self.initial_learning_rate / (1.0 + self.decay_rate * step)
        return keras.ops.maximum(keras.ops.cast(self.floor, "float32"), lr)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_rate": self.decay_rate,
            "floor": self.floor,
            "name": self.name,
        }
