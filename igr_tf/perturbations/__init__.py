"""The Gumbel trick's lost relatives (Balog, Tripuraneni, Ghahramani & Weller, ICML 2017).

- `families`: perturb-and-MAP sampling of a categorical with Gumbel, Exponential, Weibull,
  Fréchet and Pareto perturbations (all exact; the same sample for the same noise).
- `estimators`: the log Z and Z estimators each family gives, with closed-form bias and
  variance where they exist.
- `grid`: Ising/Potts grid models with exact log Z and MAP (transfer matrices).
- `lowrank`: unary (low-rank) perturbations: upper bounds U(α), lower bounds L(α), and the
  sequential sampler.
- `relaxed`: softmax relaxations of the families as TFP distributions on the simplex, and
  descriptors for a relaxation registry.
"""

from igr_tf.perturbations import estimators, families, grid, lowrank, relaxed
from igr_tf.perturbations.estimators import log_z, z
from igr_tf.perturbations.families import FAMILIES, Family, PerturbAndMap, perturb_and_map
from igr_tf.perturbations.grid import GridModel, ising_grid, potts_grid
from igr_tf.perturbations.lowrank import (
    lower_bound,
    max_marginal_lower_bound,
    sequential_sample,
    upper_bound,
)
from igr_tf.perturbations.relaxed import (
    RELAXED_FAMILIES,
    ExpRelaxedPerturbation,
)

__all__ = [
    "FAMILIES",
    "RELAXED_FAMILIES",
    "ExpRelaxedPerturbation",
    "Family",
    "GridModel",
    "PerturbAndMap",
    "estimators",
    "families",
    "grid",
    "ising_grid",
    "log_z",
    "lower_bound",
    "lowrank",
    "max_marginal_lower_bound",
    "perturb_and_map",
    "potts_grid",
    "relaxed",
    "sequential_sample",
    "upper_bound",
    "z",
]
