"""Independent float64 numpy references for the relaxations, written from SPEC's definitions.

The library computes everything through TFP bijector chains; these functions compute the same
quantities directly from the math (no TensorFlow, no library code), so tests can compare the
two routes. Noise is taken as given (the tests reproduce the library's draws with the same
stateless seed), so what is checked is the map, the truncation and the densities.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

MIN_SCALE = 1e-4  # scale = softplus(raw) + MIN_SCALE, the IGR parameterization of encoder outputs


def softplus(x):
    return np.logaddexp(0.0, x)


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = np.max(np.where(np.isfinite(x), x, -np.inf), axis=-1, keepdims=True)
    e = np.where(np.isfinite(x), np.exp(x - m), 0.0)
    return x - m - np.log(e.sum(-1, keepdims=True))


def split_igr_params(params):
    """Encoder outputs [..., 2(K-1)] -> (loc, scale)."""
    params = np.asarray(params, np.float64)
    loc, raw = np.split(params, 2, axis=-1)
    return loc, softplus(raw) + MIN_SCALE


def uniform_prior_loc(k: int, tau: float = 1.0, delta: float = 1.0) -> float:
    """μ0 with Φ(τ log δ − μ0)^{K−1} = 1/K (unit scales): the uniform IGR-I prior."""
    return tau * math.log(delta) - NormalDist().inv_cdf(k ** (-1.0 / (k - 1)))


def igr_i_log_psi(x, tau, delta=1.0):
    """log softmax([x/τ, log δ])."""
    x = np.asarray(x, np.float64)
    last = np.full(x.shape[:-1] + (1,), math.log(delta))
    return log_softmax(np.concatenate([x / tau, last], -1))


def stick_log_pieces(z):
    """log η, η the stick breaking of v = sigmoid(z).

    η_k = v_k Π_{j<k}(1 − v_j) for k < K and η_K = Π_j (1 − v_j).
    """
    z = np.asarray(z, np.float64)
    log_v = -softplus(-z)
    log_1mv = -softplus(z)
    log_left = np.concatenate([np.zeros_like(z[..., :1]), np.cumsum(log_1mv, -1)], -1)
    return np.concatenate([log_v + log_left[..., :-1], log_left[..., -1:]], -1)


def igr_sb_log_psi(z, tau):
    """log softmax(log η / τ)."""
    return log_softmax(stick_log_pieces(z) / tau)


def adaptive_sticks(z, threshold):
    """n per variable: the first k whose broken-off mass 1 − Π_{j≤k}(1 − v_j) reaches t, ≤ K−1."""
    z = np.asarray(z, np.float64)
    covered = 1.0 - np.exp(np.cumsum(-softplus(z), -1))
    reached = covered >= threshold
    first = np.where(reached.any(-1), np.argmax(reached, -1) + 1, z.shape[-1])
    return np.minimum(first, z.shape[-1])


def adaptive_log_psi(z, tau, threshold):
    """Adaptive IGR-SB: the (n+1)-category stick breaking of z_1..z_n; −inf beyond."""
    z = np.asarray(z, np.float64)
    n = adaptive_sticks(z, threshold)
    out = np.full(z.shape[:-1] + (z.shape[-1] + 1,), -np.inf)
    for idx in np.ndindex(z.shape[:-1]):
        m = n[idx]
        out[idx][: m + 1] = igr_sb_log_psi(z[idx][:m], tau)
    return out, n


def planar_forward(z, w, u, b):
    """One planar flow and its log|det|: f(z) = z + û tanh(wᵀz + b).

    û = u + (m(wᵀu) − wᵀu) w/‖w‖², m(a) = −1 + softplus(a) (Rezende & Mohamed 2015).
    """
    wu = np.sum(w * u, -1, keepdims=True)
    m = -1.0 + softplus(wu)
    u_hat = u + (m - wu) * w / np.sum(w * w, -1, keepdims=True)
    pre = np.sum(w * z, -1, keepdims=True) + b[..., None]
    out = z + u_hat * np.tanh(pre)
    log_det = np.log(np.abs(1.0 + (1.0 - np.tanh(pre[..., 0]) ** 2) * np.sum(u_hat * w, -1)))
    return out, log_det


def normal_log_pdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)


def gaussian_kl(loc, scale, loc0, scale0):
    """Σ over the last axis of KL(N(loc, scale²) ‖ N(loc0, scale0²))."""
    return np.sum(
        np.log(scale0 / scale) + (scale**2 + (loc - loc0) ** 2) / (2 * scale0**2) - 0.5, -1
    )


def gumbel_softmax_log_psi(logits, uniform, tau):
    """log softmax((logits + g)/τ), g = −log(−log u)."""
    g = -np.log(-np.log(np.asarray(uniform, np.float64)))
    return log_softmax((np.asarray(logits, np.float64) + g) / tau)


def exp_concrete_log_prob(y, logits, tau):
    """Maddison et al. (2017): log Γ(K) + (K−1) log τ + Σ(log α − τ y) − K·LSE(log α − τ y)."""
    y = np.asarray(y, np.float64)
    k = y.shape[-1]
    a = log_softmax(np.asarray(logits, np.float64)) - tau * y
    m = a.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(a - m).sum(-1, keepdims=True)))[..., 0]
    return math.lgamma(k) + (k - 1) * math.log(tau) + a.sum(-1) - k * lse


def exponential_perturbation_log_psi(logits, uniform, tau):
    """log softmax(−T/τ), T_k = E_k / π_k, E_k = −log u_k, π = softmax(logits) (Balog et al.)."""
    pi = np.exp(log_softmax(np.asarray(logits, np.float64)))
    t = -np.log(np.asarray(uniform, np.float64)) / pi
    return log_softmax(-t / tau)


def exponential_perturbation_log_prob(y, logits, tau):
    """Its density on log ψ (log-ratio measure), derived by integrating out the softmax's shift:
    (K−1) log τ + Σ log π_k − τ Σ_k π_k (max_j y_j − y_k)."""
    y = np.asarray(y, np.float64)
    log_pi = log_softmax(np.asarray(logits, np.float64))
    k = y.shape[-1]
    gap = y.max(-1, keepdims=True) - y
    return (k - 1) * math.log(tau) + log_pi.sum(-1) - tau * np.sum(np.exp(log_pi) * gap, -1)


def igr_i_pmf_by_quad(loc, scale, delta=1.0) -> np.ndarray:
    """q(k) by scipy.integrate.quad over x = (z_k - mu_k)/s_k, split at the competitors' steps.

    Float64 throughout; log Phi from scipy.special.log_ndtr. IGR-I's induced categorical (the
    reference of tests/test_categorical.py and benchmarks/pmf_accuracy.py).
    """
    from scipy import integrate, special

    a = math.log(delta)
    out = np.empty(loc.size + 1)
    for k in range(loc.size):
        others = np.arange(loc.size) != k
        r, b = scale[k] / scale[others], (loc[k] - loc[others]) / scale[others]
        x_a = max((a - loc[k]) / scale[k], -40.0)

        def f(x, r=r, b=b):
            return math.exp(-0.5 * x * x + float(np.sum(special.log_ndtr(r * x + b))))

        cuts = sorted({x_a, *[c for c in list(-b / r) + [0.0] if c > x_a]})
        cuts.append(max(cuts[-1], 0.0) + 40.0)
        total = sum(
            integrate.quad(f, x0, x1, epsabs=1e-16, epsrel=1e-13, limit=400)[0]
            for x0, x1 in zip(cuts[:-1], cuts[1:], strict=True)
        )
        out[k] = total / math.sqrt(2.0 * math.pi)
    out[-1] = math.exp(float(np.sum(special.log_ndtr((a - loc) / scale))))
    return out
