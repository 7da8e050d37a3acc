"""Pairwise discrete models on an H × W grid (Ising, Potts), solved exactly column by column.

A `GridModel` holds log-potentials

    φ(x) = Σ_i θ_i(x_i) + Σ_{i~j} J_ij(x_i, x_j),   x ∈ {0, …, K−1}^{H×W},

with unary tables θ `[H, W, K]` and pairwise tables for horizontal edges (r, c)–(r, c+1)
`[H, W−1, K, K]` and vertical edges (r, c)–(r+1, c) `[H−1, W, K, K]`. Its Gibbs distribution is
p(x) = e^{φ(x)} / Z.

Both log Z (sum-product) and the MAP value max_x φ(x) (max-product) are computed exactly by the
transfer-matrix method: a column has K^H joint states; a pass over the W columns costs
O(W K^{2H}). That is instant for the grids used here (4 × 4 binary: 16 column states) and makes
the perturb-and-MAP experiments below cheap; tests check it against brute-force enumeration of
all K^{HW} configurations. Any MAP solver could stand in for it: the low-rank methods in
`lowrank.py` only ever ask for MAP values of perturbed or clamped models.

Clamping: `clamp` `[..., H, W]` int, −1 for a free variable and a value in 0..K−1 for a fixed one,
restricts the model to the configurations that agree with it (the sub-models the sequential
sampler visits).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf._checks import check_num_categories, check_positive_int
from igr_tf._ops import RNG_ALGORITHM
from igr_tf.perturbations.families import stateless_seed

__all__ = [
    "GridModel",
    "INTERACTIONS",
    "ising_grid",
    "potts_grid",
]

#: Coupling types: J ~ U[0, C] ("attractive") or J ~ U[−C, C] ("mixed"), as in the paper's
#: spin-glass experiments.
INTERACTIONS: tuple[str, ...] = ("attractive", "mixed")
_MAX_COLUMN_STATES = 4096


@dataclasses.dataclass(frozen=True)
class GridModel:
    """Log-potential tables of a pairwise grid model (see the module docstring)."""

    unary: tf.Tensor
    horizontal: tf.Tensor
    vertical: tf.Tensor

    def __post_init__(self):
        unary = tf.convert_to_tensor(self.unary)
        dtype = unary.dtype
        horizontal = tf.convert_to_tensor(self.horizontal, dtype=dtype)
        vertical = tf.convert_to_tensor(self.vertical, dtype=dtype)
        if unary.shape.rank != 3:
            raise ValueError(f"`unary` must have shape [H, W, K]; got {unary.shape}.")
        h, w, k = unary.shape
        if tuple(horizontal.shape) != (h, w - 1, k, k):
            raise ValueError(
                f"`horizontal` must have shape {(h, w - 1, k, k)}; got {tuple(horizontal.shape)}."
            )
        if tuple(vertical.shape) != (h - 1, w, k, k):
            raise ValueError(
                f"`vertical` must have shape {(h - 1, w, k, k)}; got {tuple(vertical.shape)}."
            )
        check_num_categories(k, "num_states")
        if k**h > _MAX_COLUMN_STATES:
            raise ValueError(
                f"A column of height {h} with {k} states has {k**h} joint states; the exact "
                f"transfer-matrix solver allows at most {_MAX_COLUMN_STATES} (use a narrower grid)."
            )
        object.__setattr__(self, "unary", unary)
        object.__setattr__(self, "horizontal", horizontal)
        object.__setattr__(self, "vertical", vertical)

    @property
    def height(self) -> int:
        return int(self.unary.shape[0])

    @property
    def width(self) -> int:
        return int(self.unary.shape[1])

    @property
    def num_states(self) -> int:
        return int(self.unary.shape[2])

    @property
    def num_variables(self) -> int:
        return self.height * self.width

    @property
    def dtype(self) -> tf.DType:
        return self.unary.dtype

    def log_potential(self, x) -> tf.Tensor:
        """φ(x) for configurations `x` `[..., H, W]` (ints in 0..K−1)."""
        x = tf.convert_to_tensor(x, dtype_hint=tf.int32)
        onehot = tf.one_hot(x, self.num_states, dtype=self.dtype)  # [..., H, W, K]
        value = tf.einsum("...hwk,hwk->...", onehot, self.unary)
        value += tf.einsum(
            "...hwk,...hwl,hwkl->...",
            onehot[..., :, :-1, :],
            onehot[..., :, 1:, :],
            self.horizontal,
        )
        value += tf.einsum(
            "...hwk,...hwl,hwkl->...",
            onehot[..., :-1, :, :],
            onehot[..., 1:, :, :],
            self.vertical,
        )
        return value

    def log_partition(self, clamp=None) -> tf.Tensor:
        """log Z (of the clamped sub-model when `clamp` is given), exactly."""
        return self._chain(self._column_scores(self.unary, clamp), tf.reduce_logsumexp)

    def map_value(self, unary_perturbation=None, clamp=None) -> tf.Tensor:
        """max_x {φ(x) + Σ_i ε_i(x_i)}, exactly, for perturbations ε `[..., H, W, K]` (or none).

        The batch shape is the broadcast of the perturbation's and the clamp's leading shapes.
        """
        unary = self.unary
        if unary_perturbation is not None:
            unary = unary + tf.convert_to_tensor(unary_perturbation, dtype=self.dtype)
        return self._chain(self._column_scores(unary, clamp), tf.reduce_max)

    # Transfer matrices.

    def _digits(self) -> np.ndarray:
        """[K^H, H]: the joint state s of a column, as the values of its rows (static)."""
        return np.array(
            list(itertools.product(range(self.num_states), repeat=self.height)), np.int32
        )

    def _column_scores(self, unary: tf.Tensor, clamp) -> tf.Tensor:
        """[..., W, K^H]: unary plus within-column (vertical) potentials of every column state."""
        digits = self._digits()
        onehot = tf.one_hot(digits, self.num_states, dtype=self.dtype)  # [S, H, K]
        scores = tf.einsum("...hwk,shk->...ws", unary, onehot)
        pairs = onehot[:, :-1, :, None] * onehot[:, 1:, None, :]  # [S, H-1, K, K]
        scores += tf.einsum("hwkl,shkl->ws", self.vertical, pairs)
        if clamp is not None:
            clamp = tf.convert_to_tensor(clamp, dtype_hint=tf.int32)
            by_column = tf.linalg.matrix_transpose(clamp)[..., None, :]  # [..., W, 1, H]
            agrees = (by_column < 0) | tf.equal(by_column, digits)  # [..., W, S, H]
            allowed = tf.reduce_all(agrees, axis=-1)
            scores += tf.where(allowed, tf.zeros([], self.dtype), -np.inf)
        return scores

    def _transitions(self) -> tf.Tensor:
        """[W−1, K^H, K^H]: horizontal potentials between the states of adjacent columns."""
        onehot = tf.one_hot(self._digits(), self.num_states, dtype=self.dtype)
        return tf.einsum("hckl,shk,thl->cst", self.horizontal, onehot, onehot)

    def _chain(self, scores: tf.Tensor, reduce) -> tf.Tensor:
        transitions = self._transitions()
        message = scores[..., 0, :]
        for c in range(1, self.width):
            message = scores[..., c, :] + reduce(message[..., :, None] + transitions[c - 1], -2)
        return reduce(message, axis=-1)


def _uniform(shape, low, high, seed, dtype) -> tf.Tensor:
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=low, maxval=high, dtype=dtype, alg=RNG_ALGORITHM
    )


def _couplings(shape, coupling: float, interaction: str, seed, dtype) -> tf.Tensor:
    if interaction not in INTERACTIONS:
        raise ValueError(f"`interaction` must be one of {INTERACTIONS}; got {interaction!r}.")
    low = 0.0 if interaction == "attractive" else -coupling
    return _uniform(shape, low, coupling, seed, dtype)


def _check_grid(height: int, width: int, field: float, coupling: float) -> tuple[int, int]:
    height = check_positive_int(height, "height")
    width = check_positive_int(width, "width")
    for name, value in (("field", field), ("coupling", coupling)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return height, width


def ising_grid(
    height: int,
    width: int,
    *,
    field: float = 1.0,
    coupling: float = 1.0,
    interaction: str = "attractive",
    seed=0,
    dtype=tf.float32,
) -> GridModel:
    """A random Ising spin glass on a grid, spins s = 2x − 1 ∈ {−1, +1}.

    φ(s) = Σ_i θ_i s_i + Σ_{i~j} J_ij s_i s_j with θ_i ~ U[−field, field] and J_ij ~ U[0, coupling]
    (attractive) or U[−coupling, coupling] (mixed): the paper's spin-glass family.
    """
    height, width = _check_grid(height, width, field, coupling)
    seeds = tfp.random.split_seed(stateless_seed(seed), n=3)
    spin = tf.constant([-1.0, 1.0], dtype)
    theta = _uniform([height, width, 1], -field, field, seeds[0], dtype)
    j_h = _couplings([height, width - 1, 1, 1], coupling, interaction, seeds[1], dtype)
    j_v = _couplings([height - 1, width, 1, 1], coupling, interaction, seeds[2], dtype)
    outer = spin[:, None] * spin[None, :]
    return GridModel(theta * spin, j_h * outer, j_v * outer)


def potts_grid(
    height: int,
    width: int,
    num_states: int,
    *,
    field: float = 1.0,
    coupling: float = 1.0,
    interaction: str = "attractive",
    seed=0,
    dtype=tf.float32,
) -> GridModel:
    """A random Potts model: θ_i(k) ~ U[−field, field], J_ij(k, l) = J_ij · 1{k = l}."""
    height, width = _check_grid(height, width, field, coupling)
    k = check_num_categories(num_states, "num_states")
    seeds = tfp.random.split_seed(stateless_seed(seed), n=3)
    eye = tf.eye(k, dtype=dtype)
    theta = _uniform([height, width, k], -field, field, seeds[0], dtype)
    j_h = _couplings([height, width - 1, 1, 1], coupling, interaction, seeds[1], dtype)
    j_v = _couplings([height - 1, width, 1, 1], coupling, interaction, seeds[2], dtype)
    return GridModel(theta, j_h * eye, j_v * eye)
