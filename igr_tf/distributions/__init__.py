"""IGR distributions (TFP TransformedDistributions) and the relaxation registry.

```python
from igr_tf import distributions as igrd
q = igrd.igr_i(loc, scale, temperature=0.5)        # a tfd.TransformedDistribution, event [K]
relax = igrd.get("igr_sb", num_categories=10)      # a relaxation recipe by name
```
"""

from igr_tf.distributions.igr import gaussian_base, igr_i, igr_planar, igr_sb, planar_flows
from igr_tf.distributions.kl import exp_concrete_log_prob, gaussian_kl, gaussian_log_prob
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
    relaxed_sample,
)

__all__ = [
    "Draw",
    "GumbelSoftmax",
    "IGRI",
    "IGRPlanar",
    "IGRStickBreaking",
    "Relaxation",
    "WeightSpec",
    "exp_concrete_log_prob",
    "gaussian_base",
    "gaussian_kl",
    "gaussian_log_prob",
    "get",
    "igr_i",
    "igr_planar",
    "igr_sb",
    "names",
    "planar_flows",
    "relaxed_sample",
]
