"""Tests for the command line `train.py`, run as a subprocess from the repository root.

Training runs are slow to start (TensorFlow import, ~10 s on 2 cores), so the `runs` fixture
starts them once, two at a time, and the tests check their outputs:

  smoke:     vae, 2 epochs                     -> results.json, logs, model.keras, checkpoint
  then, each in its own copy of the smoke run's directory, at the same time:
  resumed:   the same command with --epochs 3  -> resumes from epoch 2, trains one epoch
  diverged:  --epochs 3 --lr 1e38              -> NaN in epoch 3, exit 2
  and, alongside the smoke run, mirrored (--strategy mirrored --cpu-devices 2). Checks that need
  no separate process call `train.main` in this one.

The resumed run is what a rerun after a killed process does: the process that wrote the
epoch-2 checkpoint is gone, and a new one picks up from the file (kill -9 in the middle of an
epoch is tested with a toy model in test_training.py).
"""

from __future__ import annotations

import concurrent.futures
import glob
import json
import math
import os
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
from igr_tf import datasets, training  # noqa: E402
from models.vae import DiscreteVAE  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)

# Lines that TensorFlow's C++ runtime (absl logging) writes to stderr before its logging is
# initialized, whatever TF_CPP_MIN_LOG_LEVEL says; they are not ours.
_TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] )"
)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """stderr lines, without TensorFlow's own log lines."""
        return [ln for ln in self.stderr.splitlines() if ln.strip() and not _TF_NOISE.match(ln)]


