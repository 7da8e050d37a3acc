"""Test-session settings: quiet TensorFlow's C++ logging before it is imported; run the slowest
files first."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: The files that take longest (each over ~40 s of one core: train.py processes, XLA compiles,
#: notebooks), longest first. Under pytest-xdist's `--dist loadfile` (setup.cfg) each file goes
#: whole to the next free worker in collection order; starting with these keeps one worker from
#: finishing a long file alone at the end (alphabetically they come last).
SLOW_FILES_FIRST = (
    "test_train_cli.py",
    "test_train_distributed.py",
    "test_notebooks.py",
    "test_training.py",
    "test_dlgmm.py",
    "test_mixed_latents.py",
    "test_temperature_schedules.py",
    "test_estimators_models.py",
    "test_vae.py",
    "test_sop.py",
    "test_layers.py",
    # Each ~25-60 s of one core; left to alphabetical order they were the last files, run by one
    # worker while the other sat idle (the 1,000-test CI: 768 s wall for 1,202 s of CPU).
    "test_estimators_unbiased.py",
    "test_benchmarks_smoke.py",
    "test_experiments.py",
    "test_cbm.py",
    "test_estimators_toys.py",
    "test_datasets.py",
    "test_gumbolt.py",
    "test_adaptive_buckets.py",
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
