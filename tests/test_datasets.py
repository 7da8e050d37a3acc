"""Tests of igr_tf.datasets: packaged sample, npz files, mocked TFDS, pipelines."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import igr_tf
from igr_tf import datasets
from igr_tf.datasets import DataError, load, pipeline

PACKAGED_SAMPLE = Path(igr_tf.__file__).resolve().parent / "resources" / "mnist_sample.npz"
BUILD_SCRIPT = PACKAGED_SAMPLE.parent / "build_mnist_sample.py"


def as_array(ds: tf.data.Dataset) -> np.ndarray:
    return np.stack(list(ds.as_numpy_iterator()))


def assert_images(x: np.ndarray, shape: tuple[int, ...], binary: bool) -> None:
    assert x.dtype == np.float32
    assert x.shape[1:] == shape
    assert x.min() >= 0.0 and x.max() <= 1.0
    if binary:
        assert set(np.unique(x)) <= {0.0, 1.0}


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------------------------------
# Packaged MNIST sample


@pytest.fixture(scope="module")
def sample() -> datasets.ImageData:
    return load()


def test_mnist_sample_sizes_shapes_binary(sample: datasets.ImageData) -> None:
    assert (sample.name, sample.likelihood, sample.image_shape) == (
        "mnist_sample",
        "bernoulli",
        (28, 28, 1),
    )
    assert (sample.num_train, sample.num_test) == (3600, 400)
    train, test = as_array(sample.train), as_array(sample.test)
    assert len(train) == 3600 and len(test) == 400
    assert_images(train, (28, 28, 1), binary=True)
    assert_images(test, (28, 28, 1), binary=True)
    assert 0.05 < train.mean() < 0.3  # digits: mostly background, some ink


def build_script():
    spec = importlib.util.spec_from_file_location("build_mnist_sample", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packaged_sample_is_the_recorded_build(sample: datasets.ImageData) -> None:
    """The packaged file is the one build_mnist_sample.py made (its recorded content digest), and
    has the properties the build gives it; nothing outside the repository is read."""
    build = build_script()
    assert build.content_sha256(PACKAGED_SAMPLE) == build.CONTENT_SHA256
    assert PACKAGED_SAMPLE.stat().st_size < 1_000_000
    with np.load(PACKAGED_SAMPLE, allow_pickle=False) as f:
        packed, shape, labels = f["packed"], f["shape"], f["labels"]
        tr, te = f["train_index"], f["test_index"]
    assert shape.tolist() == [4000, 28, 28] and packed.shape == (4000, 98)
    # 400 digits per class; a fixed stratified split: disjoint, complete, 40 test digits a class.
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 400))
    assert len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == 4000
    np.testing.assert_array_equal(np.bincount(labels[te], minlength=10), np.full(10, 40))
    # Stored in a shuffled order, not one class after another.
    assert len(set(labels[tr[:50]].tolist())) == 10
    binary = np.unpackbits(packed, axis=1, count=784).reshape(-1, 28, 28).astype(np.float32)
    # Digits: every image has ink and background, the ink of a class is where its class puts it
    # (mean images of different classes differ far more than two halves of one class do).
    ink = binary.reshape(4000, -1).mean(1)
    assert ink.min() > 0.02 and ink.max() < 0.5
    means = np.stack([binary[labels == c].mean(0) for c in range(10)])
    halves = [binary[labels == 1][::2].mean(0), binary[labels == 1][1::2].mean(0)]
    assert np.abs(halves[0] - halves[1]).mean() < 0.5 * np.abs(means[0] - means[1]).mean()
    # What load() serves is exactly those images, in the stored order.
    np.testing.assert_array_equal(as_array(sample.test)[..., 0], binary[te])
    np.testing.assert_array_equal(as_array(sample.train.take(50))[..., 0], binary[tr[:50]])


def test_content_digest_sees_any_change(tmp_path: Path) -> None:
    build = build_script()
    with np.load(PACKAGED_SAMPLE, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(tmp_path / "same.npz", **arrays)  # another container, the same arrays
    assert build.content_sha256(tmp_path / "same.npz") == build.CONTENT_SHA256
    arrays["packed"] = arrays["packed"].copy()
    arrays["packed"][17, 40] ^= 1  # one pixel
    np.savez(tmp_path / "changed.npz", **arrays)
    assert build.content_sha256(tmp_path / "changed.npz") != build.CONTENT_SHA256


@pytest.mark.parametrize("mode", ["dynamic", "none"])
def test_mnist_sample_refuses_non_static_binarization(mode: str) -> None:
    with pytest.raises(ValueError, match="already binarized"):
        load("mnist_sample", binarization=mode)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="mnist_sample, mnist, binarized_mnist, fashion_mnist"):
        load("cifar10")
    with pytest.raises(ValueError, match="static, dynamic, none"):
        load(binarization="stochastic")
    assert datasets.DATASETS[0] == "mnist_sample" and len(datasets.DATASETS) == 5


# --------------------------------------------------------------------------------------------------
# Pipeline


def test_pipeline_reshuffles_every_epoch(sample: datasets.ImageData) -> None:
    batched = pipeline(sample.test, 64, seed=1)
    epochs = [np.concatenate(list(batched.as_numpy_iterator())) for _ in range(2)]
    assert [len(b) for b in batched.as_numpy_iterator()] == [64] * 6 + [16]
    keys = [[x.tobytes() for x in e] for e in epochs]
    assert keys[0] != keys[1]  # a new order each epoch ...
    assert sorted(keys[0]) == sorted(keys[1])  # ... of the same images
    assert sorted(keys[0]) == sorted(x.tobytes() for x in as_array(sample.test))
    dropped = pipeline(sample.test, 64, drop_remainder=True)
    assert [len(b) for b in dropped.as_numpy_iterator()] == [64] * 6
    ordered = pipeline(sample.test, 400, shuffle=False)
    np.testing.assert_array_equal(next(iter(ordered)).numpy(), as_array(sample.test))


def epochs_of(ds: tf.data.Dataset, steps: int) -> list[np.ndarray]:
    """The batches of a multi-epoch dataset grouped into epochs (each [examples, ...])."""
    batches = [b.numpy() for b in ds]
    assert len(batches) % steps == 0
    return [np.concatenate(batches[i : i + steps]) for i in range(0, len(batches), steps)]


def test_epoch_pipeline_orders_depend_on_seed_and_epoch_only() -> None:
    values = tf.data.Dataset.range(23)
    steps = datasets.steps_per_epoch(23, 5)
    assert steps == 5 and datasets.steps_per_epoch(23, 5, drop_remainder=True) == 4
    full = epochs_of(datasets.epoch_pipeline(values, 5, seed=3, epochs=range(0, 4)), steps)
    # A process that starts at epoch 2 sees exactly the batches the first one saw there.
    resumed = epochs_of(datasets.epoch_pipeline(values, 5, seed=3, epochs=range(2, 4)), steps)
    for a, b in zip(full[2:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    for epoch in full:  # each epoch a permutation of the data, and a different one
        assert sorted(epoch.tolist()) == list(range(23))
    assert len({tuple(e.tolist()) for e in full}) == 4
    other = epochs_of(datasets.epoch_pipeline(values, 5, seed=4, epochs=range(0, 1)), steps)
    assert other[0].tolist() != full[0].tolist()
    batches = [len(b) for b in datasets.epoch_pipeline(values, 5, seed=3, epochs=range(1))]
    assert batches == [5, 5, 5, 5, 3]
    dropped = datasets.epoch_pipeline(values, 5, seed=3, epochs=range(2), drop_remainder=True)
    assert [len(b) for b in dropped] == [5] * 8


def test_epoch_pipeline_dynamic_binarization_per_seed_and_epoch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(30, 6, 5), dtype=np.uint8)
    path = write_npz(tmp_path / "grey.npz", images=grey)
    data = load(data_file=path, test_file=path, binarization="dynamic", seed=1)
    full = epochs_of(datasets.epoch_pipeline(data.train, 30, seed=1, epochs=range(3)), 1)
    resumed = epochs_of(datasets.epoch_pipeline(data.train, 30, seed=1, epochs=range(2, 3)), 1)
    np.testing.assert_array_equal(full[2], resumed[0])
    assert_images(full[0], (6, 5, 1), binary=True)
    assert not np.array_equal(full[1], full[2])
    # One grey image 30 times, so the order does not matter: over 200 epochs every pixel is 1
    # with frequency pixel / 255 (within 4 standard errors).
    same = write_npz(tmp_path / "same.npz", images=np.repeat(grey[:1], 30, axis=0))
    data = load(data_file=same, test_file=same, binarization="dynamic", seed=1)
    draws = np.concatenate(
        [b.numpy() for b in datasets.epoch_pipeline(data.train, 30, seed=1, epochs=range(200))]
    )[..., 0]
    p = grey[0] / 255.0
    stderr = np.sqrt(p * (1 - p) / len(draws)) + 1e-12
    assert len(draws) == 6000 and np.all(np.abs(draws.mean(0) - p) < 4 * stderr)


def test_dynamic_binarization_redraws_every_epoch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(40, 6, 5), dtype=np.uint8)
    path = write_npz(tmp_path / "grey.npz", images=grey)
    data = load(data_file=path, test_file=path, binarization="dynamic")
    assert data.likelihood == "bernoulli"
    # Iterating the dataset directly redraws ...
    a, b = as_array(data.train), as_array(data.train)
    assert_images(a, (6, 5, 1), binary=True)
    assert not np.array_equal(a, b)
    # ... and so does the cached pipeline, whose cache holds the grey levels, not one draw.
    batched = pipeline(data.train, 40, shuffle=False)
    e1, e2 = (next(iter(batched)).numpy() for _ in range(2))
    assert_images(e1, (6, 5, 1), binary=True)
    assert not np.array_equal(e1, e2)
    mean = np.mean([next(iter(batched)).numpy() for _ in range(100)], axis=0)
    np.testing.assert_allclose(mean[..., 0], grey / 255.0, atol=0.25)
    assert abs(mean.mean() - grey.mean() / 255.0) < 0.02
    # The test set is one fixed draw.
    np.testing.assert_array_equal(as_array(data.test), as_array(data.test))
    assert_images(as_array(data.test), (6, 5, 1), binary=True)


# --------------------------------------------------------------------------------------------------
# npz data files


def test_data_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, size=(50, 8, 6), dtype=np.uint8)
    test = rng.integers(0, 256, size=(7, 8, 6), dtype=np.uint8)
    tr_path = write_npz(tmp_path / "train.npz", images=train, labels=np.zeros(50))
    te_path = write_npz(tmp_path / "test.npz", images=test)

    grey = load("omniglot", data_file=tr_path, test_file=te_path, binarization="none")
    assert (grey.name, grey.likelihood, grey.image_shape) == ("train.npz", "gaussian", (8, 6, 1))
    assert (grey.num_train, grey.num_test) == (50, 7)
    np.testing.assert_allclose(as_array(grey.train)[..., 0], train / 255.0, rtol=1e-6)
    np.testing.assert_allclose(as_array(grey.test)[..., 0], test / 255.0, rtol=1e-6)

    static = load(data_file=tr_path, test_file=te_path)  # default: static threshold 0.5
    assert static.likelihood == "bernoulli"
    np.testing.assert_array_equal(as_array(static.train)[..., 0], train / 255.0 > 0.5)

    split = load(data_file=tr_path)  # fixed seeded 90/10 split
    assert (split.num_train, split.num_test) == (45, 5)
    a_tr, a_te = as_array(split.train), as_array(split.test)
    again = load(data_file=tr_path)
    np.testing.assert_array_equal(as_array(again.test), a_te)
    together = np.concatenate([a_tr, a_te])[..., 0]
    assert sorted(x.tobytes() for x in together) == sorted(
        x.tobytes() for x in (train / 255.0 > 0.5).astype(np.float32)
    )


def one_line_error(match: str, **kwargs: object) -> str:
    with pytest.raises(DataError, match=match) as info:
        load(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_data_file_errors_name_file_and_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.npz"
    assert str(missing) in one_line_error("no such file", data_file=missing)

    wrong_key = write_npz(tmp_path / "wrong_key.npz", x=np.zeros((3, 4, 4), np.uint8))
    msg = one_line_error("no 'images' key", data_file=wrong_key)
    assert "wrong_key.npz" in msg and "keys: x" in msg

    floats = write_npz(tmp_path / "floats.npz", images=np.zeros((3, 4, 4), np.float32))
    assert "floats.npz" in one_line_error("must be uint8.*float32", data_file=floats)

    flat = write_npz(tmp_path / "flat.npz", images=np.zeros((3, 16), np.uint8))
    assert "flat.npz" in one_line_error(r"rank 3 .*\(3, 16\)", data_file=flat)

    good = write_npz(tmp_path / "good.npz", images=np.zeros((3, 4, 4), np.uint8))
    assert "floats.npz" in one_line_error("uint8", data_file=good, test_file=floats)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    assert "garbage.npz" in one_line_error("not a readable .npz", data_file=garbage)
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------------------------------
# TFDS


@pytest.mark.parametrize("name", ["mnist", "binarized_mnist", "fashion_mnist", "omniglot"])
def test_unprepared_tfds_fails_fast_with_instructions(name: str, tmp_path: Path) -> None:
    start = time.monotonic()
    message = one_line_error("not prepared", name=name, data_dir=tmp_path)
    assert time.monotonic() - start < 10  # no download attempt, no network wait
    assert f"tfds.load('{name}')" in message and str(tmp_path) in message
    assert "mnist_sample" in message
    assert not any(tmp_path.iterdir())  # nothing downloaded or prepared


def raw_images(name: str, split: str) -> np.ndarray:
    """The mocked TFDS images, straight from tfds (inside an active mock_data)."""
    ds = tfds.load(name, split=split, shuffle_files=False)
    return np.stack([ex["image"] for ex in ds.as_numpy_iterator()])


def test_tfds_mnist_static_threshold(tmp_path: Path) -> None:
    with tfds.testing.mock_data(num_examples=12):
        data = load("mnist", data_dir=tmp_path)
        raw = raw_images("mnist", "test")
        test = as_array(data.test)
    assert (data.num_train, data.num_test, data.likelihood) == (12, 12, "bernoulli")
    assert_images(test, (28, 28, 1), binary=True)
    np.testing.assert_array_equal(test, (raw / 255.0 > 0.5).astype(np.float32))
    assert 0.3 < test.mean() < 0.7  # mock pixels are uniform on 0..254


def test_tfds_fashion_mnist_is_continuous(tmp_path: Path) -> None:
    with tfds.testing.mock_data(num_examples=12):
        data = load("fashion_mnist", data_dir=tmp_path)
        raw = raw_images("fashion_mnist", "train")
        train = as_array(data.train)
    assert (data.num_train, data.likelihood, data.image_shape) == (12, "gaussian", (28, 28, 1))
    assert_images(train, (28, 28, 1), binary=False)
    np.testing.assert_allclose(train, raw / 255.0, rtol=1e-6)
    assert len(np.unique(train)) > 100


def test_tfds_binarized_mnist_is_cast_not_rescaled(tmp_path: Path) -> None:
    # max_value=2: mocked pixels in {0, 1}, like the real data set (not 0/255).
    with tfds.testing.mock_data(num_examples=6, max_value=2):
        data = load("binarized_mnist", data_dir=tmp_path)
        raw = raw_images("binarized_mnist", "test")
        train, test = as_array(data.train), as_array(data.test)
    assert (data.num_train, data.num_test, data.likelihood) == (12, 6, "bernoulli")  # train+valid
    assert len(train) == 12
    assert_images(test, (28, 28, 1), binary=True)
    np.testing.assert_array_equal(test, raw.astype(np.float32))
    assert 0.3 < test.mean() < 0.7
    with pytest.raises(ValueError, match="already binarized"):
        load("binarized_mnist", binarization="dynamic", data_dir=tmp_path)


def test_tfds_omniglot_split_and_preprocessing(tmp_path: Path) -> None:
    # Every mocked split has n examples, so train = n + 5065 and test = n - 5065.
    n = datasets.OMNIGLOT_TEST_TO_TRAIN + 3
    with tfds.testing.mock_data(num_examples=n):
        data = load("omniglot", data_dir=tmp_path)
        test = as_array(data.test)
        raw = tfds.load("omniglot", split="test", shuffle_files=False)
        tail = np.stack([ex["image"] for ex in raw.skip(n - 3).as_numpy_iterator()])
        first_train = next(iter(data.train)).numpy()
    assert (data.num_train, data.num_test) == (n + 5065, 3)
    assert data.image_shape == (28, 28, 1) and data.likelihood == "bernoulli"
    assert_images(test, (28, 28, 1), binary=True)
    assert first_train.shape == (28, 28, 1)
    assert tail.shape == (3, 105, 105, 3)
    # Channel 0, inverted (ink = 1), bilinear 105 -> 28, threshold 0.5.
    ink = 1.0 - tail[..., :1].astype(np.float32) / 255.0
    expected = (tf.image.resize(ink, [28, 28], method="bilinear").numpy() > 0.5).astype(np.float32)
    np.testing.assert_array_equal(test, expected)
