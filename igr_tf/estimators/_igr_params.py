"""How encoder outputs become IGR's Gaussian (loc, scale): the one place the estimators split them.

This mirrors the relaxations' split (`[loc | ξ]` on the last axis, scale = softplus(ξ) + 1e-4) so
that an encoder trained with a relaxation can switch to an estimator. When the core exposes its own
split, replace the body of `igr_loc_scale` with a call to it.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["MIN_SCALE", "igr_loc_scale"]

#: Smallest Gaussian scale the split produces (keeps log σ and 1/σ finite).
MIN_SCALE = 1e-4


def igr_loc_scale(params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`[..., 2(K-1)]` -> (loc `[..., K-1]`, scale = softplus(ξ) + MIN_SCALE `[..., K-1]`)."""
    loc, raw = tf.split(params, 2, axis=-1)
    return loc, tf.math.softplus(raw) + MIN_SCALE
