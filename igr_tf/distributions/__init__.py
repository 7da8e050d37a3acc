"""IGR distributions (TFP distributions) and the relaxation registry.

```python
from igr_tf import distributions as igrd
q = igrd.igr_i(loc, scale, temperature=0.5)          # a tfd.TransformedDistribution, event [K]
y = igrd.igr_i(loc, scale, 0.5, log_space=True)      # the same relaxation, values log ψ
relax = igrd.get("igr_sb", num_categories=10)        # a relaxation recipe by name
```
"""

from igr_tf.distributions.adaptive import AdaptiveIGRStickBreaking
from igr_tf.distributions.igr import (
    gaussian_base,
    igr_i,
    igr_planar,
    igr_sb,
    planar_flows,
    softmax_plus_plus,
    transformed,
)
from igr_tf.distributions.philox import ExpRelaxedOneHotCategorical, Normal
from igr_tf.distributions.relaxations import (
    IGRI,
    Draw,
    GumbelSoftmax,
    IGRPlanar,
    IGRStickBreaking,
    Relaxation,
    WeightSpec,
    get,
    names,
)

__all__ = [
    "AdaptiveIGRStickBreaking",
    "Draw",
    "ExpRelaxedOneHotCategorical",
    "GumbelSoftmax",
    "IGRI",
    "IGRPlanar",
    "IGRStickBreaking",
    "Normal",
    "Relaxation",
    "WeightSpec",
    "gaussian_base",
    "get",
    "igr_i",
    "igr_planar",
    "igr_sb",
    "names",
    "planar_flows",
    "softmax_plus_plus",
    "transformed",
]
