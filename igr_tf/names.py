"""Names the command line offers, importable without TensorFlow.

`train.py --help` and its flag errors must not wait for TensorFlow, and importing the libraries
that define these names imports it. This module is their one home: the relaxation registry
(`igr_tf.distributions.names()`) registers exactly `RELAXATIONS`, in this order, and
`igr_tf.concepts.MODES` is `CBM_MODES`.
"""

from __future__ import annotations

__all__ = ["CBM_MODES", "NAMES", "RELAXATIONS"]

#: Names accepted by `igr_tf.distributions.get`, in the registry's order.
RELAXATIONS: tuple[str, ...] = ("igr_i", "igr_sb", "igr_planar", "gs", "perturb_exponential")
NAMES = RELAXATIONS

#: Training modes of the sparse concept bottleneck layer (`igr_tf.concepts`).
CBM_MODES: tuple[str, ...] = ("l1", "contrastive", "gumbel", "igr")
