"""Tests for the command line `train.py`, run as subprocesses from the repository root.

Processes are slow to start (TensorFlow import), so the `runs` fixture starts them once, two at a
time, and the tests check their outputs:

  reference:  vae, 4 epochs, uninterrupted                 -> the smoke run's outputs, too
  killed:     the same command, SIGKILLed at random moments (during an epoch, while the
              epoch-3 checkpoint is written, during the final evaluation), then rerun to the end

(The tf.distribute runs are in test_train_distributed.py: another file, so that another pytest
worker runs them.)

Checks that need no separate process call `train.main` in this one.
"""

from __future__ import annotations

import concurrent.futures
import glob
import itertools
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import train  # noqa: E402
from igr_tf import datasets, toys  # noqa: E402
from igr_tf.paper import RECOMMENDED_TEMPERATURE as TAU  # noqa: E402
from models.vae import DiscreteVAE  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)  # train.py's own default applies
ENV.pop("TF_CONFIG", None)
EPOCHS = 4


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> Run:
    proc = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


# A train.py process that SIGKILLs itself at a chosen moment (argv[1] = the moment).
KILLABLE = """
import os, signal, sys
sys.path.insert(0, os.getcwd())
import train
from igr_tf import training

kind, *where = sys.argv[1].split(":")
def die():
    os.kill(os.getpid(), signal.SIGKILL)

if kind == "batch":  # after train batch B (0-based) of epoch E (0-based)
    epoch, batch = map(int, where)
    begin, end = training.SteadyTimer.on_epoch_begin, training.SteadyTimer.on_train_batch_end
    def on_epoch_begin(self, e, logs=None):
        self.kill_epoch = e
        begin(self, e, logs)
    def on_train_batch_end(self, b, logs=None):
        end(self, b, logs)
        if (self.kill_epoch, b) == (epoch, batch):
            die()
    training.SteadyTimer.on_epoch_begin = on_epoch_begin
    training.SteadyTimer.on_train_batch_end = on_train_batch_end
elif kind == "save":  # checkpoint files of epoch E written, the index not yet updated
    from tensorflow.python.checkpoint import checkpoint_management as cm
    update = cm.update_checkpoint_state_internal
    def update_state(save_dir, model_checkpoint_path, *args, **kwargs):
        if model_checkpoint_path.endswith("-" + where[0]):
            die()
        return update(save_dir, model_checkpoint_path, *args, **kwargs)
    cm.update_checkpoint_state_internal = update_state
elif kind == "evaluation":  # during the final evaluation, after S of its batches
    from models.vae import DiscreteVAE
    loglik = DiscreteVAE.loglik_terms
    calls = []
    def loglik_terms(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > int(where[0]):
            die()
        return loglik(self, *args, **kwargs)
    DiscreteVAE.loglik_terms = loglik_terms
sys.exit(train.main(sys.argv[2:]))
"""


