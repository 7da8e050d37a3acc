"""Test-session settings: quiet TensorFlow's C++ logging before it is imported; run the slowest
files first."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: The test files, longest first (seconds one pytest worker spends on each in a full run on 2
#: cores, measured after the suite's speed-ups: each file's share of that worker's core, or the
#: wall time of its subprocesses). Under pytest-xdist's `--dist loadfile --no-loadscope-reorder`
#: (setup.cfg) each file goes whole to the next free worker in collection order: longest first
#: keeps one worker from finishing a long file alone at the end while the other sits idle. Files
#: not listed take a few seconds and come last, in alphabetical order.
SLOW_FILES_FIRST = (
    "test_train_cli.py",  # ~100 s: 5 train.py processes (kill/resume), in-process runs
    "test_notebooks.py",  # ~100 s: 11 notebooks in one kernel
    "test_train_distributed.py",  # ~90 s: 4 train.py processes under tf.distribute
    "test_mixed_precision.py",  # ~65 s
    "test_sop.py",
    "test_bijectors.py",
    "test_training.py",
    "test_categorical.py",
    "test_mixed_latents.py",
    "test_vae.py",
    "test_estimators_models.py",
    "test_adaptive_buckets.py",
    "test_cbm.py",
    "test_datasets.py",
    "test_benchmarks_smoke.py",
    "test_layers.py",
    "test_dlgmm.py",
    "test_gumbolt.py",
    "test_experiments.py",
    "test_temperature_schedules.py",
    "test_bijector_harness.py",
    "test_estimators_unbiased.py",
    "test_perturbations_lowrank.py",
    "test_estimators_toys.py",
    "test_distributions.py",
    "test_approx.py",
    "test_rbm.py",
    "test_relaxations.py",
    "test_perturbations.py",
    "test_estimators_straight_through.py",  # ~6 s
)


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


@pytest.fixture
def package_conversions(monkeypatch):
    """The functions of igr_tf and models that autograph converts while the test runs (a list of
    `module.qualname`, filled as tracing goes): empty where `igr_tf._ops.plain_tensorflow` holds."""
    from tensorflow.python.autograph.impl import api

    converted: list[str] = []
    original = api._convert_actual

    def spy(entity, program_ctx):
        module = getattr(entity, "__module__", "") or ""
        if module.split(".")[0] in ("igr_tf", "models"):
            converted.append(f"{module}.{getattr(entity, '__qualname__', entity)}")
        return original(entity, program_ctx)

    monkeypatch.setattr(api, "_convert_actual", spy)
    return converted
