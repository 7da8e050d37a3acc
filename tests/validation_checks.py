"""A shared check for `validate_args` / `validate=True`: run-time bad values are named errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf


def assert_run_time_checks(
    call: Callable,
    valid: np.ndarray,
    input_message: str,
    set_temperature: Callable[[float], None],
    temperatures: dict[float, str],
) -> None:
    """`call(valid)` runs; a NaN in the input raises InvalidArgumentError matching
    `input_message`; after `set_temperature(t)`, so does each bad τ, matching `temperatures[t]`."""
    call(valid)  # valid: fine
    bad = valid.copy()
    bad[1, 2] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match=input_message):
        call(bad)
    for value, message in temperatures.items():
        set_temperature(value)
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call(valid)