def run_killable(moment: str, *args: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-c", KILLABLE, moment, *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


# Command lines that fail before TensorFlow is imported, run by one process: it imports train.py
# once and forks a child per command line, a process in the state `python train.py ARGS` is in
# when it calls main(). Each child's stdout and stderr are its file descriptors 1 and 2 (anything
# written to them counts, not only Python's sys.stderr) and its exit status is train.py's. Spawning
# an interpreter per command line cost ~0.25 s of CPU each, ~60 times.
FORKED_CLI = """
import json, os, sys, traceback
sys.path.insert(0, os.getcwd())
import train
assert "tensorflow" not in sys.modules, "importing train.py imported TensorFlow"
directory, statuses = sys.argv[1], []
for i, args in enumerate(json.loads(sys.stdin.read())):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, name in ((1, f"{i}.out"), (2, f"{i}.err")):
                f = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(f, fd)
                os.close(f)
            sys.argv = ["train.py", *args]
            try:
                code = train.main()
            except SystemExit as e:  # as the interpreter treats sys.exit(main()) in train.py
                code = e.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(statuses))
"""


def run_cli_forked(argvs: list[list[str]], directory) -> list[Run]:
    """`run_cli(*argv)` for each argv, for command lines that fail before TensorFlow is imported
    (flag and config errors), in one process (`FORKED_CLI`)."""
    proc = subprocess.run(
        [sys.executable, "-c", FORKED_CLI, str(directory)],
        input=json.dumps([list(a) for a in argvs]),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
    statuses = json.loads(proc.stdout)
    assert len(statuses) == len(argvs)
    runs = []
    for i, code in enumerate(statuses):
        with (
            open(os.path.join(directory, f"{i}.out")) as out,
            open(os.path.join(directory, f"{i}.err")) as err,
        ):
            runs.append(Run(code, out.read(), err.read()))
    return runs


def assert_one_line_error(run: Run, *fragments: str) -> str:
    """Exit status 2 and exactly one line on stderr (no TensorFlow log lines either)."""
    assert run.returncode == 2, (run.returncode, run.stdout[-2000:], run.stderr[-3000:])
    lines = run.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("train.py: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def tiny_npz(path, n=60) -> str:
    """n real digits as uint8 grey levels [n, 28, 28] in an npz with key 'images'."""
    data = datasets.load("mnist_sample")
    x = np.stack(list(data.train.take(n).as_numpy_iterator()))[..., 0]
    np.savez(path, images=(x * 255).astype(np.uint8))
    return str(path)


# Tiny, fast settings: 54 training images (6 held out for test) in batches of 20: 3 steps/epoch.
# XLA is off except in the mirrored runs that test it: compiling costs each process more than
# its 12 training steps, and exact resume is claimed (and tested) on the CPU kernels.
def vae_flags(data_file, out, epochs, *extra, jit=False) -> list[str]:
    return [
        "vae", "--data-file", data_file, "--epochs", str(epochs), "--batch-size", "20",
        "--arch", "linear", "--eval-samples", "5", "--dist", "igr_i",
        "--num-vars", "5", "--verbose", "0", "--out", out, *([] if jit else ["--no-jit"]), *extra,
    ]  # fmt: skip


#: The random moments of the kill test, drawn once with a fixed seed: a train batch of epoch 2,
#: the end of the epoch-3 checkpoint write, and a batch of the final evaluation.
_rng = random.Random(20200)
KILLS = (f"batch:1:{_rng.randrange(3)}", "save:3", f"evaluation:{_rng.randrange(1)}")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    return tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_file):
    tmp = tmp_path_factory.mktemp("cli")
    out = {name: str(tmp / name) for name in ("reference", "killed")}
    res: dict = {"data": data_file, "out": out}

    def killed_chain():
        chain = [run_killable(moment, *vae_flags(data_file, out["killed"], EPOCHS))
                 for moment in KILLS]  # fmt: skip
        return chain + [run_cli(*vae_flags(data_file, out["killed"], EPOCHS))]

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {
            "reference": pool.submit(run_cli, *vae_flags(data_file, out["reference"], EPOCHS)),
            "killed": pool.submit(killed_chain),
        }
        res.update({name: job.result() for name, job in jobs.items()})
    for name in ("reference", "killed"):
        path = os.path.join(out[name], "results.json")
        res[f"{name}_results"] = json.load(open(path)) if os.path.exists(path) else None
    return res


def run_main(argv: list[str], capsys) -> Run:
    """`train.main(argv)` in this process: exit status and what it printed."""
    try:
        code = train.main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


# --- help and flag errors (no TensorFlow import: fast) --------------------------------------------
def test_help_lists_every_flag_with_its_default_and_the_resumable_ones():
    run = run_cli("--help", timeout=60)
    assert run.returncode == 0 and not run.stderr, run.stderr
    text = run.stdout
    blocks = {}  # "--flag" -> its help text
    for block in re.split(r"\n(?=  -)", text):
        first = block.strip().split()[0].rstrip(",")
        blocks[first] = " ".join(block.split())
    actions = [a for a in train.build_parser()._actions if a.option_strings != ["-h", "--help"]]
    assert len(actions) > 30
    for action in actions:
        if not action.option_strings:  # the positional task
            assert "{vae,sop,approx" in text and "default vae" in text
            continue
        flag = action.option_strings[0]
        assert flag in blocks, flag
        block = blocks[flag]
        assert "default" in block, (flag, block)
        assert not ("(default: None)" in block and block.count("default") > 1), (flag, block)
        if action.default is not None:
            assert str(action.default) in block, (flag, block)
        resumable = action.dest in train.RESUMABLE_FLAGS and action.dest not in ("out", "config")
        assert ("resumable" in block) == resumable, (flag, block)
    epilog = " ".join(text.split()).split("Rerunning a command")[1]
    for name in train.RESUMABLE_FLAGS:
        assert "--" + name.replace("_", "-") in epilog, name


def test_dist_choices_are_the_registry_names():
    from igr_tf.distributions import names

    dist = next(a for a in train.build_parser()._actions if a.dest == "dist")
    assert tuple(dist.choices) == names() == train.RELAXATIONS


BAD_FLAGS = [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--temperature", "-1"], "--temperature must be > 0"),
    (["--temperature", "nan"], "argument --temperature: must be a finite number"),
    (["--temperature", "inf"], "argument --temperature: must be a finite number"),
    (["--lr", "inf"], "argument --lr: must be a finite number, got 'inf'"),
    (["--lr=-inf"], "argument --lr: must be a finite number"),
    (["--lr", "nan"], "argument --lr: must be a finite number"),
    (["--lr", "0"], "--lr must be > 0"),
    # Positive, but inf or 0 in float32 (the message was numpy's or Keras's, not the flag's).
    (["--temperature", "1e39"], "--temperature must be in [1.18e-38, 3.4e+38]"),
    (["--temperature", "1e-44"], "--temperature must be in [1.18e-38"),
    (["--lr", "1e-300"], "--lr must be in [1.18e-38"),
    (["--lr", "fast"], "argument --lr: invalid finite float value: 'fast'"),
    (["--num-categories", "1"], "--num-categories must be ≥ 2"),
    # A flag the task does not read is refused, not ignored and recorded as if applied.
    (["sop", "--hard"], "--hard: sop trains the relaxed sample"),
    (["sop", "--temperature-schedule", "learned"], "not used by `train.py sop` (a `train.py vae`"),
    (
        ["vae", "--components", "3"],
        "--components is not used by `train.py vae` (a `train.py dlgmm`",
    ),
    (["gumbolt", "--kl", "sampled"], "--kl is not used by `train.py gumbolt`"),
    (["toy", "--epochs", "3"], "--epochs is not used by `train.py toy`"),
    (["dlgmm", "--arch", "conv"], "--arch is not used by `train.py dlgmm`"),
    (["approx", "--batch-size", "7"], "--batch-size is not used by `train.py approx`"),
    (["--num-vars", "0"], "--num-vars must be ≥ 1"),
    (["--samples", "0"], "--samples must be ≥ 1"),
    (["--eval-samples", "-5"], "--eval-samples must be ≥ 1"),
    (["--dist", "foo"], "--dist: invalid choice: 'foo'"),
    (["--epochs", "0"], "--epochs must be ≥ 1"),
    (["--epochs", "two"], "--epochs: invalid int value: 'two'"),
    (["--batch-size", "-3"], "--batch-size must be ≥ 1"),
    (["--seed", "-1"], "--seed must be in [0, 2147483647]"),
    (["--seed", "99999999999"], "--seed must be in [0, 2147483647]"),
    (["--cpu-devices", "-2"], "--cpu-devices must be ≥ 0"),
    (["--strategy", "tpu"], "--strategy: invalid choice: 'tpu'"),
    (["--verbose", "3"], "--verbose: invalid choice: 3"),
    (["--sb-threshold", "1.5"], "--sb-threshold must be in (0, 1]"),
    (["--sb-threshold", "nan"], "argument --sb-threshold: must be a finite number"),
    (["--sb-adaptive"], "--sb-adaptive needs --dist igr_sb"),
    (["--kl", "exact"], "--kl: invalid choice: 'exact'"),
    (["--binarization", "soft"], "--binarization: invalid choice: 'soft'"),
    (["--test-file", "t.npz"], "--test-file needs --data-file"),
    (["--data-file", "no/such/dir/tiny.npz"], "--data-file no/such/dir/tiny.npz: no such file"),
    (["--data-file", "tests"], "--data-file tests: is a directory"),
    (["--out", "README.md"], "--out README.md: is a file; --out names a directory"),
    (["--out", "README.md/run"], "--out README.md/run: README.md is a file"),
    (["mnist"], "invalid choice: 'mnist'"),
    (["approx", "--prob", "1.5"], "--prob must be in (0, 1)"),
    (["approx", "--rate", "0"], "--rate must be > 0"),
    (["approx", "--trials", "0"], "--trials must be ≥ 1"),
    (["approx", "--categories", "1"], "--categories must be ≥ 2"),
    (["approx", "--successes", "-1"], "--successes must be > 0"),
    (["approx", "--mc-samples", "0"], "--mc-samples must be ≥ 1"),
    (["--config", "nope"], "--config: no config 'nope'; known: approx_paper"),
    (["toy", "--estimator", "vimco"], "--estimator vimco: vimco needs a multi-sample"),
    (["toy", "--estimator", "nope"], "--estimator nope: choose from st, st_gs, gumbel_rao"),
    (["toy", "--estimator", "disarm", "--toy", "categorical"], "disarm is for binary"),
    (["toy", "--estimator", "rebar", "--dist", "igr_planar"], "--dist igr_planar: rebar"),
    (["toy", "--steps", "0"], "--steps must be ≥ 1; got 0"),
]

BAD_CONFIGS = [
    ("[1, 2]", "must hold a JSON object of flag values"),
    ('{"epochs": "ten"}', "epochs: invalid value 'ten' for --epochs"),
    ('{"dist": "foo"}', "dist: 'foo' is not one of igr_i, igr_sb, igr_planar, gs"),
    ('{"task": "gan"}', "task: 'gan' is not one of vae, sop, approx"),
    ('{"lr": "inf"}', "lr: invalid value 'inf' for --lr"),
    ('{"stl": 1}', "stl must be true or false"),
    ('{"epochs": [1, 2]}', "epochs must be a number or a string"),
    ('{"color": "red"}', "unknown keys color"),
    ("{not json", "cannot read"),
]


@pytest.fixture(scope="module")
def flag_errors(tmp_path_factory) -> dict[str, dict]:
    """The runs of every command line of the two tests below (one process: `run_cli_forked`):
    {"flags": {tuple(args): Run}, "configs": {file content: Run of --config FILE}}."""
    tmp = tmp_path_factory.mktemp("flag_errors")
    argvs = [list(args) for args, _ in BAD_FLAGS]
    for i, (content, _) in enumerate(BAD_CONFIGS):
        path = tmp / f"bad{i}.json"
        path.write_text(content)
        argvs.append(["--config", str(path)])
    runs = run_cli_forked(argvs, tmp)
    flags, configs = runs[: len(BAD_FLAGS)], runs[len(BAD_FLAGS) :]
    result = {
        "flags": {tuple(args): run for (args, _), run in zip(BAD_FLAGS, flags, strict=True)},
        "configs": {content: run for (content, _), run in zip(BAD_CONFIGS, configs, strict=True)},
    }
    assert len(result["flags"]) == len(BAD_FLAGS) and len(result["configs"]) == len(BAD_CONFIGS)
    return result


@pytest.mark.parametrize("args, fragment", BAD_FLAGS)
def test_bad_flags_exit_2_with_one_line(args, fragment, flag_errors):
    # Flags are checked before TensorFlow is imported: fast, and nothing else on stderr.
    run = flag_errors["flags"][tuple(args)]
    assert_one_line_error(run, fragment)
    assert not run.stdout


@pytest.mark.parametrize("content, fragment", BAD_CONFIGS)
def test_bad_config_files_exit_2_with_one_line(content, fragment, flag_errors):
    assert_one_line_error(flag_errors["configs"][content], fragment)


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"pixels": np.zeros((10, 28, 28), np.uint8)}, "no 'images' key (keys: pixels)"),
        ({"images": np.zeros((10, 28, 28), np.float32)}, "must be uint8 grey levels"),
        ({"images": np.zeros((10, 784), np.uint8)}, "must have rank 3"),
        ({"images": np.zeros((0, 28, 28), np.uint8)}, "is empty"),
        (None, "not a readable .npz file"),
    ],
)
def test_malformed_data_files_exit_2_with_one_line_naming_the_file(
    arrays, fragment, tmp_path, capsys
):
    """In process (train.main), since these fail after TensorFlow is imported."""
    path = str(tmp_path / "bad.npz")
    if arrays is None:
        with open(path, "wb") as f:
            f.write(b"not a zip file")
    else:
        np.savez(path, **arrays)
    run = run_main(vae_flags(path, str(tmp_path / "out"), 1), capsys)
    assert_one_line_error(run, path, fragment)
    assert not os.path.exists(tmp_path / "out" / "results.json")


