"""The names of the registered relaxations, importable without TensorFlow.

`train.py --help` and its flag errors must not wait for TensorFlow, and importing the registry
(`igr_tf.distributions`) imports it. This module is the TensorFlow-free source of the names; the
registry's `igr_tf.distributions.names()` must return the same tuple (tests/test_train_cli.py
checks it), until the registry reads its names from here.
"""

from __future__ import annotations

__all__ = ["NAMES"]

#: Names accepted by `igr_tf.distributions.get`, in the registry's order.
NAMES: tuple[str, ...] = ("igr_i", "igr_sb", "igr_planar", "gs")
