"""Gradient estimators on the toys (issue 9) as a markdown table: `python experiments/toy_table.py
RUNS_DIR [--run GRID]`.

With `--run GRID` it first runs the grid's missing runs (`experiments/grids/GRID.json`, skipped when
their `results.json` exists, as `experiments/grid.py` does) in this process, calling `train.main`
once per run: the toy runs are seconds each, and one process saves TensorFlow's start-up per run.

Then it groups the `results.json` of `train.py toy` runs below RUNS_DIR by (toy, p, estimator,
dist) and prints, over seeds, mean ± standard deviation of what `igr_tf.toys.run_toy` reports:
the final exact loss, and at the initial parameters (logits ≈ 0) and at the final ones the
gradient's relative bias ‖m − g*‖/‖g*‖, the ratio ‖m − g*‖ / bias_se with bias_se = √(Σ_i v_i / N)
(about 1 for an unbiased estimator, much larger for a biased one) and the mean per-entry variance
(1/D) Σ_i v_i, where m and v are the per-entry mean and variance over N gradient draws and g* the
exact gradient by enumeration (`igr_tf.estimators.diagnostics.gradient_statistics`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

DIST_ESTIMATORS = ("reinforce_loo", "rebar", "relax")


def run_grid(grid_name: str, runs: Path) -> int:
    """Runs the grid's unfinished runs in this process; returns how many failed."""
    import grid as grid_lib  # experiments/grid.py

    import train

    name, grid = grid_lib.load_grid(grid_name)
    todo = grid_lib.expand(grid)
    failed = 0
    for i, run in enumerate(todo, 1):
        out = runs / name / grid_lib.run_name(run)
        if (out / "results.json").exists():
            continue
        argv = ["toy", "--config", grid["config"], "--out", str(out), "--verbose", "0"]
        for key, value in run.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        print(f"[{i}/{len(todo)}] {' '.join(argv)}", flush=True)
        try:
            train.main(argv)
        except SystemExit as e:  # train.fail exits; keep going with the other runs
            failed += 1
            print(f"  failed: {e}", flush=True)
    return failed


def _toy_and_estimator(run: dict, config: dict):
    """The toy and the estimator a grid run trains (as `train.py toy` builds them)."""
    from igr_tf import estimators, toys

    flags = {**config, **run}
    if flags["toy"] == "poly":
        toy = toys.PolynomialToy(128, power=float(flags.get("power", 2.0)))
    else:
        toy = toys.CategoricalToy(3, 4, power=3.0, seed=int(flags["seed"]))
    name, options = flags["estimator"], {}
    if name in ("rebar", "relax"):
        options["relaxation"] = flags["dist"]
    if name == "reinforce_loo":
        options.update(num_samples=2, distribution=flags["dist"])
    estimator = estimators.get(name, toy.num_categories, **options)
    if getattr(estimator, "control", 1) is None:  # RELAX's control network, zero-initialised
        estimator.build(toy.num_vars, dtype="float64")
    return toy, estimator


def bias_at_init(grid_name: str, runs: Path, num_draws: int) -> None:
    """The gradient report at the initial parameters with `num_draws` draws, for every run of the
    grid whose estimator has an exact pmf, into RUNS/GRID_bias/<run>.json (skipped when there)."""
    import grid as grid_lib  # experiments/grid.py
    import tensorflow as tf

    from igr_tf import toys

    name, grid = grid_lib.load_grid(grid_name)
    config = json.loads((HERE / "configs" / f"{grid['config']}.json").read_text())
    out_dir = runs / f"{name}_bias"
    out_dir.mkdir(parents=True, exist_ok=True)
    for run in grid_lib.expand(grid):
        path = out_dir / f"{grid_lib.run_name(run)}.json"
        if path.exists():
            continue
        toy, estimator = _toy_and_estimator(run, config)
        if estimator.weight_specs(toy.num_vars):  # IGR-Planar: no exact pmf, nothing to compare
            continue
        params = tf.constant(toys.initial_params(estimator, toy.num_vars, int(run["seed"])))
        report = toys.gradient_report(estimator, toy, params, num_draws, seed=int(run["seed"]) + 7)
        if report["exact_loss"] is None:
            continue
        path.write_text(json.dumps({"run": run, "report": report}))
        print(f"{path.name}: relative bias {report['relative_bias']:.3g}, "
              f"bias/se {report['bias_norm'] / report['bias_se']:.2f}", flush=True)  # fmt: skip


def collect(root: Path) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(root.rglob("results.json")):
        result = json.loads(path.read_text())
        flags = result["flags"]
        if flags.get("task") != "toy":
            continue
        toy = result["toy"]
        dist = flags["dist"] if flags["estimator"] in DIST_ESTIMATORS else ""
        key = (toy["toy"], toy["power"], flags["estimator"], dist)
        groups[key].append(result)
    return groups


