"""The experiment grid runner (dry runs, and a tiny grid on a local Ray instance) and the table
script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT))

import grid  # noqa: E402
import table  # noqa: E402


def test_every_grid_names_an_existing_config_and_known_flags():
    import train

    flags = set(vars(train.build_parser().parse_args([])))
    for path in (ROOT / "experiments" / "grids").glob("*.json"):
        _, spec = grid.load_grid(str(path))
        assert (ROOT / "experiments" / "configs" / f"{spec['config']}.json").exists(), path
        for run in grid.expand(spec):
            assert set(run) <= flags, (path, set(run) - flags)


def test_every_run_of_every_grid_passes_train_py_flag_checks(tmp_path):
    """Each run's command line parses and passes train.py's checks (no TensorFlow: fast), so a
    grid cannot fail hours in on a flag combination train.py refuses."""
    import train

    for path in sorted((ROOT / "experiments" / "grids").glob("*.json")):
        _, spec = grid.load_grid(str(path))
        for run in grid.expand(spec):
            argv = grid.command(spec["config"], run, tmp_path / "out")[2:]
            p = train.build_parser()
            try:
                train.check_args(p, train.parse_args(p, argv))
            except SystemExit:
                raise AssertionError(f"{path.name}: {' '.join(argv)}") from None


def test_temperature_study_grid_is_the_paper_grid_plus_one_and_two_schedules():
    """Every relaxation over the paper's grid plus 1.0, annealed and learned (the learned τ
    starting at the paper's value), 3 seeds; GS also at 1.5 and 2 (its best was at the edge)."""
    from igr_tf import paper

    _, spec = grid.load_grid("temperature_sample")
    runs = grid.expand(spec)
    fixed = [r for r in runs if "temperature_schedule" not in r]
    for dist in ("igr_i", "igr_sb", "igr_planar", "gs"):
        taus = sorted({r["temperature"] for r in fixed if r["dist"] == dist})
        extra = (1.5, 2.0) if dist == "gs" else ()
        assert taus == sorted((*paper.TEMPERATURE_GRID, 1.0, *extra)), dist
        learned = [r for r in runs if r.get("temperature_schedule") == "learned"
                   and r["dist"] == dist]  # fmt: skip
        assert [r["temperature"] for r in learned] == [paper.VAE_TEMPERATURE[dist]] * 3
    assert len(runs) == 4 * 3 * (len(paper.TEMPERATURE_GRID) + 1 + 2) + 3 * 2
    assert {r.get("temperature_schedule") for r in runs} == {None, "anneal", "learned"}
    assert len({grid.run_name(r) for r in runs}) == len(runs)


def test_paper_vae_grid_is_the_spec_product():
    _, spec = grid.load_grid("vae_paper")
    assert len(grid.expand(spec)) == 4 * 7 * 3 * 2 * 5


def test_dry_run_skips_finished_runs(tmp_path, capsys):
    _, spec = grid.load_grid("vae_sample")
    runs = grid.expand(spec)
    finished = tmp_path / "vae_sample" / grid.run_name(runs[0])
    finished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")
    assert grid.main(["vae_sample", "--runs", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(runs)} runs: 1 already finished" in out
    assert grid.run_name(runs[0]) not in out.split("runs:")[0]
    assert out.count("train.py") == len(runs) - 1


def test_unknown_grid_is_one_line_error():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "grid.py"), "nope"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2  # as train.py's errors (it was 1)
    assert proc.stderr.strip().count("\n") == 0 and "known grids" in proc.stderr


def test_table_of_a_missing_directory_is_an_error_not_an_empty_table(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        table.main([str(tmp_path / "no_such_runs")])
    assert e.value.code == 2
    assert "runs: no such directory" in capsys.readouterr().err
    assert table.main([str(tmp_path)]) == 0  # an existing, empty directory: no rows


def test_table_groups_seeds_with_mean_and_std(tmp_path):
    values = {("igr_i", 1): -100.0, ("igr_i", 2): -102.0, ("gs", 1): -110.0}
    for (dist, seed), loglik in values.items():
        run = tmp_path / f"{dist}-{seed}"
        run.mkdir()
        flags = {"task": "vae", "dist": dist, "seed": seed, "dataset": "mnist_sample"}
        metrics = {
            "test_elbo": loglik - 5,
            "test_loglik": loglik,
            "test_loglik_original_formula": loglik + 1,
        }
        (run / "results.json").write_text(json.dumps({"flags": flags, "metrics": metrics}))
    text = table.table(table.collect(tmp_path))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert set(rows) == {"igr_i", "gs"}
    assert "-101.00 ± 1.41" in rows["igr_i"]  # mean and sample std of -100, -102
    assert "| 2 |" in rows["igr_i"] and "| 1 |" in rows["gs"]


def test_malformed_only_and_set_are_one_line_errors(capsys):
    for flag in ("--only", "--set"):
        try:
            grid.main(["vae_sample", "--dry-run", flag, "seed"])
        except SystemExit as e:
            assert e.code == 2
        assert f"{flag} takes KEY=VALUE; got 'seed'" in capsys.readouterr().err


def test_grid_on_a_local_ray_instance_runs_each_configuration_as_a_task(tmp_path):
    """A tiny grid of two approximation runs, one already finished: the other runs as a Ray task
    on a local instance (needs the `cluster` extra; CI installs it) and writes its results."""
    block = {"dist": ["gs", "igr_sb"], "target": ["discrete"], "seed": [0]}
    spec = {"config": "approx_paper", "grid": block}
    (tmp_path / "tiny.json").write_text(json.dumps(spec))
    runs = tmp_path / "runs"
    finished = runs / "tiny" / "dist=igr_sb,target=discrete,seed=0"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text('{"done": "before"}')
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "grid.py"), str(tmp_path / "tiny.json"),
         "--runs", str(runs), "--ray", "--set", "epochs=1", "--set", "mc_samples=200"],
        capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Started a local Ray instance" in proc.stderr
    assert "2 runs: 1 already finished, 0 failed." in proc.stdout
    for dist in ("gs",):
        res = json.loads((runs / "tiny" / f"dist={dist},target=discrete,seed=0" / "results.json")
                         .read_text())  # fmt: skip
        assert res["flags"]["dist"] == dist and res["flags"]["epochs"] == 1
        assert len(res["losses"]) == 10 and res["flags"]["mc_samples"] == 200
    assert json.loads((finished / "results.json").read_text()) == {"done": "before"}