# --- the reference run: outputs ---------------------------------------------------------------
def test_reference_run_writes_results(runs):
    run, res = runs["reference"], runs["reference_results"]
    assert run.returncode == 0 and not run.stderr, run.stderr[-3000:]
    assert "Results written to" in run.stdout and "Resuming" not in run.stdout
    assert res["flags"]["epochs"] == EPOCHS and res["flags"]["dist"] == "igr_i"
    assert res["flags"]["data_file"] == runs["data"] and res["flags"]["lr"] == 1e-3
    assert res["seed"] == 0 and res["replicas"] == 1
    versions = res["environment"]["versions"]
    assert versions["tensorflow"] == tf.__version__ and versions["keras"] == keras.__version__
    assert versions["tensorflow_probability"] == tfp.__version__
    assert res["wall_seconds"] > res["train_seconds"] > 0
    assert res["timing"]["train_steps"] == 3 * EPOCHS  # 54 images in batches of 20
    assert 0 < res["steps_per_sec"] < math.inf
    m = res["metrics"]
    for key in ("test_elbo", "test_loglik", "test_loglik_original_formula", "test_kl"):
        assert math.isfinite(m[key]), (key, m)
    assert m["test_elbo"] <= 0 and m["test_loglik"] <= 0  # log-probabilities of binary images
    # No --temperature: the temperature study's recommendation for igr_i.
    assert m["test_loglik_proposal"] == "exact" and m["temperature"] == TAU["igr_i"]
    assert res["epochs_completed"] == EPOCHS and res["resumed_from_epoch"] == 0
    assert len(res["history"]["loss"]) == EPOCHS and len(res["history"]["val_loss"]) == EPOCHS
    assert res["history"]["loss"][-1] < res["history"]["loss"][0]


