"""Gradient estimators for discrete latent variables, by name, with one API.

```python
from igr_tf import estimators
est = estimators.get("reinmax", num_categories=10, temperature=1.0)
d = est.sample(logits, seed=[1, 2])              # exact one-hot [B, V, K], ReinMax gradient
est = estimators.get("relax", num_categories=10, relaxation="igr_i")
loss = tf.reduce_mean(est.surrogate(f, params, seed=[1, 2]))   # f: [S, B, V, K] -> [S, B]
```

Hard-sample (biased, need no objective; `sample(params, seed)` is an exact one-hot with a custom
gradient): "st", "st_gs", "gumbel_rao", "gst", "reinmax", "st_igr_i", "st_igr_sb",
"st_igr_planar". Unbiased (evaluate the objective themselves): "reinforce_loo", "vimco",
"disarm" (binary), "rebar", "relax". Every estimator has `surrogate(f, params, seed)` (value: an
estimate of E[f]; gradient: the estimate) and `gradient(f, params, seed)`; see `_base` for the
shapes. Binary variables are K = 2 with b = sample[..., 0] (`binary_params` turns Bernoulli
logits into K = 2 logits).
"""

from __future__ import annotations

import inspect
from typing import Any

from igr_tf.estimators._base import Estimator, HardSampleEstimator, binary_params
from igr_tf.estimators._families import FAMILIES
from igr_tf.estimators.diagnostics import GradientDiagnostics, gradient_statistics
from igr_tf.estimators.igr_straight_through import STIGRI, STIGRPlanar, STIGRStickBreaking
from igr_tf.estimators.latent import EstimatorLatent
from igr_tf.estimators.rebar import REBAR, RELAX, ControlVariate
from igr_tf.estimators.score_function import VIMCO, DisARM, ReinforceLOO
from igr_tf.estimators.straight_through import (
    GappedStraightThrough,
    GumbelRao,
    ReinMax,
    StraightThrough,
    StraightThroughGumbelSoftmax,
)
from igr_tf.names import ESTIMATOR_RELAXATIONS, ESTIMATORS, OBJECTIVE_ESTIMATORS

__all__ = [
    "REBAR",
    "RELAX",
    "STIGRI",
    "VIMCO",
    "ControlVariate",
    "DisARM",
    "Estimator",
    "EstimatorLatent",
    "GappedStraightThrough",
    "GradientDiagnostics",
    "GumbelRao",
    "HardSampleEstimator",
    "ReinMax",
    "ReinforceLOO",
    "STIGRPlanar",
    "STIGRStickBreaking",
    "StraightThrough",
    "StraightThroughGumbelSoftmax",
    "binary_params",
    "get",
    "gradient_statistics",
    "names",
    "option_names",
]

_REGISTRY: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (
        StraightThrough,
        StraightThroughGumbelSoftmax,
        GumbelRao,
        GappedStraightThrough,
        ReinMax,
        STIGRI,
        STIGRStickBreaking,
        STIGRPlanar,
        ReinforceLOO,
        VIMCO,
        DisARM,
        REBAR,
        RELAX,
    )
}

# The command line lists the names without importing TensorFlow (igr_tf.names): one list each.
if tuple(_REGISTRY) != ESTIMATORS:
    raise ImportError(f"igr_tf.names.ESTIMATORS {ESTIMATORS} != registry {tuple(_REGISTRY)}")
if tuple(n for n, c in _REGISTRY.items() if c.needs_objective) != OBJECTIVE_ESTIMATORS:
    raise ImportError(f"igr_tf.names.OBJECTIVE_ESTIMATORS {OBJECTIVE_ESTIMATORS} is out of date")
if tuple(FAMILIES) != ESTIMATOR_RELAXATIONS:
    raise ImportError(
        f"igr_tf.names.ESTIMATOR_RELAXATIONS {ESTIMATOR_RELAXATIONS} != families {tuple(FAMILIES)}"
    )


def names() -> tuple[str, ...]:
    """The registered estimator names."""
    return tuple(_REGISTRY)


def option_names(name: str) -> tuple[str, ...]:
    """The keyword options `get(name, ...)` accepts (e.g. to pass a model's temperature on)."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown estimator {name!r}; known: {', '.join(_REGISTRY)}.")
    params = inspect.signature(_REGISTRY[name].__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


def get(name: str, num_categories: int, **options: Any) -> Estimator:
    """Builds the estimator registered under `name` with its keyword `options`.

    Options: temperature (all but the score-function ones; REBAR/RELAX: its initial value),
    num_draws (gumbel_rao), gap (gst), delta (st_igr_i, st_igr_planar), num_flows (st_igr_planar),
    num_samples and distribution (reinforce_loo, vimco), relaxation, conditioning, eta,
    learn_control, hidden_units, zero_init, seed (rebar, relax).
    """
    try:
        cls = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown estimator {name!r}; known: {', '.join(_REGISTRY)}.") from None
    try:
        return cls(num_categories, **options)
    except TypeError as e:
        raise ValueError(f"Bad option for estimator {name!r}: {e}") from None
