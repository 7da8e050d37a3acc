"""Image data sets for the discrete-latent VAE experiments, as unbatched ``tf.data`` pipelines.

Every data set yields float32 images of shape [H, W, 1] with values in [0, 1] and no labels.
Preprocessing follows the paper's experiments (SPEC section 5):

- ``"mnist_sample"`` (default): 4,000 real MNIST digits shipped with the package (3,600 train /
  400 test, a fixed stratified split), already statically binarized; works offline.
- ``"mnist"``: TFDS MNIST (60,000 / 10,000), ``pixel / 255`` thresholded at 0.5 once (static).
- ``"binarized_mnist"``: TFDS's fixed stochastic binarization of MNIST (Larochelle & Murray);
  train = TFDS train + validation (60,000), test = TFDS test (10,000). Already binary.
- ``"fashion_mnist"``: TFDS Fashion-MNIST, ``pixel / 255``, not binarized: Gaussian likelihood.
- ``"omniglot"``: TFDS Omniglot, train = TFDS train + the first 5,065 examples of TFDS test,
  test = the rest of TFDS test; channel 0 of the 105x105 RGB image, resized to 28x28 (bilinear),
  scaled to [0, 1] and statically binarized at 0.5. TFDS stores the original Omniglot drawings,
  dark strokes (0) on a white background (255); we invert them (``1 - pixel / 255``) so that
  ink = 1 and background = 0, as in MNIST. (Inversion commutes with bilinear resizing.)

TFDS data sets must already be prepared in ``data_dir`` (default ``~/tensorflow_datasets``):
:func:`load` never downloads, and raises :class:`DataError` at once when the data are missing.

Binarization modes (``load(..., binarization=...)``): ``None`` (the data set's default),
``"static"`` (threshold ``x > 0.5`` once), ``"dynamic"`` (a fresh ``Bernoulli(x)`` draw of every
training image each time it is produced, i.e. every epoch; the test set gets one fixed seeded
draw, so test metrics are comparable across epochs), ``"none"`` (continuous values in [0, 1]).

Use :func:`pipeline` to cache, shuffle (differently every epoch), batch and prefetch, and
:func:`epoch_pipeline` for training that must resume exactly: there every epoch's order (and, with
dynamic binarization, every epoch's binary draw) is a function of ``(seed, epoch)`` alone, not of
how many epochs this process has already iterated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import tensorflow as tf

from igr_tf._ops import RNG_ALGORITHM

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "DataError",
    "ImageData",
    "epoch_pipeline",
    "hold_out",
    "load",
    "pipeline",
    "steps_per_epoch",
]

DATASETS: tuple[str, ...] = (
    "mnist_sample",
    "mnist",
    "binarized_mnist",
    "fashion_mnist",
    "omniglot",
)
BINARIZATIONS: tuple[str, ...] = ("static", "dynamic", "none")

#: Number of TFDS Omniglot test examples moved into the training set (as the paper's code does).
OMNIGLOT_TEST_TO_TRAIN = 5065
OMNIGLOT_SIZE = 28
THRESHOLD = 0.5
#: Fraction of a ``data_file`` held out for testing when no ``test_file`` is given.
FILE_TEST_FRACTION = 0.1
FILE_SPLIT_SEED = 0

_DEFAULT_BINARIZATION = {
    "mnist_sample": "static",
    "mnist": "static",
    "binarized_mnist": "static",
    "fashion_mnist": "none",
    "omniglot": "static",
}
# Attribute set on datasets returned by ``load`` with dynamic binarization: holds the continuous
# dataset and the seed, so that ``pipeline`` can cache the continuous images and draw after caching.
_DYNAMIC_ATTR = "_igr_dynamic_source"


class DataError(ValueError):
    """Data cannot be loaded: a missing or malformed file, or a TFDS data set not prepared."""


@dataclass(frozen=True)
class ImageData:
    """A train/test pair of unbatched image datasets and what a model needs to know about them.

    Attributes:
        train: yields float32 images [H, W, 1] in [0, 1], no labels.
        test: same, for evaluation.
        image_shape: (H, W, 1).
        likelihood: ``"bernoulli"`` when the images are binary (static or dynamic binarization),
            ``"gaussian"`` when they are continuous.
        num_train: number of training images.
        num_test: number of test images.
        name: the data set's name (for a ``data_file``, the file name).
        validation: images held out of the training set by :func:`hold_out` (for choosing
            hyperparameters without the test set), or ``None``.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    image_shape: tuple[int, int, int]
    likelihood: str
    num_train: int
    num_test: int
    name: str
    validation: tf.data.Dataset | None = None


