"""Planar flow (Rezende & Mohamed, 2015) as an invertible TFP bijector."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    cache_util,
    dtype_util,
    parameter_properties,
    tensor_util,
)

tfb = tfp.bijectors

__all__ = ["Planar"]


class Planar(tfb.AutoCompositeTensorBijector):
    """Planar flow `f(z) = z + û tanh(wᵀz + b)` with the invertibility constraint on `û`.

    ```none
    û = u + (m(wᵀu) - wᵀu) · w / ‖w‖²,   m(a) = -1 + softplus(a)
    ```

    so that `wᵀû = m(wᵀu) > -1`, which makes `f` strictly monotone along `w` and hence invertible
    (Rezende & Mohamed 2015, appendix A). Parameters broadcast as a batch: `w` and `u` have shape
    `[..., D]`, `b` has shape `[...]`, e.g. one flow per discrete variable with `[V, K-1]` and
    `[V]`. IGR-Planar composes a few of these before `SoftmaxPlusPlus`.

    The inverse has no closed form. Writing `a = wᵀz`, `wᵀf(z) = a + m tanh(a + b)`, so given
    `y` the scalar `a` solves `g(a) = a + m tanh(a + b) - wᵀy = 0`; `g` is increasing and its root
    lies in `[wᵀy - |m|, wᵀy + |m|]`. We bisect (a fixed number of steps, so it compiles with XLA),
    then take one Newton step outside `stop_gradient` so that gradients of the inverse are the
    implicit-function ones. Then `z = y - û tanh(a + b)`.

    #### Example

    ```python
    flow = Planar(w=[[0.5, -1.]], u=[[1., 2.]], b=[0.1])   # one flow on R^2
    y = flow.forward([[0.3, -0.2]])
    flow.inverse(y)   # ==> [[0.3, -0.2]]
    ```

    #### Jacobian

    ```none
    ∂f/∂z = I + û ψ(z)ᵀ with ψ(z) = (1 - tanh²(wᵀz + b)) w, so by the matrix determinant lemma
      det = 1 + (1 - tanh²(x)) ûᵀw,   x = wᵀz + b.
    With ûᵀw = m = -1 + softplus(wᵀu) this is  tanh²(x) + softplus(wᵀu)·sech²(x),  a sum of two
    non-negative terms: we evaluate that form, which never cancels catastrophically as m → -1.
    (When w = 0 the flow is a shift and log det = 0.)
    ```

    The forward pass hands TFP's bijector cache the log-det it shares tanh(wᵀz + b) with (as
    TFP's FFJORD does), so `log_prob` of a sample reuses it: one tanh per flow, forward and
    backward, instead of a second evaluation whose gradient the tape records apart.
    """

    # `_forward` and `_inverse` run through these two, which also return cache attributes.
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse"
    )

    def __init__(
        self,
        w,
        u,
        b,
        bisection_steps: int | None = None,
        validate_args: bool = False,
        name: str = "planar",
    ) -> None:
        """Builds the flow.

        Args:
          w: float tensor `[..., D]`, the hyperplane normal.
          u: float tensor `[..., D]`, the unconstrained direction (constrained to û internally).
          b: float tensor `[...]`, the offset.
          bisection_steps: iterations of the inverse's bisection; default 40 for float32 and
            70 for float64 (enough to reach the dtype's resolution before the Newton step).
          validate_args: accepted for TFP compatibility (every input is in the domain).
          name: name scope.
        """
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([w, u, b], dtype_hint=tf.float32)
            self._w = tensor_util.convert_nonref_to_tensor(w, dtype=dtype, name="w")
            self._u = tensor_util.convert_nonref_to_tensor(u, dtype=dtype, name="u")
            self._b = tensor_util.convert_nonref_to_tensor(b, dtype=dtype, name="b")
            if bisection_steps is None:
                bisection_steps = 70 if dtype == tf.float64 else 40
            self._bisection_steps = int(bisection_steps)
            # Tensors are fixed: constrain them once, here, for every method to share. Variables
            # are read where they are used (TFP's convention: they may change between calls).
            refs = any(tensor_util.is_ref(p) for p in (self._w, self._u, self._b))
            self._fixed = None if refs else self._constrain()
            super().__init__(
                forward_min_event_ndims=1,
                validate_args=validate_args,
                parameters=parameters,
                dtype=dtype,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(
            w=parameter_properties.ParameterProperties(event_ndims=1),
            u=parameter_properties.ParameterProperties(event_ndims=1),
            b=parameter_properties.ParameterProperties(event_ndims=0),
        )

    @property
    def w(self):
        return self._w

    @property
    def u(self):
        return self._u

    @property
    def b(self):
        return self._b

    def _constrain(self) -> dict[str, tf.Tensor]:
        """w, û, b[..., None], wᵀû and 1 + wᵀû, with û satisfying the invertibility constraint.

        `1 + wᵀû = softplus(wᵀu)` is kept as such (forming it as 1 + m would cancel as m → -1).
        Where w = 0 the flow is a shift: û = u, wᵀû = 0 (and no division by ‖w‖² = 0, whose
        gradient would be inf · 0).
        """
        w = tf.convert_to_tensor(self._w)
        u = tf.convert_to_tensor(self._u)
        b = tf.convert_to_tensor(self._b)
        wu = tf.reduce_sum(w * u, axis=-1, keepdims=True)
        w_sq = tf.reduce_sum(tf.square(w), axis=-1, keepdims=True)
        nonzero = w_sq > 0
        sp = tf.math.softplus(wu)  # 1 + m(wᵀu)
        safe_w_sq = tf.where(nonzero, w_sq, tf.ones_like(w_sq))
        correction = tf.where(nonzero, (sp - 1.0 - wu) / safe_w_sq, tf.zeros_like(w_sq))
        return {
            "w": w,
            "u_hat": u + correction * w,
            "b": b[..., tf.newaxis],
            "m": tf.where(nonzero, sp - 1.0, tf.zeros_like(sp)),  # wᵀû
            "one_plus_m": tf.where(nonzero, sp, tf.ones_like(sp)),
        }

    def _constrained(self) -> dict[str, tf.Tensor]:
        return self._fixed if self._fixed is not None else self._constrain()

    def _tanh_pre(self, z, c) -> tf.Tensor:
        return tf.math.tanh(tf.reduce_sum(c["w"] * z, axis=-1, keepdims=True) + c["b"])

    def _augmented_forward(self, z):
        """`(f(z), {"ildj": -log|det ∂f/∂z|})` from one evaluation of tanh(wᵀz + b)."""
        c = self._constrained()
        t = self._tanh_pre(z, c)
        return z + c["u_hat"] * t, {"ildj": -self._log_det_from_tanh(t, c)}

    def _augmented_inverse(self, y):
        # The log-det of an inverse is TFP's fallback, -fldj(x), on the x found here.
        return self._inverse(y), None

    def _forward(self, z):
        return self._augmented_forward(z)[0]

    def _inverse(self, y):
        c = self._constrained()
        w, u_hat, b, m = c["w"], c["u_hat"], c["b"], c["m"]
        target = tf.reduce_sum(w * y, axis=-1, keepdims=True)  # wᵀy
        shape = tf.broadcast_dynamic_shape(
            tf.shape(target), tf.broadcast_dynamic_shape(tf.shape(m), tf.shape(b))
        )
        target, m_full, b_full = (tf.broadcast_to(t, shape) for t in (target, m, b))

        def g(a, m_, b_, t_):
            return a + m_ * tf.math.tanh(a + b_) - t_

        radius = tf.abs(tf.stop_gradient(m_full))
        lo = tf.stop_gradient(target) - radius
        hi = tf.stop_gradient(target) + radius
        m_sg, b_sg, t_sg = (tf.stop_gradient(v) for v in (m_full, b_full, target))

        def body(i, lo, hi):
            mid = 0.5 * (lo + hi)
            above = g(mid, m_sg, b_sg, t_sg) > 0
            return i + 1, tf.where(above, lo, mid), tf.where(above, mid, hi)

        _, lo, hi = tf.while_loop(
            lambda i, lo, hi: i < self._bisection_steps,
            body,
            (tf.constant(0), lo, hi),
            maximum_iterations=self._bisection_steps,
        )
        a0 = tf.stop_gradient(0.5 * (lo + hi))
        # One Newton step with live parameters: exact value to first order and implicit gradients.
        sech_sq = 1.0 - tf.square(tf.math.tanh(a0 + b_full))
        a = a0 - g(a0, m_full, b_full, target) / (1.0 + m_full * sech_sq)
        return y - u_hat * tf.math.tanh(a + b_full)

    def _forward_log_det_jacobian(self, z):
        c = self._constrained()
        return self._log_det_from_tanh(self._tanh_pre(z, c), c)

    @staticmethod
    def _log_det_from_tanh(t, c) -> tf.Tensor:
        """`log(1 + (1 - t²) wᵀû)` `[...]` from `t = tanh(wᵀz + b)` `[..., 1]`."""
        # det = 1 + (1 - t²) wᵀû = t² + (1 + wᵀû)(1 - t²): two non-negative terms, no
        # cancellation as wᵀû → -1; 1 - t² loses digits only where it is below float eps, where
        # det = 1 to that precision anyway.
        t_sq = tf.square(t)
        det = t_sq + c["one_plus_m"] * (1.0 - t_sq)
        det = tf.maximum(det, np.finfo(det.dtype.as_numpy_dtype).tiny)
        return tf.squeeze(tf.math.log(det), axis=-1)
