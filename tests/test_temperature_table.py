"""experiments/temperature_table.py: τ is chosen on the validation split (never the test set),
among the τ with every seed, and the gaps and matched-proximity rows are read off correctly."""

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import grid  # noqa: E402
import pytest  # noqa: E402
import temperature_table  # noqa: E402


def _write(root: Path, dist: str, tau, seed: int, val: float, test: float, final=None) -> None:
    schedule = tau if isinstance(tau, str) else "fixed"
    temperature = 1.0 if isinstance(tau, str) else tau
    run = root / "temperature_sample" / f"seed={seed},t={tau},dist={dist}"
    run.mkdir(parents=True)
    metrics = {"val_loglik": val, "test_loglik": test, "test_elbo": test - 10}
    if final is not None:
        metrics["final_temperature"] = final
    flags = {"dist": dist, "temperature": temperature, "temperature_schedule": schedule}
    (run / "results.json").write_text(json.dumps({"flags": flags, "metrics": metrics}))


def test_tau_is_chosen_on_validation_among_complete_taus_and_the_gap_is_in_seed_stds(tmp_path):
    for seed, noise in ((0, -1.0), (1, 1.0)):
        # igr_i: τ 0.1 best on validation, τ 0.5 best on test (the trap), τ 0.03 best on
        # validation but with one seed only (incomplete: not eligible).
        _write(tmp_path, "igr_i", 0.1, seed, -100 + noise, -120 + noise)
        _write(tmp_path, "igr_i", 0.5, seed, -105 + noise, -110 + noise)
        _write(tmp_path, "gs", 0.5, seed, -101 + 2 * noise, -125 + 2 * noise)
        _write(tmp_path, "gs", 1.0, seed, -103, -103)
        _write(tmp_path, "gs", "learned", seed, -104, -104, final=0.7 + 0.1 * seed)
    _write(tmp_path, "igr_i", 0.03, 0, -90, -90)
    s = temperature_table.study(tmp_path, seeds=2)
    assert s["chosen"]["igr_i"]["temperature"] == 0.1
    assert s["chosen"]["gs"]["temperature"] == 0.5  # -101 mean beats -103; the schedule isn't a τ
    assert s["chosen"]["igr_i"]["test_loglik"]["mean"] == -120
    # igr_i − gs at the chosen τ: -120 − (-125) = 5 nats; stds √2 and 2√2: pooled √5.
    assert s["best_igr"] == "igr_i"
    assert math.isclose(s["best_igr_minus_gs"]["nats"], 5.0)
    assert math.isclose(s["best_igr_minus_gs"]["in_seed_std"], 5.0 / math.sqrt(5.0))
    # Matched proximity: GS at 0.5, IGR-I at the grid τ nearest 0.215 in log τ (0.1 vs 0.5:
    # |log 0.465| = 0.77 < |log 2.33| = 0.85, so 0.1).
    assert s["matched_proximity"]["gs"]["temperature"] == 0.5
    assert s["matched_proximity"]["igr_i"]["temperature"] == 0.1
    text = temperature_table.markdown(s)
    assert "| igr_i | **0.1** (chosen) | 2 |" in text
    assert "| gs | learned (→ 0.75 ± 0.07) | 2 |" in text
    assert "Best IGR (igr_i) − GS: +5.00 nats (+2.2 seed std)." in text


def test_figure_is_written(tmp_path):
    for seed in (0, 1):
        _write(tmp_path, "igr_sb", 0.1, seed, -100, -100 - seed)
        _write(tmp_path, "igr_sb", 0.25, seed, -99, -99 - seed)
    png = tmp_path / "f.png"
    temperature_table.main([str(tmp_path), "--seeds", "2", "--png", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_linear_grid_runs_each_relaxation_at_its_validation_chosen_tau(tmp_path):
    taus = {"igr_i": (0.1, 0.5), "igr_sb": (0.15, 0.03), "igr_planar": (0.25, 1.0),
            "gs": (1.0, 0.5)}  # fmt: skip
    for dist, (good, bad) in taus.items():
        for seed in (0, 1):
            _write(tmp_path, dist, good, seed, -100, -130)  # best on validation
            _write(tmp_path, dist, bad, seed, -110, -90)  # best on test: must not be chosen
    out = tmp_path / "linear.json"
    temperature_table.main([str(tmp_path), "--seeds", "2", "--linear-grid", str(out)])
    name, spec = grid.load_grid(str(out))
    runs = grid.expand(spec)
    assert spec["config"] == "temperature_sample"
    study_seeds = grid.load_grid("temperature_sample")[1]["grid"][0]["seed"]
    assert len(runs) == 4 * len(study_seeds)
    assert {(r["dist"], r["temperature"], r["arch"]) for r in runs} == {
        (d, good, "linear") for d, (good, _) in taus.items()
    }
    assert sorted({r["seed"] for r in runs}) == sorted(study_seeds)


def test_linear_grid_refuses_an_unfinished_study(tmp_path):
    for seed in (0, 1):
        _write(tmp_path, "igr_i", 0.1, seed, -100, -100)
    with pytest.raises(ValueError, match="no τ chosen yet for igr_sb, igr_planar, gs"):
        temperature_table.linear_grid(temperature_table.study(tmp_path, seeds=2), [1, 2])


def test_train_py_vae_defaults_to_the_study_s_validation_chosen_tau(tmp_path):
    """`train.py vae --dist NAME` without --temperature trains at the τ the published study chose
    on validation (docs/temperature_study.json), for every relaxation of the study; the annealed
    schedule still starts at the Gumbel-Softmax paper's τ_0; the other tasks keep the paper's τ.
    """
    import train
    from igr_tf.paper import GS_ANNEALING, RECOMMENDED_TEMPERATURE, VAE_TEMPERATURE

    chosen = json.loads((ROOT / "docs" / "temperature_study.json").read_text())["chosen"]
    assert sorted(chosen) == sorted(temperature_table.RELAXATIONS)
    p = train.build_parser()

    def default_tau(*argv: str) -> float:
        args = train.parse_args(p, [*argv, "--out", str(tmp_path / "run")])
        train.check_args(p, args)
        return args.temperature

    for dist, row in chosen.items():
        assert RECOMMENDED_TEMPERATURE[dist] == row["temperature"], dist
        assert default_tau("vae", "--dist", dist) == row["temperature"], dist
        assert default_tau("vae", "--dist", dist, "--temperature", "0.7") == 0.7
        assert default_tau("dlgmm", "--dist", dist) == VAE_TEMPERATURE[dist]
    anneal = default_tau("vae", "--dist", "gs", "--temperature-schedule", "anneal")
    assert anneal == GS_ANNEALING["initial"]
    # Not in the study: the Gumbel trick's exponential relative takes GS's recommendation.
    assert default_tau("vae", "--dist", "perturb_exponential") == chosen["gs"]["temperature"]
