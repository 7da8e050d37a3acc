"""Train IGR / Gumbel-Softmax models: `python train.py [TASK] [flags]`.

Parses and checks the flags (without importing TensorFlow), builds data and model, fits with a
checkpoint at the end of every epoch, evaluates, and writes `OUT/results.json`, TensorBoard logs
(`OUT/logs/{train,validation,test}`) and the model. With no arguments it trains an IGR-I VAE on
the packaged `mnist_sample` (offline, a few minutes on 2 CPU cores).

Each task is one block below: its flags, how it fills the defaults that depend on other flags,
and how it runs. A new task adds a block and a `register(...)` call; the rest is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# No TensorFlow before the flags are checked: both modules import nothing heavy.
from igr_tf.cli import ArgumentParser, fail, import_tensorflow
from igr_tf.names import (
    CBM_MODES,
    ESTIMATOR_RELAXATIONS,
    ESTIMATORS,
    OBJECTIVE_ESTIMATORS,
    RELAXATIONS,
)
from igr_tf.paper import (
    APPROX_TEMPERATURE,
    CBM_TEMPERATURE,
    GS_ANNEALING,
    GUMBOLT_TEMPERATURE,
    RECOMMENDED_TEMPERATURE,
    SOP_TEMPERATURE,
    VAE_TEMPERATURE,
)

PROG = "train.py"
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments", "configs")

#: Flags that may differ when a run resumes in the same --out: they change neither the model,
#: nor the data, nor the objective. Any other difference from the checkpoint's flags is refused.
RESUMABLE_FLAGS = (
    "epochs",
    "lr",
    "eval_samples",
    "verbose",
    "out",
    "config",
    "strategy",
    "cpu_devices",
    "no_jit",
    "data_dir",
)
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Task:
    """A task of train.py.

    help: one line for `--help`.
    defaults: the task's own defaults of common flags (None: the parser's).
    run: `run(args, out) -> results` trains and evaluates; results hold "metrics" (a dict) and
        whatever else goes into results.json.
    add_flags: adds the task's own flags to the parser (an argument group), or None.
    resolve: `resolve(args, error)` fills the defaults that depend on other flags (temperature,
        lr) and checks what argparse cannot, calling `error(message)`; no TensorFlow here.
    """

    help: str
    run: Callable[[argparse.Namespace, str], dict[str, Any]]
    add_flags: Callable[[ArgumentParser], None] | None = None
    resolve: Callable[[argparse.Namespace, Callable[[str], None]], None] | None = None
    #: Defaults of common flags for this task (e.g. dlgmm's --dist igr_sb); a config's values
    #: and explicit flags still win.
    defaults: dict[str, Any] | None = None
    #: Shared flags (the common group, "vae and sop") the task does not read: set to anything but
    #: their default, they are refused rather than ignored and recorded in results.json as if
    #: applied. Another task's own flags are refused too (`check_unused_flags`).
    ignores: tuple[str, ...] = ()


TASKS: dict[str, Task] = {}


def register(name: str, task: Task) -> None:
    """Adds a task to train.py (its name becomes a choice of the positional TASK)."""
    if name in TASKS:
        raise ValueError(f"task {name!r} is registered twice")
    TASKS[name] = task


# ==================================================================================================
# Flags
# ==================================================================================================


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to every flag's help unless the help already explains it."""

    def _get_help_string(self, action):
        if "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def finite_float(text: str) -> float:
    """argparse type: a finite float (rejects nan and inf at parse time)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


finite_float.__name__ = "finite float"  # argparse names the type in its message


def _flag(dest: str) -> str:
    return "task" if dest == "task" else "--" + dest.replace("_", "-")


def build_parser() -> ArgumentParser:
    resumable = ", ".join(_flag(f) for f in RESUMABLE_FLAGS)
    p = ArgumentParser(
        prog=PROG,
        description="Train discrete-latent models with IGR relaxations or the Gumbel-Softmax.",
        epilog=(
            "Rerunning a command with the same --out resumes from the last epoch's checkpoint "
            "and ends exactly where the uninterrupted run would. Flags that may change on "
            f"resume: {resumable}; any other flag must be as in the checkpoint (to start fresh, "
            "use another --out or delete OUT/checkpoint)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "task",
        nargs="?",
        default=None,
        choices=tuple(TASKS),
        help="what to train (default vae, or the config's task)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="named config in experiments/configs (or a JSON path) giving flag defaults",
    )
    g = p.add_argument_group("common")
    g.add_argument("--dist", default="igr_i", choices=RELAXATIONS, help="relaxation")
    g.add_argument(
        "--estimator",
        default=None,
        help=f"gradient estimator ({', '.join(ESTIMATORS)}): vae/sop: default none, the relaxed "
        "--dist sample (sop: the hard-sample ones, without "
        f"{', '.join(OBJECTIVE_ESTIMATORS)}); toy: default st_gs",
    )
    g.add_argument(
        "--temperature",
        type=finite_float,
        default=None,
        help="relaxation temperature, > 0 (default: vae: the temperature study's recommended τ for "
        "--dist, igr_tf.paper.RECOMMENDED_TEMPERATURE; other tasks: the paper's value)",
    )
    g.add_argument(
        "--dataset",
        default="mnist_sample",
        help="mnist_sample (packaged, offline), mnist, binarized_mnist, fashion_mnist, "
        "omniglot (TFDS, must be prepared)",
    )
    g.add_argument("--data-file", default=None, help="train on an npz with key 'images'")
    g.add_argument("--test-file", default=None, help="test npz for --data-file")
    g.add_argument("--data-dir", default=None, help="TFDS data directory; resumable")
    g.add_argument(
        "--binarization",
        default=None,
        choices=("static", "dynamic", "none"),
        help="override the dataset's default binarization",
    )
    g.add_argument(
        "--epochs", type=int, default=10, help="training epochs (approx: steps/10); resumable"
    )
    g.add_argument("--batch-size", type=int, default=100, help="examples per step")
    g.add_argument(
        "--lr",
        type=finite_float,
        default=None,
        help="Adam learning rate, > 0 (default 1e-3; approx 1e-2 as in the paper); resumable",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of weights, sampling and data order")
    g.add_argument("--out", default=None, help="output directory (default runs/<task>_<dist>_...)")
    g.add_argument(
        "--strategy",
        default="default",
        choices=("default", "mirrored", "multiworker"),
        help="tf.distribute strategy (multiworker: from TF_CONFIG); resumable",
    )
    g.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="split the CPU into this many logical devices (to test --strategy); resumable",
    )
    g.add_argument("--no-jit", action="store_true", help="disable XLA compilation; resumable")
    g.add_argument(
        "--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras verbosity; resumable"
    )
    add_latent_model_flags(p)
    p.flag_owners = {}  # dest -> the task whose own group added the flag
    for name, task in TASKS.items():
        if task.add_flags is not None:
            before = {a.dest for a in p._actions}
            task.add_flags(p)
            p.flag_owners.update({a.dest: name for a in p._actions if a.dest not in before})
    return p


def check_unused_flags(p: ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses a flag the task does not read (its `ignores`, another task's own flags) when it
    differs from its built-in default, from the command line or a config."""
    pristine = build_parser()
    owners = pristine.flag_owners
    unused = [d for d, owner in owners.items() if owner != args.task]
    unused += [d for d in TASKS[args.task].ignores if d not in owners]
    for dest in unused:
        if getattr(args, dest) != pristine.get_default(dest):
            whose = f" (a `train.py {owners[dest]}` flag)" if dest in owners else ""
            p.error(f"{_flag(dest)} is not used by `train.py {args.task}`{whose}")


