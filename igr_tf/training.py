"""Generic training infrastructure for Keras 3 models trained with ``model.fit``.

Nothing here knows about IGR, VAEs or SOP; it is the plumbing around ``fit``:

* :class:`EpochCheckpoint` / :func:`restore_checkpoint` / :func:`build_for_restore`:
  atomic, exactly-resumable end-of-epoch checkpoints (one ``.npz`` file, replaced with
  ``os.replace``), used together with ``model.fit(..., initial_epoch=...)``.
* :class:`DivergenceGuard`: stops training on a non-finite loss and says where it happened.
  :class:`EpochCheckpoint` is a ``DivergenceGuard`` itself, so it can never save a diverged
  state, whatever the order of the callbacks.
* :func:`write_json_atomic`, :func:`run_metadata`: results files.
* :class:`SteadyTimer`: wall time and train steps per second, with and without compilation.
* :class:`ImageSummary`, :class:`ScalarSummary`: TensorBoard event files written with
  ``tf.summary.write``, which works without the ``tensorboard`` package (TF 2.21 no longer
  depends on it, and then ``tf.summary.image``/``scalar`` and ``keras.callbacks.TensorBoard``
  raise ``TBNotInstalledError``).
* :func:`make_strategy`: ``tf.distribute`` strategy by name.
* :class:`InverseTimeDecayFloor`: the SOP learning-rate schedule.
* :class:`ArgumentParser`, :func:`fail`: one-line command-line errors with exit status 2
  (defined in :mod:`igr_tf.cli`, which does not import TensorFlow).

How a custom ``train_step`` should report metrics in Keras 3 (checked with Keras 3.15):
keep one ``keras.metrics.Mean`` per reported quantity, the objective's named ``"loss"``,
list them all in an overridden ``metrics`` property, and return
``{m.name: m.result() for m in self.metrics}``. Why: per batch, callbacks and the progress
bar get the dict ``train_step`` returns; at the end of the epoch Keras replaces it with
``{m.name: m.result() for m in model.metrics}`` whenever the two have the same keys. Without
the override, ``model.metrics`` starts with the ``"loss"`` tracker that ``compile()`` creates
and only the built-in ``train_step`` updates, so a model returning ``{"loss": value, ...}``
with no tracker of its own named ``"loss"`` shows the right loss in the progress bar but
``loss: 0.0`` in the epoch logs and the history.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf.cli import ArgumentParser, fail

__all__ = [
    "CHECKPOINT_FILENAME",
    "ArgumentParser",
    "DivergenceGuard",
    "EpochCheckpoint",
    "ImageSummary",
    "InverseTimeDecayFloor",
    "ScalarSummary",
    "SteadyTimer",
    "build_for_restore",
    "checkpoint_info",
    "checkpoint_path",
    "divergence_message",
    "fail",
    "make_strategy",
    "restore_checkpoint",
    "run_metadata",
    "write_image_summary",
    "write_json_atomic",
    "write_scalar_summary",
]

#: Name of the (only) checkpoint file kept in a checkpoint directory.
CHECKPOINT_FILENAME = "checkpoint.npz"
_TMP_PREFIX = ".checkpoint-"
_TMP_SUFFIX = ".npz.tmp"
_FORMAT = "igr_tf.checkpoint"
_FORMAT_VERSION = 1
_META_KEY = "__meta__"


# --------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------


def _fsync_directory(directory: str) -> None:
    """Makes a rename inside ``directory`` durable (best effort; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes_atomic(path: str, data: bytes, tmp_prefix: str, tmp_suffix: str) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same directory.

    Readers see either the old file or the complete new one, never a partial file: the
    temporary file is flushed and fsynced, then renamed over ``path`` with ``os.replace``.
    On any error the temporary file is removed and the error is re-raised.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=tmp_prefix, suffix=tmp_suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tf.Tensor):
        return obj.numpy().tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _finite_json(obj: Any) -> Any:
    """Converts numpy values to Python ones and non-finite floats to ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray | np.generic | tf.Tensor):
        return _finite_json(_json_default(obj))
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Writes ``obj`` as strict JSON to ``path`` atomically (temp file + ``os.replace``).

    Numpy arrays/scalars and eager tensors are converted to Python values; NaN and infinities
    become ``null`` so that the file stays valid JSON for any reader. Parent directories are
    created as needed.
    """
    path = os.fspath(path)
    text = json.dumps(_finite_json(obj), indent=indent, sort_keys=False, allow_nan=False)
    _write_bytes_atomic(path, (text + "\n").encode("utf-8"), ".results-", ".json.tmp")


