"""The mixed-latent table of docs/results.md: `python experiments/mixed_table.py RUNS_DIR`.

For every run below RUNS_DIR (`train.py vae --num-vars 1 --continuous-dim D` on mnist_sample, as
the `mixed_sample` grid makes), reads results.json and the saved model, and prints per relaxation
(mean ± sample SD over seeds): the test log-likelihood bound, the unsupervised digit accuracy, and
how much the discrete latent is used on the test digits: the mean categorical KL(q(c | x) ‖ uniform)
(0: q ignores x; at most log K) and the number of clusters that are some digit's argmax.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def usage(model_path: Path, seed: int) -> tuple[float, int]:
    """(mean categorical KL(q(c|x) ‖ uniform) in nats, clusters used) on the test digits."""
    import keras
    import numpy as np

    import models.vae  # noqa: F401  (registers DiscreteVAE for loading)
    from models.cbm import load_labelled_mnist_sample

    model = keras.models.load_model(model_path)
    x = load_labelled_mnist_sample().x_test
    log_q = np.concatenate(
        [model.cluster_log_probs(x[i : i + 100], (seed, i)).numpy() for i in range(0, len(x), 100)]
    )
    k = log_q.shape[-1]
    kl = float(np.mean(np.sum(np.exp(log_q) * (log_q + math.log(k)), -1)))
    return kl, len(set(np.argmax(log_q, -1).tolist()))


def fmt(values: list[float], digits: int) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", help="directory searched recursively for results.json")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(Path(args.runs).rglob("results.json")):
        res = json.loads(path.read_text())
        flags, metrics = res["flags"], res["metrics"]
        kl, used = usage(path.parent / "model.keras", flags["seed"])
        key = (flags["dist"], flags["temperature"], flags["continuous_dim"], flags["epochs"])
        rows[key].append(dict(metrics, usage_kl=kl, clusters_used=used))
    print(
        "| dist | temperature | D | epochs | seeds | test_loglik | test_cluster_accuracy "
        "| KL(q(c|x) ‖ U) (nats) | clusters used |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (dist, tau, d, epochs), runs in sorted(rows.items()):
        cells = [
            fmt([r["test_loglik"] for r in runs], 2),
            fmt([100 * r["test_cluster_accuracy"] for r in runs], 1) + " %",
            fmt([r["usage_kl"] for r in runs], 3),
            ", ".join(str(r["clusters_used"]) for r in runs),
        ]
        print(f"| {dist} | {tau} | {d} | {epochs} | {len(runs)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
