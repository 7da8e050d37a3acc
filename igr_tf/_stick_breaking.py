r"""The categorical that IGR-SB induces, by exact 1-D recursions, and its uniform prior (numpy).

IGR-SB draws :math:`z_j\sim\mathcal N(\mu_j,s_j^2)`, :math:`j<K`, sets :math:`v_j=\sigma(z_j)` and
breaks a stick: :math:`\eta_c=v_c\prod_{j<c}(1-v_j)`, :math:`\eta_K=\prod_{j<K}(1-v_j)`.  As the
temperature goes to zero it induces the law of :math:`\arg\max_c\eta_c`.  This module computes that
law and fits prior locations that make it uniform.  It is build-time numerics (numpy, float64),
never traced.

**Recursions.**  Write :math:`\mathrm{sp}=\log(1+e^z)`, so :math:`\log v=z-\mathrm{sp}(z)` and
:math:`\log(1-v)=-\mathrm{sp}(z)`.

* Suffix: :math:`L_j` is the log of the largest piece of the stick broken by sticks
  :math:`j,\dots,K-1` alone (:math:`L_K=0`): :math:`L_j=\max(\log v_j,\ L_{j+1}-\mathrm{sp}(z_j))`,
  supported on :math:`[-\log(K-j+1),0]`.  Its CDF obeys
  :math:`G_j(y)=\int_{z\le\mathrm{logit}\,e^y}f_j(z)\,G_{j+1}(y+\mathrm{sp}(z))\,dz`.
* Prefix: :math:`A_k=\log(\max_{i\le k}\eta_i/\prod_{i\le k}(1-v_i))` obeys the Lindley-type
  recursion :math:`A_k=\max(A_{k-1}+\mathrm{sp}(z_k),\ z_k)`, :math:`A_0=-\infty`, so its CDF is
  :math:`H_k(a)=\int_{z\le a}f_k(z)\,H_{k-1}(a-\mathrm{sp}(z))\,dz`, :math:`H_0=1`.
* Category c wins iff it beats the later pieces, :math:`z_c>L_{c+1}` (as :math:`v/(1-v)=e^z`),
  and the earlier ones, :math:`\log v_c>A_{c-1}`.  Prefix and suffix are independent of
  :math:`z_c` and of each other, so

  .. math:: P(c)=\int f_c(z)\,G_{c+1}(z)\,H_{c-1}(\log\sigma(z))\,dz,\qquad P(K)=H_{K-1}(0).

Each CDF is tabulated on a uniform grid of step ``h`` (one anchor per table, so consecutive
tables' nodes nearly coincide and interpolation errors do not pile up along the recursion) and
read back by 6-point Lagrange interpolation (error O(h^6)); only the window where it is neither
~0 nor ~1 is kept.  Each table point is a Gauss-Legendre integral over z between the kinks of its
integrand, with the Gaussian mass of the constant part computed exactly (a control variate), so
the tiny early sticks cost no accuracy.  One evaluation is O(K * window * nodes).

**Uniform prior.**  The Jacobian of :math:`P` in :math:`\mu` is nearly lower triangular: a
category hardly feels the sticks after it (they enter only through the law of the suffix maximum)
but strongly feels those before it.  So a forward sweep that solves :math:`P(c)=1/K` for
:math:`\mu_c` one category at a time (a monotone 1-D problem: :math:`P(c)` increases with
:math:`\mu_c`), with the prefix tables rebuilt as it goes and the suffix tables of the previous
iterate, is an excellent fixed-point map; Anderson acceleration removes the slow global mode (the
bulk's total mass against the last sticks').  :math:`\mu_{K-1}=0` exactly, since categories K-1
and K are exchangeable under :math:`z_{K-1}\to-z_{K-1}` given the rest.  Large K start from a
continuation: the deviation from :math:`-\log(K-c)-s^2/2` (equal expected pieces) is nearly linear
in :math:`\log K` at fixed distance from the end of the stick.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Gaussian factors are truncated at +-_TAIL standard deviations (Phi(-8.5) ~ 1e-17).
_TAIL = 8.5
# CDF values below this are dropped from a table's window (and read back as 0).
_FLOOR = 1e-18
# Default table step (times min(1, smallest scale)), Gauss-Legendre nodes per table point, and
# per half-line of a category integral.  Accuracy at K = 1000, scale 1: ~2e-5 relative per
# category, |sum - 1| ~ 1e-7; at K = 10,000: |sum - 1| ~ 5e-8.
_STEP = 0.04
_TABLE_NODES = 16
_CATEGORY_NODES = 48
_STENCIL = 6

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# --- a uniform-grid interpolant with constant extension -----------------------------------------


@functools.cache
def _lagrange_matrices(points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monomial coefficients of the Lagrange basis on nodes -(p/2-1)..p/2 and edge extrapolation.

    Returns ``(basis [p, p], left [p/2-1, p], right [p/2-1, p])``: ``basis @ f[i-p/2+1 : i+p/2+1]``
    gives the cell-i polynomial in u in [0, 1] (ascending powers); ``left @ f[:p]`` and
    ``right @ f[-p:]`` extrapolate the table by its own degree-(p-1) polynomial, so the cells
    next to a table end use a one-sided stencil (tables may start at a kink).
    """
    half = points // 2
    nodes = np.arange(-(half - 1), half + 1, dtype=np.float64)
    basis = np.empty((points, points))
    for i, xi in enumerate(nodes):
        others = np.delete(nodes, i)
        basis[:, i] = np.poly(others)[::-1] / np.prod(xi - others)
    grid = np.arange(points, dtype=np.float64)

    def extrapolation(at: np.ndarray) -> np.ndarray:
        """Lagrange weights [len(at), p] of the grid values for the points ``at``."""
        weights = np.ones((at.size, points))
        for i, gi in enumerate(grid):
            for g in grid:
                if g != gi:
                    weights[:, i] *= (at - g) / (gi - g)
        return weights

    left = extrapolation(np.arange(-(half - 1), 0, dtype=np.float64))
    right = extrapolation(np.arange(points, points + half - 1, dtype=np.float64))
    return basis, left, right