def run_metadata() -> dict[str, Any]:
    """Describes the software and machine of this run, without the host name.

    Returns versions (python, tensorflow, tensorflow_probability, keras, numpy, igr_tf), the
    platform string, CPU architecture and count, and the physical devices TensorFlow sees
    (listing physical devices does not initialize the TF runtime).
    """
    import importlib.metadata

    import igr_tf

    try:  # without importing TFP, which is slow and checks its dependencies on import
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
            entry.update(
                {k: details[k] for k in ("device_name", "compute_capability") if k in details}
            )
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
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "tf_built_with_cuda": tf.test.is_built_with_cuda(),
    }


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def _model_state_variables(model: keras.Model) -> list[Any]:
    """All model state: weights, non-trainable variables and ``SeedGenerator`` states."""
    return list(model.variables)


def _optimizer_state_variables(model: keras.Model) -> list[Any]:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return []
    return list(optimizer.variables)


def _is_chief(model: keras.Model | None) -> bool:
    """Whether this process should write files (always true outside multi-worker training)."""
    strategy = getattr(model, "distribute_strategy", None) if model is not None else None
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def checkpoint_path(directory: str | os.PathLike[str]) -> str:
    """Path of the checkpoint file in ``directory``."""
    return os.path.join(os.fspath(directory), CHECKPOINT_FILENAME)


def checkpoint_info(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Metadata of the checkpoint in ``directory`` (``epoch``, ``path``, ...), or ``None``."""
    path = checkpoint_path(directory)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data[_META_KEY]))
    meta["path"] = path
    return meta


def build_for_restore(model: keras.Model, x: Any = None) -> keras.Model:
    """Creates every variable a checkpoint restores: the model's and its optimizer's.

    ``restore_checkpoint`` assigns into existing variables, so a subclassed model must be
    built and compiled first. This calls the model once on ``x`` (a batch of inputs, as
    ``model(x)`` expects) if it is not built yet, then builds the optimizer on the model's
    trainable variables, as ``fit`` would. Models whose ``train_step`` uses layers that
    ``call`` does not must build those themselves before restoring.

    Returns the model, for chaining.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model before build_for_restore (it has no optimizer)")
    if not model.built:
        if x is None:
            raise ValueError(
                "the model is not built; pass a batch of inputs as `x` to build_for_restore"
            )
        model(x, training=False)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return model


def _variables_state(variables: Sequence[Any]) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def _describe(variables: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"path": str(getattr(v, "path", getattr(v, "name", "?"))), "shape": list(v.shape)}
        for v in variables
    ]


def _non_finite_variables(variables: Sequence[Any], values: Sequence[np.ndarray]) -> list[str]:
    bad = []
    for v, value in zip(variables, values, strict=True):
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            bad.append(str(getattr(v, "path", getattr(v, "name", "?"))))
    return bad