def events(run_dir) -> dict[str, list[tuple[int, object]]]:
    """TensorBoard tag -> [(step, summary value)] in the event files of one run directory."""
    found: dict[str, list] = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def test_tensorboard_logs_have_the_keras_layout_images_and_test_metrics(runs):
    logs = os.path.join(runs["out"]["reference"], "logs")
    assert sorted(os.listdir(logs)) == ["test", "train", "validation"]
    train_run, validation, test = (
        events(os.path.join(logs, r)) for r in ("train", "validation", "test")
    )
    epochs = list(range(EPOCHS))
    assert sorted(s for s, _ in train_run["epoch_loss"]) == epochs  # the curves overlay
    assert sorted(s for s, _ in validation["epoch_loss"]) == epochs
    history = runs["reference_results"]["history"]
    for (step, value), expected in zip(sorted(train_run["epoch_loss"], key=lambda e: e[0]),
                                       history["loss"], strict=True):  # fmt: skip
        assert float(tf.make_ndarray(value.tensor)) == pytest.approx(expected, rel=1e-6), step
    samples = sorted(validation["samples"], key=lambda e: e[0])
    assert [s for s, _ in samples] == epochs
    encoded = tf.make_ndarray(samples[0][1].tensor)  # [width, height, png, png, ...]
    assert encoded[0] == b"28" and encoded[1] == b"28" and len(encoded) == 2 + 18  # 6 x 3
    metrics = runs["reference_results"]["metrics"]
    for key in ("test_elbo", "test_loglik", "test_kl"):
        ((step, value),) = test[key]
        assert step == EPOCHS - 1
        assert float(tf.make_ndarray(value.tensor)) == pytest.approx(metrics[key], rel=1e-6)
    assert "_hparams_/session_start_info" in test  # flags, for TensorBoard's HParams dashboard


