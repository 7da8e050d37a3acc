"""Build ``mnist_sample.npz``: a small, binarized, bit-packed MNIST subset shipped with igr_tf.

Input: the shared 4,000-digit file (uint8 ``images`` [4000, 28, 28] in 0..255, ``labels`` [4000],
400 digits per class). Output keys:

- ``packed``: uint8 [N, ceil(H*W/8)], ``np.packbits`` of the flattened binary images, where a pixel
  is 1 iff ``pixel / 255 > 0.5`` (static binarization, done once here);
- ``shape``: int64 [3], (N, H, W) needed to unpack;
- ``labels``: uint8 [N];
- ``train_index`` / ``test_index``: int64 indices into the N images, a fixed stratified split
  (``TEST_PER_CLASS`` test digits per class) drawn with ``SEED``; each index list is stored in a
  seeded random order so that unshuffled iteration does not run through one class at a time.

Run from the repository root: ``python igr_tf/resources/build_mnist_sample.py [--source PATH]``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

SEED = 20200
TEST_PER_CLASS = 40
THRESHOLD = 0.5
HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "data" / "mnist_sample.npz"
DEFAULT_OUTPUT = HERE / "mnist_sample.npz"
#: ``content_sha256`` of the shipped ``mnist_sample.npz``, recorded when it was built; the test
#: suite checks the packaged file against it (the source file is not part of the repository).
CONTENT_SHA256 = "65aa6cad530fce8b596fbd2ba1bda6872848ee43f5a0d14159d1607ecc25a82a"


def content_sha256(path: Path) -> str:
    """SHA-256 of an npz file's arrays (names, dtypes, shapes and bytes, keys sorted).

    It does not depend on the zip container (time stamps, compression), so a rebuild from the same
    source gives the same digest.
    """
    digest = hashlib.sha256()
    with np.load(path, allow_pickle=False) as f:
        for key in sorted(f.files):
            array = np.ascontiguousarray(f[key])
            digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def binarize(images: np.ndarray) -> np.ndarray:
    """Static binarization of uint8 grey levels: 1 where ``pixel / 255 > THRESHOLD``, else 0."""
    return (images.astype(np.float64) / 255.0 > THRESHOLD).astype(np.uint8)


def stratified_split(
    labels: np.ndarray, test_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``test_per_class`` test indices per class; return (train, test), seeded-shuffled."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= test_per_class:
            raise ValueError(f"class {c} has only {len(members)} examples")
        test.append(rng.choice(members, size=test_per_class, replace=False))
    test_index = np.concatenate(test)
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    return rng.permutation(train_index), rng.permutation(test_index)


def build(source: Path, output: Path) -> None:
    """Read ``source``, binarize, bit-pack and split it, and write the result to ``output``."""
    with np.load(source, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{source}: expected uint8 [N, H, W], got {images.dtype} {images.shape}")
    n, h, w = images.shape
    packed = np.packbits(binarize(images).reshape(n, h * w), axis=1)
    train_index, test_index = stratified_split(labels, TEST_PER_CLASS, SEED)
    np.savez_compressed(
        output,
        packed=packed,
        shape=np.array([n, h, w], dtype=np.int64),
        labels=labels.astype(np.uint8),
        train_index=train_index.astype(np.int64),
        test_index=test_index.astype(np.int64),
    )
    digest = content_sha256(output)
    print(
        f"wrote {output} ({output.stat().st_size} bytes): {len(train_index)} train, "
        f"{len(test_index)} test; content_sha256 {digest}"
        + ("" if digest == CONTENT_SHA256 else " (differs from CONTENT_SHA256: update it)")
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    build(args.source, args.output)


if __name__ == "__main__":
    main()