def _save_checkpoint(
    model: keras.Model,
    directory: str,
    epoch: int,
    extra_variables: Sequence[Any] = (),
    model_values: Sequence[np.ndarray] | None = None,
) -> str:
    """Writes the checkpoint atomically and returns its path."""
    groups = {
        "model": _model_state_variables(model),
        "optimizer": _optimizer_state_variables(model),
        "extra": list(extra_variables),
    }
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "epoch": int(epoch),
        "time": time.time(),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "variables": {},
    }
    for group, variables in groups.items():
        if group == "model" and model_values is not None:
            values = list(model_values)
        else:
            values = _variables_state(variables)
        meta["variables"][group] = _describe(variables)
        for i, value in enumerate(values):
            arrays[f"{group}/{i:05d}"] = value
    arrays[_META_KEY] = np.asarray(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = checkpoint_path(directory)
    _write_bytes_atomic(path, buffer.getvalue(), _TMP_PREFIX, _TMP_SUFFIX)
    return path


def restore_checkpoint(
    model: keras.Model,
    directory: str | os.PathLike[str],
    extra_variables: Sequence[Any] = (),
) -> int:
    """Restores the latest checkpoint in ``directory`` into ``model``; returns the epoch.

    The returned value is the number of completed epochs, which is what
    ``model.fit(..., initial_epoch=...)`` expects; it is 0 (and nothing is changed) when the
    directory holds no checkpoint. Restores the model's variables (weights, non-trainable
    state and ``SeedGenerator`` states), the optimizer's variables (including
    ``iterations``, hence the learning-rate schedule position) and ``extra_variables``
    (e.g. the state of a ``tf.random.Generator``), in the same order as they were saved.

    The model and its optimizer must already have their variables (see
    :func:`build_for_restore`). Nothing is assigned unless every saved array matches the
    corresponding variable's shape; otherwise ``ValueError`` says which one differs.
    """
    directory = os.fspath(directory)
    path = checkpoint_path(directory)
    if not os.path.exists(path):
        return 0
    groups = {
        "model": _model_state_variables(model),
        "optimizer": _optimizer_state_variables(model),
        "extra": list(extra_variables),
    }
    if groups["optimizer"] and not model.optimizer.built:
        raise ValueError("the optimizer is not built; call build_for_restore(model, x) first")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data[_META_KEY]))
        if meta.get("format") != _FORMAT or meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: not an igr_tf checkpoint (format version 1)")
        assignments = []
        for group, variables in groups.items():
            saved = meta["variables"][group]
            if len(saved) != len(variables):
                raise ValueError(
                    f"{path}: checkpoint has {len(saved)} {group} variables but the "
                    f"{group} has {len(variables)}; was the model (and its optimizer) built "
                    "the same way? See build_for_restore."
                )
            for i, (variable, described) in enumerate(zip(variables, saved, strict=True)):
                value = data[f"{group}/{i:05d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"{path}: {group} variable {i} ({described['path']}) has shape "
                        f"{tuple(value.shape)} in the checkpoint but {tuple(variable.shape)} "
                        f"in the model ({getattr(variable, 'path', '?')})"
                    )
                assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(value)
    return int(meta["epoch"])


# --------------------------------------------------------------------------------------
# Divergence guard and checkpoint callback
# --------------------------------------------------------------------------------------

_DIVERGED: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def divergence_message(model: keras.Model) -> str | None:
    """The message of the last divergence detected in ``model``'s current/last ``fit``."""
    try:
        return _DIVERGED.get(model)
    except TypeError:  # pragma: no cover - unhashable model
        return None


