"""The temperature study (issue 13) as tables, a figure and a summary:
`python experiments/temperature_table.py RUNS_DIR [--json PATH] [--png PATH]`.

Reads the `results.json` of `experiments/grid.py temperature_sample` (and, when present, of
`temperature_sample_linear`) below RUNS_DIR and, per relaxation:

- every fixed τ, the annealed schedule and the learned τ: mean ± std over seeds of the validation
  and test importance-sampled log-likelihood (one-hot latents, S from the runs' --eval-samples)
  and of the relaxed test ELBO;
- the τ chosen on the validation split: the fixed τ whose mean `val_loglik` is highest among the
  τ with every seed finished (never the test set), and its test log-likelihood;
- each family at matched simplex proximity (`MATCHED_PROXIMITY`: the τ at which each family's
  samples are as close to the vertices as GS's at τ = 0.5; docs/results.md, notebook 01), at the
  nearest τ of the grid;
- the gap between the best IGR (the best on validation) and GS at their chosen τ, in nats and in
  units of the seeds' pooled standard deviation.

`--json` writes the summary that notebook 11 and docs/results.md show; `--png` draws test
log-likelihood against τ (mean ± std over seeds, one curve per relaxation); `--linear-grid` writes
the grid of the linear VAE at each relaxation's chosen τ (`temperature_sample_linear`), so that the
τ it runs at comes from the validation choice, not from a hand copy.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELAXATIONS = ("igr_i", "igr_sb", "igr_planar", "gs")
IGR = ("igr_i", "igr_sb", "igr_planar")
SCHEDULES = ("anneal", "learned")
#: τ at which each family's samples are as far from the vertices as GS's at τ = 0.5 (K = 50, the
#: uniform prior, 10⁴ samples: docs/results.md "simplex proximity", notebooks/01).
MATCHED_PROXIMITY = {"gs": 0.5, "igr_i": 0.215, "igr_sb": 0.196, "igr_planar": 0.229}
METRICS = ("val_loglik", "test_loglik", "test_elbo")


def collect(root: Path, grid: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / grid).glob("*/results.json"))]


def setting(result: dict) -> str | float:
    """The run's temperature setting: its fixed τ, or the schedule's name."""
    flags = result["flags"]
    schedule = flags.get("temperature_schedule", "fixed")
    return float(flags["temperature"]) if schedule == "fixed" else schedule


def summarize(values: list[float]) -> dict:
    values = [v for v in values if v is not None and math.isfinite(v)]
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    std = statistics.stdev(values) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n}


def group(results: list[dict]) -> dict[str, dict]:
    """{dist: {setting: {metric: summary, "seeds": n, "final_temperature": summary}}}."""
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        runs[(r["flags"]["dist"], setting(r))].append(r)
    out: dict[str, dict] = defaultdict(dict)
    for (dist, key), rs in runs.items():
        row = {m: summarize([r["metrics"].get(m) for r in rs]) for m in METRICS}
        row["final_temperature"] = summarize([r["metrics"].get("final_temperature") for r in rs])
        row["seeds"] = len(rs)
        out[dist][key] = row
    return out


def choose(rows: dict, seeds: int) -> float | None:
    """The fixed τ with the highest mean validation log-likelihood among those with `seeds` runs."""
    fixed = [t for t, row in rows.items() if not isinstance(t, str) and row["seeds"] >= seeds]
    if not fixed:
        return None
    return max(fixed, key=lambda t: rows[t]["val_loglik"]["mean"])


def nearest(rows: dict, tau: float) -> float | None:
    fixed = [t for t in rows if not isinstance(t, str)]
    return min(fixed, key=lambda t: abs(math.log(t / tau))) if fixed else None


def gap(a: dict, b: dict) -> dict:
    """Mean difference a − b, and in units of the pooled seed std √((s_a² + s_b²) / 2)."""
    diff = a["mean"] - b["mean"]
    pooled = math.sqrt((a["std"] ** 2 + b["std"] ** 2) / 2)
    return {"nats": diff, "in_seed_std": diff / pooled if pooled > 0 else math.nan}


def study(root: Path, seeds: int = 3) -> dict:
    rows = group(collect(root, "temperature_sample"))
    linear = group(collect(root, "temperature_sample_linear"))
    chosen = {d: choose(rows[d], seeds) for d in RELAXATIONS if d in rows}
    summary: dict = {"seeds": seeds, "chosen": {}, "matched_proximity": {}, "linear": {}}
    for dist, tau in chosen.items():
        if tau is None:
            continue
        summary["chosen"][dist] = {"temperature": tau, **rows[dist][tau]}
        if tau in linear.get(dist, {}):
            summary["linear"][dist] = {"temperature": tau, **linear[dist][tau]}
    for dist, target in MATCHED_PROXIMITY.items():
        tau = nearest(rows.get(dist, {}), target)
        if tau is not None:
            summary["matched_proximity"][dist] = {"target": target, "temperature": tau,
                                                  **rows[dist][tau]}  # fmt: skip
    done = summary["chosen"]
    igr = [d for d in IGR if d in done]
    if igr and "gs" in done:
        # The best IGR is picked on validation too; only its gap to GS is read off the test set.
        best = max(igr, key=lambda d: done[d]["val_loglik"]["mean"])
        summary["best_igr"] = best
        summary["best_igr_minus_gs"] = gap(done[best]["test_loglik"], done["gs"]["test_loglik"])
    summary["rows"] = {d: {str(k): v for k, v in r.items()} for d, r in rows.items()}
    return summary


def linear_grid(summary: dict, seeds: list[int]) -> dict:
    """The grid file of the linear VAE at each relaxation's validation-chosen τ (same config and
    seeds as the study); one block per relaxation, since each has its own τ."""
    chosen = summary["chosen"]
    missing = [d for d in RELAXATIONS if d not in chosen]
    if missing:
        raise ValueError(f"no τ chosen yet for {', '.join(missing)}: the study is not finished")
    comment = (
        "The temperature study's linear VAE (issue 13): each relaxation at the τ chosen on "
        "validation by experiments/temperature_table.py (which wrote this file), 3 seeds."
    )
    blocks = [{"seed": list(seeds), "arch": ["linear"], "dist": [d],
               "temperature": [chosen[d]["temperature"]]} for d in RELAXATIONS]  # fmt: skip
    return {"_comment": comment, "config": "temperature_sample", "grid": blocks}


def _fmt(s: dict) -> str:
    if s["n"] == 0:
        return "–"
    return f"{s['mean']:.2f}" if s["n"] == 1 else f"{s['mean']:.2f} ± {s['std']:.2f}"


def _order(key) -> tuple:
    return (1, SCHEDULES.index(key)) if isinstance(key, str) else (0, key)


def markdown(summary: dict) -> str:
    lines = ["| relaxation | τ | seeds | val log-lik | test log-lik | test ELBO (relaxed) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for dist in RELAXATIONS:
        rows = summary["rows"].get(dist, {})
        chosen = summary["chosen"].get(dist, {}).get("temperature")
        keys = sorted((float(k) if k not in SCHEDULES else k for k in rows), key=_order)
        for key in keys:
            row = rows[str(key)]
            label = key if isinstance(key, str) else f"{key:g}"
            if key == "learned":
                label += f" (→ {_fmt(row['final_temperature'])})"
            if key == chosen:
                label = f"**{label}** (chosen)"
            cells = [_fmt(row[m]) for m in METRICS]
            lines.append(f"| {dist} | {label} | {row['seeds']} | " + " | ".join(cells) + " |")
    out = ["\n".join(lines), ""]
    if summary["chosen"]:
        out.append("Validation-chosen τ, test log-likelihood (mean ± std over seeds):")
        out += [f"- {d}: τ = {c['temperature']:g}, {_fmt(c['test_loglik'])}"
                for d, c in summary["chosen"].items()]  # fmt: skip
    if "best_igr" in summary:
        g = summary["best_igr_minus_gs"]
        out.append(f"\nBest IGR ({summary['best_igr']}) − GS: {g['nats']:+.2f} nats "
                   f"({g['in_seed_std']:+.1f} seed std).")  # fmt: skip
    if summary["matched_proximity"]:
        out.append("\nAt matched simplex proximity (nearest grid τ to the matched one):")
        out += [
            f"- {d}: τ = {m['temperature']:g} (matched {m['target']:g}), {_fmt(m['test_loglik'])}"
            for d, m in summary["matched_proximity"].items()
        ]
    if summary["linear"]:
        out.append("\nLinear VAE at the chosen τ:")
        out += [f"- {d}: τ = {m['temperature']:g}, {_fmt(m['test_loglik'])}"
                for d, m in summary["linear"].items()]  # fmt: skip
    return "\n".join(out)


def draw(ax, summary: dict, metric: str = "test_loglik") -> None:
    """`metric` against τ (log axis) on a matplotlib axis: mean ± std over seeds, one curve per
    relaxation, and each schedule's mean as a horizontal line of the relaxation's colour
    (anneal dashed, learned dotted)."""
    for i, dist in enumerate(RELAXATIONS):
        rows = summary["rows"].get(dist, {})
        color = f"C{i}"
        taus = sorted(float(k) for k in rows if k not in SCHEDULES)
        if taus:
            mean = [rows[str(t)][metric]["mean"] for t in taus]
            std = [rows[str(t)][metric]["std"] for t in taus]
            std = [0.0 if math.isnan(s) else s for s in std]
            ax.errorbar(taus, mean, yerr=std, marker="o", capsize=3, color=color, label=dist)
        for schedule, style in zip(SCHEDULES, ("--", ":"), strict=True):
            if schedule in rows:
                ax.axhline(rows[schedule][metric]["mean"], ls=style, color=color, lw=1)
    ax.set_xscale("log")
    # The grid's τ as plain tick labels (log axes label every minor tick, and they overlap).
    rows_by_dist = summary["rows"].values()
    grid = sorted({float(k) for rows in rows_by_dist for k in rows if k not in SCHEDULES})
    ax.set_xticks(grid, [f"{t:g}" for t in grid])
    ax.minorticks_off()
    ax.set_xlabel("temperature τ")


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    draw(ax, summary)
    ax.set_ylabel("test log-likelihood (nats, S one-hot samples)")
    ax.set_title("20×10 VAE on mnist_sample, mean ± std over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="the --runs directory of experiments/grid.py")
    p.add_argument("--seeds", type=int, default=3, help="seeds a τ needs to be chosen")
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    p.add_argument("--png", type=Path, default=None, help="draw the figure here")
    p.add_argument("--linear-grid", type=Path, default=None,
                   help="write the linear VAE's grid at the chosen τ here")  # fmt: skip
    args = p.parse_args(argv)
    summary = study(args.runs, args.seeds)
    print(markdown(summary))
    if args.linear_grid:
        grid = json.loads((HERE / "grids" / "temperature_sample.json").read_text())
        seeds = grid["grid"][0]["seed"]
        text = json.dumps(linear_grid(summary, seeds), indent=2) + "\n"
        args.linear_grid.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if args.png:
        plot(summary, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