def run_cli(*args: str, timeout: float = 300) -> Run:
    proc = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(run: Run, *fragments: str, strict: bool = False) -> str:
    """Exit status 2 and one line on stderr; `strict`: not even TensorFlow's log lines."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines() if strict else run.error_lines
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


# Tiny, fast settings: 54 training images (6 held out for test) in batches of 20.
def vae_flags(data_file, out, epochs, *extra) -> list[str]:
    return [
        "vae", "--data-file", data_file, "--epochs", str(epochs), "--batch-size", "20",
        "--arch", "linear", "--no-jit", "--eval-samples", "5", "--dist", "gs",
        "--num-vars", "5", "--verbose", "0", "--out", out, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    return tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_file):
    tmp = tmp_path_factory.mktemp("cli")
    data = data_file
    out, out_mirrored = str(tmp / "run"), str(tmp / "run_mirrored")
    out_div, out_repeated = str(tmp / "run_div"), str(tmp / "run_repeated")
    results: dict = {"data": data, "out": out, "out_div": out_div, "out_repeated": out_repeated}
    results["out_mirrored"] = out_mirrored

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        smoke = pool.submit(run_cli, *vae_flags(data, out, 2))
        mirrored = pool.submit(
            run_cli,
            *vae_flags(data, out_mirrored, 1, "--strategy", "mirrored", "--cpu-devices", "2"),
        )
        results["smoke"] = smoke.result()
        assert results["smoke"].returncode == 0, results["smoke"].stderr
        # Keep the smoke run's outputs; copies of its directory continue it.
        results["smoke_dir"] = str(tmp / "smoke_dir")
        shutil.copytree(out, results["smoke_dir"])
        with open(os.path.join(out, "results.json")) as f:
            results["smoke_results"] = json.load(f)
        for copy in (out_div, out_repeated):
            shutil.copytree(out, copy)
            os.remove(os.path.join(copy, "results.json"))
        resumed = pool.submit(run_cli, *vae_flags(data, out, 3))
        diverged = pool.submit(run_cli, *vae_flags(data, out_div, 3, "--lr", "1e38"))
        results["mirrored"] = mirrored.result()
        results["resumed"] = resumed.result()
        results["diverged"] = diverged.result()
    return results


def run_main(argv: list[str], capsys) -> Run:
    """`train.main(argv)` in this process (no TensorFlow import to wait for): exit status and
    what it printed."""
    try:
        code = train.main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


# --- help and flag errors (no TensorFlow import: fast) --------------------------------------------
def test_help_lists_every_flag_with_its_default():
    run = run_cli("--help")
    assert run.returncode == 0 and not run.stderr, run.stderr  # no TensorFlow log lines either
    text = run.stdout
    blocks = {}  # "--flag" -> its help text
    for block in re.split(r"\n(?=  -)", text):
        first = block.strip().split()[0].rstrip(",")
        blocks[first] = " ".join(block.split())
    actions = [a for a in train.build_parser()._actions if a.option_strings != ["-h", "--help"]]
    assert len(actions) > 30
    for action in actions:
        if not action.option_strings:  # the positional task
            assert "{vae,sop,approx,gumbolt}" in text and "default vae" in text
            continue
        flag = action.option_strings[0]
        assert flag in blocks, flag
        block = blocks[flag]
        assert "default" in block, (flag, block)
        # Once: not "(default 1e-3 ...) (default: None)" for flags whose help explains it.
        assert not ("(default: None)" in block and block.count("default") > 1), (flag, block)
        if action.default is not None:
            assert str(action.default) in block, (flag, block)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--temperature", "nan"], "--temperature must be > 0"),
        (["--num-categories", "1"], "--num-categories must be ≥ 2"),
        (["--dist", "foo"], "--dist: invalid choice: 'foo'"),
        (["--epochs", "0"], "--epochs must be ≥ 1"),
        (["--batch-size", "-3"], "--batch-size must be ≥ 1"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--epochs", "two"], "--epochs: invalid int value: 'two'"),
        (["--test-file", "t.npz"], "--test-file needs --data-file"),
        (["--data-file", "no/such/dir/tiny.npz"], "no/such/dir/tiny.npz: no such file"),
        (["mnist"], "invalid choice: 'mnist'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, fragment):
    # Flags are checked before TensorFlow is imported: fast, and nothing else on stderr.
    run = run_cli(*args, timeout=60)
    assert_one_line_error(run, fragment, strict=True)
    assert not run.stdout


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
    """In process (train.main), since these fail after TensorFlow is imported; the divergence
    test checks the same one-line error path in a subprocess."""
    path = str(tmp_path / "bad.npz")
    if arrays is None:
        with open(path, "wb") as f:
            f.write(b"not a zip file")
    else:
        np.savez(path, **arrays)
    run = run_main(vae_flags(path, str(tmp_path / "out"), 1), capsys)
    assert_one_line_error(run, path, fragment)
    assert not os.path.exists(tmp_path / "out" / "results.json")


# --- a training run -------------------------------------------------------------------------------
def test_smoke_run_writes_results(runs):
    smoke, res = runs["smoke"], runs["smoke_results"]
    assert "Traceback" not in smoke.stderr
    assert "Results written to" in smoke.stdout and "Resuming" not in smoke.stdout
    assert res["flags"]["epochs"] == 2 and res["flags"]["dist"] == "gs"
    assert res["flags"]["data_file"] == runs["data"] and res["flags"]["lr"] == 1e-3
    assert res["seed"] == 0 and res["replicas"] == 1
    versions = res["environment"]["versions"]
    assert versions["tensorflow"] == tf.__version__ and versions["keras"] == keras.__version__
    assert versions["tensorflow_probability"] == tfp.__version__
    assert versions["numpy"] == np.__version__
    assert res["wall_seconds"] > res["train_seconds"] > 0
    # 54 training images in batches of 20: 3 steps per epoch, 6 in all.
    assert res["timing"]["train_steps"] == 6
    assert 0 < res["steps_per_sec"] < math.inf
    m = res["metrics"]
    for key in ("test_elbo", "test_loglik", "test_loglik_original_formula", "test_kl"):
        assert math.isfinite(m[key]), (key, m)
    assert m["test_elbo"] <= 0 and m["test_loglik"] <= 0  # log-probabilities of binary images
    assert m["test_loglik_proposal"] == "exact" and m["temperature"] == 1.0
    assert res["epochs_completed"] == 2 and res["resumed_from_epoch"] == 0
    assert len(res["history"]["loss"]) == 2 and len(res["history"]["val_loss"]) == 2
    assert res["history"]["loss"][1] < res["history"]["loss"][0]


def event_tags(log_dir) -> dict[str, list[int]]:
    """TensorBoard tags -> steps found in the event files under log_dir."""
    from tensorflow.core.util import event_pb2

    tags: dict[str, list[int]] = {}
    files = glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))
    for path in files:
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def test_smoke_run_writes_tensorboard_logs(runs):
    tags = event_tags(os.path.join(runs["smoke_dir"], "logs"))
    assert sorted(tags["epoch_loss"]) == [0, 1], tags
    assert sorted(tags["epoch_val_loss"]) == [0, 1]
    assert sorted(tags["samples"]) == [0, 1]  # originals, reconstructions, prior samples


def test_saved_model_loads_and_matches_the_checkpoint(runs):
    directory = runs["smoke_dir"]
    model = keras.models.load_model(os.path.join(directory, "model.keras"))
    assert isinstance(model, DiscreteVAE)
    assert model.latent.num_vars == 5 and model.latent.relaxation_name == "gs"
    assert model.decoder(tf.one_hot(np.zeros((2, 5), int), 10)).shape == (2, 28 * 28)
    # model.keras and the epoch-2 checkpoint are two records of the same final weights.
    ckpt = training.checkpoint_info(os.path.join(directory, "checkpoint"))
    assert ckpt["epoch"] == 2
    saved = np.load(ckpt["path"])
    paths = [v["path"] for v in ckpt["variables"]["model"]]
    assert len(paths) == len(model.variables)
    for i, (path, variable) in enumerate(zip(paths, model.variables, strict=True)):
        if "seed_generator" not in path:  # evaluation drew random numbers after the checkpoint
            np.testing.assert_array_equal(saved[f"model/{i:05d}"], variable.numpy(), err_msg=path)


# --- resuming ------------------------------------------------------------------------------------
def test_rerun_with_more_epochs_resumes(runs):
    resumed = runs["resumed"]
    assert resumed.returncode == 0, resumed.stderr
    with open(os.path.join(runs["out"], "results.json")) as f:
        res = json.load(f)
    assert "Resuming from epoch 2" in resumed.stdout
    assert res["epochs_completed"] == 3 and res["resumed_from_epoch"] == 2
    assert len(res["history"]["loss"]) == 1  # only epoch 3 was trained
    assert res["timing"]["train_steps"] == 3
    assert training.checkpoint_info(os.path.join(runs["out"], "checkpoint"))["epoch"] == 3
    # The logs continue the smoke run's: epoch indices 0, 1 then 2.
    tags = event_tags(os.path.join(runs["out"], "logs"))
    assert sorted(tags["epoch_loss"]) == [0, 1, 2]


def test_rerun_of_a_completed_run_trains_no_epoch(runs, capsys):
    # The smoke run's command again, in a copy of its directory; in process to save time.
    repeated = run_main(vae_flags(runs["data"], runs["out_repeated"], 2), capsys)
    assert repeated.returncode == 0, repeated.stderr
    assert "Resuming from epoch 2" in repeated.stdout
    with open(os.path.join(runs["out_repeated"], "results.json")) as f:
        res = json.load(f)
    assert res["epochs_completed"] == 2 and res["resumed_from_epoch"] == 2
    assert res["history"] == {} and res["timing"]["train_steps"] == 0
    before = np.load(os.path.join(runs["smoke_dir"], "checkpoint", "checkpoint.npz"))
    after = np.load(os.path.join(runs["out_repeated"], "checkpoint", "checkpoint.npz"))
    for key in before.files:
        if key != "__meta__":
            np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    # Nothing trained, same weights: the same seeded test log-likelihood as the smoke run's.
    # (Not the same test ELBO: that one draws from the latent SeedGenerator, which the smoke
    # run also advanced after its last checkpoint, writing the image summary.)
    expected = runs["smoke_results"]["metrics"]["test_loglik"]
    assert res["metrics"]["test_loglik"] == pytest.approx(expected, rel=1e-6)


# --- divergence -----------------------------------------------------------------------------------
def test_divergence_exits_2_naming_the_last_good_checkpoint(runs):
    """An honest NaN: resume the 2-epoch run with Adam at lr 1e38. The first step moves every
    weight by ~1e38, the decoder's logits overflow to ±inf and the Bernoulli log-likelihood
    becomes NaN. (This also checks that --lr is used on resume: the checkpoint holds the
    optimizer's learning-rate variable, 1e-3, which would otherwise silently win.)"""
    diverged, directory = runs["diverged"], runs["out_div"]
    line = assert_one_line_error(diverged, "training diverged at epoch 3")
    assert "loss=nan" in line
    checkpoint = os.path.join(directory, "checkpoint", "checkpoint.npz")
    assert f"last good checkpoint: {checkpoint} (epoch 2)" in line
    assert not os.path.exists(os.path.join(directory, "results.json"))
    assert "Resuming from epoch 2" in diverged.stdout
    # The last good checkpoint is still the smoke run's, and finite.
    info = training.checkpoint_info(os.path.join(directory, "checkpoint"))
    assert info["epoch"] == 2
    good = np.load(os.path.join(runs["smoke_dir"], "checkpoint", "checkpoint.npz"))
    kept = np.load(info["path"])
    for key in good.files:
        if key != "__meta__":
            np.testing.assert_array_equal(good[key], kept[key], err_msg=key)
            if kept[key].dtype.kind == "f":
                assert np.all(np.isfinite(kept[key])), key


# --- tf.distribute --------------------------------------------------------------------------------
def test_mirrored_strategy_on_two_logical_cpus(runs):
    run = runs["mirrored"]
    assert run.returncode == 0, run.stderr
    with open(os.path.join(runs["out_mirrored"], "results.json")) as f:
        res = json.load(f)
    assert res["replicas"] == 2 and res["flags"]["strategy"] == "mirrored"
    assert res["epochs_completed"] == 1 and res["timing"]["train_steps"] == 3
    assert all(math.isfinite(res["metrics"][k]) for k in ("test_elbo", "test_loglik"))
    assert math.isfinite(res["history"]["loss"][0])


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
    # -log p(lower half | upper half) of 392 binary pixels: positive and at most 392 log 2
    # for anything better than a coin toss; an untrained net is not much better.
    assert 0 < res["metrics"]["test_nll"] < 392 * math.log(2) * 1.5
    assert math.isfinite(res["history"]["loss"][0])
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert type(model).__name__ == "StructuredOutputPredictor"
    assert training.checkpoint_info(os.path.join(out, "checkpoint"))["epoch"] == 2


def test_approx_fits_the_target_and_writes_results(tmp_path, capsys):
    out = str(tmp_path / "approx")
    run = run_main(
        ["approx", "--target", "discrete", "--dist", "gs", "--epochs", "3",
         "--mc-samples", "500", "--out", out],  # fmt: skip
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
    assert sorted(event_tags(os.path.join(out, "logs"))["loss"]) == list(range(30))
