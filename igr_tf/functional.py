"""One-line relaxed samples, the way PyTorch users know `gumbel_softmax(logits, tau, hard)`.

```python
import igr_tf
psi = igr_tf.relaxed_one_hot(params, 0.5, relaxation="igr_i")             # [..., K]
one_hot = igr_tf.relaxed_one_hot(params, 0.5, "gs", hard=True, seed=(1, 2))  # straight-through
```
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from igr_tf.distributions import relaxations
from igr_tf.layers import work_dtype

__all__ = ["relaxed_one_hot"]


def relaxed_one_hot(
    params,
    temperature,
    relaxation: str | relaxations.Relaxation = "igr_i",
    hard: bool = False,
    seed=None,
    weights: dict[str, Any] | None = None,
    **options,
) -> tf.Tensor:
    """A relaxed one-hot sample ψ `[..., K]` from encoder outputs `params` `[..., P]`.

    Args:
      params: the relaxation's parameters per discrete variable on the last axis (every other
        axis is batch, e.g. `[B, V, P]`): P = K logits for "gs" (as for `gumbel_softmax`),
        P = 2(K-1) for the IGR family (locations, then raw scales `ξ` with σ = softplus(ξ)).
      temperature: τ > 0 (float or tensor).
      relaxation: a registered name ("igr_i", "igr_sb", "igr_planar", "gs") or a `Relaxation`.
      hard: straight-through, as in PyTorch: the value is exactly `one_hot(argmax ψ)`, the
        gradient is ψ's.
      seed: stateless seed (an int or a pair of ints); None draws a fresh one.
      weights: the relaxation's global weights (the planar flows of "igr_planar").
      **options: options of the relaxation when given by name (e.g. `delta`, `adaptive`).

    Returns:
      ψ `[..., K]` in `params`' dtype (computed in float32 for 16-bit inputs).
    """
    params = tf.convert_to_tensor(params)
    if params.shape.rank == 0 or (params.shape.rank is not None and params.shape[-1] is None):
        raise ValueError(
            "`params` needs the relaxation's parameters on a last axis of known size ([..., P]); "
            f"got shape {params.shape}."
        )
    out_dtype = params.dtype if params.dtype.is_floating else tf.float32
    params = tf.cast(params, work_dtype(params.dtype))
    if isinstance(relaxation, str):
        k = relaxations.get_class(relaxation).num_categories_for(int(params.shape[-1]))
        relaxation = relaxations.get(relaxation, k, **options)
    elif options:
        raise ValueError("`options` are for a relaxation given by name; got a Relaxation object.")
    draw = relaxation.draw(params, temperature, weights, seed=seed)
    sample = draw.sample
    if hard:
        sample = draw.one_hot() + (sample - tf.stop_gradient(sample))
    return tf.cast(sample, out_dtype)
