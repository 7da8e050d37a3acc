"""The benchmark scripts run (--quick) and print a table with one row per contender.

Nothing is timed here: this only proves the scripts work. They are imported from benchmarks/ and
run in-process (one TensorFlow import for all three).
"""

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench_path():
    sys.path.insert(0, str(BENCHMARKS))
    yield
    sys.path.remove(str(BENCHMARKS))


def _rows(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(line) <= set("|-"):
            rows.setdefault(cells[0], []).append(cells)
    return rows


@pytest.mark.parametrize(
    "script, contenders",
    [
        (
            "relaxations",
            ("gs", "igr_i", "igr_sb", "igr_planar", "igr_sb floor", "igr_planar floor"),
        ),
        ("vae_step", ("ae", "gs", "igr_i", "igr_sb", "igr_planar")),
        # sb_cap: test_sb_cap_has_both_routes_per_cap_and_a_memory_figure (smaller caps; its
        # default quick caps up to 1000 cost ~40 s of suite time for the same code path).
    ],
)
def test_quick_run_prints_a_row_per_contender(bench_path, capsys, script, contenders):
    module = importlib.import_module(script)
    table = module.main(["--quick", "--threads", "0"])
    assert table in capsys.readouterr().out
    assert table.startswith("Machine: ")
    rows = _rows(table)
    for name in contenders:
        assert name in rows, f"{script}: no row for {name!r}\n{table}"
    header = next(iter(rows.values()))[0]
    for name in contenders:
        assert all(len(r) == len(header) for r in rows[name])


def test_publishing_refuses_a_loaded_machine_and_replaces_its_section(bench_path, tmp_path):
    import _common

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    with pytest.raises(SystemExit, match="load average was 0.90"):
        _common.publish("relaxations", "table", load_before=0.9, path=str(doc))
    assert doc.read_text() == "# Benchmarks\n\nintro\n"
    _common.publish("relaxations", "first", load_before=0.1, path=str(doc))
    _common.publish("vae_step", "other", load_before=0.1, path=str(doc))
    _common.publish("relaxations", "second", load_before=0.4, path=str(doc))
    text = doc.read_text()
    assert "first" not in text and text.count("second") == 1 and "other" in text
    assert text.index("second") < text.index("other")  # replaced in place


def test_sb_cap_has_both_routes_per_cap_and_a_memory_figure(bench_path, capsys):
    """sb_cap --quick (tiny sizes): a bucketed, a masked and a floor row per K_max, the first row's
    memory measured in a fresh subprocess (max RSS of a process that imported TensorFlow). No
    XLA pass: compiling both routes at two caps cost ~15 s of the suite; the bucketed route's XLA
    compile is tested in tests/test_adaptive_buckets.py."""
    module = importlib.import_module("sb_cap")
    table = module.main(["--quick", "--threads", "0", "--caps", "10,40", "--no-xla"])
    capsys.readouterr()
    rows = _rows(table)
    assert sorted(rows) == ["10", "40", "K_max"]
    for k in ("10", "40"):
        assert sorted(r[1] for r in rows[k]) == ["bucketed", "floor", "masked"]
    first = rows["10"][0]
    assert first[1] == "bucketed"
    assert 100 < float(first[5]) < 10_000  # MiB
    assert "/proc/loadavg at the start" in table


def test_combine_tables_takes_medians_over_processes(bench_path):
    """--processes P: each cell is the median over the processes' tables, a ratio's bracket the
    range of their median ratios, text cells must agree; differing shapes are refused."""
    import _common

    def table(ratio, us, note="a"):
        return (
            "Machine: m\n\ndescription\n\n"
            "| name | µs | ratio [IQR] | note |\n|---|---|---|---|\n"
            f"| gs | 100 | 1.000 [1.000, 1.000] | {note} |\n"
            f"| igr | {us} | {ratio} [0.900, 1.300] | {note} |"
        )

    combined = _common.combine_tables(
        [table("1.100", 120), table("1.300", 150), table("1.000", 100, note="b")]
    )
    rows = _rows(combined)
    assert rows["name"][0] == ["name", "µs", "ratio [range over processes]", "note"]
    assert rows["igr"][0] == ["igr", "120", "1.100 [1.000, 1.300]", "a / a / b"]
    assert rows["gs"][0] == ["gs", "100", "1.000 [1.000, 1.000]", "a / a / b"]
    assert combined.startswith("Machine: m") and "median over 3 fresh processes" in combined
    with pytest.raises(ValueError, match="numbers of rows"):
        _common.combine_tables([table("1.1", 1), table("1.1", 1) + "\n| extra | 1 | 1 | a |"])


def test_relaxation_floors_replace_the_map_as_documented(bench_path):
    """The floor rows compute what their docstring says: IGR-I's layer with log σ(z) per stick
    before softmax++ (float64 reference), and Planar's flows with û = u (so f(z) = z + u tanh(wᵀz
    + b) exactly, where the real flow's û differs)."""
    import numpy as np
    import relaxations
    import tensorflow as tf

    from igr_tf.distributions import relaxations as rel

    z = np.linspace(-30.0, 30.0, 18, dtype=np.float32).reshape(2, 9)
    igr_i = rel.get_class("igr_i")(10)
    log_sigmoid = relaxations.floor_map("log_sigmoid", igr_i)()
    want = -np.logaddexp(0.0, -z.astype(np.float64))
    np.testing.assert_allclose(log_sigmoid.forward(z).numpy(), want, rtol=1e-6, atol=1e-30)

    planar = rel.get_class("igr_planar")(10, num_flows=1)
    rng = np.random.default_rng(0)
    weights = {
        "planar_w0": rng.normal(size=(2, 9)).astype(np.float32),
        "planar_u0": rng.normal(size=(2, 9)).astype(np.float32) * 3.0,
        "planar_b0": rng.normal(size=(2,)).astype(np.float32),
    }
    bare = relaxations.floor_map("bare", planar)(weights)
    w, u, b = (weights[f"planar_{k}0"] for k in "wub")
    expected = z + u * np.tanh(np.sum(w * z, -1, keepdims=True) + b[:, None])
    np.testing.assert_allclose(bare.forward(z).numpy(), expected, rtol=1e-5, atol=1e-5)
    guarded = planar.map({k: tf.constant(v) for k, v in weights.items()})
    assert np.max(np.abs(guarded.forward(z).numpy() - expected)) > 1e-3