def _coerce_config_value(p: ArgumentParser, action: argparse.Action, value: Any, path: str) -> Any:
    """A config value checked as argparse checks a flag: its type and its choices."""
    name = _flag(action.dest)
    if value is None:
        return None
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            p.error(f"--config {path}: {action.dest} must be true or false; got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        p.error(f"--config {path}: {action.dest} must be a number or a string; got {value!r}")
    if action.type is not None:
        try:
            value = action.type(str(value))
        except (ValueError, argparse.ArgumentTypeError):
            p.error(f"--config {path}: {action.dest}: invalid value {value!r} for {name}")
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        p.error(f"--config {path}: {action.dest}: {value!r} is not one of {choices}")
    return value


def parse_args(p: ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parses argv with a config file's values as defaults (explicit flags still win)."""
    args = p.parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        path = (
            args.config
            if os.path.isfile(args.config)
            else os.path.join(CONFIG_DIR, f"{args.config}.json")
        )
        if not os.path.isfile(path):
            known = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".json"))
            p.error(f"--config: no config {args.config!r}; known: {', '.join(known)}")
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, UnicodeError, json.JSONDecodeError) as e:
            p.error(f"--config: cannot read {path}: {e}")
        if not isinstance(values, dict):
            p.error(f"--config {path}: must hold a JSON object of flag values")
        actions = {a.dest: a for a in p._actions}
        values = {k: v for k, v in values.items() if not k.startswith("_")}
        unknown = sorted(set(values) - set(vars(args)) - {"config"})
        if unknown or "config" in values:
            p.error(f"--config {path}: unknown keys {', '.join(unknown or ['config'])}")
        p.set_defaults(
            **{k: _coerce_config_value(p, actions[k], v, path) for k, v in values.items()}
        )
        args = p.parse_args(argv)
    if args.task is None:
        args.task = "vae"
    task_defaults = TASKS[args.task].defaults or {}
    task_defaults = {k: v for k, v in task_defaults.items() if k not in values}  # config wins
    if task_defaults:
        p.set_defaults(**task_defaults)
        args = p.parse_args(argv)
        args.task = args.task or "vae"
    return args