def _as_float(value: Any) -> float | None:
    try:
        return float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        return None


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training as soon as a monitored loss is NaN or infinite.

    Checks the monitored keys of the per-batch logs (running epoch means for the usual
    ``Mean`` trackers, so the first non-finite value marks the first bad batch) and of the
    epoch logs. On divergence it sets ``model.stop_training = True``, stores a one-line
    message in :attr:`message` (also available as ``divergence_message(model)`` and added
    to the ``logs`` of ``on_train_end`` under ``"divergence"``) and, if ``verbose``, prints
    it to stderr. Epochs and batches in the message count from 1, like the progress bar.

    Args:
        monitor: log keys to check; keys missing from the logs are ignored.
        check_batches: also check after every train batch (costs one host sync per batch).
        checkpoint_dir: where the checkpoints live, to name the last good one in the message.
        verbose: print the message to stderr when divergence is detected.
    """

    def __init__(
        self,
        monitor: str | Sequence[str] = ("loss",),
        check_batches: bool = True,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.monitor = (monitor,) if isinstance(monitor, str) else tuple(monitor)
        self.check_batches = check_batches
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.verbose = verbose
        self.message: str | None = None
        self.diverged_epoch: int | None = None
        self._epoch = 0

    @property
    def diverged(self) -> bool:
        """Whether this ``fit`` diverged (detected by this or any other guard on the model)."""
        return self.message is not None or (
            self.model is not None and divergence_message(self.model) is not None
        )

    def _non_finite(self, logs: dict[str, Any] | None) -> tuple[str, float] | None:
        for key in self.monitor:
            if logs and key in logs:
                value = _as_float(logs[key])
                if value is not None and not math.isfinite(value):
                    return key, value
        return None

    def _last_good(self) -> str:
        if self.checkpoint_dir is None:
            return ""
        try:
            info = checkpoint_info(self.checkpoint_dir)
        except Exception as e:  # the message must not fail on a bad file
            return f"; last good checkpoint: unreadable ({e})"
        if info is None:
            return f"; last good checkpoint: none in {self.checkpoint_dir}"
        return f"; last good checkpoint: {info['path']} (epoch {info['epoch']})"

    def _flag(self, where: str, detail: str) -> None:
        if self.diverged:
            if self.model is not None:
                self.model.stop_training = True
            return
        self.message = f"training diverged at {where} ({detail}){self._last_good()}"
        self.diverged_epoch = self._epoch + 1
        if self.model is not None:
            self.model.stop_training = True
            _DIVERGED[self.model] = self.message
        if self.verbose:
            print(self.message, file=sys.stderr, flush=True)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.message = None
        self.diverged_epoch = None
        if self.model is not None:
            _DIVERGED.pop(self.model, None)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.check_batches or self.diverged:
            return
        bad = self._non_finite(logs)
        if bad is not None:
            key, value = bad
            self._flag(f"epoch {self._epoch + 1}, batch {batch + 1}", f"{key}={value}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        if self.diverged:
            return
        bad = self._non_finite(logs)
        if bad is not None:
            key, value = bad
            self._flag(f"epoch {epoch + 1}", f"{key}={value}")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        message = self.message or (divergence_message(self.model) if self.model else None)
        if message is not None and logs is not None:
            logs["divergence"] = message


class EpochCheckpoint(DivergenceGuard):
    """Saves everything needed to resume exactly at the end of every good epoch.

    The checkpoint is one file, ``directory/checkpoint.npz``, holding the model's variables
    (weights, non-trainable state, ``SeedGenerator`` states), the optimizer's variables
    (slots and ``iterations``), ``extra_variables`` and the number of completed epochs. It
    is written to a temporary file in the same directory and renamed over the previous one
    with ``os.replace``, so the directory always holds the latest complete checkpoint and
    nothing else (stale temporary files from a killed process are removed at the start of
    ``fit``). Resume with :func:`restore_checkpoint`, which returns ``initial_epoch``.

    This callback is a :class:`DivergenceGuard`: it does not save, and stops training,
    when a monitored loss of the batch or epoch is non-finite, when any guard on the model
    has reported divergence, or when a model or optimizer variable is non-finite. So a
    diverged state is never saved, whatever the order of the callbacks.

    Under multi-worker strategies only the chief writes, so every worker must be able to
    read ``directory`` (a shared file system) to restore. Not covered: Python/numpy random
    state, unseeded TF random ops, ``tf.data`` shuffle order (use ``shuffle=False`` or a
    seeded, epoch-deterministic pipeline for bit-exact resumption).

    Args:
        directory: the checkpoint directory (created if needed).
        monitor, check_batches, verbose: as for :class:`DivergenceGuard`.
        extra_variables: more variables to save and restore (pass the same ones to
            ``restore_checkpoint``), e.g. ``[generator.state]``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        monitor: str | Sequence[str] = ("loss",),
        check_batches: bool = True,
        verbose: bool = True,
        extra_variables: Sequence[Any] = (),
    ) -> None:
        super().__init__(
            monitor=monitor,
            check_batches=check_batches,
            checkpoint_dir=directory,
            verbose=verbose,
        )
        self.directory = os.fspath(directory)
        self.extra_variables = list(extra_variables)
        self.last_saved_epoch: int | None = None

    @property
    def path(self) -> str:
        """Path of the checkpoint file."""
        return checkpoint_path(self.directory)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if _is_chief(self.model):
            os.makedirs(self.directory, exist_ok=True)
            pattern = os.path.join(self.directory, _TMP_PREFIX + "*" + _TMP_SUFFIX)
            for stale in glob.glob(pattern):
                try:
                    os.remove(stale)
                except OSError:
                    pass

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if self.diverged:
            return
        model_variables = _model_state_variables(self.model)
        model_values = _variables_state(model_variables)
        bad = _non_finite_variables(model_variables, model_values)
        if bad:
            self._flag(f"epoch {epoch + 1}", f"non-finite variables: {', '.join(bad[:3])}")
            return
        if _is_chief(self.model):
            _save_checkpoint(
                self.model, self.directory, epoch + 1, self.extra_variables, model_values
            )
            self.last_saved_epoch = epoch + 1


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