def test_saved_model_loads_and_matches_the_checkpoint(runs):
    directory = runs["out"]["reference"]
    model = keras.models.load_model(os.path.join(directory, "model.keras"))
    assert isinstance(model, DiscreteVAE)
    assert model.latent.num_vars == 5 and model.latent.relaxation_name == "igr_i"
    # model.keras and the last checkpoint are two records of the same final weights.
    reader = tf.train.load_checkpoint(os.path.join(directory, "checkpoint"))
    info = json.loads(reader.get_tensor("run/.ATTRIBUTES/VARIABLE_VALUE"))
    assert info["epoch"] == EPOCHS
    paths = [path for path, _ in info["variables"]["model"]]
    assert len(paths) == len(model.variables)
    for i, (path, variable) in enumerate(zip(paths, model.variables, strict=True)):
        if "seed_generator" not in path:  # evaluation drew random numbers after the checkpoint
            saved = reader.get_tensor(f"model/{i}/.ATTRIBUTES/VARIABLE_VALUE")
            np.testing.assert_array_equal(saved, variable.numpy(), err_msg=path)


# --- killed at random moments and rerun: the same run, bit for bit --------------------------------
def checkpoint_tensors(directory) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(os.path.join(directory, "checkpoint"))
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key.startswith(("model/", "optimizer/"))
    }


def test_run_killed_at_random_moments_ends_exactly_as_the_uninterrupted_run(runs):
    *killed, last = runs["killed"]
    assert [k.returncode for k in killed] == [-9, -9, -9], [k.stderr[-2000:] for k in killed]
    assert last.returncode == 0 and not last.stderr, last.stderr[-3000:]
    # batch kill in epoch 2 -> resumes at 1; kill before the epoch-3 checkpoint counts -> at 2;
    # kill in the final evaluation -> all epochs done, only the evaluation is rerun.
    assert "Resuming" not in killed[0].stdout
    assert "Resuming from epoch 1" in killed[1].stdout
    assert "Resuming from epoch 2" in killed[2].stdout
    assert f"Resuming from epoch {EPOCHS}" in last.stdout
    ref, res = runs["reference_results"], runs["killed_results"]
    print("uninterrupted:", ref["metrics"], "\nkilled 3 times:", res["metrics"])
    assert res["metrics"] == ref["metrics"]  # bit for bit
    assert res["history"] == ref["history"]  # every epoch, not only those after the restart
    assert [r["epoch"] for r in res["resumes"]] == [1, 2, EPOCHS]
    a, b = checkpoint_tensors(runs["out"]["reference"]), checkpoint_tensors(runs["out"]["killed"])
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # The killed checkpoint write left no stray files behind once the run went on.
    names = os.listdir(os.path.join(runs["out"]["killed"], "checkpoint"))
    assert not [n for n in names if "_temp" in n], names