@functools.lru_cache(maxsize=512)
def _stencil_index(n: int) -> np.ndarray:
    """Rows i = 0..n-2: positions of cell i's stencil in the padded value array."""
    return np.arange(n - 1)[:, None] + np.arange(_STENCIL)


class _Table:
    """Values ``f`` on ``lo + i h`` (i < n), read back by 6-point Lagrange interpolation.

    Below ``lo`` the table reads ``left``, at and above its last node ``right``.
    """

    __slots__ = ("coef", "hi", "inv_h", "last", "lo", "n")

    def __init__(self, lo: float, h: float, f: np.ndarray, left: float, right: float) -> None:
        p = _STENCIL
        n = f.size
        if n < p:
            raise ValueError(f"a table needs at least {p} points, got {n}")
        basis, left_x, right_x = _lagrange_matrices(p)
        padded = np.concatenate([left_x @ f[:p], f, right_x @ f[-p:]])
        coef = np.zeros((p, n + 1))
        coef[:, 1:n] = basis @ padded[_stencil_index(n)].T
        coef[0, 0], coef[0, n] = left, right
        self.coef = coef
        self.lo, self.inv_h, self.n = float(lo), 1.0 / h, n
        self.hi = float(lo + (n - 1) * h)
        self.last = float(f[-1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = (x - self.lo) * self.inv_h + 1.0
        np.maximum(t, 0.0, out=t)
        i = np.minimum(t, self.n + 0.5).astype(np.intp)
        t -= i  # now the position u in [0, 1) within the cell
        c = self.coef
        r = c[-1].take(i)
        for k in range(c.shape[0] - 2, -1, -1):
            r *= t
            r += c[k].take(i)
        return r


@functools.cache
def _normal_cdf_table() -> _Table:
    """Phi on [-(TAIL + 2), TAIL + 2] at step 1/200 (interpolation error ~1e-15)."""
    lo, h = -(_TAIL + 2.0), 0.005
    x = lo + h * np.arange(int(round(2 * (_TAIL + 2.0) / h)) + 1)
    values = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    return _Table(lo, h, values, 0.0, 1.0)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return _normal_cdf_table()(np.asarray(x, dtype=np.float64))


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _softplus1(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _inv_softplus(w: np.ndarray) -> np.ndarray:
    """z with softplus(z) = w; -inf where w <= 0."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return np.where(w > 30.0, w, np.log(np.expm1(np.clip(w, 0.0, 30.0))))


def _logit_exp(y: np.ndarray) -> np.ndarray:
    """logit(e^y) for y < 0 (the z with log sigmoid(z) = y)."""
    with np.errstate(divide="ignore"):
        return y - np.log(-np.expm1(y))


def _gauss_legendre(lo, hi, rule):
    """Nodes [m, n] and weights (without the density) of an n-point rule on each [lo, hi]."""
    x, w = rule
    hi = np.maximum(hi, lo)
    half = 0.5 * (hi - lo)
    return (0.5 * (hi + lo))[:, None] + half[:, None] * x, half[:, None] * w


def _normal_pdf(z, mu, s):
    return np.exp(-0.5 * ((z - mu) / s) ** 2 - _LOG_SQRT_2PI) / s


def _first_above_floor(values: np.ndarray) -> int:
    above = np.flatnonzero(values > _FLOOR)
    return max(int(above[0]) - 1, 0) if above.size else 0


# --- the tables ---------------------------------------------------------------------------------


def _suffix_table(k_cat: int, j: int, mu: float, s: float, nxt: _Table | None, h: float, rule):
    """Table of G_j, the CDF of L_j, from G_{j+1} (``nxt``; None for j = K-1, where L_K = 0)."""
    anchor = -math.log(k_cat - j + 1)  # the lower end of L_j's support
    z_top, z_bot = mu + _TAIL * s, mu - _TAIL * s
    if nxt is None:
        left, right = anchor, 0.0
    else:  # G_j vanishes below nxt.lo - sp(z_top) and is 1 above max(nxt.hi, log sigmoid(z_top))
        left = max(anchor, nxt.lo - _softplus1(z_top))
        right = min(max(nxt.hi, -_softplus1(-z_top)), 0.0)
    i0 = max(int(math.floor((left - anchor) / h)), 0)
    i1 = max(int(math.ceil((right - anchor) / h)), i0 + _STENCIL)
    y = anchor + h * np.arange(i0, i1 + 1)
    z_own = _logit_exp(np.minimum(y, -1e-300))  # piece j itself is below e^y iff z <= z_own
    z_hi = np.minimum(z_own, z_top)
    z_one = -z_own  # y + sp(z) >= 0 beyond it: G_{j+1} = 1 there
    if nxt is None:
        values = _normal_cdf((z_hi - mu) / s) - _normal_cdf((np.maximum(z_one, z_bot) - mu) / s)
    else:
        z_lo = np.maximum(_inv_softplus(nxt.lo - y), z_bot)  # G_{j+1} = 0 below
        z_mid = np.minimum(z_one, z_hi)
        cdf = _normal_cdf((np.concatenate([z_lo, z_mid, z_hi]) - mu) / s).reshape(3, -1)
        z, w = _gauss_legendre(z_lo, z_mid, rule)
        both = nxt(np.concatenate([(y[:, None] + _softplus(z)).ravel(), y]))
        base = both[-y.size :]  # G_{j+1}(y): the integrand's value as z -> -inf
        inner = both[: -y.size].reshape(z.shape) - base[:, None]
        values = (
            base * np.maximum(cdf[1] - cdf[0], 0.0)
            + np.einsum("ij,ij->i", w * _normal_pdf(z, mu, s), inner)
            + np.maximum(cdf[2] - np.maximum(cdf[1], cdf[0]), 0.0)
        )
    values = np.clip(values, 0.0, 1.0)
    values[y >= 0.0] = 1.0
    a = _first_above_floor(values)
    below_one = np.flatnonzero(values < 1.0 - 1e-16)
    b = min(int(below_one[-1]) + 1, values.size - 1) if below_one.size else a
    a = min(a, values.size - _STENCIL)
    b = max(b, a + _STENCIL - 1)
    return _Table(float(y[a]), h, values[a : b + 1].copy(), 0.0, 1.0)


def _prefix_table(mu: float, s: float, prev: _Table | None, h: float, rule) -> _Table:
    """Table of H_k, the CDF of A_k on a <= 0, from H_{k-1} (``prev``; None for k = 1)."""
    z_bot, z_top = mu - _TAIL * s, mu + _TAIL * s
    lo = z_bot if prev is None else max(prev.lo, z_bot)  # H_k <= min(H_{k-1}, Phi((a-mu)/s))
    i0 = max(int(math.floor(-lo / h)), _STENCIL - 1)
    a = -h * np.arange(i0, -1, -1, dtype=np.float64)  # a shared grid anchored at 0
    if prev is None:
        values = _normal_cdf((a - mu) / s)
    else:
        z_lo = np.full_like(a, z_bot)
        z_hi = np.minimum(np.minimum(a, z_top), _inv_softplus(a - prev.lo))
        cdf = _normal_cdf((np.concatenate([z_lo, z_hi]) - mu) / s).reshape(2, -1)
        z, w = _gauss_legendre(z_lo, z_hi, rule)
        both = prev(np.concatenate([(a[:, None] - _softplus(z)).ravel(), a]))
        base = both[-a.size :]
        inner = both[: -a.size].reshape(z.shape) - base[:, None]
        values = base * np.maximum(cdf[1] - cdf[0], 0.0) + np.einsum(
            "ij,ij->i", w * _normal_pdf(z, mu, s), inner
        )
    values = np.clip(values, 0.0, 1.0)
    i = min(_first_above_floor(values), values.size - _STENCIL)
    return _Table(float(a[i]), h, values[i:].copy(), 0.0, float(values[-1]))


class _CategoryIntegrand:
    """:math:`F_c(z)=G_{c+1}(z)H_{c-1}(\\log\\sigma(z))` on nodes that serve mu in [lo, hi].

    ``P(c; mu) = sum_i w_i F_c(z_i) N(z_i; mu, s^2)``: once built, P and dP/dmu for any mu in the
    range cost one exp over the nodes (the 1-D solves of the sweep).
    """

    def __init__(self, gnext, hprev, mu_lo, mu_hi, s, rule):
        z_lo = max(mu_lo - _TAIL * s, 0.0 if gnext is None else gnext.lo)
        if hprev is not None:
            z_lo = max(z_lo, float(_logit_exp(min(hprev.lo, -1e-300))))
        z_hi = max(mu_hi + _TAIL * s, z_lo)
        lo = np.array([z_lo, max(z_lo, 0.0)])  # split at 0, where G_{c+1} reaches 1
        hi = np.maximum(lo, [min(z_hi, 0.0), z_hi])
        z, w = _gauss_legendre(lo, hi, rule)
        z, w = z.ravel(), w.ravel()
        f = (z >= 0.0).astype(np.float64) if gnext is None else gnext(z)
        if hprev is not None:
            f = f * hprev(-_softplus(-z))
        self.z, self.wf, self.s = z, w * f, s

    def prob(self, mu: float) -> float:
        return float(np.dot(_normal_pdf(self.z, mu, self.s), self.wf))

    def prob_and_slope(self, mu: float) -> tuple[float, float]:
        g = _normal_pdf(self.z, mu, self.s) * self.wf
        return float(g.sum()), float(np.dot(g, self.z - mu)) / self.s**2


# --- the induced pmf ----------------------------------------------------------------------------


class _Quadrature:
    """Grid step and Gauss-Legendre rules for one (scale, accuracy) setting."""

    def __init__(self, scale: np.ndarray, step: float | None, nodes: int) -> None:
        self.h = (_STEP if step is None else step) * min(1.0, float(np.min(scale)))
        self.rule = np.polynomial.legendre.leggauss(nodes)
        self.category_rule = np.polynomial.legendre.leggauss(_CATEGORY_NODES)


def _suffix_tables(mu, s, quad) -> list:
    k_cat = mu.size + 1
    tables = [None] * (k_cat + 1)  # tables[j] = G_j; G_K is the step at 0 (None)
    for j in range(k_cat - 1, 1, -1):
        tables[j] = _suffix_table(k_cat, j, mu[j - 1], s[j - 1], tables[j + 1], quad.h, quad.rule)
    return tables


def _prefix_tables(mu, s, quad) -> list:
    tables = [None] * (mu.size + 1)  # tables[k] = H_k; H_0 = 1 (None)
    for k in range(1, mu.size + 1):
        tables[k] = _prefix_table(mu[k - 1], s[k - 1], tables[k - 1], quad.h, quad.rule)
    return tables


def _pmf_from_tables(mu, s, suffix, prefix, quad) -> np.ndarray:
    k_cat = mu.size + 1
    pmf = np.empty(k_cat)
    for c in range(1, k_cat):
        m = mu[c - 1]
        f = _CategoryIntegrand(suffix[c + 1], prefix[c - 1], m, m, s[c - 1], quad.category_rule)
        pmf[c - 1] = f.prob(m)
    pmf[-1] = prefix[k_cat - 1].last
    return pmf


def induced_pmf(loc, scale, step: float | None = None, nodes: int = _TABLE_NODES) -> np.ndarray:
    """Law of argmax eta for IGR-SB with z ~ N(loc, scale^2) (scale scalar or per stick)."""
    mu = np.asarray(loc, dtype=np.float64).reshape(-1)
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), mu.shape).copy()
    if mu.size == 1:  # K = 2: argmax is 1 iff v > 1/2 iff z > 0
        p1 = 0.5 * math.erfc(-mu[0] / (s[0] * math.sqrt(2.0)))
        return np.array([p1, 1.0 - p1])
    quad = _Quadrature(s, step, nodes)
    return _pmf_from_tables(mu, s, _suffix_tables(mu, s, quad), _prefix_tables(mu, s, quad), quad)


# --- the uniform prior --------------------------------------------------------------------------

_MAX_STEP = 0.5  # largest change of one location in one sweep
_ANDERSON_DEPTH = 3
_MAX_ITERATIONS = 40
_FINAL_XTOL = 1e-4
_LEVEL_XTOL = 1e-3
_CONTINUATION_RATIO = 3.0
_CONTINUATION_MIN = 30


def _solve_category(target, mu, s, gnext, hprev, rule) -> tuple[float, float]:
    """(mu_c, P(c)) with P(c) = target given the neighbouring tables.

    Newton on log P (P increases with mu_c), kept within ``_MAX_STEP`` of the start.
    """
    f = _CategoryIntegrand(gnext, hprev, mu - _MAX_STEP, mu + _MAX_STEP, s, rule)
    log_target = math.log(target)
    m, p = mu, 0.0
    for _ in range(30):
        p, slope = f.prob_and_slope(m)
        if not p > 1e-300:
            new = m + _MAX_STEP
        else:
            new = m - (math.log(p) - log_target) / max(slope / p, 1e-6)
        new = min(max(new, mu - _MAX_STEP), mu + _MAX_STEP)
        if abs(new - m) < 1e-12:
            break
        m = new
    return m, p


def _sweep(mu, s, suffix, quad) -> tuple[np.ndarray, float]:
    """One forward pass: solve P(c) = 1/K for c = 1..K-2 in order (mu_{K-1} = 0).

    Returns the new locations and max_c |K P(c) - 1| over all K categories as this pass computes
    them (the last two from the prefix tables just built; at a fixed point these are the pmf).
    """
    k_cat = mu.size + 1
    out = mu.copy()
    out[-1] = 0.0
    prefix = None
    worst = 0.0
    rule = quad.category_rule
    for c in range(1, k_cat - 1):
        m, p = _solve_category(1.0 / k_cat, out[c - 1], s[c - 1], suffix[c + 1], prefix, rule)
        out[c - 1] = m
        worst = max(worst, abs(k_cat * p - 1.0))
        prefix = _prefix_table(m, s[c - 1], prefix, quad.h, quad.rule)
    p_before_last = _CategoryIntegrand(None, prefix, 0.0, 0.0, s[-1], rule).prob(0.0)
    p_last = _prefix_table(0.0, s[-1], prefix, quad.h, quad.rule).last
    worst = max(worst, abs(k_cat * p_before_last - 1.0), abs(k_cat * p_last - 1.0))
    return out, worst


def _solve(k_cat: int, s, init, quad, xtol: float) -> tuple[np.ndarray, float]:
    """Fixed point of the sweep, Anderson-accelerated: (locations, achieved max |K q - 1|).

    Raises ValueError if the locations do not settle.
    """
    x = init.copy()
    x[-1] = 0.0
    xs, fs = [], []
    change = np.inf
    for _ in range(_MAX_ITERATIONS):
        y, worst = _sweep(x, s, _suffix_tables(x, s, quad), quad)
        f = y - x
        change = float(np.max(np.abs(f)))
        if change < xtol:
            return y, worst
        xs.append(x)
        fs.append(f)
        xs, fs = xs[-(_ANDERSON_DEPTH + 1) :], fs[-(_ANDERSON_DEPTH + 1) :]
        if len(fs) > 1:
            df = np.stack([b - a for a, b in zip(fs[:-1], fs[1:], strict=True)], axis=1)
            dx = np.stack([b - a for a, b in zip(xs[:-1], xs[1:], strict=True)], axis=1)
            gamma = np.linalg.lstsq(df, f, rcond=None)[0]
            x = x + f - (dx + df) @ gamma
        else:
            x = y
        x[-1] = 0.0
    raise ValueError(
        f"the IGR-SB prior fit did not converge for num_categories={k_cat}, scale={s[0]:g}: "
        f"the locations still moved by {change:.2e} after {_MAX_ITERATIONS} sweeps"
    )


def _equal_pieces(k_cat: int, s: float) -> np.ndarray:
    """mu_c = -log(K - c) - s^2/2: E[v_c] ~ e^{mu + s^2/2} = 1/(K - c) for small sticks."""
    return -np.log(np.arange(k_cat - 1, 0, -1, dtype=np.float64)) - 0.5 * s * s


def _predict(k_cat: int, s: float, levels: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Starting locations for K from fits at smaller K (continuation).

    With m = K - c sticks to the end and d_K(m) = mu - equal_pieces, d_K(m) is nearly linear in
    log K at fixed m (fits at K = 10..10,000), and nearly a function of m/K far from the end.
    """
    base = _equal_pieces(k_cat, s)
    if not levels:
        return base
    k2, mu2 = levels[-1]
    d2 = (mu2 - _equal_pieces(k2, s))[::-1]  # d2[m - 1]
    m = np.arange(1, k_cat)
    d = np.interp(m * (k2 / k_cat), np.arange(1, k2), d2)  # similarity in m / K
    if len(levels) >= 2:
        k1, mu1 = levels[-2]
        d1 = (mu1 - _equal_pieces(k1, s))[::-1]
        slope = (d2[: k1 - 1] - d1) / math.log(k2 / k1)
        gain = math.log(k_cat / k2)
        d[: k1 - 1] = d2[: k1 - 1] + slope * gain
        mid = np.arange(k1, k2)  # fade the log-K extrapolation into the similarity guess
        weight = np.clip(np.log(k2 / mid) / math.log(k2 / k1), 0.0, 1.0)
        d[k1 - 1 : k2 - 1] = (
            weight * (d2[k1 - 1 : k2 - 1] + slope[-1] * gain) + (1.0 - weight) * d[k1 - 1 : k2 - 1]
        )
    else:
        d[: k2 - 1] = d2
    return base + d[::-1]


@functools.lru_cache(maxsize=64)
def _fit_cached(k_cat: int, s: float) -> tuple[tuple[float, ...], float] | str:
    """(locations, achieved max |K q - 1|), or the error message of a failed fit (cached too)."""
    if k_cat == 2:  # P(1) = P(v > 1/2) = Phi(mu / s): exactly uniform at mu = 0
        return (0.0,), 0.0
    sizes = [k_cat]
    while sizes[-1] / _CONTINUATION_RATIO >= _CONTINUATION_MIN:
        sizes.append(int(round(sizes[-1] / _CONTINUATION_RATIO)))
    levels: list[tuple[int, np.ndarray]] = []
    achieved = np.inf
    try:
        for size in reversed(sizes):
            scales = np.full(size - 1, s)
            quad = _Quadrature(scales, None, _TABLE_NODES)
            xtol = _FINAL_XTOL if size == k_cat else _LEVEL_XTOL
            mu, achieved = _solve(size, scales, _predict(size, s, levels), quad, xtol)
            levels.append((size, mu))
    except ValueError as err:
        return str(err)
    return tuple(float(v) for v in levels[-1][1]), achieved


def fit_uniform_prior(num_categories: int, scale: float) -> tuple[np.ndarray, float]:
    """Memoized fit: ``(loc [K-1], achieved max_k |K q_k - 1|)``; ValueError if it failed."""
    result = _fit_cached(int(num_categories), float(scale))
    if isinstance(result, str):
        raise ValueError(result)
    loc, achieved = result
    return np.array(loc, dtype=np.float64), achieved
