"""The IGR family as TFP TransformedDistributions of a Gaussian base.

Each member is `softmax++_τ ∘ h` applied to `z ~ N(loc, diag(scale²))` on `R^{K-1}`, per discrete
variable: event shape `[K]`, batch shape `[..., V]`. Only the invertible map `h` differs:

- IGR-I:      h = identity
- IGR-SB:     h = LogitStickBreaking (log-ratios of the stick-breaking pieces of sigmoid(z)), δ = 1;
              with `threshold`, adaptively truncated (`AdaptiveIGRStickBreaking`)
- IGR-Planar: h = planar flows f_L ∘ … ∘ f_1

Two spaces, one map. `log_space=False` (default) gives the relaxed one-hot ψ on the simplex
(`SoftmaxPlusPlus`); `log_space=True` gives y = log ψ (`LogSoftmaxPlusPlus`), IGR's counterpart
of TFP's `ExpRelaxedOneHotCategorical`. Which to use when: feed a network either (`exp(y)` is ψ);
evaluate densities of points you did not just sample in log space — a fresh float32 ψ at
τ ≤ 0.03 has exact zeros, so `log_prob(ψ)` of such a point is -inf, while `log_prob(log ψ)` stays
finite down to τ = 0.005. (A sample's own `log_prob` is exact in both spaces: TFP's bijector cache
returns the Gaussian point it came from.)

Because `h` and softmax++ are shared by a posterior and a prior built on the same bijector,
`tfd.kl_divergence(q, p)` reduces (TFP's TransformedDistribution rule) to the closed-form KL of
the Gaussian bases.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import dtype_util, tensor_util

from igr_tf._checks import check_positive
from igr_tf.bijectors import LogitStickBreaking, LogSoftmaxPlusPlus, Planar, SoftmaxPlusPlus
from igr_tf.distributions import philox

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    "gaussian_base",
    "transformed",
    "igr_i",
    "igr_planar",
    "igr_sb",
    "planar_flows",
    "softmax_plus_plus",
]


def gaussian_base(loc, scale, validate_args: bool = False) -> tfd.Distribution:
    """`N(loc, diag(scale²))` with event shape `[K-1]` (the IGR noise of each variable).

    An `Independent` of (Philox-sampling) `Normal`s, so that TFP's KL between two of them is the
    sum of the coordinates' closed-form KLs.
    """
    # Variables stay variables (TFP convention): a distribution built once, outside a
    # GradientTape, still differentiates with respect to them when sampled inside one.
    dtype = dtype_util.common_dtype([loc, scale], dtype_hint=tf.float32)
    loc = tensor_util.convert_nonref_to_tensor(loc, dtype=dtype, name="loc")
    scale = tensor_util.convert_nonref_to_tensor(scale, dtype=dtype, name="scale")
    if loc.shape.rank is not None and loc.shape.rank == 0:
        raise ValueError("`loc` must have a last (event) axis of size K-1 ≥ 1; got a scalar.")
    if scale.shape.rank and not loc.shape[-1:].is_compatible_with(scale.shape[-1:]):
        raise ValueError(
            f"`loc` and `scale` must share the event size K-1; got shapes {loc.shape} and "
            f"{scale.shape}."
        )
    normal = philox.Normal(loc, scale, validate_args=validate_args)
    return tfd.Independent(normal, reinterpreted_batch_ndims=1, validate_args=validate_args)


def softmax_plus_plus(
    temperature, delta=1.0, log_space: bool = False, validate_args: bool = False
) -> tfb.Bijector:
    """`SoftmaxPlusPlus` (onto ψ) or `LogSoftmaxPlusPlus` (onto log ψ)."""
    cls = LogSoftmaxPlusPlus if log_space else SoftmaxPlusPlus
    return cls(temperature, delta, validate_args=validate_args)


def transformed(
    base: tfd.Distribution, bijector: tfb.Bijector, name: str, validate_args: bool = False
) -> tfd.Distribution:
    """The IGR distribution `bijector(z)`, `z ~ base`: a TFP TransformedDistribution."""
    return tfd.TransformedDistribution(
        distribution=base, bijector=bijector, validate_args=validate_args, name=name
    )


def igr_i(
    loc,
    scale,
    temperature=1.0,
    delta=1.0,
    log_space: bool = False,
    validate_args: bool = False,
    name: str = "IGR_I",
) -> tfd.Distribution:
    """IGR-I: `ψ = softmax([z/τ, log δ])`, `z ~ N(loc, scale²)` (the identity map h).

    `argmax ψ = argmax [z, τ log δ]`; its law is the categorical that
    `igr_tf.categorical.igr_i_log_pmf(loc, scale, delta=δ**τ)` computes exactly.
    """
    check_positive(temperature, "temperature")
    check_positive(delta, "delta")
    base = gaussian_base(loc, scale, validate_args)
    bijector = softmax_plus_plus(temperature, delta, log_space, validate_args)
    return transformed(base, bijector, name, validate_args)


def igr_sb(
    loc,
    scale,
    temperature=1.0,
    log_space: bool = False,
    threshold: float | None = None,
    validate_args: bool = False,
    name: str = "IGR_SB",
) -> tfd.Distribution:
    """IGR-SB: `ψ = softmax(log η / τ)` with `η = StickBreaking(sigmoid(z))`.

    Built as `SoftmaxPlusPlus(τ) ∘ LogitStickBreaking()`, which is the SPEC's chain
    `SoftmaxPlusPlus(τ) ∘ Invert(SoftmaxCentered) ∘ StickBreaking ∘ Sigmoid` computed in log space.
    As `τ → 0` it tends to `one_hot(argmax η)`: every one of the K categories can win (the
    original code's softmax++ of raw stick lengths could never select the last one).

    With `threshold` in (0, 1], the stick is broken only until the pieces cover that share of
    it (adaptive truncation, countably infinite support capped at K): see
    `AdaptiveIGRStickBreaking`.
    """
    check_positive(temperature, "temperature")
    if threshold is not None:
        from igr_tf.distributions.adaptive import AdaptiveIGRStickBreaking

        return AdaptiveIGRStickBreaking(
            loc, scale, temperature, threshold, log_space, validate_args=validate_args, name=name
        )
    base = gaussian_base(loc, scale, validate_args)
    bijector = tfb.Chain(
        [softmax_plus_plus(temperature, 1.0, log_space, validate_args), LogitStickBreaking()]
    )
    return transformed(base, bijector, name, validate_args)


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
    log_space: bool = False,
    validate_args: bool = False,
    name: str = "IGR_Planar",
) -> tfd.Distribution:
    """IGR-Planar: `ψ = softmax++_{τ,δ}(h(z))` with `h` a chain of planar flows (`planar_flows`)."""
    check_positive(temperature, "temperature")
    check_positive(delta, "delta")
    base = gaussian_base(loc, scale, validate_args)
    bijector = tfb.Chain([softmax_plus_plus(temperature, delta, log_space, validate_args), flows])
    return transformed(base, bijector, name, validate_args)