# --- resuming: what may change and what may not ---------------------------------------------------
@pytest.fixture()
def finished(runs, tmp_path) -> str:
    """A copy of the reference run's directory, without its results."""
    out = str(tmp_path / "run")
    shutil.copytree(runs["out"]["reference"], out)
    os.remove(os.path.join(out, "results.json"))
    return out


@pytest.mark.parametrize(
    "extra, named",
    [
        # The default τ follows --dist: a changed --dist changes it too, and both are named.
        (
            ["--dist", "gs"],
            ["--dist 'igr_i' (now 'gs')", f"--temperature {TAU['igr_i']} (now {TAU['gs']})"],
        ),
        (["--temperature", "0.5"], [f"--temperature {TAU['igr_i']} (now 0.5)"]),
        (["--seed", "3"], ["--seed 0 (now 3)"]),
        (["--kl", "sampled"], ["--kl None (now 'sampled')"]),
        (["--num-vars", "6", "--batch-size", "10"], ["--batch-size 20 (now 10)", "--num-vars 5"]),
    ],
)
def test_resuming_with_flags_that_change_the_run_is_refused(runs, finished, extra, named, capsys):
    run = run_main(vae_flags(runs["data"], finished, EPOCHS + 1, *extra), capsys)
    line = assert_one_line_error(run, "was written with other flags", *named)
    assert "only --epochs, --lr," in line and f"delete {finished}/checkpoint" in line
    assert not os.path.exists(os.path.join(finished, "results.json"))


def test_resuming_with_other_data_is_refused(runs, finished, tmp_path, capsys):
    other = tiny_npz(tmp_path / "other.npz", n=40)
    run = run_main(vae_flags(other, finished, EPOCHS), capsys)
    assert_one_line_error(run, f"--data-file {runs['data']!r} (now {other!r})")


def test_resuming_with_fewer_epochs_than_done_is_refused(runs, finished, capsys):
    run = run_main(vae_flags(runs["data"], finished, 2), capsys)
    assert_one_line_error(run, f"--epochs 2 is less than the {EPOCHS} epochs already completed")


def test_a_checkpoint_from_before_a_flag_existed_resumes_unless_the_flag_is_now_changed(tmp_path):
    # The temperature study's checkpoints were written before --continuous-dim, --hidden-units
    # and --latent-dim existed; resuming them was refused ("--continuous-dim None (now 0)").
    def args(*extra):
        p = train.build_parser()
        a = train.parse_args(p, ["vae", "--out", str(tmp_path / "run"), *extra])
        train.check_args(p, a)
        return a

    new_flags = ("continuous_dim", "hidden_units", "latent_dim")
    old_record = {k: v for k, v in train.run_flags(args()).items() if k not in new_flags}
    saved = {"flags": old_record, "epoch": 1}
    train.resume_check(args(), saved, "ckpt")  # the defaults: the run it was
    with pytest.raises(train.ResumeError, match=r"--continuous-dim 0 \(now 3\)"):
        train.resume_check(args("--continuous-dim", "3"), saved, "ckpt")
    # Flags the checkpoint did record still count.
    with pytest.raises(train.ResumeError, match=r"--seed 0 \(now 4\)"):
        train.resume_check(args("--seed", "4"), saved, "ckpt")


