"""Energy, conditionals and exact log-partition function of a bipartite (restricted) BM.

Two groups of units, `z1 ∈ [0, 1]^{n1}` and `z2 ∈ [0, 1]^{n2}`, biases `a`, `b` and couplings `W`:

```none
E(z1, z2) = −aᵀz1 − bᵀz2 − z1ᵀ W z2          p(z1, z2) = exp(−E(z1, z2)) / Z,  z ∈ {0, 1}
```

The energy is defined for relaxed inputs in `[0, 1]` as well as binary ones (GumBolt evaluates it
on relaxed samples). Summing one group out analytically gives the unnormalized marginal

```none
log Σ_{z2} exp(−E(z1, z2)) = aᵀz1 + Σ_j softplus(b_j + (Wᵀz1)_j)
```

so `log Z` is a log-sum-exp over the `2^m` states of the smaller group alone
(`exact_log_partition`).
Everything is plain TensorFlow (usable in `tf.function`, float32 or float64, batch axes first).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

__all__ = [
    "MAX_EXACT_UNITS",
    "RBMParams",
    "as_params",
    "conditional_logits1",
    "conditional_logits2",
    "energy",
    "exact_log_partition",
    "factorial_log_partition",
    "log_marginal1",
    "log_marginal2",
]

#: Exact log Z enumerates 2^m states of the smaller group: at most 2^24 (≈ 17 M) of them.
MAX_EXACT_UNITS = 24
#: States evaluated at a time by `exact_log_partition` (bounds its memory).
_CHUNK_BITS = 16


class RBMParams(NamedTuple):
    """Biases `bias1` `[n1]`, `bias2` `[n2]` and couplings `coupling` `[n1, n2]` of one RBM."""

    bias1: tf.Tensor
    bias2: tf.Tensor
    coupling: tf.Tensor

    @property
    def sizes(self) -> tuple[int, int]:
        return int(self.bias1.shape[-1]), int(self.bias2.shape[-1])

    def transposed(self) -> RBMParams:
        """The same RBM with its groups swapped."""
        return RBMParams(self.bias2, self.bias1, tf.transpose(self.coupling))


def as_params(bias1, bias2, coupling) -> RBMParams:
    """Converts to tensors of one dtype and checks that the shapes agree."""
    bias1 = tf.convert_to_tensor(bias1)
    bias2 = tf.convert_to_tensor(bias2, dtype=bias1.dtype)
    coupling = tf.convert_to_tensor(coupling, dtype=bias1.dtype)
    if bias1.shape.rank != 1 or bias2.shape.rank != 1 or coupling.shape.rank != 2:
        raise ValueError(
            "RBM parameters must be bias1 [n1], bias2 [n2] and coupling [n1, n2]; got shapes "
            f"{bias1.shape}, {bias2.shape}, {coupling.shape}."
        )
    if tuple(coupling.shape) != (bias1.shape[0], bias2.shape[0]):
        raise ValueError(
            f"`coupling` must have shape [n1, n2] = [{bias1.shape[0]}, {bias2.shape[0]}]; "
            f"got {tuple(coupling.shape)}."
        )
    return RBMParams(bias1, bias2, coupling)


def energy(z1: tf.Tensor, z2: tf.Tensor, params: RBMParams) -> tf.Tensor:
    """`E(z1, z2) = −aᵀz1 − bᵀz2 − z1ᵀWz2` for `z1` `[..., n1]`, `z2` `[..., n2]` -> `[...]`."""
    a, b, w = params
    coupled = tf.einsum("...i,ij,...j->...", z1, w, z2)
    return -(tf.linalg.tensordot(z1, a, 1) + tf.linalg.tensordot(z2, b, 1) + coupled)


def conditional_logits2(z1: tf.Tensor, params: RBMParams, beta=1.0) -> tf.Tensor:
    """Logits of `p(z2 = 1 | z1)` `[..., n2]`: `b + β Wᵀz1` (β scales the couplings, for AIS)."""
    return params.bias2 + beta * tf.einsum("...i,ij->...j", z1, params.coupling)


def conditional_logits1(z2: tf.Tensor, params: RBMParams, beta=1.0) -> tf.Tensor:
    """Logits of `p(z1 = 1 | z2)` `[..., n1]`: `a + β W z2`."""
    return params.bias1 + beta * tf.einsum("ij,...j->...i", params.coupling, z2)


def log_marginal1(z1: tf.Tensor, params: RBMParams, beta=1.0) -> tf.Tensor:
    """`log Σ_{z2} exp(−E_β(z1, z2)) = aᵀz1 + Σ_j softplus(b_j + β(Wᵀz1)_j)`, `[...]`."""
    linear = tf.linalg.tensordot(z1, params.bias1, 1)
    return linear + tf.reduce_sum(tf.math.softplus(conditional_logits2(z1, params, beta)), -1)


def log_marginal2(z2: tf.Tensor, params: RBMParams, beta=1.0) -> tf.Tensor:
    """`log Σ_{z1} exp(−E_β(z1, z2))`, the other group summed out, `[...]`."""
    return log_marginal1(z2, params.transposed(), beta)


def factorial_log_partition(params: RBMParams) -> tf.Tensor:
    """`log Z` with the couplings ignored (W = 0): `Σ_i softplus(a_i) + Σ_j softplus(b_j)`."""
    return tf.reduce_sum(tf.math.softplus(params.bias1)) + tf.reduce_sum(
        tf.math.softplus(params.bias2)
    )


def _binary_states(first: tf.Tensor, count: int, num_bits: int, dtype) -> tf.Tensor:
    """Rows `first, …, first + count − 1` written in `num_bits` bits, `[count, num_bits]`."""
    index = first + tf.range(count, dtype=tf.int64)
    powers = tf.constant(2 ** np.arange(num_bits, dtype=np.int64))
    return tf.cast(tf.bitwise.bitwise_and(index[:, None], powers[None, :]) > 0, dtype)


def exact_log_partition(params: RBMParams) -> tf.Tensor:
    """Exact `log Z` by enumerating the `2^m` states of the smaller group (m ≤ 24).

    `log Z = LSE_{z1 ∈ {0,1}^{n1}} [aᵀz1 + Σ_j softplus(b_j + (Wᵀz1)_j)]` (with the groups
    swapped when `n2 < n1`), in chunks of 2^16 states. Differentiable (autodiff gives
    `∇ log Z = −E_p[∇E]` exactly).
    """
    n1, n2 = params.sizes
    if n2 < n1:
        params, n1 = params.transposed(), n2
    if n1 > MAX_EXACT_UNITS:
        raise ValueError(
            f"exact log Z enumerates 2^m states of the smaller group; m = {n1} > "
            f"{MAX_EXACT_UNITS} is too many (use annealed importance sampling: ais_log_partition)."
        )
    dtype = params.bias1.dtype
    chunk_bits = min(n1, _CHUNK_BITS)
    chunk = 2**chunk_bits
    num_chunks = 2 ** (n1 - chunk_bits)

    def chunk_lse(i):
        states = _binary_states(tf.cast(i, tf.int64) * chunk, chunk, n1, dtype)
        return tf.reduce_logsumexp(log_marginal1(states, params))

    if num_chunks == 1:
        return chunk_lse(0)
    per_chunk = tf.map_fn(
        chunk_lse, tf.range(num_chunks), fn_output_signature=tf.TensorSpec([], dtype)
    )
    return tf.reduce_logsumexp(per_chunk)