class SteadyTimer(keras.callbacks.Callback):
    """Measures training wall time and train steps per second.

    ``steps_per_sec`` covers the whole ``fit`` (from ``on_train_begin``), including
    tracing/compilation of the train function; ``steady_steps_per_sec`` starts after the
    first train batch (or execution, with ``steps_per_execution``) of the ``fit``, which is
    where the compilation happens, so it excludes it even for one-epoch runs.
    ``first_epoch_s`` and ``epoch_times_s`` give the per-epoch picture. Both rates are
    wall-clock rates and include callbacks and validation run between train steps.
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
        steps = batch + 1 - self._epoch_steps  # >1 with steps_per_execution
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
        """The measurements as a JSON-ready dict (rates are ``None`` when undefined)."""
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
# TensorBoard summaries without the tensorboard package
# --------------------------------------------------------------------------------------


def _plugin_metadata(plugin_name: str) -> Any:
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin_name
    metadata.plugin_data.content = b""  # version-0 plugin data, as TensorBoard writes it
    return metadata


def write_image_summary(
    name: str, images: np.ndarray | tf.Tensor, step: int, max_outputs: int | None = None
) -> bool:
    """Writes ``images`` ``[N, H, W]`` or ``[N, H, W, C]`` (C in 1, 3, 4) as a TensorBoard
    image summary to the default summary writer. Floats are taken to be in [0, 1] (and
    clipped), integers in [0, 255]. Returns whether a writer recorded it."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C<=4], got {images.shape}")
    if max_outputs is not None:
        images = images[:max_outputs]
    if images.dtype != tf.uint8:
        images = tf.cast(images, tf.float32)
        images = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
    pngs = tf.map_fn(tf.image.encode_png, images, fn_output_signature=tf.string)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    dims = tf.stack([tf.strings.as_string(width), tf.strings.as_string(height)])
    tensor = tf.concat([dims, pngs], axis=0)
    return bool(tf.summary.write(name, tensor, step=step, metadata=_plugin_metadata("images")))


def write_scalar_summary(name: str, value: float, step: int) -> bool:
    """Writes a scalar TensorBoard summary to the default summary writer."""
    tensor = tf.constant(float(value), dtype=tf.float32)
    return bool(tf.summary.write(name, tensor, step=step, metadata=_plugin_metadata("scalars")))


class ImageSummary(keras.callbacks.Callback):
    """Writes images to TensorBoard every ``every`` epochs.

    ``make_images()`` is called after the epoch and must return ``[N, H, W, 1]`` (or
    ``[N, H, W]``/``[N, H, W, C]``) floats in [0, 1] or uint8, e.g. decoder samples. The
    step is the 0-based epoch index, as ``keras.callbacks.TensorBoard`` uses for epoch
    scalars. Only the chief writes under multi-worker strategies.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        make_images: Callable[[], np.ndarray | tf.Tensor],
        name: str = "images",
        every: int = 1,
        max_outputs: int | None = None,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.log_dir = os.fspath(log_dir)
        self.make_images = make_images
        self.name = name
        self.every = every
        self.max_outputs = max_outputs
        self._writer: Any = None

    def _get_writer(self) -> Any:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every or not _is_chief(self.model):
            return
        with self._get_writer().as_default():
            write_image_summary(self.name, self.make_images(), epoch, self.max_outputs)
        self._writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ScalarSummary(keras.callbacks.Callback):
    """Writes the numeric epoch logs as TensorBoard scalars (``epoch_<key>``).

    A stand-in for the scalar part of ``keras.callbacks.TensorBoard`` that works without
    the ``tensorboard`` package. Step is the 0-based epoch index.
    """

    def __init__(self, log_dir: str | os.PathLike[str], prefix: str = "epoch_") -> None:
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.prefix = prefix
        self._writer: Any = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not logs or not _is_chief(self.model):
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for key, value in logs.items():
                number = _as_float(value)
                if number is not None:
                    write_scalar_summary(self.prefix + key, number, epoch)
        self._writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# --------------------------------------------------------------------------------------
# Distribution strategies
# --------------------------------------------------------------------------------------

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str, devices: Iterable[str] | None = None) -> tf.distribute.Strategy:
    """Returns a ``tf.distribute`` strategy by name.

    ``"default"``: the default (no-op) strategy; ``"mirrored"``: ``MirroredStrategy`` over
    ``devices`` or all local GPUs (or the CPU if none; configure logical devices before TF
    initializes to mirror over several CPUs); ``"multiworker"``:
    ``MultiWorkerMirroredStrategy`` configured from ``TF_CONFIG`` (a single worker without
    it; create it at program start, before other TF work). Unknown names raise
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
        if initial_learning_rate <= 0 or decay_rate < 0 or floor < 0:
            raise ValueError(
                "need initial_learning_rate > 0, decay_rate >= 0, floor >= 0; got "
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