def test_rerun_of_a_completed_run_trains_nothing_and_reports_the_whole_history(
    runs, finished, capsys
):
    # --eval-samples may change: only the evaluation is rerun.
    run = run_main(vae_flags(runs["data"], finished, EPOCHS, "--eval-samples", "5"), capsys)
    assert run.returncode == 0, run.stderr
    with open(os.path.join(finished, "results.json")) as f:
        res = json.load(f)
    ref = runs["reference_results"]
    assert res["resumed_from_epoch"] == EPOCHS and res["timing"]["train_steps"] == 0
    assert res["history"] == ref["history"] and res["metrics"] == ref["metrics"]


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("empty index", "ckpt-4: unreadable checkpoint"),
        ("truncated data", "ckpt-4: unreadable checkpoint"),
        ("garbage data", "ckpt-4: unreadable checkpoint"),
        ("garbage state", "checkpoint/checkpoint: not a TensorFlow checkpoint index"),
        ("empty state", "checkpoint/checkpoint: not a TensorFlow checkpoint index"),
        ("missing index", "ckpt-4.index: missing"),
        ("file instead of directory", "checkpoint: is a file, not a checkpoint directory"),
    ],
)
def test_damaged_checkpoints_exit_2_naming_the_file(runs, finished, damage, fragment, capsys):
    directory = os.path.join(finished, "checkpoint")
    data = glob.glob(os.path.join(directory, f"ckpt-{EPOCHS}.data-*"))[0]
    index = os.path.join(directory, f"ckpt-{EPOCHS}.index")
    state = os.path.join(directory, "checkpoint")
    if damage == "empty index":
        open(index, "wb").close()
    elif damage == "truncated data":
        size = os.path.getsize(data)
        with open(data, "r+b") as f:
            f.truncate(size // 2)
    elif damage == "garbage data":
        size = os.path.getsize(data)
        with open(data, "wb") as f:
            f.write(os.urandom(size))
    elif damage == "garbage state":
        with open(state, "w") as f:
            f.write("\x00\x01 this is not { a checkpoint")
    elif damage == "empty state":
        open(state, "w").close()
    elif damage == "missing index":
        os.remove(index)
    else:
        shutil.rmtree(directory)
        open(directory, "w").close()
    run = run_main(vae_flags(runs["data"], finished, EPOCHS + 1), capsys)
    assert_one_line_error(run, fragment)


# --- divergence -----------------------------------------------------------------------------------
def test_divergence_exits_2_naming_the_last_good_checkpoint(runs, finished, capsys):
    """An honest NaN: resume with Adam at lr 1e38 (--lr may change on resume). The first step
    moves every weight by ~1e38 and the Bernoulli log-likelihood becomes NaN."""
    before = checkpoint_tensors(finished)
    run = run_main(vae_flags(runs["data"], finished, EPOCHS + 2, "--lr", "1e38"), capsys)
    line = assert_one_line_error(run, f"training diverged at epoch {EPOCHS + 1}, batch ")
    assert "(loss=nan)" in line or "(loss=inf)" in line
    path = os.path.join(finished, "checkpoint", f"ckpt-{EPOCHS}")
    assert f"last good checkpoint: {path} (epoch {EPOCHS})" in line
    assert not os.path.exists(os.path.join(finished, "results.json"))
    after = checkpoint_tensors(finished)  # still the last good one, and finite
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_sizes_beyond_memory_exit_2_with_one_line(data_file, tmp_path, capsys):
    """--num-vars 1e9 asks for a [20, 18e9] tensor: TensorFlow's allocator refuses it at once
    (ResourceExhaustedError), which ended in a traceback; now one line naming what to reduce."""
    flags = vae_flags(data_file, str(tmp_path / "oom"), 1, "--num-vars", "1000000000")
    run = run_main(flags, capsys)  # the last --num-vars wins
    line = assert_one_line_error(run, "out of memory (", "reduce --batch-size or the model's sizes")
    assert "OOM when allocating" in line


# --- the other tasks ----------------------------------------------------------------------------
def test_sop_trains_resumes_and_writes_results(data_file, tmp_path, capsys):
    """In process: the wiring of the sop task, including resuming with its learning-rate
    schedule (which, unlike Adam's constant rate, is not a variable the checkpoint restores)."""
    out = str(tmp_path / "sop")
    flags = ["sop", "--data-file", data_file, "--batch-size", "20", "--no-jit", "--dist", "gs",
             "--eval-samples", "5", "--verbose", "0", "--out", out]  # fmt: skip
    first = run_main([*flags, "--epochs", "1"], capsys)
    assert first.returncode == 0, first.stderr
    second = run_main([*flags, "--epochs", "2"], capsys)
    assert second.returncode == 0, second.stderr
    assert "Resuming from epoch 1" in second.stdout
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    assert res["epochs_completed"] == 2 and res["resumed_from_epoch"] == 1
    assert res["timing"]["train_steps"] == 3 and res["steps_per_sec"] > 0
    assert len(res["history"]["loss"]) == 2 and len(res["history"]["val_nll"]) == 2
    # -log p(lower half | upper half) of 392 binary pixels: positive and at most 392 log 2
    # for anything better than a coin toss; an untrained net is not much better.
    assert 0 < res["metrics"]["test_nll"] < 392 * math.log(2) * 1.5
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert type(model).__name__ == "StructuredOutputPredictor"


def test_sop_refuses_images_that_are_not_28x28(tmp_path, capsys):
    path = str(tmp_path / "small.npz")
    np.savez(path, images=np.zeros((10, 8, 8), np.uint8))
    run = run_main(["sop", "--data-file", path, "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(run, "sop needs 28x28 images", "small.npz")


def test_approx_fits_the_target_and_writes_results(tmp_path, capsys):
    out = str(tmp_path / "approx")
    run = run_main(
        [
            "approx",
            "--target",
            "discrete",
            "--dist",
            "gs",
            "--epochs",
            "3",
            "--mc-samples",
            "500",
            "--out",
            out,
        ],  # fmt: skip
        capsys,
    )
    assert run.returncode == 0, run.stderr
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    # SPEC §5's "discrete" target: proportional to [10, 1, 5, 1, 10, 10, 1, 6, 1, 1].
    weights = np.array([10, 1, 5, 1, 10, 10, 1, 6, 1, 1], float)
    np.testing.assert_allclose(res["target"], weights / weights.sum(), rtol=1e-6)
    assert len(res["losses"]) == 30 and res["flags"]["lr"] == 1e-2
    assert res["metrics"]["temperature"] == 0.1  # GS at 0.1, as in the paper
    losses = np.array(res["losses"])
    assert np.all(np.isfinite(losses)) and losses[-5:].mean() < losses[:5].mean()
    pmf = np.array(res["argmax_pmf"])
    assert pmf.shape == (10,) and abs(pmf.sum() - 1) < 1e-6
    tv = 0.5 * np.abs(pmf - np.array(res["target"])).sum()
    assert res["metrics"]["total_variation"] == pytest.approx(tv, abs=1e-6)
    steps = sorted(s for s, _ in events(os.path.join(out, "logs", "train"))["loss"])
    assert steps == list(range(30))


def test_diverging_approx_run_exits_2(tmp_path, capsys):
    run = run_main(
        [
            "approx",
            "--dist",
            "gs",
            "--epochs",
            "2",
            "--mc-samples",
            "200",
            "--lr",
            "1e6",
            "--out",
            str(tmp_path / "approx"),
        ],  # fmt: skip
        capsys,
    )
    assert_one_line_error(run, "the fit diverged", "lower --lr (now 1000000.0)")
    assert not os.path.exists(tmp_path / "approx" / "results.json")


def test_toy_reports_the_loss_curve_and_the_gradient_bias_against_the_exact_one(tmp_path, capsys):
    out = str(tmp_path / "toy")
    argv = ["toy", "--estimator", "st", "--toy", "categorical", "--steps", "20"]
    argv += ["--grad-draws", "2000", "--batch-size", "8", "--no-jit", "--out", out]
    run = run_main(argv, capsys)
    assert run.returncode == 0, run.stderr
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    m = res["metrics"]
    assert len(res["losses"]) == 20 and np.all(np.isfinite(res["losses"]))
    assert m["final_loss_exact"] and m["final_loss"] == res["losses"][-1]
    # The start is near-uniform (logits within ±0.01, so each of the 4^3 outcomes' probability is
    # within a factor e^±0.06 of 1/64): the exact loss is the outcomes' mean, from numpy here.
    toy = toys.CategoricalToy(3, 4, power=3.0, seed=0)
    values = [
        np.linalg.norm(sum(toy.embedding[v, b] for v, b in enumerate(o)) - toy.goal) ** 3
        for o in itertools.product(range(4), repeat=3)
    ]
    assert m["exact_loss_at_init"] == pytest.approx(np.mean(values), rel=0.06)
    # Plain straight-through on a cubic loss: a bias far above its Monte Carlo noise.
    assert m["bias_norm_at_init"] > 5 * m["bias_se_at_init"] > 0
    assert 0 <= m["zero_fraction_at_init"] <= 1 and m["num_draws_at_end"] == 2000
    assert res["estimator"]["name"] == "st" and res["flags"]["lr"] == 1e-3
    steps = sorted(s for s, _ in events(os.path.join(out, "logs", "train"))["loss"])
    assert steps == list(range(20))
    p = train.build_parser()
    args = train.parse_args(p, ["toy", "--estimator", "reinmax"])
    train.check_args(p, args)
    assert args.out == os.path.join("runs", "toy_reinmax_poly_seed0")


def test_each_task_declares_exactly_the_shared_flags_it_does_not_read():
    """`Task.ignores` against the code: a declared flag is never read as `args.<flag>` by the
    task's resolve and run (through train.py's functions they call), and every shared flag they
    do not read is declared (else it would be accepted and silently ignored). Flags of the
    command itself (--out, --strategy, ...) are read by main for every task."""
    import ast

    with open(os.path.join(REPO, "train.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def reads(name: str, seen: set) -> set:
        if name in seen or name not in functions:
            return set()
        seen.add(name)
        out = set()
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "args":
                out.add(node.attr)
            elif isinstance(node, ast.Name) and node.id in functions:
                out |= reads(node.id, seen)
        return out

    parser = train.build_parser()
    groups = {g.title: {a.dest for a in g._group_actions} for g in parser._action_groups}
    command = {"out", "strategy", "cpu_devices", "no_jit", "verbose", "config", "seed", "help"}
    shared = (groups["common"] | groups["vae and sop"]) - command
    for name, task in train.TASKS.items():
        used = reads(task.run.__name__, set()) | reads(task.resolve.__name__, set())
        assert set(task.ignores) <= shared, name
        assert not set(task.ignores) & used, (name, set(task.ignores) & used)
        assert shared - used <= set(task.ignores), (name, shared - used - set(task.ignores))
