"""Names the command line offers, importable without TensorFlow.

`train.py --help` and its flag errors must not wait for TensorFlow, and importing the libraries
that define these names imports it. This module is their one home: the relaxation registry
(`igr_tf.distributions.names()`) registers exactly `RELAXATIONS`, in this order, the estimator
registry (`igr_tf.estimators.names()`) exactly `ESTIMATORS`, and `igr_tf.concepts.MODES` is
`CBM_MODES`. Each registry checks its list when it is imported.
"""

from __future__ import annotations

__all__ = [
    "CBM_MODES",
    "ESTIMATORS",
    "ESTIMATOR_RELAXATIONS",
    "NAMES",
    "OBJECTIVE_ESTIMATORS",
    "RELAXATIONS",
]

#: Names accepted by `igr_tf.distributions.get`, in the registry's order.
RELAXATIONS: tuple[str, ...] = ("igr_i", "igr_sb", "igr_planar", "gs", "perturb_exponential")
NAMES = RELAXATIONS

#: Training modes of the sparse concept bottleneck layer (`igr_tf.concepts`).
CBM_MODES: tuple[str, ...] = ("l1", "contrastive", "gumbel", "igr")

#: Names accepted by `igr_tf.estimators.get`, in the registry's order.
ESTIMATORS: tuple[str, ...] = (
    "st",
    "st_gs",
    "gumbel_rao",
    "gst",
    "reinmax",
    "st_igr_i",
    "st_igr_sb",
    "st_igr_planar",
    "reinforce_loo",
    "vimco",
    "disarm",
    "rebar",
    "relax",
)

#: The estimators that evaluate the objective themselves (`Estimator.needs_objective`); the others
#: are hard-sample estimators (a one-hot sample with a custom gradient).
OBJECTIVE_ESTIMATORS: tuple[str, ...] = ("reinforce_loo", "vimco", "disarm", "rebar", "relax")

#: Distributions the score-function and control-variate estimators sample from (their
#: `distribution=` / `relaxation=` option), in the order of `igr_tf.estimators`' families.
ESTIMATOR_RELAXATIONS: tuple[str, ...] = ("gs", "igr_i", "igr_sb")
