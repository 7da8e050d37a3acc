"""The paper's comparisons, as functions (used by experiments/gumbel_relatives.py and notebook 06).

- `full_rank_log_z_mse`: MSE of each family's log Z estimator against the number of MAP samples
  M (the paper's Figures 1 and 2), by Monte Carlo over `replicates` independent estimates, next
  to the closed forms where they exist.
- `low_rank_gaps`: on grid models with exact log Z, the upper bounds U(α), the lower bounds
  L(α) and the deterministic max-marginal bound: their gaps to log Z and, as in the paper's
  Figure 4, the MSE of the M-sample U(α) estimate as an estimate of log Z.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from igr_tf.perturbations import estimators as est
from igr_tf.perturbations import families, lowrank
from igr_tf.perturbations.grid import GridModel

__all__ = ["LOG_Z_ESTIMATORS", "closed_form_log_z_mse", "full_rank_log_z_mse", "low_rank_gaps"]

#: name -> (family, family alpha, paper's signed α or None, how the estimate is made)
LOG_Z_ESTIMATORS: dict[str, tuple[str, float | None, float | None, str]] = {
    "gumbel": ("gumbel", None, 0.0, "mean y − γ"),
    "exponential": ("exponential", None, 1.0, "log M − log ΣT (MLE)"),
    "exponential_unbiased": ("exponential", None, None, "ψ(M) − log ΣT"),
    "weibull_0.5": ("weibull", 0.5, 0.5, "α-trick, α = 0.5"),
    "weibull_2": ("weibull", 2.0, 2.0, "α-trick, α = 2"),
    "frechet_0.2": ("frechet", 0.2, -0.2, "α-trick, α = −0.2"),
    "frechet_0.4": ("frechet", 0.4, -0.4, "α-trick, α = −0.4"),
    "pareto": ("pareto", None, None, "log of the plug-in m/(m−1), m = mean e^T"),
}


def closed_form_log_z_mse(name: str, num_samples: int) -> float | None:
    """The exact MSE of a log Z estimator where the paper's closed forms give one, else None."""
    if name == "gumbel":
        return est.gumbel_log_z_moments(num_samples).mse
    if name == "exponential":
        return est.exponential_log_z_moments(num_samples).mse
    if name == "exponential_unbiased":
        return est.exponential_log_z_moments(num_samples, unbiased=True).mse
    return None


def _estimate(name: str, y: tf.Tensor) -> tf.Tensor:
    """log Z estimates from y [replicates, M] (Gumbel-scale MAP values), one per replicate."""
    _, _, paper_alpha, _ = LOG_Z_ESTIMATORS[name]
    if name == "exponential_unbiased":
        return est.log_z_unbiased_exponential(y, axis=1)
    if name == "pareto":
        return tf.math.log(est.pareto_estimate(y, axis=1)[1])
    return est.log_z(y, paper_alpha, axis=1)


def full_rank_log_z_mse(
    logits: Sequence[float],
    sample_sizes: Sequence[int],
    *,
    replicates: int = 10_000,
    names: Sequence[str] = tuple(LOG_Z_ESTIMATORS),
    seed: int = 0,
) -> dict[str, dict[str, list[float]]]:
    """MSE (and its standard error) of each named log Z estimator for each M in `sample_sizes`.

    Each family draws its own MAP values (its own noise, perturb-and-MAP on `logits`); the
    estimate is made from M of them and compared with the exact log Z, `replicates` times.
    Returns {name: {"mse": [...], "mse_se": [...], "closed_form": [...]}} (closed_form None
    where no closed form exists).
    """
    logits = tf.constant(np.asarray(logits, np.float64))
    log_z = float(tf.reduce_logsumexp(logits))
    results: dict[str, dict[str, list[float]]] = {}
    for i, name in enumerate(names):
        family, alpha, _, _ = LOG_Z_ESTIMATORS[name]
        row = {"mse": [], "mse_se": [], "closed_form": []}
        for j, m in enumerate(sample_sizes):
            draws = families.perturb_and_map(
                logits, family, alpha=alpha, sample_shape=[replicates, m], seed=[seed + i, j]
            )
            errors = (_estimate(name, draws.gumbel_value).numpy() - log_z) ** 2
            row["mse"].append(float(errors.mean()))
            row["mse_se"].append(float(errors.std(ddof=1) / math.sqrt(replicates)))
            row["closed_form"].append(closed_form_log_z_mse(name, m))
        results[name] = row
    return results


def low_rank_gaps(
    model: GridModel,
    alphas: Sequence[float],
    *,
    num_samples: int = 100,
    replicates: int = 100,
    seed: int = 0,
) -> dict[str, object]:
    """Bounds on log Z of `model` from unary perturbations, against its exact log Z.

    For each α: the mean over `replicates` of the `num_samples`-sample estimates of U(α) and
    L(α) minus log Z (the gaps, with their standard errors), the MSE of the U(α) estimate as an
    estimate of log Z (Figure 4 of the paper), the gap of U(α) estimated from all
    `num_samples · replicates` MAP values pooled (with its delta-method standard error), and the
    sequential sampler's acceptance rate e^{log Z − U(α)} that this pooled estimate implies.

    Large |α| makes every estimate of U(α) heavy-tailed: for independent variables the relative
    variance of e^{-αY} is (Γ(1+2α)/Γ(1+α)²)^n − 1 ≈ e^{nπ²α²/6} − 1, so only |α| ≲ 1/√n is
    estimable with a moderate number of samples (the standard errors then understate the error).
    """
    n = model.num_variables
    log_z = float(model.log_partition())
    total = num_samples * replicates
    y_up = lowrank.unary_perturbed_map_values(model, total, seed=[seed, 1])
    y_low = lowrank.unary_perturbed_map_values(model, total, seed=[seed, 2], scale=1.0 / n)
    y_up = tf.reshape(y_up, [replicates, num_samples])
    y_low = tf.reshape(y_low, [replicates, num_samples])
    rows = []
    for alpha in alphas:
        upper = est.log_z(y_up, alpha, num_variables=n, axis=1).numpy() - log_z
        lower = (
            est.log_gamma_ratio(alpha / n) + est.certainty_equivalent(y_low, alpha, axis=1)
        ).numpy() - log_z
        flat = tf.reshape(y_up, [-1])
        pooled = float(est.log_z(flat, alpha, num_variables=n)) - log_z
        pooled_se = float(lowrank.log_mean_exp_standard_error(flat, alpha))
        rows.append(
            {
                "alpha": float(alpha),
                "upper_gap": float(upper.mean()),
                "upper_gap_se": float(upper.std(ddof=1) / math.sqrt(replicates)),
                "upper_mse": float(np.mean(upper**2)),
                "upper_mse_se": float(np.std(upper**2, ddof=1) / math.sqrt(replicates)),
                "lower_gap": float(lower.mean()),
                "lower_gap_se": float(lower.std(ddof=1) / math.sqrt(replicates)),
                "pooled_upper_gap": pooled,
                "pooled_upper_gap_se": pooled_se,
                "acceptance": math.exp(-pooled),
            }
        )
    return {
        "log_z": log_z,
        "num_variables": n,
        "max_marginal_gap": float(lowrank.max_marginal_lower_bound(model)) - log_z,
        "rows": rows,
    }
