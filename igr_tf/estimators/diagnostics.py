r"""Gradient diagnostics: variance, signal-to-noise ratio, vanished entries, over repeated draws.

For N draws g⁽¹⁾, …, g⁽ᴺ⁾ of a stochastic gradient (all its entries flattened into one vector of D
numbers), with per-entry mean m_i and unbiased variance v_i:

- "variance": (1/D) Σ_i v_i, the mean per-entry variance; "total_variance": Σ_i v_i;
- "snr": (1/|I|) Σ_{i∈I} |m_i| / √v_i over the entries I with v_i > 0 (Rainforth et al. 2018's
  per-parameter signal-to-noise ratio, averaged);
- "zero_fraction": the share of exactly-zero entries over all draws (vanished gradients, e.g.
  saturated softmaxes at low temperature);
- with the exact gradient g*: "bias_norm" ‖m − g*‖, "relative_bias" ‖m − g*‖/‖g*‖,
  "bias_se" √(Σ_i v_i / N) (the norm a zero-bias estimator's ‖m − g*‖ has on average, about),
  "cosine" between m and g*, and "mse" (1/N) Σ_n ‖g⁽ⁿ⁾ − g*‖².

`GradientDiagnostics` computes them once per epoch from a user function and writes them into the
epoch's logs dict (so History, results.json, TensorBoard and CSV loggers placed after it get them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = ["GradientDiagnostics", "collect_gradients", "gradient_statistics"]


def _flat_draws(gradients) -> np.ndarray:
    """`[N, ...]` tensor, or a list of them sharing N, -> float64 array `[N, D]`."""
    if isinstance(gradients, (list, tuple)):
        parts = [np.asarray(g, np.float64) for g in gradients]
        return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)
    g = np.asarray(gradients, np.float64)
    return g.reshape(g.shape[0], -1)


def gradient_statistics(gradients, exact=None) -> dict[str, float]:
    """Statistics of N gradient draws (see the module docstring).

    Args:
      gradients: `[N, ...]` (a tensor or array), or a list of such sharing the draw axis N ≥ 2.
      exact: the exact gradient (same layout without the draw axis), or None.
    Returns:
      A dict of Python floats.
    """
    g = _flat_draws(gradients)
    n = g.shape[0]
    if n < 2:
        raise ValueError(f"gradient_statistics needs at least 2 draws; got {n}.")
    mean = g.mean(axis=0)
    var = g.var(axis=0, ddof=1)
    spread = var > 0
    snr = np.abs(mean[spread]) / np.sqrt(var[spread])
    stats = {
        "variance": float(var.mean()),
        "total_variance": float(var.sum()),
        "snr": float(snr.mean()) if snr.size else float("nan"),
        "zero_fraction": float(np.mean(g == 0.0)),
        "mean_norm": float(np.linalg.norm(mean)),
        "num_draws": float(n),
    }
    if exact is not None:
        if isinstance(exact, (list, tuple)):
            exact = np.concatenate([np.asarray(e, np.float64).reshape(-1) for e in exact])
        exact = np.asarray(exact, np.float64).reshape(-1)
        if exact.shape[0] != g.shape[1]:
            raise ValueError(
                f"`exact` has {exact.shape[0]} entries; the draws have {g.shape[1]} each."
            )
        bias = mean - exact
        exact_norm = np.linalg.norm(exact)
        stats.update(
            bias_norm=float(np.linalg.norm(bias)),
            relative_bias=float(np.linalg.norm(bias) / exact_norm) if exact_norm else float("nan"),
            bias_se=float(np.sqrt(var.sum() / n)),
            cosine=float(mean @ exact / (np.linalg.norm(mean) * exact_norm))
            if exact_norm and np.linalg.norm(mean)
            else float("nan"),
            mse=float(np.mean(np.sum((g - exact) ** 2, axis=1))),
        )
    return stats


def collect_gradients(
    gradient_fn: Callable[[tf.Tensor], Any], num_draws: int, seed: int = 0, offset: int = 0
) -> list[np.ndarray]:
    """Calls `gradient_fn(seed_n)` for n < num_draws (stateless seeds [seed, offset + n]).

    `gradient_fn` returns a tensor or a list of tensors; the result is one `[N, ...]` array per
    tensor.
    """
    draws = []
    for i in range(int(num_draws)):
        out = gradient_fn(tf.constant([seed, offset + i], tf.int32))
        out = out if isinstance(out, (list, tuple)) else [out]
        draws.append([np.asarray(t) for t in out])
    return [np.stack(parts) for parts in zip(*draws, strict=True)]


class GradientDiagnostics(keras.callbacks.Callback):
    """Logs gradient variance, SNR and zero fraction once per epoch (see the module docstring).

    Args:
      gradient_fn: `seed -> gradient tensor(s)`, e.g. a `tf.function` returning the gradient of the
        training loss on a fixed batch with respect to the encoder's variables. A model whose
        sampling has its own seed generator may ignore the seed: each call is then a fresh draw.
      num_draws: draws per epoch (≥ 2).
      seed: first half of the stateless seeds.
      prefix: prefix of the logged names (`grad_variance`, `grad_snr`, `grad_zero_fraction`).
      keys: which statistics to log.

    Place it before the callbacks that read the logs (TensorBoard, CSV, the project's
    `ScalarSummary`): they see the values it adds. The last epoch's statistics are in
    `self.latest`.
    """

    def __init__(
        self,
        gradient_fn: Callable[[tf.Tensor], Any],
        num_draws: int = 10,
        seed: int = 0,
        prefix: str = "grad_",
        keys: Sequence[str] = ("variance", "snr", "zero_fraction"),
    ) -> None:
        super().__init__()
        if int(num_draws) < 2:
            raise ValueError(f"`num_draws` must be >= 2; got {num_draws!r}.")
        self.gradient_fn = gradient_fn
        self.num_draws = int(num_draws)
        self.seed = int(seed)
        self.prefix = prefix
        self.keys = tuple(keys)
        self.latest: dict[str, float] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        draws = collect_gradients(
            self.gradient_fn, self.num_draws, self.seed, offset=epoch * self.num_draws
        )
        self.latest = gradient_statistics(draws)
        if logs is not None:
            for key in self.keys:
                logs[self.prefix + key] = self.latest[key]
