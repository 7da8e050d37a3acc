"""The notebooks are documentation that must run: execute each one in small mode.

Small mode: every notebook's first cell (tagged "parameters") sets
`SMALL = os.environ.get("IGR_NOTEBOOK_SMALL", "0") == "1"` and derives its sizes from it; this
test sets IGR_NOTEBOOK_SMALL=1 in the kernel's environment (nbclient's kernel inherits
os.environ), so the notebooks run unchanged, on fewer samples and training steps. Run one by hand
the same way: `IGR_NOTEBOOK_SMALL=1 jupyter nbconvert --to notebook --execute ...`.

The committed notebooks must carry no outputs (`python notebooks/strip_outputs.py` strips them).
"""

import importlib.util
import os
import time
from pathlib import Path

# Hard imports: nbformat and nbclient are dev dependencies (setup.cfg), so a missing one is an
# installation error that must fail the run, not a skip that hides the notebooks going untested.
import jupyter_client
import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 120


def _strip_tool():
    path = NOTEBOOK_DIR / "strip_outputs.py"
    spec = importlib.util.spec_from_file_location("strip_outputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPECTED = (
    "01_relaxations_tour",
    "02_approximating_discrete",
    "03_discrete_vae",
    "04_structured_output",
    "05_bijectors_in_your_model",
    "06_gumbel_relatives",
    "07_gumbolt",
    "08_concept_bottleneck",
    "09_estimators",
    "10_infinite_support",
    "11_temperature_study",
)


def test_all_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} >= set(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert _strip_tool().problems(nb) == [], f"run `python notebooks/strip_outputs.py` on {path}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_is_the_small_mode_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert 'SMALL = os.environ.get("IGR_NOTEBOOK_SMALL", "0") == "1"' in first.source


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One kernel for every notebook: importing TensorFlow takes most of a small-mode run, so the
    notebooks share a process (each starts from an empty namespace, see `fresh_start`)."""
    env = dict(os.environ, IGR_NOTEBOOK_SMALL="1", TF_CPP_MIN_LOG_LEVEL="3")
    # The kernel imports this checkout's package (not another installed copy).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path_factory.mktemp("kernel")))
    yield km
    km.shutdown_kernel(now=True)


def fresh_start(directory: Path) -> nbformat.NotebookNode:
    """A first cell that gives the notebook what a new kernel would: an empty namespace, Keras's
    default policy and a new session, and a scratch working directory (so nothing the notebook
    writes lands in the checkout). Modules stay imported: that is the saving."""
    return nbformat.v4.new_code_cell(
        "%reset -f\n"
        "import os, keras\n"
        f"os.chdir({str(directory)!r})\n"
        'keras.mixed_precision.set_global_policy("float32")\n'
        "keras.backend.clear_session()\n"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_small_mode(path, tmp_path, kernel):
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, fresh_start(tmp_path))
    client = nbclient.NotebookClient(nb, km=kernel, timeout=CELL_TIMEOUT_S)
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    print(f"{path.name}: {time.perf_counter() - start:.1f} s in small mode")