def collect_bias(root: Path) -> dict[tuple, list[dict]]:
    """The `bias_at_init` reports below RUNS (`*_bias/*.json`), keyed as `collect`'s groups."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(root.glob("*_bias/*.json")):
        saved = json.loads(path.read_text())
        run = saved["run"]
        power = float(run.get("power", 2.0 if run["toy"] == "poly" else 3.0))
        dist = run.get("dist", "") if run["estimator"] in DIST_ESTIMATORS else ""
        groups[(run["toy"], power, run["estimator"], dist)].append(saved["report"])
    return groups


def _fmt(values: list[float | None], digits: int = 3) -> str:
    """Mean ± sd over seeds; "—" where the estimator has no exact pmf (no exact gradient)."""
    if any(v is None for v in values):
        return "—"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {statistics.stdev(values):.2g}"


def optimum(toy: dict) -> float:
    """The smallest loss of the toy over its discrete outcomes: min(t^p, (1 − t)^p) for the
    polynomial toy, by enumeration of the K^V outcomes for the categorical one (its W, y depend on
    the run's seed)."""
    if toy["toy"] == "poly":
        return min(abs(toy["target"]) ** toy["power"], abs(1 - toy["target"]) ** toy["power"])
    import tensorflow as tf

    from igr_tf import toys

    kwargs = {k: toy[k] for k in ("num_vars", "num_categories", "power", "seed")}
    instance = toys.CategoricalToy(**kwargs)
    return float(tf.reduce_min(instance.objective(tf.constant(instance.outcomes))))


def _seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def _bias_ratio(m: dict, where: str) -> float | None:
    if f"bias_norm_{where}" not in m:
        return None
    return m[f"bias_norm_{where}"] / m[f"bias_se_{where}"]


def table(groups: dict[tuple, list[dict]], bias: dict[tuple, list[dict]] | None = None) -> str:
    """One markdown table per toy. The "init" columns come from `bias` (the separate report with
    more draws) where it has the estimator, else from the training run's report."""
    bias = bias or {}
    lines = []
    for toy, power in sorted({(k[0], k[1]) for k in groups}, key=lambda t: (t[0] != "poly", t[1])):
        keys = [k for k in groups if k[:2] == (toy, power)]
        order = {name: i for i, name in enumerate(_ESTIMATOR_ORDER)}
        keys.sort(key=lambda k: order.get(k[2], 99))
        first = groups[keys[0]][0]
        shown = ("num_vars", "num_categories", "power", "target")  # not the seed: it varies
        lines += [
            "",
            f"**{toy}** ({', '.join(f'{a} = {b}' for a, b in first['toy'].items() if a in shown)}"
            f"; {_seeds(len(groups[keys[0]]))})",
            "",
            "| estimator | final exact loss | excess over optimum | rel. bias (init) "
            "| bias / s.e. (init) | variance (init) | draws (init) | rel. bias (end) "
            "| bias / s.e. (end) | variance (end) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key in keys:
            runs = groups[key]
            ms = [r["metrics"] for r in runs]
            name = key[2] + (f" ({key[3]})" if key[3] else "")
            loss = _fmt([m["final_loss"] for m in ms], 4)
            if not all(m["final_loss_exact"] for m in ms):
                loss += " (estimate)"  # no exact pmf: the surrogate's value at the last step
            if key in bias:
                init = [{f"{k}_at_init": v for k, v in r.items()} for r in bias[key]]
            else:
                init = ms
            excess = [m["final_loss"] - optimum(r["toy"]) for m, r in zip(ms, runs, strict=True)]
            cells = [
                loss,
                _fmt(excess, 3),
                _fmt([m.get("relative_bias_at_init") for m in init]),
                _fmt([_bias_ratio(m, "at_init") for m in init], 2),
                _fmt([m["variance_at_init"] for m in init]),
                "/".join(sorted({str(int(m["num_draws_at_init"])) for m in init})),
                _fmt([m.get("relative_bias_at_end") for m in ms]),
                _fmt([_bias_ratio(m, "at_end") for m in ms], 2),
                _fmt([m["variance_at_end"] for m in ms]),
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        exact = [k for k in keys if all(r["metrics"]["final_loss_exact"] for r in groups[k])]
        best = min(exact, key=lambda k: statistics.fmean(
            r["metrics"]["final_loss"] - optimum(r["toy"]) for r in groups[k]))  # fmt: skip
        lines += ["", f"Lowest mean excess exact loss: {best[2]}."]
    return "\n".join(lines)


_ESTIMATOR_ORDER = ("st", "st_gs", "gumbel_rao", "gst", "reinmax", "st_igr_i", "st_igr_sb",
                    "st_igr_planar", "reinforce_loo", "disarm", "rebar", "relax")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="root directory of the runs")
    p.add_argument("--run", metavar="GRID", help="first run this grid's missing runs in-process")
    p.add_argument(
        "--bias-draws",
        type=int,
        default=0,
        metavar="N",
        help="with --run: also the gradient report at the initial parameters with N draws",
    )
    args = p.parse_args(argv)
    failed = run_grid(args.run, args.runs) if args.run else 0
    if args.run and args.bias_draws:
        bias_at_init(args.run, args.runs, args.bias_draws)
    groups = collect(args.runs)
    if not groups:
        print(f"no toy results.json below {args.runs}", file=sys.stderr)
        return 1
    print(table(groups, collect_bias(args.runs)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