def _check_out(p: ArgumentParser, out: str) -> None:
    """--out must be (or become) a writable directory."""
    if os.path.exists(out) and not os.path.isdir(out):
        p.error(f"--out {out}: is a file; --out names a directory")
    parent = out
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    parent = parent or "."
    if not os.path.isdir(parent):
        p.error(f"--out {out}: {parent} is a file, so the directory cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        p.error(f"--out {out}: {parent} is not writable")


# The models compute in float32: a positive value outside its normal range overflows to inf or
# rounds to 0 (1e39, 1e-44), far from the flag that caused it.
_FLOAT32_RANGE = (1.1754944e-38, 3.4028234e38)


def _check_float32_positive(p: ArgumentParser, name: str, value: float | None) -> None:
    if value is None:
        return
    if not value > 0:
        p.error(f"{_flag(name)} must be > 0; got {value}")
    low, high = _FLOAT32_RANGE
    if not low <= value <= high:
        p.error(f"{_flag(name)} must be in [{low:.3g}, {high:.3g}] (a float32 > 0); got {value}")


def check_args(p: ArgumentParser, args: argparse.Namespace) -> None:
    """Range checks argparse cannot express, before TensorFlow; errors are one line, status 2."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"{_flag(name)} must be ≥ 1; got {getattr(args, name)}")
    if not 0 <= args.seed <= MAX_SEED:
        p.error(f"--seed must be in [0, {MAX_SEED}]; got {args.seed}")
    if args.cpu_devices < 0:
        p.error(f"--cpu-devices must be ≥ 0; got {args.cpu_devices}")
    _check_float32_positive(p, "temperature", args.temperature)
    _check_float32_positive(p, "lr", args.lr)
    if args.test_file and not args.data_file:
        p.error("--test-file needs --data-file")
    for flag, path in (("--data-file", args.data_file), ("--test-file", args.test_file)):
        if path and not os.path.isfile(path):
            reason = "is a directory" if os.path.isdir(path) else "no such file"
            p.error(f"{flag} {path}: {reason}")
    task = TASKS[args.task]
    if task.resolve is not None:
        task.resolve(args, p.error)
    check_unused_flags(p, args)
    _check_float32_positive(p, "temperature", args.temperature)  # a task's default
    args.out = args.out or default_out(args)
    _check_out(p, args.out)


def default_out(args: argparse.Namespace) -> str:
    if args.task == "toy":
        return os.path.join("runs", f"toy_{args.estimator}_{args.toy}_seed{args.seed}")
    data = os.path.splitext(os.path.basename(args.data_file))[0] if args.data_file else args.dataset
    name = args.target if args.task == "approx" else data
    latent = args.dist if getattr(args, "estimator", None) is None else args.estimator
    if args.task == "gumbolt":  # the two priors of one posterior must not share a directory
        name = f"{args.prior}_{data}"
    return os.path.join("runs", f"{args.task}_{latent}_{name}_seed{args.seed}")


def run_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as results.json and the checkpoint record them."""
    return {k: v for k, v in vars(args).items() if k not in ("strategy_obj", "chief")}


# ==================================================================================================
# Shared by the tasks that train a Keras model: resume checks, fit, summaries
# ==================================================================================================


class ResumeError(ValueError):
    """The checkpoint in --out does not belong to this command line."""


def resume_check(args: argparse.Namespace, saved: dict[str, Any], checkpoint_dir: str) -> None:
    """Refuses, naming every differing flag, to resume a checkpoint written with other flags.

    A flag missing from the checkpoint's record was added to train.py after the checkpoint was
    written: that run behaved as the flag's built-in default (a new flag's default keeps the old
    behaviour), so it differs only if it is now set to something else. (Without this, a run
    checkpointed before an upgrade could not resume at all.)"""
    flags, before = run_flags(args), dict(saved.get("flags", {}))
    built_in = build_parser()
    for k in set(flags) - set(before):
        before[k] = built_in.get_default(k)
    keys = sorted((set(flags) | set(before)) - set(RESUMABLE_FLAGS))
    differ = [k for k in keys if flags.get(k) != before.get(k)]
    if differ:
        listed = ", ".join(f"{_flag(k)} {before.get(k)!r} (now {flags.get(k)!r})" for k in differ)
        allowed = ", ".join(_flag(f) for f in RESUMABLE_FLAGS)
        raise ResumeError(
            f"{checkpoint_dir} was written with other flags: {listed}; only {allowed} may change "
            f"on resume; to start fresh use another --out or delete {checkpoint_dir}"
        )
    if saved["epoch"] > args.epochs:
        raise ResumeError(
            f"--epochs {args.epochs} is less than the {saved['epoch']} epochs already completed "
            f"in {checkpoint_dir}; pass --epochs ≥ {saved['epoch']}, or start fresh with another "
            f"--out or after deleting {checkpoint_dir}"
        )


def fit(model, data, args, out: str, make_images=None, callbacks=()) -> dict[str, Any]:
    """`model.fit` resumable bit for bit: restores OUT/checkpoint if there is one, trains the
    remaining epochs on an epoch-deterministic pipeline, and returns the results' training part
    (epochs, the whole history, timing). Each epoch is scored on `data.validation` when the data
    has one (`--validation-split`), else on the test set. `callbacks` run before the summaries
    and the checkpoint (they must be functions of checkpointed state, as a schedule of the step)."""
    import keras

    from igr_tf import datasets, training

    with args.strategy_obj.scope():  # the optimizer's variables must be created under it
        training.build_for_restore(model)
    checkpoint = training.RunCheckpoint(os.path.join(out, "checkpoint"), model)
    saved = checkpoint.restore()
    flags = run_flags(args)
    if saved is None:
        checkpoint.info.update(flags=flags, resumes=[])
        initial_epoch = 0
    else:
        initial_epoch = int(saved["epoch"])
        changed = {k: [saved["flags"].get(k), v] for k, v in flags.items()
                   if k in RESUMABLE_FLAGS and saved["flags"].get(k) != v}  # fmt: skip
        checkpoint.info.setdefault("resumes", []).append({"epoch": initial_epoch, **changed})
        print(f"Resuming from epoch {initial_epoch} (checkpoint in {checkpoint.directory}).")
    # The checkpoint restored the optimizer's learning-rate variable: train with --lr, which may
    # change on resume. (A schedule has no such variable; it is rebuilt from the flags.)
    try:
        model.optimizer.learning_rate = args.lr
    except TypeError:
        pass
    train = datasets.epoch_pipeline(
        data.train, args.batch_size, seed=args.seed, epochs=range(initial_epoch, args.epochs)
    )
    monitored = data.test if data.validation is None else data.validation
    test = datasets.pipeline(monitored, args.batch_size, shuffle=False)
    timer = training.SteadyTimer()
    saver = training.EpochCheckpoint(checkpoint)
    logs = os.path.join(out, "logs")
    callbacks = [timer, *callbacks]
    if args.chief:
        callbacks.append(keras.callbacks.TensorBoard(logs, write_graph=False, profile_batch=0))
        if make_images is not None:
            callbacks.append(training.ImageSummary(logs, make_images, name="samples"))
    callbacks.append(saver)  # last: a kill after the summaries repeats them, loses none
    if initial_epoch < args.epochs:
        model.fit(
            train,
            validation_data=test,
            steps_per_epoch=datasets.steps_per_epoch(data.num_train, args.batch_size),
            epochs=args.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=args.verbose,
            shuffle=False,  # the pipeline orders each epoch itself
        )
    if saver.diverged:
        raise training.CheckpointError(saver.message)  # reported as one line by main
    timing = timer.summary()
    return {
        "epochs_completed": int(checkpoint.info["epoch"]),
        "resumed_from_epoch": initial_epoch,
        "resumes": checkpoint.info.get("resumes", []),
        "train_seconds": timing["wall_time_s"],
        # Train steps per second after the first step (which includes tracing/compilation).
        "steps_per_sec": timing["steady_steps_per_sec"] or timing["steps_per_sec"] or None,
        "timing": timing,
        "history": checkpoint.info["history"],
    }


def finish(model, args, out: str, metrics: dict[str, Any]) -> None:
    """Saves the model and writes the test metrics (with the flags) to TensorBoard (chief)."""
    from igr_tf import training

    if args.chief:
        model.save(os.path.join(out, "model.keras"))
        training.write_test_summary(
            os.path.join(out, "logs"), metrics, step=args.epochs - 1, hparams=run_flags(args)
        )


def relaxation_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.kl:
        options["kl"] = args.kl
    if args.stl:
        options["stick_the_landing"] = True
    if args.sb_adaptive:
        options.update(adaptive=True, threshold=args.sb_threshold)
    return options


def load_data(args: argparse.Namespace):
    from igr_tf import datasets

    return datasets.load(
        args.dataset,
        data_file=args.data_file,
        test_file=args.test_file,
        data_dir=args.data_dir,
        binarization=args.binarization,
        seed=args.seed,
    )


def add_latent_model_flags(p: ArgumentParser) -> None:
    """Flags shared by the tasks with a discrete-latent Keras model (vae, sop)."""
    v = p.add_argument_group("vae and sop")
    v.add_argument(
        "--arch",
        default=None,
        help="vae: linear|nonlinear|relax|conv (default nonlinear); "
        "sop: double_linear|triple_linear|nonlinear (default double_linear); "
        "gumbolt: linear|nonlinear (default nonlinear)",
    )
    v.add_argument("--num-vars", type=int, default=20, help="vae: categorical latent variables V")
    v.add_argument("--num-categories", type=int, default=10, help="vae: categories K per variable")
    v.add_argument(
        "--continuous-dim",
        type=int,
        default=0,
        help="vae: continuous Gaussian latents D next to the discrete ones (JointVAE-style); "
        "with --num-vars 1 and mnist_sample, results add test_cluster_accuracy",
    )
    v.add_argument(
        "--samples",
        type=int,
        default=1,
        help="samples per training step (VAE: S > 1 is the importance-weighted bound)",
    )
    v.add_argument(
        "--eval-samples",
        type=int,
        default=100,
        help="importance samples (VAE) / rounded samples (SOP) for the test metric; resumable",
    )
    v.add_argument(
        "--kl",
        default=None,
        choices=("closed", "sampled"),
        help="KL estimator (default: closed form where it exists)",
    )
    v.add_argument("--stl", action="store_true", help="sticking-the-landing gradient")
    v.add_argument(
        "--hard",
        action="store_true",
        help="vae: straight-through, as gumbel_softmax(hard=True): one-hot forward, relaxed "
        "gradient",
    )
    v.add_argument(
        "--sb-adaptive",
        action="store_true",
        help="igr_sb: adaptive truncation with --num-categories as the cap",
    )
    v.add_argument(
        "--sb-threshold",
        type=finite_float,
        default=0.99,
        help="igr_sb: stick mass to cover (adaptive)",
    )


def _latent_model_flags() -> tuple[str, ...]:
    p = ArgumentParser(add_help=False)
    add_latent_model_flags(p)
    return tuple(a.dest for a in p._actions)


#: The dests of `add_latent_model_flags` (tasks without a discrete-latent model ignore them).
LATENT_MODEL_FLAGS = _latent_model_flags()


def check_latent_model_flags(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    for name in ("num_vars", "samples", "eval_samples"):
        if getattr(args, name) < 1:
            error(f"{_flag(name)} must be ≥ 1; got {getattr(args, name)}")
    if args.num_categories < 2:
        error(f"--num-categories must be ≥ 2; got {args.num_categories}")
    if not 0 < args.sb_threshold <= 1:
        error(f"--sb-threshold must be in (0, 1]; got {args.sb_threshold}")
    if args.sb_adaptive and args.dist != "igr_sb":
        error(f"--sb-adaptive needs --dist igr_sb; got --dist {args.dist}")
    if args.lr is None:
        args.lr = 1e-3


def check_estimator(args, allowed: tuple[str, ...], why: str, error: Callable[[str], None]) -> None:
    """--estimator (vae, sop): None (the relaxed sample) or one of `allowed`."""
    name = args.estimator
    if name is None:
        return
    if name not in allowed:
        reason = f"{why}; " if name in ESTIMATORS else ""
        error(f"--estimator {name}: {reason}choose from {', '.join(allowed)}")
    if args.samples != 1:
        error(f"--samples {args.samples}: with --estimator the estimator draws its own samples")
    if args.hard:
        error("--hard: --estimator samples are already one-hot (for ST-GS: --estimator st_gs)")


# ==================================================================================================
# Task: vae
# ==================================================================================================


TEMPERATURE_SCHEDULES = ("fixed", "anneal", "learned")


def add_vae_flags(p: ArgumentParser) -> None:
    v = p.add_argument_group("vae")
    v.add_argument(
        "--temperature-schedule",
        default="fixed",
        choices=TEMPERATURE_SCHEDULES,
        help="fixed: --temperature throughout; anneal: the Gumbel-Softmax paper's "
        f"max({GS_ANNEALING['floor']}, τ0·exp(−{GS_ANNEALING['rate']:g}·step)) with τ0 = "
        f"--temperature (default {GS_ANNEALING['initial']:g}); learned: log τ is trained, "
        "starting at --temperature",
    )
    v.add_argument(
        "--validation-split",
        type=finite_float,
        default=0.0,
        help="hold out this fraction of the training set, in [0, 1): each epoch and the final "
        "val_* metrics are scored on it (for choosing hyperparameters; test_* stay on the "
        "test set); 0: none, epochs are scored on the test set",
    )


def resolve_vae(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    check_latent_model_flags(args, error)
    binary = args.num_categories == 2
    allowed = tuple(n for n in ESTIMATORS if binary or n != "disarm")
    check_estimator(args, allowed, "disarm is for binary variables (--num-categories 2)", error)
    if not 0 <= args.validation_split < 1:
        error(f"--validation-split must be in [0, 1); got {args.validation_split}")
    if args.temperature_schedule != "fixed" and args.estimator is not None:
        error(
            f"--temperature-schedule {args.temperature_schedule}: for the relaxed sample; an "
            "--estimator's temperature is fixed"
        )
    if args.continuous_dim < 0:
        error(f"--continuous-dim must be ≥ 0; got {args.continuous_dim}")
    if args.continuous_dim and args.estimator is not None:
        error(f"--continuous-dim {args.continuous_dim}: mixed latents take the relaxed --dist "
              f"sample, not --estimator {args.estimator}")  # fmt: skip
    if args.temperature is None:
        anneal = args.temperature_schedule == "anneal"
        # Not the paper's: the temperature study's recommendation (issue 13), see its docstring.
        args.temperature = GS_ANNEALING["initial"] if anneal else RECOMMENDED_TEMPERATURE[args.dist]


def vae_images(model, data, args):
    """`images(epoch)`: 8 test images, their reconstructions and 8 samples from the prior."""
    import tensorflow as tf

    from igr_tf._ops import RNG_ALGORITHM

    x = next(iter(data.test.batch(8)))  # the test set may hold fewer than 8
    pixels = x.shape[1] * x.shape[2]

    def prior_sample(seed):
        if args.estimator is not None:  # one-hot draws from the estimator's prior categorical
            log_p = tf.broadcast_to(model.latent.prior_categorical_log_probs(),
                                    [x.shape[0] * args.num_vars, args.num_categories])  # fmt: skip
            idx = tf.random.stateless_categorical(log_p, 1, seed=seed)[:, 0]
            one_hot = tf.one_hot(idx, args.num_categories)
            return tf.reshape(one_hot, [x.shape[0], args.num_vars, args.num_categories])
        prior = model.latent.relaxation.prior(model.latent.temperature, num_vars=args.num_vars)
        return prior.sample(x.shape[0], seed=seed)

    def images(epoch: int):
        recon = tf.sigmoid(model(x, training=False)[:, :pixels])
        seed = tf.constant([args.seed, epoch], tf.int32)
        z = tf.cast(prior_sample(seed), tf.float32)
        if args.continuous_dim:  # and the continuous latents from their prior N(0, I)
            z_c = tf.random.stateless_normal(
                [x.shape[0], args.continuous_dim], seed=seed[::-1], alg=RNG_ALGORITHM
            )
            z = model.decoder_inputs(z, z_c)
        gen = tf.sigmoid(model.decoder(z)[:, :pixels])
        return tf.concat([x, tf.reshape(recon, tf.shape(x)), tf.reshape(gen, tf.shape(x))], 0)

    return images


def run_vae(args: argparse.Namespace, out: str) -> dict[str, Any]:
    import keras

    from igr_tf import datasets, training
    from igr_tf.layers import TemperatureSchedule, exponential_annealing
    from models.vae import DiscreteVAE

    data = load_data(args)
    if args.validation_split > 0:
        data = datasets.hold_out(data, args.validation_split)
    with args.strategy_obj.scope():
        model = DiscreteVAE(
            args.dist,
            args.num_vars,
            args.num_categories,
            args.temperature,
            arch=args.arch or "nonlinear",
            image_shape=data.image_shape,
            likelihood=data.likelihood,
            num_samples=args.samples,
            relaxation_options=relaxation_options(args),
            hard=args.hard,
            seed=args.seed,
            estimator=args.estimator,
            trainable_temperature=args.temperature_schedule == "learned",
            continuous_dim=args.continuous_dim,
        )
        training.compile_model(model, keras.optimizers.Adam(args.lr), jit_compile=not args.no_jit)
    schedules = []
    if args.temperature_schedule == "anneal":
        anneal = exponential_annealing(
            args.temperature, GS_ANNEALING["rate"], GS_ANNEALING["floor"]
        )
        schedules.append(TemperatureSchedule(anneal, per="step"))
    info = fit(model, data, args, out, vae_images(model, data, args), callbacks=schedules)
    metrics = vae_metrics(model, load_test(data, args), args, "test_")
    if data.validation is not None:
        val = datasets.pipeline(data.validation, args.batch_size, shuffle=False)
        metrics.update(vae_metrics(model, val, args, "val_"))
    if args.num_vars == 1 and args.dataset == "mnist_sample" and not args.data_file:
        metrics["test_cluster_accuracy"] = vae_cluster_accuracy(model, args)
    metrics["temperature"] = args.temperature
    if args.estimator is None:  # the τ at the end of training (annealed or learned)
        metrics["final_temperature"] = float(model.latent.temperature)
    finish(model, args, out, metrics)
    return {"metrics": metrics, **info}


def vae_metrics(model, dataset, args, prefix: str) -> dict[str, Any]:
    """The relaxed ELBO and the importance-sampled log-likelihood (one-hot latents) on a
    batched, unshuffled `dataset`, named `prefix` + metric."""
    elbo = model.evaluate(dataset, verbose=0, return_dict=True)
    metrics = {"elbo": -elbo["loss"], "recon": elbo["recon"], "kl": elbo["kl"]}
    if "kl_continuous" in elbo:  # --continuous-dim > 0
        metrics["kl_continuous"] = elbo["kl_continuous"]
    loglik = model.evaluate_loglik(dataset, args.eval_samples, seed=args.seed)
    metrics.update({k.removeprefix("test_"): v for k, v in loglik.items()})
    return {prefix + k: v for k, v in metrics.items()}


def vae_cluster_accuracy(model, args) -> float:
    """Unsupervised digit accuracy of the single discrete latent on mnist_sample's test split:
    cluster argmax_c q(c | x), Hungarian-matched to the labels (`evaluation.cluster_accuracy`)."""
    from igr_tf import evaluation
    from models.cbm import load_labelled_mnist_sample

    data = load_labelled_mnist_sample()
    clusters = model.predict_clusters(data.x_test, args.batch_size, seed=args.seed)
    return evaluation.cluster_accuracy(data.y_test, clusters)


def load_test(data, args):
    from igr_tf import datasets

    return datasets.pipeline(data.test, args.batch_size, shuffle=False)


register(
    "vae",
    Task(help="discrete VAE", run=run_vae, add_flags=add_vae_flags, resolve=resolve_vae),
)


# ==================================================================================================
# Task: sop (structured output prediction)
# ==================================================================================================


def resolve_sop(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    check_latent_model_flags(args, error)
    hard_sample = tuple(n for n in ESTIMATORS if n not in OBJECTIVE_ESTIMATORS)
    why = "sop's stacked stochastic layers take hard-sample estimators only"
    check_estimator(args, hard_sample, why, error)
    if args.hard and args.estimator is None:  # (with one, check_estimator refuses it)
        error("--hard: sop trains the relaxed sample; for straight-through use --estimator st_gs")
    if args.temperature is None:
        args.temperature = SOP_TEMPERATURE


def run_sop(args: argparse.Namespace, out: str) -> dict[str, Any]:
    import keras

    from igr_tf import training
    from models.sop import StructuredOutputPredictor

    data = load_data(args)
    if data.image_shape != (28, 28, 1):
        raise ValueError(f"sop needs 28x28 images (upper half -> lower half); got {data.name} "
                         f"with images {data.image_shape[:2]}")  # fmt: skip
    with args.strategy_obj.scope():
        model = StructuredOutputPredictor(
            args.dist,
            architecture=args.arch or "double_linear",
            temperature=args.temperature,
            num_train_samples=args.samples,
            num_test_samples=args.eval_samples,
            relaxation_options=relaxation_options(args),
            seed=args.seed,
            estimator=args.estimator,
        )
        lr = training.InverseTimeDecayFloor(initial_learning_rate=args.lr)
        training.compile_model(model, keras.optimizers.Adam(lr), jit_compile=not args.no_jit)
    info = fit(model, data, args, out)
    metrics = {
        "test_nll": model.test_nll(load_test(data, args), args.eval_samples, seed=args.seed),
        "temperature": args.temperature,
    }
    finish(model, args, out, metrics)
    return {"metrics": metrics, **info}


register(
    "sop",
    Task(
        help="structured output prediction",
        run=run_sop,
        resolve=resolve_sop,
        ignores=("num_vars", "continuous_dim"),
    ),
)


# ==================================================================================================
# Task: approx (approximating a discrete distribution)
# ==================================================================================================


def add_approx_flags(p: ArgumentParser) -> None:
    a = p.add_argument_group("approx")
    a.add_argument(
        "--target",
        default="discrete",
        choices=("poisson", "binomial", "negbinomial", "discrete"),
        help="target distribution",
    )
    a.add_argument(
        "--categories", type=int, default=None, help="K for poisson/negbinomial (default 20 / 40)"
    )
    a.add_argument("--rate", type=finite_float, default=50.0, help="poisson rate, > 0")
    a.add_argument("--trials", type=int, default=12, help="binomial n, ≥ 1")
    a.add_argument(
        "--prob",
        type=finite_float,
        default=None,
        help="binomial p (default 0.3) / negbinomial p (default 0.6), in (0, 1)",
    )
    a.add_argument("--successes", type=finite_float, default=50.0, help="negbinomial r, > 0")
    a.add_argument("--mc-samples", type=int, default=10_000, help="relaxed samples per step")


def resolve_approx(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    if args.mc_samples < 1:
        error(f"--mc-samples must be ≥ 1; got {args.mc_samples}")
    if args.categories is not None and args.categories < 2:
        error(f"--categories must be ≥ 2; got {args.categories}")
    if not args.rate > 0:
        error(f"--rate must be > 0; got {args.rate}")
    if args.trials < 1:
        error(f"--trials must be ≥ 1; got {args.trials}")
    if args.prob is not None and not 0 < args.prob < 1:
        error(f"--prob must be in (0, 1); got {args.prob}")
    if not args.successes > 0:
        error(f"--successes must be > 0; got {args.successes}")
    if args.lr is None:
        args.lr = 1e-2
    if args.temperature is None:
        args.temperature = APPROX_TEMPERATURE[args.dist]


#: A fit ending with a loss above this many times its start (KL from the uniform start) diverged.
APPROX_DIVERGENCE_FACTOR = 10.0


def run_approx(args: argparse.Namespace, out: str) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from igr_tf import approx, training

    targets = {  # SPEC §5's targets; K applies to the unbounded ones
        "poisson": lambda: approx.poisson(args.rate, args.categories or 20),
        "binomial": lambda: approx.binomial(args.trials, args.prob or 0.3),
        "negbinomial": lambda: approx.negative_binomial(
            args.successes, args.prob or 0.6, args.categories or 40
        ),
        "discrete": approx.discrete,
    }
    target = targets[args.target]()
    start = time.perf_counter()
    result = approx.fit_approximation(
        args.dist,
        target,
        args.temperature,
        num_samples=args.mc_samples,
        steps=args.epochs * 10,
        lr=args.lr,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    losses = np.asarray(result.losses, dtype=np.float64)
    if args.chief:
        with tf.summary.create_file_writer(os.path.join(out, "logs", "train")).as_default():
            for step, value in enumerate(losses):
                tf.summary.scalar("loss", value, step=step)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise ValueError(f"the fit diverged: loss {losses[bad[0]]} at step {bad[0] + 1}; "
                         f"lower --lr (now {args.lr})")  # fmt: skip
    if losses[-1] > APPROX_DIVERGENCE_FACTOR * max(losses[0], 1e-3):
        raise ValueError(f"the fit diverged: the loss grew from {losses[0]:.4g} to "
                         f"{losses[-1]:.4g}; lower --lr (now {args.lr})")  # fmt: skip
    metrics = {
        "final_loss": float(losses[-1]),
        "total_variation": float(result.total_variation),
        "temperature": args.temperature,
    }
    if args.chief:
        training.write_test_summary(
            os.path.join(out, "logs"), metrics, step=len(losses) - 1, hparams=run_flags(args)
        )
    return {
        "metrics": metrics,
        "train_seconds": seconds,
        "steps_per_sec": len(losses) / seconds,
        "target": [float(t) for t in target],
        "argmax_pmf": [float(t) for t in result.argmax_pmf],
        "losses": [float(x) for x in losses],
    }


register(
    "approx",
    Task(
        help="approximate a discrete distribution",
        run=run_approx,
        add_flags=add_approx_flags,
        resolve=resolve_approx,
        ignores=(
            "estimator",
            "dataset",
            "data_file",
            "test_file",
            "data_dir",
            "binarization",
            "batch_size",
            *LATENT_MODEL_FLAGS,
        ),
    ),
)


# ==================================================================================================
# Task: cbm (sparse concept bottleneck models: igr_tf.concepts, models/cbm.py)
# ==================================================================================================


def add_cbm_flags(p: ArgumentParser) -> None:
    c = p.add_argument_group("cbm")
    c.add_argument("--mode", default="gumbel", choices=CBM_MODES, help="concept bottleneck mode")
    c.add_argument(
        "--num-slots",
        type=int,
        default=None,
        help="gumbel/igr: concepts selectable per image (default: the table's most per class)",
    )
    c.add_argument(
        "--presence",
        default="pairwise",
        choices=("pairwise", "exact"),
        help="gumbel/igr: concept-presence probability of the concept loss",
    )
    c.add_argument(
        "--soft-selection",
        action="store_true",
        help="gumbel/igr: train on relaxed selections instead of straight-through (exactly 0/1)",
    )
    c.add_argument("--inference", default="mode", choices=("mode", "sample"), help="gumbel/igr")
    for flag, what in (
        ("--concept-weight", "weight of the concept BCE"),
        ("--l1-weight", "l1: weight of the mean activation"),
        ("--contrastive-weight", "contrastive: weight of the InfoNCE loss"),
        ("--contrastive-temperature", "contrastive: InfoNCE temperature"),
    ):
        c.add_argument(
            flag,
            type=finite_float,
            default=None,
            help=f"{what} (default: see DEFAULT_WEIGHTS in models/cbm.py)",
        )
    c.add_argument("--encoder-epochs", type=int, default=5, help="image encoder pre-training")
    c.add_argument("--embedding-dim", type=int, default=64, help="image encoder output size")


def resolve_cbm(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    if args.data_file or args.dataset != "mnist_sample":
        error("cbm: only --dataset mnist_sample (it has labels) is supported")
    for name in ("num_slots", "encoder_epochs", "embedding_dim"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "encoder_epochs" else 1):
            error(f"{_flag(name)} must be ≥ {0 if name == 'encoder_epochs' else 1}; got {value}")
    if args.lr is None:
        args.lr = 1e-2  # 1e-3 trained poorly in 10 epochs on mnist_sample
    if args.temperature is None:
        args.temperature = CBM_TEMPERATURE


def run_cbm(args: argparse.Namespace, out: str) -> dict[str, Any]:
    import types

    import keras
    import numpy as np
    import tensorflow as tf

    from igr_tf import concepts, training
    from models import cbm

    data = cbm.load_labelled_mnist_sample()
    table = concepts.DIGIT_CONCEPTS
    with args.strategy_obj.scope():
        encoder, classifier = cbm.pretrain_encoder(
            data.x_train,
            data.y_train,
            embedding_dim=args.embedding_dim,
            epochs=args.encoder_epochs,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    reference = classifier.evaluate(data.x_test, data.y_test, verbose=0, return_dict=True)
    labelled = types.SimpleNamespace(
        train=tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)),
        test=tf.data.Dataset.from_tensor_slices((data.x_test, data.y_test)),
        num_train=len(data.x_train),
        validation=None,  # what `fit` reads of an ImageData
    )
    weights = {
        k: v if getattr(args, k) is None else getattr(args, k)
        for k, v in cbm.DEFAULT_WEIGHTS.items()
    }
    with args.strategy_obj.scope():
        model = cbm.ConceptBottleneckModel(
            table,
            args.mode,
            input_shape=data.x_train.shape[1:],
            encoder=encoder,
            temperature=args.temperature,
            num_slots=args.num_slots,
            hard=not args.soft_selection,
            inference=args.inference,
            presence=args.presence,
            seed=args.seed,
            **weights,
        )
        training.compile_model(model, keras.optimizers.Adam(args.lr), jit_compile=not args.no_jit)
    info = fit(model, labelled, args, out)
    test = labelled.test.batch(args.batch_size)
    result = model.evaluate(test, verbose=0, return_dict=True)
    metrics = {f"test_{k}": float(v) for k, v in result.items()}
    metrics.update(
        test_active_concepts=metrics["test_sparsity"] * len(table.concept_names),
        encoder_test_accuracy=float(reference["accuracy"]),
        temperature=args.temperature,
        num_slots=model.bottleneck.num_slots,
    )
    step = len(data.x_test) // 10
    shown, labels = data.x_test[::step][:10], data.y_test[::step][:10]
    activations = model.concepts(shown, training=False)["concepts"].numpy()
    predicted = np.argmax(model(shown, training=False).numpy(), axis=-1)
    top = concepts.top_concepts(activations, table.concept_names, k=7)
    examples = [
        {"label": int(y), "predicted": int(p), "concepts": [n for n, _ in t]}
        for y, p, t in zip(labels, predicted, top, strict=True)
    ]
    finish(model, args, out, metrics)
    return {"metrics": metrics, "examples": examples, **info}


register(
    "cbm",
    Task(
        help="sparse concept bottleneck model",
        run=run_cbm,
        add_flags=add_cbm_flags,
        resolve=resolve_cbm,
        ignores=("dist", "estimator", "test_file", "data_dir", "binarization", *LATENT_MODEL_FLAGS),
    ),
)


# ==================================================================================================
# Task: toy (gradient estimators on problems with exact gradients: igr_tf.estimators, igr_tf.toys)
# ==================================================================================================

#: The toys are losses; vimco estimates the gradient of a multi-sample log-mean-exp bound.
TOY_ESTIMATORS = tuple(name for name in ESTIMATORS if name != "vimco")
#: Estimators that take --dist (their distribution / relaxation) and ignore --temperature.
TOY_DIST_ESTIMATORS = ("reinforce_loo", "rebar", "relax")
TOY_NO_TEMPERATURE = ("reinforce_loo", "disarm")


def add_toy_flags(p: ArgumentParser) -> None:
    t = p.add_argument_group("toy")
    # --estimator is a common flag (vae and sop take it too).
    t.add_argument(
        "--toy",
        default="poly",
        choices=("poly", "categorical"),
        help="poly: mean |b - 0.45|^p over binary b; categorical: ||sum_v W_v d_v - y||^p",
    )
    t.add_argument("--power", type=finite_float, default=None,
                   help="p, > 0 (default 2 poly, 3 categorical)")  # fmt: skip
    t.add_argument(
        "--toy-vars", type=int, default=None, help="variables (default 128 poly, 3 categorical)"
    )
    t.add_argument("--toy-categories", type=int, default=4, help="categorical: K, ≥ 2")
    t.add_argument("--steps", type=int, default=1000, help="Adam steps (--batch-size samples each)")
    t.add_argument("--grad-draws", type=int, default=1000,
                   help="gradient draws for the bias/variance report, ≥ 2")  # fmt: skip
    t.add_argument("--sf-samples", type=int, default=2, help="reinforce_loo: samples S, ≥ 2")


def resolve_toy(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    """--estimator: one of TOY_ESTIMATORS (default st_gs); TOY_DIST_ESTIMATORS sample from
    --dist (one of ESTIMATOR_RELAXATIONS)."""
    if args.estimator is None:
        args.estimator = "st_gs"
    name = args.estimator
    if name not in TOY_ESTIMATORS:
        why = "vimco needs a multi-sample log-weight objective and the toys are losses; "
        why = why if name == "vimco" else ""
        error(f"--estimator {name}: {why}choose from {', '.join(TOY_ESTIMATORS)}")
    if args.power is not None and not args.power > 0:
        error(f"--power must be > 0; got {args.power}")
    for flag, least in (("toy_vars", 1), ("toy_categories", 2), ("steps", 1), ("grad_draws", 2),
                        ("sf_samples", 2)):  # fmt: skip
        value = getattr(args, flag)
        if value is not None and value < least:
            error(f"{_flag(flag)} must be ≥ {least}; got {value}")
    k = 2 if args.toy == "poly" else args.toy_categories
    if name == "disarm" and k != 2:
        error(f"--estimator disarm is for binary variables: use --toy poly; got K = {k}")
    if name in TOY_DIST_ESTIMATORS:
        # Score functions need an exact pmf; IGR-SB has one only for K = 2.
        allowed = ESTIMATOR_RELAXATIONS
        if name == "reinforce_loo" and k != 2:
            allowed = tuple(d for d in allowed if d != "igr_sb")
        if args.dist not in allowed:
            error(f"--dist {args.dist}: {name} with K = {k} takes {', '.join(allowed)}")
    if name in TOY_NO_TEMPERATURE and args.temperature is not None:
        error(f"--temperature: {name} has no temperature")
    if args.lr is None:
        args.lr = 1e-3


def run_toy(args: argparse.Namespace, out: str) -> dict[str, Any]:
    import tensorflow as tf

    from igr_tf import estimators, toys, training

    if args.toy == "poly":
        toy = toys.PolynomialToy(args.toy_vars or 128, power=args.power or 2.0)
    else:
        toy = toys.CategoricalToy(
            args.toy_vars or 3, args.toy_categories, power=args.power or 3.0, seed=args.seed
        )
    options: dict[str, Any] = {}
    if args.estimator in ("rebar", "relax"):
        options["relaxation"] = args.dist
    if args.estimator == "reinforce_loo":
        options.update(num_samples=args.sf_samples, distribution=args.dist)
    if args.temperature is not None:
        options["temperature"] = args.temperature
    estimator = estimators.get(args.estimator, toy.num_categories, **options)
    log_every = max(1, args.steps // 200)
    result = toys.run_toy(estimator, toy, steps=args.steps, lr=args.lr, batch=args.batch_size,
                          seed=args.seed, num_draws=args.grad_draws,
                          jit_compile=not args.no_jit, log_every=log_every)  # fmt: skip
    if args.chief:
        with tf.summary.create_file_writer(os.path.join(out, "logs", "train")).as_default():
            for i, value in enumerate(result["losses"]):
                tf.summary.scalar("loss", value, step=min(i * log_every, args.steps - 1))
        training.write_test_summary(os.path.join(out, "logs"), result["metrics"],
                                    step=args.steps - 1, hparams=run_flags(args))  # fmt: skip
    result["estimator"] = {"name": args.estimator, **estimator.get_config()}
    return result


register(
    "toy",
    Task(
        help="gradient estimators on toy losses with exact gradients",
        run=run_toy,
        add_flags=add_toy_flags,
        resolve=resolve_toy,
        ignores=(
            "dataset",
            "data_file",
            "test_file",
            "data_dir",
            "binarization",
            "epochs",
            *LATENT_MODEL_FLAGS,
        ),
    ),
)


# ==================================================================================================
# Task: gumbolt (a discrete VAE with a Boltzmann-machine prior: igr_tf.boltzmann, models/gumbolt.py)
# ==================================================================================================

#: The binary relaxations gumbolt's posterior takes (igr_tf.boltzmann.posterior checks the same).
GUMBOLT_RELAXATIONS = ("gs", "igr_i", "igr_sb")


def add_gumbolt_flags(p: ArgumentParser) -> None:
    """gumbolt's own flags; it also reads --dist (gs, igr_i, igr_sb), --temperature, --arch
    (linear|nonlinear), --samples (k of the training bound) and --eval-samples."""
    g = p.add_argument_group("gumbolt")
    g.add_argument(
        "--prior",
        default="rbm",
        choices=("rbm", "factorial"),
        help="RBM prior, or the factorial Bernoulli baseline of the same size",
    )
    g.add_argument("--z1-units", type=int, default=20, help="binary latents in the RBM's group 1")
    g.add_argument("--z2-units", type=int, default=20, help="binary latents in the RBM's group 2")
    g.add_argument("--num-chains", type=int, default=100, help="persistent Gibbs chains (rbm)")
    g.add_argument("--gibbs-steps", type=int, default=1, help="Gibbs sweeps of the chains per step")
    g.add_argument(
        "--igr-learn-scale",
        action="store_true",
        help="igr_*: learn the Gaussian scale too (degenerate with GumBolt's proxy posterior; "
        "otherwise it is 1)",
    )
    g.add_argument("--ais-chains", type=int, default=100, help="AIS runs for the test log Z")
    g.add_argument("--ais-betas", type=int, default=10_000, help="AIS intermediate distributions")


def resolve_gumbolt(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    if args.dist not in GUMBOLT_RELAXATIONS:
        error(f"--dist {args.dist}: gumbolt's binary relaxations are "
              f"{', '.join(GUMBOLT_RELAXATIONS)}")  # fmt: skip
    if args.igr_learn_scale and args.dist == "gs":
        error("--igr-learn-scale needs --dist igr_i or igr_sb (GS has no scale)")
    for name in ("z1_units", "z2_units", "num_chains", "gibbs_steps", "ais_chains", "ais_betas",
                 "samples", "eval_samples"):  # fmt: skip
        if getattr(args, name) < 1:
            error(f"{_flag(name)} must be ≥ 1; got {getattr(args, name)}")
    if args.arch is not None and args.arch not in ("linear", "nonlinear"):
        error(f"--arch {args.arch}: gumbolt's architectures are linear, nonlinear")
    if args.lr is None:
        args.lr = 1e-3
    if args.temperature is None:
        args.temperature = GUMBOLT_TEMPERATURE
    if args.arch is None:
        args.arch = "nonlinear"


def gumbolt_images(model, data, args):
    """`images(epoch)`: 8 test images, their reconstructions and 8 BM-prior samples decoded."""
    import tensorflow as tf

    x = next(iter(data.test.batch(8)))

    def images(epoch: int):
        recon = tf.reshape(tf.sigmoid(model(x, training=False)), tf.shape(x))
        gen = model.generate(x.shape[0], num_steps=200, seed=(args.seed, epoch))
        return tf.concat([x, recon, gen], 0)

    return images


def run_gumbolt(args: argparse.Namespace, out: str) -> dict[str, Any]:
    import keras

    from igr_tf import training
    from models.gumbolt import GumBoltVAE

    data = load_data(args)
    if data.likelihood != "bernoulli":
        raise ValueError(f"gumbolt needs binary images; {data.name} is continuous")
    with args.strategy_obj.scope():
        model = GumBoltVAE(
            args.dist,
            (args.z1_units, args.z2_units),
            args.prior,
            args.temperature,
            arch=args.arch,
            image_shape=data.image_shape,
            num_samples=args.samples,
            num_chains=args.num_chains,
            gibbs_steps=args.gibbs_steps,
            learn_scale=args.igr_learn_scale,
            seed=args.seed,
        )
        training.compile_model(model, keras.optimizers.Adam(args.lr), jit_compile=not args.no_jit)
    info = fit(model, data, args, out, gumbolt_images(model, data, args))
    test = load_test(data, args)
    relaxed = model.evaluate(test, verbose=0, return_dict=True)
    log_z = model.log_partition("ais", args.ais_chains, args.ais_betas, seed=(args.seed, 1))
    metrics = {"log_z_ais": log_z["log_z"], "log_z_ais_se": log_z["log_z_se"]}
    loglik = model.evaluate_loglik(test, log_z["log_z"], args.eval_samples, seed=args.seed)
    metrics.update(loglik)
    if min(args.z1_units, args.z2_units) <= 20 or args.prior == "factorial":  # 2^20: a second
        exact = model.log_partition("exact")["log_z"]
        metrics["log_z_exact"] = exact
        metrics["test_loglik_exact_log_z"] = loglik["test_loglik"] + log_z["log_z"] - exact
    # The relaxed training objective on the test set, normalized with the AIS log Z.
    metrics["test_relaxed_bound"] = -relaxed["loss"] - log_z["log_z"]
    metrics["temperature"] = args.temperature
    finish(model, args, out, metrics)
    return {"metrics": metrics, **info}


register(
    "gumbolt",
    Task(
        help="discrete VAE with a Boltzmann-machine prior (GumBolt)",
        run=run_gumbolt,
        add_flags=add_gumbolt_flags,
        resolve=resolve_gumbolt,
        # GumBolt's latents are binary Boltzmann units, relaxed by its own rule.
        ignores=(
            "estimator",
            "num_vars",
            "num_categories",
            "continuous_dim",
            "kl",
            "stl",
            "hard",
            "sb_adaptive",
            "sb_threshold",
        ),
    ),
)


# ==================================================================================================
# Task: dlgmm (deep latent Gaussian mixture: a VAE with a mixture prior; models/dlgmm.py)
# ==================================================================================================

#: dlgmm's K when --components is not given: IGR-SB's cap (adaptive truncation picks how many
#: components a draw uses), and the fixed K of every other relaxation (the GS baseline's K = 10).
DLGMM_COMPONENTS = {"igr_sb": 50}
DLGMM_FIXED_COMPONENTS = 10


def add_dlgmm_flags(p: ArgumentParser) -> None:
    """dlgmm's own flags; it also reads --dist (default igr_sb, adaptive: --sb-threshold is the
    stick mass to cover, 1 uses every stick), --temperature, --kl, --stl, --hard, --eval-samples."""
    g = p.add_argument_group("dlgmm")
    g.add_argument(
        "--components",
        type=int,
        default=None,
        help=f"mixture components K, ≥ 2 (igr_sb: the cap, default {DLGMM_COMPONENTS['igr_sb']}; "
        f"otherwise default {DLGMM_FIXED_COMPONENTS})",
    )
    g.add_argument("--latent-dim", type=int, default=10, help="dimension D of the Gaussian z")
    g.add_argument(
        "--hidden-units",
        default="256,128",
        help="widths of the encoder's ReLU layers, comma-separated (the decoder mirrors them)",
    )


def _hidden_units(text: str) -> tuple[int, ...] | None:
    try:
        units = tuple(int(u) for u in text.split(",") if u.strip())
    except ValueError:
        return None
    return units if units and all(u >= 1 for u in units) else None


def resolve_dlgmm(args: argparse.Namespace, error: Callable[[str], None]) -> None:
    check_latent_model_flags(args, error)
    if args.estimator is not None:
        error(f"--estimator {args.estimator}: dlgmm trains the relaxed --dist sample only")
    if args.samples != 1:
        error(f"--samples {args.samples}: dlgmm trains the one-sample ELBO (use --eval-samples)")
    for name, default in (("temperature_schedule", "fixed"), ("validation_split", 0.0)):
        if getattr(args, name, default) != default:
            error(f"{_flag(name)}: vae only; dlgmm trains at a fixed --temperature on the "
                  "whole training set")  # fmt: skip
    if args.components is None:
        args.components = DLGMM_COMPONENTS.get(args.dist, DLGMM_FIXED_COMPONENTS)
    if args.components < 2:
        error(f"--components must be ≥ 2; got {args.components}")
    if args.latent_dim < 1:
        error(f"--latent-dim must be ≥ 1; got {args.latent_dim}")
    if _hidden_units(args.hidden_units) is None:
        error(f"--hidden-units must be comma-separated integers ≥ 1; got {args.hidden_units!r}")
    if args.temperature is None:
        args.temperature = VAE_TEMPERATURE[args.dist]


def dlgmm_images(model, data, args):
    """`images(epoch)`: 8 test images, their reconstructions and 8 samples of the mixture prior."""
    import tensorflow as tf

    x = next(iter(data.test.batch(8)))

    def images(epoch: int):
        recon = tf.reshape(tf.sigmoid(model(x, training=False)[:, : x.shape[1] * x.shape[2]]),
                           tf.shape(x))  # fmt: skip
        gen = model.generate(x.shape[0], seed=(args.seed, epoch))
        return tf.concat([x, recon, gen], 0)

    return images


def run_dlgmm(args: argparse.Namespace, out: str) -> dict[str, Any]:
    import keras

    from igr_tf import training
    from models.dlgmm import DeepLatentGaussianMixture

    data = load_data(args)
    options = relaxation_options(args)
    if args.dist == "igr_sb":  # always adaptive here: the cap is not the number of components
        options.update(adaptive=True, threshold=args.sb_threshold)
    with args.strategy_obj.scope():
        model = DeepLatentGaussianMixture(
            args.dist,
            args.components,
            args.latent_dim,
            args.temperature,
            hidden_units=_hidden_units(args.hidden_units),
            image_shape=data.image_shape,
            likelihood=data.likelihood,
            relaxation_options=options,
            hard=args.hard,
            seed=args.seed,
        )
        training.compile_model(model, keras.optimizers.Adam(args.lr), jit_compile=not args.no_jit)
    info = fit(model, data, args, out, dlgmm_images(model, data, args))
    test = load_test(data, args)
    elbo = model.evaluate(test, verbose=0, return_dict=True)
    metrics = {"test_elbo": -elbo["loss"], "test_recon": elbo["recon"],
               "test_kl_z": elbo["kl_z"], "test_kl_c": elbo["kl_c"]}  # fmt: skip
    metrics.update({f"test_{k}": elbo[k] for k in model.latent.metric_names})
    loglik = model.evaluate_loglik(test, args.eval_samples, seed=args.seed)
    mass = loglik.pop("component_mass")
    metrics.update(loglik, temperature=args.temperature, num_components=args.components)
    finish(model, args, out, {k: v for k, v in metrics.items() if not isinstance(v, str)})
    return {"metrics": metrics, "component_mass": mass, **info}


register(
    "dlgmm",
    Task(
        help="deep latent Gaussian mixture (VAE with a mixture prior; IGR-SB: unbounded K)",
        run=run_dlgmm,
        add_flags=add_dlgmm_flags,
        resolve=resolve_dlgmm,
        defaults={"dist": "igr_sb"},
        ignores=("arch", "num_vars", "continuous_dim"),
    ),
)


# ==================================================================================================
# Main
# ==================================================================================================


def setup_tensorflow(args: argparse.Namespace):
    """Imports TensorFlow quietly, splits the CPU, makes the strategy and seeds everything."""
    tf = import_tensorflow()

    from igr_tf import training

    if args.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices
        )
    try:
        args.strategy_obj = training.make_strategy(args.strategy)
    except (ValueError, KeyError, json.JSONDecodeError) as e:  # a malformed TF_CONFIG
        fail(f"--strategy {args.strategy}: cannot set up the strategy from TF_CONFIG: {e}", PROG)
    args.chief = bool(getattr(args.strategy_obj.extended, "should_checkpoint", True))
    tf.keras.utils.set_random_seed(args.seed)
    return tf


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    check_args(parser, args)
    setup_tensorflow(args)
    from igr_tf import training
    from igr_tf.datasets import DataError

    out = args.out
    start = time.perf_counter()
    try:
        os.makedirs(out, exist_ok=True)
        saved = training.RunCheckpoint.read_info(os.path.join(out, "checkpoint"))
        if saved is not None:
            resume_check(args, saved, os.path.join(out, "checkpoint"))
        result = TASKS[args.task].run(args, out)
    except (DataError, ValueError, OSError) as e:  # CheckpointError and ResumeError included
        fail(str(e), PROG)
    except import_tensorflow().errors.ResourceExhaustedError as e:  # sizes beyond the memory
        first = (e.message or str(e)).strip().splitlines()[0]
        fail(f"out of memory ({first}); reduce --batch-size or the model's sizes", PROG)
    result.update(
        flags=run_flags(args),
        seed=args.seed,
        replicas=args.strategy_obj.num_replicas_in_sync,
        wall_seconds=time.perf_counter() - start,
        environment=training.run_metadata(),
    )
    if args.chief:
        training.write_json_atomic(os.path.join(out, "results.json"), result)
    print(
        "Test metrics:",
        ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in result["metrics"].items()
        ),
    )
    if args.chief:
        print(f"Results written to {os.path.join(out, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
