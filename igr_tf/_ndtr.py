r"""A cheap float64 log Phi for quadrature: one degree-16 polynomial, one division, one log per 16.

Everything rests on the scaled complementary error function at a non-negative argument,
:math:`E(y)=e^{y^2}\operatorname{erfc}(y)`, :math:`y\ge0`.  With :math:`y=|u|/\sqrt2` and the
Gaussian tail :math:`Q(|u|)=\tfrac12e^{-u^2/2}E(y)`,

.. math::

    \log\Phi(u)=-\tfrac{u^2}{2}+\log\tfrac{E(y)}{2}\ (u<0),\qquad
    \log\Phi(u)=\log\big(1-\tfrac12e^{-u^2/2}E(y)\big)\ (u\ge0).

Write :math:`\log\Phi(u)=c(u)+\log F(u)` with :math:`c(u)=-u^2/2` for u < 0 (0 otherwise) and
:math:`F(u)\in(0,1]` the remaining factor.  A sum :math:`\sum_j\log\Phi(u_j)` is then
:math:`\sum_j c(u_j)+\log\prod_jF(u_j)`: one ``log`` per group of factors, not one per factor
(the product is taken in groups of :data:`_GROUP`, each factor at least ~1e-16, far from float64
underflow).

:math:`E` is a polynomial in :math:`t=(y-k)/(y+k)\in[-1,1)`, k = 3.5 (the change of variable of
Shepherd and Laframboise, Math. Comp. 1981): :math:`(y+k)E(y)=\sum_{i\le16}p_it^i`, the
least-squares Chebyshev fit on 200 Chebyshev points made by :func:`fit_coefficients` (monomial
coefficients all below 1.1, so Horner's rule loses nothing).  With :math:`w=1/(y+k)`,
:math:`t=1-2kw` and :math:`E=w\sum_ip_it^i`: one division.  Relative error of E below 1e-12 for
every y >= 0 (checked against mpmath at 40 digits while fitting; ``tests/test_ndtr.py`` checks
log Phi against scipy), so |error of log Phi| < 2e-12.  The argument is clamped at y = 1e15
(where log Phi is below -5e29 either way).  :func:`exp_of_moderate` replaces ``tf.exp``: XLA on
CPU calls a scalar libm exp for float64, which cost more than everything else here together.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# (y + _SHIFT) erfcx(y) = sum_i _POLY[i] t^i, t = (y - _SHIFT)/(y + _SHIFT); fit_coefficients().
_SHIFT = 3.5
_POLY = (
    1.0870555892619276,
    -0.937799724581339,
    0.6941136466889918,
    -0.4352560260263965,
    0.22573862018164512,
    -0.09231871644451514,
    0.026518635155122507,
    -0.0031769875000596166,
    -0.001305434830339645,
    0.0007143163273456348,
    -4.182402127746268e-05,
    -7.43521032522933e-05,
    1.8225588077085142e-05,
    6.751642481154596e-06,
    -2.945102041787071e-06,
    -4.695411576562031e-07,
    2.7885207870293094e-07,
)
# The quadrature's integrand needs far less: the degree-13 fit (fit_coefficients(13)), relative
# error of E below 5e-10 (|error of log Phi| < 5e-10, ~1e-9 relative in a product of 8), and
# exp by its degree-10 Taylor polynomial (relative error < 3e-13): 5 multiply-adds fewer.
_POLY_QUADRATURE = (
    1.087055589030067,
    -0.9377997250112142,
    0.6941136696666764,
    -0.435256009977664,
    0.22573824709217927,
    -0.09231888977118786,
    0.026520919441344135,
    -0.0031761621344870254,
    -0.0013121574300996727,
    0.0007122987669131598,
    -3.148493201307551e-05,
    -7.171093344359307e-05,
    1.0009120869840773e-05,
    4.990862847476368e-06,
)
_EXP_DEGREE_QUADRATURE = 10
_Y_MAX = 1e15
_GROUP = 16
_UNROLL = 32
_MIN_EXPONENT = -690.0
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def fit_coefficients(degree: int = 16, points: int = 200) -> np.ndarray:
    """The monomial coefficients of :data:`_POLY`, refitted (needs scipy; never at trace time)."""
    from numpy.polynomial import chebyshev
    from scipy import special

    t = np.cos(np.pi * (np.arange(points) + 0.5) / points)
    y = _SHIFT * (1.0 + t) / (1.0 - t)
    values = (y + _SHIFT) * special.erfcx(y)
    return chebyshev.cheb2poly(chebyshev.chebfit(t, values, degree))


_LN2_HI = 0.693145751953125  # ln 2 split (Cody-Waite): k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.4286068203094173e-06
_INV_LN2 = 1.0 / math.log(2.0)
_EXP_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(13))


def exp_of_moderate(v: tf.Tensor, degree: int = 12) -> tf.Tensor:
    """exp(v) for float64 v in [-690, 700] (relative error < 2e-16 plus rounding), vectorizable.

    ``degree`` (<= 12) trades accuracy for speed: the remainder is (ln2/2)^(d+1)/(d+1)!.

    XLA on CPU calls a scalar libm exp for float64 (7-8 ns each, most of the quadrature's time);
    this is v = k ln 2 + r with |r| <= ln2/2, exp(r) by its degree-12 Taylor polynomial
    (remainder < (ln2/2)^13/13! = 1.6e-16) and 2^k written into the exponent bits.
    """
    k = tf.math.round(v * _INV_LN2)
    r = (v - k * _LN2_HI) - k * _LN2_LO
    poly = tf.constant(_EXP_TAYLOR[degree], v.dtype)
    for coefficient in _EXP_TAYLOR[degree - 1 :: -1]:
        poly = poly * r + coefficient
    bits = tf.bitwise.left_shift(tf.cast(k, tf.int64) + 1023, tf.constant(52, tf.int64))
    return poly * tf.bitcast(bits, tf.float64)


def _parts(
    u: tf.Tensor, coefficients: tuple[float, ...] = _POLY, exp_degree: int = 12
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(c, F, half_e, gauss) for float64 u: log Phi(u) = c + log F; E(y)/2; exp(-u^2/2)."""
    negative = u < 0.0
    # where, not abs: the gradient at u = 0 must be that of the u >= 0 branch (abs's is 0).
    y = tf.minimum(tf.where(negative, -u, u) * _INV_SQRT2, _Y_MAX)
    w = 1.0 / (y + _SHIFT)  # the one division
    t = 1.0 - (2.0 * _SHIFT) * w
    poly = tf.constant(coefficients[-1], u.dtype)
    for coefficient in coefficients[-2::-1]:
        poly = poly * t + coefficient
    half_e = (0.5 * w) * poly
    square = -0.5 * tf.square(u)
    # Clamped so that exp never returns a subnormal (slow on x86); F is 1 there anyway.
    gauss = exp_of_moderate(tf.maximum(square, _MIN_EXPONENT), exp_degree)
    factor = tf.where(negative, half_e, 1.0 - gauss * half_e)
    return tf.where(negative, square, tf.zeros_like(u)), factor, half_e, gauss


def log_ndtr(u: tf.Tensor) -> tf.Tensor:
    """log Phi(u), elementwise, float64 (absolute error < 6e-12 for every u)."""
    c, factor, _, _ = _parts(u)
    return c + tf.math.log(factor)


def _chain(parts: list[tf.Tensor], product: bool) -> tf.Tensor:
    total = parts[0]
    for part in parts[1:]:
        total = total * part if product else total + part
    return total


def sum_over(x: tf.Tensor, axis: int, product: bool = False) -> tf.Tensor:
    """Sum (or product) over a short static axis as an unrolled chain of elementwise ops.

    XLA on CPU turns a reduction over a short axis into scalar loops (they cost about as much as
    the special function itself here); a chain of slices fuses into one vectorized loop.  Axes
    longer than :data:`_UNROLL` (or of unknown size) use the reduction.
    """
    if x.shape[axis] is None or x.shape[axis] > _UNROLL:
        return tf.reduce_prod(x, axis) if product else tf.reduce_sum(x, axis)
    return _chain(tf.unstack(x, axis=axis), product)


def sum_log_ndtr(u: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """sum_j log Phi(u_j) over ``axis`` (static size), with one log per 16 terms."""
    c, factor, _, _ = _parts(u)
    num = u.shape[axis]
    if num is None:
        raise ValueError("sum_log_ndtr needs a static size along `axis`.")
    total = sum_over(c, axis)
    if num <= _UNROLL:
        factors = tf.unstack(factor, axis=axis)
        for start in range(0, num, _GROUP):
            total += tf.math.log(_chain(factors[start : start + _GROUP], product=True))
        return total
    for start in range(0, num, _GROUP):
        group = tf.gather(factor, tf.range(start, min(start + _GROUP, num)), axis=axis)
        total += tf.math.log(tf.reduce_prod(group, axis))
    return total


def sum_log_ndtr_affine(r: tf.Tensor, b: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """sum_j log Phi(r_j x + b_j): r, b [J, ...], x [..., N] -> [..., N].

    Competitor-leading: for J <= :data:`_UNROLL` a Python loop over j builds each u_j from the
    contiguous slice r[j], b[j]: XLA fuses it into one loop over [..., N] that evaluates all J
    terms per element (~25% faster than slicing a broadcast [J, ..., N] tensor).  That loop uses
    the quadrature's cheaper polynomials (|error| < 5e-10 per log Phi, see
    :data:`_POLY_QUADRATURE`); the fallback for J > 32 uses the full-accuracy ones.
    """
    num = r.shape[0]
    if num is None or num > _UNROLL:
        return sum_log_ndtr(r[..., None] * x[None] + b[..., None], axis=0)
    total, product = None, None
    for j in range(num):
        c, factor, _, _ = _parts(
            r[j][..., None] * x + b[j][..., None], _POLY_QUADRATURE, _EXP_DEGREE_QUADRATURE
        )
        total = c if total is None else total + c
        product = factor if product is None else product * factor
        if (j + 1) % _GROUP == 0 or j + 1 == num:
            total, product = total + tf.math.log(product), None
    return total


def mills_ratio(u: tf.Tensor) -> tf.Tensor:
    """phi(u)/Phi(u), elementwise, float64: relative error < 1e-11 up to u = 37, beyond which
    it is only below 1e-290 (the clamped exp); no gradient intended."""
    _, factor, half_e, gauss = _parts(u)
    # Phi(u) = e^{-u^2/2} E(y)/2 for u < 0, so phi/Phi = 1/(sqrt(2 pi) E(y)/2) there; for u >= 0,
    # phi/Phi = e^{-u^2/2} / (sqrt(2 pi) F).
    return _INV_SQRT_2PI / tf.where(u < 0.0, half_e, factor / gauss)
