"""How encoder outputs become IGR's Gaussian (loc, scale): the relaxations' own split.

The estimators read encoder outputs exactly as the IGR relaxations do (`[loc | ξ]` on the last
axis, scale = softplus(ξ) + 1e-4; `igr_tf.distributions.relaxations._IGR.loc_scale`), so that an
encoder trained with a relaxation can switch to an estimator. This module only delegates to it.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from igr_tf.distributions import relaxations

__all__ = ["igr_loc_scale"]


@functools.cache
def _igr_i(num_categories: int) -> relaxations.Relaxation:
    return relaxations.get("igr_i", num_categories)


def igr_loc_scale(params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`[..., 2(K-1)]` -> (loc `[..., K-1]`, scale = softplus(ξ) + 1e-4 `[..., K-1]`)."""
    params = tf.convert_to_tensor(params)
    num_params = params.shape[-1]
    if num_params is None or num_params < 2 or num_params % 2:
        raise ValueError(
            f"IGR estimators need 2(K-1) parameters per variable (an even, static last axis "
            f"≥ 2); got shape {params.shape}."
        )
    return _igr_i(num_params // 2 + 1).loc_scale(params)
