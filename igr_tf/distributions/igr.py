"""The IGR family as TFP TransformedDistributions of a Gaussian base.

Each member is `softmax++_τ ∘ h` applied to `z ~ N(loc, diag(scale²))` on `R^{K-1}`, per discrete
variable: event shape `[K]`, batch shape `[..., V]`. Only the invertible map `h` differs:

- IGR-I:      h = identity
- IGR-SB:     h = LogitStickBreaking (log-ratios of the stick-breaking pieces of sigmoid(z)), δ = 1
- IGR-Planar: h = planar flows f_L ∘ … ∘ f_1

Because `h` and softmax++ are shared by a posterior and a prior built with the same arguments,
`tfd.kl_divergence(q, p)` reduces (TFP's TransformedDistribution rule) to the closed-form KL of the
Gaussian bases.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import dtype_util, tensor_util

from igr_tf._checks import check_positive
from igr_tf.bijectors import LogitStickBreaking, Planar, SoftmaxPlusPlus

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["gaussian_base", "igr_i", "igr_planar", "igr_sb", "planar_flows"]


def gaussian_base(loc, scale, validate_args: bool = False) -> tfd.Distribution:
    """`N(loc, diag(scale²))` with event shape `[K-1]` (the IGR noise of each variable)."""
    # Variables stay variables (TFP convention): a distribution built once, outside a
    # GradientTape, still differentiates with respect to them when sampled inside one.
    dtype = dtype_util.common_dtype([loc, scale], dtype_hint=tf.float32)
    loc = tensor_util.convert_nonref_to_tensor(loc, dtype=dtype, name="loc")
    scale = tensor_util.convert_nonref_to_tensor(scale, dtype=dtype, name="scale")
    if loc.shape.rank is not None and loc.shape.rank == 0:
        raise ValueError("`loc` must have a last (event) axis of size K-1 ≥ 1; got a scalar.")
    if not loc.shape[-1:].is_compatible_with(scale.shape[-1:]) and scale.shape.rank:
        raise ValueError(
            f"`loc` and `scale` must share the event size K-1; got shapes {loc.shape} and "
            f"{scale.shape}."
        )
    return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale, validate_args=validate_args)


def _transformed(base, bijector, name, validate_args):
    return tfd.TransformedDistribution(
        distribution=base, bijector=bijector, validate_args=validate_args, name=name
    )


def igr_i(
    loc,
    scale,
    temperature=1.0,
    delta=1.0,
    validate_args: bool = False,
    name: str = "IGR_I",
) -> tfd.Distribution:
    """IGR-I: `ψ = softmax([z/τ, log δ])`, `z ~ N(loc, scale²)` (the identity map h).

    As `τ → 0`, `ψ → one_hot(argmax([z, log δ]))`, a categorical whose pmf
    `igr_tf.categorical.igr_i_log_pmf(loc, scale, delta)` computes exactly.
    """
    check_positive(temperature, "temperature")
    check_positive(delta, "delta")
    base = gaussian_base(loc, scale, validate_args)
    return _transformed(
        base, SoftmaxPlusPlus(temperature, delta, validate_args=validate_args), name, validate_args
    )


def igr_sb(
    loc,
    scale,
    temperature=1.0,
    validate_args: bool = False,
    name: str = "IGR_SB",
) -> tfd.Distribution:
    """IGR-SB: `ψ = softmax(log η / τ)` with `η = StickBreaking(sigmoid(z))`.

    Built as `SoftmaxPlusPlus(τ) ∘ LogitStickBreaking()`, which is the SPEC's chain
    `SoftmaxPlusPlus(τ) ∘ Invert(SoftmaxCentered) ∘ StickBreaking ∘ Sigmoid` computed in log space.
    As `τ → 0` it tends to `one_hot(argmax η)`: every one of the K categories can win (the
    original code's softmax++ of raw stick lengths could never select the last one).
    """
    check_positive(temperature, "temperature")
    base = gaussian_base(loc, scale, validate_args)
    bijector = tfb.Chain(
        [SoftmaxPlusPlus(temperature, 1.0, validate_args=validate_args), LogitStickBreaking()]
    )
    return _transformed(base, bijector, name, validate_args)


def planar_flows(ws: Sequence, us: Sequence, bs: Sequence) -> tfb.Bijector:
    """`f_L ∘ … ∘ f_1` from per-layer parameters.

    `ws[l]`, `us[l]` have shape `[..., K-1]` and `bs[l]` shape `[...]` (e.g. one flow per variable).
    """
    if not (len(ws) == len(us) == len(bs)) or not ws:
        raise ValueError(
            f"`ws`, `us`, `bs` must be non-empty and of equal length; got {len(ws)}, {len(us)}, "
            f"{len(bs)}."
        )
    layers = [
        Planar(w, u, b, name=f"planar_{i}")
        for i, (w, u, b) in enumerate(zip(ws, us, bs, strict=True))
    ]
    return tfb.Chain(layers[::-1], name="planar_flows")  # Chain applies right to left.


def igr_planar(
    loc,
    scale,
    flows: tfb.Bijector,
    temperature=1.0,
    delta=1.0,
    validate_args: bool = False,
    name: str = "IGR_Planar",
) -> tfd.Distribution:
    """IGR-Planar: `ψ = softmax++_{τ,δ}(h(z))` with `h` a chain of planar flows (`planar_flows`)."""
    check_positive(temperature, "temperature")
    check_positive(delta, "delta")
    base = gaussian_base(loc, scale, validate_args)
    bijector = tfb.Chain([SoftmaxPlusPlus(temperature, delta, validate_args=validate_args), flows])
    return _transformed(base, bijector, name, validate_args)
