"""Boltzmann-machine priors over binary latents (GumBolt, Khoshaman & Amin 2018).

```python
from igr_tf import boltzmann
prior = boltzmann.RBM(20, 20)                   # Keras layer: a, b, W and persistent chains
boltzmann.exact_log_partition(prior.params)     # log Z, one group summed out
boltzmann.ais_log_partition(prior.params)       # AIS estimate with its standard error
```
"""

from igr_tf.boltzmann.ais import AISResult, ais_log_partition, linear_betas
from igr_tf.boltzmann.layer import RBM
from igr_tf.boltzmann.rbm import (
    MAX_EXACT_UNITS,
    RBMParams,
    as_params,
    conditional_logits1,
    conditional_logits2,
    energy,
    exact_log_partition,
    factorial_log_partition,
    log_marginal1,
    log_marginal2,
)
from igr_tf.boltzmann.sampling import bernoulli, gibbs_chain, gibbs_sweep, initial_state

__all__ = [
    "AISResult",
    "MAX_EXACT_UNITS",
    "RBM",
    "RBMParams",
    "ais_log_partition",
    "as_params",
    "bernoulli",
    "conditional_logits1",
    "conditional_logits2",
    "energy",
    "exact_log_partition",
    "factorial_log_partition",
    "gibbs_chain",
    "gibbs_sweep",
    "initial_state",
    "linear_betas",
    "log_marginal1",
    "log_marginal2",
]
