"""Argument checks shared by bijectors, distributions and layers.

Errors name the argument and the allowed range, and are raised at construction time whenever the
value is known statically, so users see one clear message rather than a deep TF traceback.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow_probability.python.internal import assert_util, tensor_util
from tensorflow_probability.python.internal import prefer_static as ps


def check_positive(value, name: str) -> None:
    """Raises ValueError when a statically known `value` is not finite and > 0 (NaN, inf)."""
    if tensor_util.is_ref(value):
        return
    static = tf.get_static_value(tf.convert_to_tensor(value))
    if static is None:
        return
    arr = np.asarray(static)
    if np.any(~((arr > 0) & np.isfinite(arr))):
        raise ValueError(f"`{name}` must be > 0 and finite; got {arr.tolist()}.")


def check_num_categories(num_categories: int, name: str = "num_categories") -> int:
    """Returns `num_categories` as an int, raising ValueError unless it is an integer ≥ 2."""
    try:
        integral = not isinstance(num_categories, bool) and int(num_categories) == num_categories
    except (TypeError, ValueError, OverflowError):  # None, a string, inf, NaN
        integral = False
    if not integral:
        raise ValueError(f"`{name}` must be an integer >= 2; got {num_categories!r}.")
    if num_categories < 2:
        raise ValueError(
            f"`{name}` must be >= 2 (a categorical needs two outcomes); got {num_categories}."
        )
    return int(num_categories)


def positive_float(value: float, name: str) -> float:
    """Returns `value` as a float, raising ValueError unless it is finite and > 0."""
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
    return value


def check_positive_int(value: int, name: str) -> int:
    """Returns `value` as an int, raising ValueError unless it is an integer ≥ 1."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")
    return int(value)


def positive_finite_assertions(value, name: str) -> list:
    """Run-time assertions (for `validate_args`) that `value` is > 0 and finite, naming it."""
    value = tf.convert_to_tensor(value)
    return [
        assert_util.assert_positive(value, message=f"`{name}` must be > 0."),
        assert_util.assert_less(
            value, tf.constant(float("inf"), value.dtype), message=f"`{name}` must be finite."
        ),
    ]


def finite_assertions(value, name: str) -> list:
    """Run-time assertion (for `validate_args`) that every entry of `value` is finite (no NaN)."""
    value = tf.convert_to_tensor(value)
    return [
        assert_util.assert_less(  # NaN fails this comparison too
            tf.abs(value),
            tf.constant(float("inf"), value.dtype),
            message=f"`{name}` must be finite (got NaN or ±inf).",
        )
    ]


def logits_relaxation_assertions(temperature, logits, is_init: bool) -> list:
    """`validate_args` checks of a logits relaxation's (GS, perturbations) temperature (> 0,
    finite) and logits (finite), each named: at construction for tensors, at each use for
    variables (TFP's `_parameter_control_dependencies` convention)."""
    assertions = []
    if is_init != tensor_util.is_ref(temperature):
        assertions += positive_finite_assertions(temperature, "temperature")
    if logits is not None and is_init != tensor_util.is_ref(logits):
        assertions += finite_assertions(logits, "logits")
    return assertions


def simplex_assertions(y: tf.Tensor) -> list:
    """Run-time assertions that `y` lies in the open simplex (positive entries summing to one)."""
    tol = 1e-4 if y.dtype == tf.float32 else 1e-10
    return [
        assert_util.assert_positive(y, message="Input must be strictly positive (open simplex)."),
        assert_util.assert_near(
            tf.reduce_sum(y, axis=-1),
            tf.ones([], y.dtype),
            atol=tol * ps.cast(ps.shape(y)[-1], y.dtype),
            message="Input must sum to 1 along the last axis (simplex).",
        ),
    ]


def as_parameter(value, dtype, name: str):
    """Keeps Python numbers as floats (dtype-agnostic parameters); converts everything else.

    TFP converts Python floats to float32 tensors, which then refuse float64 inputs. Keeping them as
    floats lets one bijector serve both precisions; tensors and variables keep their own dtype.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return tensor_util.convert_nonref_to_tensor(value, dtype=dtype, name=name)


def as_dtype(value, dtype) -> tf.Tensor:
    """`value` as a tensor of `dtype`: Python numbers exactly (`tf.cast(0.1, tf.float64)` would
    round through float32 first), tensors and variables by `tf.cast`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return tf.constant(value, dtype)
    return tf.cast(value, dtype)


def cast_like(param, like: tf.Tensor) -> tf.Tensor:
    """`param` as a tensor of `like`'s dtype (Python floats adapt; tensors must already match)."""
    if isinstance(param, float):
        return tf.constant(param, like.dtype)
    return tf.convert_to_tensor(param, dtype_hint=like.dtype)