# --------------------------------------------------------------------------------------------------
# Public functions


def load(
    name: str = "mnist_sample",
    *,
    data_file: str | Path | None = None,
    test_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    binarization: str | None = None,
    seed: int = 0,
) -> ImageData:
    """Load a data set as unbatched float32 [H, W, 1] images in [0, 1].

    Args:
        name: one of :data:`DATASETS`. Ignored when ``data_file`` is given.
        data_file: an ``.npz`` file with key ``images``, uint8 [N, H, W] grey levels 0..255 (other
            keys are ignored). Replaces the named data set.
        test_file: an ``.npz`` file of the same form used as the test set. Without it, a fixed
            seeded 90/10 split of ``data_file`` is used. Only with ``data_file``.
        data_dir: TFDS data directory (default: TFDS's, ``~/tensorflow_datasets``).
        binarization: ``None`` for the data set's default (static for MNIST, binarized MNIST,
            Omniglot and data files; ``"none"`` for Fashion-MNIST), or ``"static"``,
            ``"dynamic"`` or ``"none"``. ``mnist_sample`` and ``binarized_mnist`` are stored
            binary, so only ``"static"`` (a no-op) is accepted for them.
        seed: seed of dynamic binarization: the per-epoch training draws and the test set's one
            fixed draw are reproducible functions of it. Unused otherwise.

    Returns:
        An :class:`ImageData`.

    Raises:
        ValueError: an unknown name or binarization, or a binarization the data cannot have.
        DataError: a missing or malformed file, or TFDS data not prepared in ``data_dir``.
    """
    if binarization is not None and binarization not in BINARIZATIONS:
        raise ValueError(
            f"unknown binarization {binarization!r}; use None (the data set's default) or one of "
            f"{', '.join(BINARIZATIONS)}"
        )
    if data_file is not None:
        return _load_files(Path(data_file), test_file, binarization or "static", seed)
    if test_file is not None:
        raise ValueError("test_file needs data_file")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    mode = binarization or _DEFAULT_BINARIZATION[name]
    if name in ("mnist_sample", "binarized_mnist") and mode != "static":
        raise ValueError(
            f"{name} is stored already binarized, so binarization={mode!r} is impossible; "
            "use 'static' (or None), or 'mnist' for grey levels"
        )
    if name == "mnist_sample":
        return _load_mnist_sample()
    return _load_tfds(name, mode, data_dir, seed)


def hold_out(data: ImageData, fraction: float) -> ImageData:
    """Cuts a validation set from the end of the training set: the last ``round(fraction · n)``
    training images (in the data set's fixed order, so every seed and every run of a grid holds
    out the same images) become ``validation`` and are no longer trained on.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or a split that leaves either part empty.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1); got {fraction}")
    held = round(fraction * data.num_train)
    if not 1 <= held < data.num_train:
        raise ValueError(
            f"validation fraction {fraction} of {data.num_train} training images holds out "
            f"{held}; it must leave at least one image in each part"
        )
    keep = data.num_train - held
    return dataclasses.replace(
        data, train=data.train.take(keep), validation=data.train.skip(keep), num_train=keep
    )


def pipeline(
    ds: tf.data.Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int | None = None,
    drop_remainder: bool = False,
    buffer_size: int | None = None,
) -> tf.data.Dataset:
    """Cache, shuffle, batch and prefetch an unbatched dataset for training or evaluation.

    The dataset is cached first (in memory), then shuffled with ``reshuffle_each_iteration=True``,
    so each epoch sees a new order (caching after the shuffle would freeze one order). For a
    dataset returned by :func:`load` with dynamic binarization, the continuous images are cached and
    the Bernoulli draw comes after the cache and shuffle, so every epoch gets new binary images.

    Args:
        ds: an unbatched dataset, e.g. ``ImageData.train``.
        batch_size: examples per batch.
        shuffle: whether to shuffle (use False for evaluation).
        seed: shuffle seed; the sequence of per-epoch orders is reproducible when given.
        drop_remainder: drop a last, smaller batch.
        buffer_size: shuffle buffer; default the whole dataset when its size is known, else 10,000.

    Returns:
        The batched dataset.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    dynamic = getattr(ds, _DYNAMIC_ATTR, None)
    source = dynamic[0] if dynamic is not None else ds
    out = source.cache()
    if shuffle:
        if buffer_size is None:
            n = int(out.cardinality())
            buffer_size = n if n > 0 else 10_000
        out = out.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    if dynamic is not None:
        out = _dynamic_binarize(out, dynamic[1])
    out = out.batch(batch_size, drop_remainder=drop_remainder)
    return out.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one epoch of ``num_examples`` examples: ``ceil(n / b)`` (``floor`` when dropping
    the remainder)."""
    if num_examples < 1 or batch_size < 1:
        raise ValueError(
            f"need num_examples >= 1 and batch_size >= 1; got {num_examples}, {batch_size}"
        )
    if drop_remainder:
        if num_examples < batch_size:
            raise ValueError(
                f"drop_remainder with batch_size {batch_size} > {num_examples} examples leaves "
                "no batch"
            )
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def epoch_pipeline(
    ds: tf.data.Dataset,
    batch_size: int,
    *,
    seed: int,
    epochs: range,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """The training batches of ``epochs`` (e.g. ``range(initial_epoch, epochs)``), one epoch
    after another, each epoch's order a function of ``(seed, epoch)`` only.

    ``pipeline(shuffle=True)`` reshuffles on every pass, so the order of epoch e depends on how
    many passes this *process* has made: a run resumed at epoch 3 would replay epoch 1's order.
    Here epoch e is the cached data in the order of a uniform random permutation drawn with the
    stateless seed ``fold_in((seed, 0), e)``; for data loaded with dynamic binarization, the
    Bernoulli draw of the i-th image of epoch e uses a stateless seed folded from that seed and i.
    So the batches of epoch e are the same whichever epoch the process started from. (Each epoch
    holds the whole data set in memory once, to permute it.)

    Use it with ``model.fit(ds, steps_per_epoch=steps_per_epoch(n, batch_size), epochs=E,
    initial_epoch=k)`` and ``epochs=range(k, E)``: Keras then keeps one iterator across epochs and
    takes exactly one epoch's batches per epoch.

    Args:
        ds: an unbatched dataset with known cardinality, e.g. ``ImageData.train`` (or of
            ``(x, y)`` pairs).
        batch_size: examples per batch.
        seed: the run's seed.
        epochs: the (0-based) epoch indices to produce, in order.
        drop_remainder: drop each epoch's last, smaller batch.

    Returns:
        The batched dataset of ``len(epochs) * steps_per_epoch(n, batch_size)`` batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    dynamic = getattr(ds, _DYNAMIC_ATTR, None)
    source = (dynamic[0] if dynamic is not None else ds).cache()
    n = int(source.cardinality())
    if n < 1:
        raise ValueError(f"epoch_pipeline needs a dataset of known, positive size; got {n}")
    whole = source.batch(n)  # one element: the whole data set
    run_seed = tf.constant([seed, 0], tf.int64)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        epoch_seed = tf.random.experimental.stateless_fold_in(run_seed, epoch)
        order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=epoch_seed)
        out = whole.map(lambda *x: _gather(x, order)).unbatch()
        if dynamic is not None:
            out = out.enumerate().map(
                lambda i, x: _bernoulli(x, tf.random.experimental.stateless_fold_in(epoch_seed, i)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return out.batch(batch_size, drop_remainder=drop_remainder)

    out = tf.data.Dataset.range(epochs.start, epochs.stop, epochs.step).flat_map(one_epoch)
    return out.prefetch(tf.data.AUTOTUNE)


def _gather(element: tuple, order: tf.Tensor):
    """``element`` (a dataset element's components) with every tensor's rows in ``order``."""
    gathered = tf.nest.map_structure(lambda t: tf.gather(t, order), element)
    return gathered[0] if len(gathered) == 1 else gathered


def _bernoulli(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One Bernoulli(x) draw per pixel with a stateless seed."""
    return tf.cast(
        tf.random.stateless_uniform(tf.shape(x), seed=seed, alg=RNG_ALGORITHM) < x, tf.float32
    )


# --------------------------------------------------------------------------------------------------
# Binarization


def _static_binarize(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(x > THRESHOLD, tf.float32)


def _dynamic_binarize(ds: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Map continuous images to fresh Bernoulli draws; new draws on every pass over ``ds``."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def draw(x: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        return tf.cast(
            tf.random.stateless_uniform(tf.shape(x), seed=s, alg=RNG_ALGORITHM) < x, tf.float32
        )

    return tf.data.Dataset.zip(ds, seeds).map(draw, num_parallel_calls=tf.data.AUTOTUNE)


def _fixed_binarize(ds: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """One Bernoulli draw per image that depends only on (seed, position): the same every pass."""

    def draw(i: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        s = tf.stack([tf.constant(seed, tf.int64), i])
        return tf.cast(
            tf.random.stateless_uniform(tf.shape(x), seed=s, alg=RNG_ALGORITHM) < x, tf.float32
        )

    return ds.enumerate().map(draw, num_parallel_calls=tf.data.AUTOTUNE)


def _finish(
    name: str,
    train: tf.data.Dataset,
    test: tf.data.Dataset,
    mode: str,
    seed: int,
    image_shape: tuple[int, int, int],
) -> ImageData:
    """Apply the binarization ``mode`` to continuous [0, 1] datasets and wrap them.

    ``mode`` is one of :data:`BINARIZATIONS`, or ``"binary"`` for data stored already binary.
    """
    num_train, num_test = int(train.cardinality()), int(test.cardinality())
    if mode == "static":
        train = train.map(_static_binarize, num_parallel_calls=tf.data.AUTOTUNE)
        test = test.map(_static_binarize, num_parallel_calls=tf.data.AUTOTUNE)
    elif mode == "dynamic":
        continuous = train
        train = _dynamic_binarize(continuous, seed)
        setattr(train, _DYNAMIC_ATTR, (continuous, seed))
        test = _fixed_binarize(test, seed)
    likelihood = "gaussian" if mode == "none" else "bernoulli"
    return ImageData(train, test, image_shape, likelihood, num_train, num_test, name)


# --------------------------------------------------------------------------------------------------
# Packaged sample


def _load_mnist_sample() -> ImageData:
    ref = resources.files("igr_tf").joinpath("resources/mnist_sample.npz")
    with ref.open("rb") as fh, np.load(fh, allow_pickle=False) as f:
        packed, shape = f["packed"], tuple(int(v) for v in f["shape"])
        train_index, test_index = f["train_index"], f["test_index"]
    n, h, w = shape
    images = np.unpackbits(packed, axis=1, count=h * w).reshape(n, h, w, 1).astype(np.float32)
    train = tf.data.Dataset.from_tensor_slices(images[train_index])
    test = tf.data.Dataset.from_tensor_slices(images[test_index])
    return _finish("mnist_sample", train, test, "binary", 0, (h, w, 1))


# --------------------------------------------------------------------------------------------------
# npz files


def _read_images(path: Path) -> np.ndarray:
    """Read and validate ``images`` (uint8 [N, H, W]) from an npz file, or raise DataError."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f.files:
                keys = ", ".join(f.files) or "none"
                raise DataError(f"{path}: no 'images' key (keys: {keys})")
            images = f["images"]
    except DataError:
        raise
    except Exception as e:  # zip or format errors from np.load
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    if images.dtype != np.uint8:
        raise DataError(f"{path}: 'images' must be uint8 grey levels 0..255, got {images.dtype}")
    if images.ndim != 3:
        raise DataError(f"{path}: 'images' must have rank 3 [N, H, W], got shape {images.shape}")
    if images.shape[0] == 0:
        raise DataError(f"{path}: 'images' is empty")
    return images


def _load_files(path: Path, test_file: str | Path | None, mode: str, seed: int) -> ImageData:
    images = _read_images(path)
    if test_file is not None:
        test_path = Path(test_file)
        test_images = _read_images(test_path)
        if test_images.shape[1:] != images.shape[1:]:
            raise DataError(
                f"{test_path}: images are {test_images.shape[1:]}, {path} has {images.shape[1:]}"
            )
    else:
        n = len(images)
        if n < 2:
            raise DataError(f"{path}: need at least 2 images to split off a test set, got {n}")
        n_test = max(1, round(FILE_TEST_FRACTION * n))
        order = np.random.default_rng(FILE_SPLIT_SEED).permutation(n)
        images, test_images = images[order[n_test:]], images[order[:n_test]]
    _, h, w = images.shape

    def as_dataset(x: np.ndarray) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(x[..., None]).map(
            _to_unit, num_parallel_calls=tf.data.AUTOTUNE
        )

    return _finish(path.name, as_dataset(images), as_dataset(test_images), mode, seed, (h, w, 1))


def _to_unit(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(x, tf.float32) / 255.0


# --------------------------------------------------------------------------------------------------
# TFDS


def _tfds_split(name: str, split: str, data_dir: str | Path | None) -> tf.data.Dataset:
    """``split`` of TFDS ``name`` as a dataset of uint8 images; DataError when not prepared.

    Never downloads: ``as_dataset`` only reads local files and fails at once when they are absent.
    """
    import tensorflow_datasets as tfds

    root = None if data_dir is None else str(data_dir)
    builder = tfds.builder(name, data_dir=root)
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except AssertionError as e:  # TFDS: "Dataset ...: could not find data in ..."
        where = root or "~/tensorflow_datasets"
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {where}: on a machine with network run "
            f"python -c \"import tensorflow_datasets as tfds; tfds.load('{name}')\" and copy "
            f"its data dir here (pass data_dir=...), or use --data-file X.npz or mnist_sample"
        ) from e
    return ds.map(lambda ex: ex["image"], num_parallel_calls=tf.data.AUTOTUNE)


def _load_tfds(name: str, mode: str, data_dir: str | Path | None, seed: int) -> ImageData:
    split = _tfds_split
    if name in ("mnist", "fashion_mnist"):
        train = split(name, "train", data_dir).map(_to_unit)
        test = split(name, "test", data_dir).map(_to_unit)
        shape = (28, 28, 1)
    elif name == "binarized_mnist":
        # Stored as uint8 0/1, not 0/255: cast only.
        train = split(name, "train", data_dir).concatenate(split(name, "validation", data_dir))
        test = split(name, "test", data_dir)
        train, test = train.map(_cast_binary), test.map(_cast_binary)
        shape = (28, 28, 1)
        mode = "binary"
    elif name == "omniglot":
        full_test = split(name, "test", data_dir)
        train = split(name, "train", data_dir).concatenate(full_test.take(OMNIGLOT_TEST_TO_TRAIN))
        test = full_test.skip(OMNIGLOT_TEST_TO_TRAIN)
        train = train.map(_omniglot_image, num_parallel_calls=tf.data.AUTOTUNE)
        test = test.map(_omniglot_image, num_parallel_calls=tf.data.AUTOTUNE)
        shape = (OMNIGLOT_SIZE, OMNIGLOT_SIZE, 1)
    else:  # pragma: no cover - guarded by load
        raise ValueError(name)
    return _finish(name, train, test, mode, seed, shape)


def _cast_binary(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(x, tf.float32)


def _omniglot_image(x: tf.Tensor) -> tf.Tensor:
    """uint8 [105, 105, 3], dark strokes on white -> float32 [28, 28, 1] in [0, 1] with ink = 1."""
    ink = 1.0 - tf.cast(x[..., :1], tf.float32) / 255.0
    small = tf.image.resize(ink, [OMNIGLOT_SIZE, OMNIGLOT_SIZE], method="bilinear")
    return tf.clip_by_value(small, 0.0, 1.0)
