"""Shared plumbing of the benchmarks: interleaved timing, ratio statistics, markdown tables.

Absolute times on a shared machine are noise; ratios measured in the same run are not (much).
So every benchmark times its contenders in *rounds*: in each round every contender runs a
block of calls, in a freshly shuffled order, and the per-round ratio to the reference contender
is recorded. We report the median time per call and the median (and IQR) of the per-round
ratios: a burst of load from another process hits one round of all contenders alike.
"""

from __future__ import annotations

import datetime
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Benchmark the checkout these scripts live in (igr_tf, models), whatever is installed.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402


def interleaved_times(
    contenders: dict[str, Callable[[], object]],
    *,
    rounds: int,
    calls_per_round: int,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Seconds per call of each contender, one value per round, on two clocks.

    Returns `{"wall": {name: [rounds]}, "cpu": {name: [rounds]}}`: wall-clock time
    (`perf_counter`) and CPU time of this process, all its threads (`process_time`). On a machine
    shared with other jobs the CPU time is the steadier measure of the work a step does: it
    leaves out the time the process waits for a core.

    Each contender is first called `warmup` times (tracing, XLA compilation, caches). Then, in
    each round, each contender in a shuffled order makes `calls_per_round` back-to-back calls.
    A contender's result is fetched (`numpy()` on a tensor, if it returns one) after its block,
    so asynchronous work cannot leak into the next contender's time.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            _sync(fn())
    order = list(contenders)
    rng = random.Random(seed)
    times = {clock: {name: np.empty(rounds) for name in contenders} for clock in ("wall", "cpu")}
    for r in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn = contenders[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls_per_round - 1):
                fn()
            _sync(fn())
            times["wall"][name][r] = (time.perf_counter() - wall) / calls_per_round
            times["cpu"][name][r] = (time.process_time() - cpu) / calls_per_round
    return times


def _sync(result) -> None:
    """Forces a result to be computed (first tensor found in a nested structure)."""
    while isinstance(result, (list, tuple, dict)) and result:
        result = next(iter(result.values())) if isinstance(result, dict) else result[0]
    if hasattr(result, "numpy"):
        result.numpy()


def ratio_stats(times: dict[str, np.ndarray], reference: str) -> dict[str, dict[str, float]]:
    """Median µs per call and the median / 25th / 75th percentile of per-round ratios."""
    ref = times[reference]
    stats = {}
    for name, t in times.items():
        ratios = t / ref
        stats[name] = {
            "us": float(np.median(t) * 1e6),
            "ratio": float(np.median(ratios)),
            "q25": float(np.percentile(ratios, 25)),
            "q75": float(np.percentile(ratios, 75)),
        }
    return stats


def fmt_ratio(s: dict[str, float]) -> str:
    return f"{s['ratio']:.3f} [{s['q25']:.3f}, {s['q75']:.3f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def set_threads(threads: int) -> None:
    """Pins TensorFlow's intra- and inter-op thread pools (0 keeps TensorFlow's defaults).

    On a small machine shared with other jobs, one thread per pool makes a kernel's time its own
    work rather than the luck of getting two cores at once; ratios are then much steadier.
    """
    import tensorflow as tf

    # Each contender is its own tf.function, traced once: not the retracing TF warns about.
    tf.get_logger().setLevel("ERROR")
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # the TF runtime already started (e.g. run in-process by a test)
            print("note: TF already initialized; thread settings unchanged", file=sys.stderr)


def add_common_args(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=None, help="calls per contender per round")
    parser.add_argument(
        "--threads", type=int, default=1, help="TF intra/inter-op threads (0: TF default)"
    )


def machine_line() -> str:
    """One line describing the machine and versions (igr_tf.training.run_metadata)."""
    from igr_tf.training import run_metadata

    meta = run_metadata()
    v = meta["versions"]
    devices = ", ".join(d["device_type"] for d in meta["devices"])
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    inter = tf.config.threading.get_inter_op_parallelism_threads() or "default"
    return (
        f"{datetime.date.today().isoformat()}; {meta['platform']} ({meta['machine']}), "
        f"CPU {meta['cpu_model'] or 'unknown'}, {meta['cpu_count']} visible, devices: "
        f"{devices}; python {v['python']}, "
        f"tensorflow {v['tensorflow']}, tfp {v['tensorflow_probability']}, keras {v['keras']}, "
        f"numpy {v['numpy']}, igr_tf {v['igr_tf']}; TF threads intra={intra}, inter={inter}"
    )


def report(description: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The printed report: machine line, what was measured, the table."""
    return "\n".join(
        [f"Machine: {machine_line()}", "", description, "", markdown_table(header, rows)]
    )


#: docs/benchmarks.md is only written from runs that started on a machine this idle: the 1-minute
#: load average of *other* work (read just before the run, when this process is still idle). Above
#: it, timings of a 2-core machine shift by tens of percent and ratios do not reproduce.
MAX_PUBLISH_LOAD = 0.5
DOCS = os.path.join(_ROOT, "docs", "benchmarks.md")


def load_average() -> float:
    """The 1-minute load average (`/proc/loadavg`, `os.getloadavg`)."""
    return os.getloadavg()[0]


def load_line(before: float, after: float) -> str:
    return (
        f"Load average (1 min): {before:.2f} before the run, {after:.2f} at its end "
        f"(this benchmark itself adds about 1 while it runs on one thread)."
    )


def publish(section: str, text: str, load_before: float, path: str = DOCS) -> None:
    """Replaces the section `<!-- benchmark:NAME -->`...`<!-- /benchmark:NAME -->` of
    docs/benchmarks.md with `text` (appends it if absent); refuses above MAX_PUBLISH_LOAD."""
    if load_before > MAX_PUBLISH_LOAD:
        raise SystemExit(
            f"benchmark: error: not writing {os.path.relpath(path, _ROOT)}: the load average was "
            f"{load_before:.2f} when the run started (at most {MAX_PUBLISH_LOAD} for published "
            "numbers); rerun on an idle machine"
        )
    start, end = f"<!-- benchmark:{section} -->", f"<!-- /benchmark:{section} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)


def add_publish_arg(parser) -> None:
    parser.add_argument(
        "--publish",
        action="store_true",
        help=f"write the table into docs/benchmarks.md (refused if the load average before the "
        f"run exceeds {MAX_PUBLISH_LOAD})",
    )


def check_publish_load(publishing: bool) -> float:
    """The load average now; with --publish, refuse (before a long run) above MAX_PUBLISH_LOAD."""
    before = load_average()
    if publishing and before > MAX_PUBLISH_LOAD:
        publish("refused", "", before)
    return before


def finish(table: str, before: float, section: str, publishing: bool) -> str:
    """Print the table with the load average it ran under; with --publish, write it into
    docs/benchmarks.md as `section` (the script's name, e.g. "relaxations")."""
    table = f"{table}\n\n{load_line(before, load_average())}"
    print(table)
    if publishing:
        publish(section, table, before)
    return table


_RATIO_CELL = re.compile(r"^(-?\d+\.(\d+)) \[(-?\d+\.\d+), (-?\d+\.\d+)\]$")
_NUMBER_CELL = re.compile(r"^-?\d+(?:\.(\d+))?$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def combine_tables(tables: Sequence[str]) -> str:
    """One report from the reports of the same benchmark run in several fresh processes.

    Timings shift between processes of one machine (memory layout, what XLA's and TF's
    allocators hand out): on a 2-core AMD EPYC the IGR-SB / GS ratio of
    `relaxations.py` (XLA) read 1.09 in one process and 1.19 in the next, each with a
    within-process IQR of ±0.02. So a published cell is the median over processes of each
    process's value, and a ratio's bracket becomes the lowest and highest of the processes'
    median ratios. Cells that are not numbers must agree across processes. The machine line
    and the description are the first process's, plus a line saying how the cells combine.
    """
    if not tables:
        raise ValueError("no tables to combine")
    split = [t.strip().splitlines() for t in tables]
    rows = [[i for i, line in enumerate(lines) if line.startswith("|")] for lines in split]
    if any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("the processes' tables have different numbers of rows")
    out = list(split[0][: rows[0][0]])
    for k in range(len(rows[0])):
        lines = [split[p][rows[p][k]] for p in range(len(split))]
        cells = [_cells(line) for line in lines]
        if k == 0:
            header = [c.replace("[IQR]", "[range over processes]") for c in cells[0]]
            out.append("| " + " | ".join(header) + " |")
            continue
        if set(lines[0]) <= set("|-"):
            out.append(lines[0])
            continue
        out.append("| " + " | ".join(_combine_cell(col) for col in zip(*cells, strict=True)) + " |")
    n = len(tables)
    note = (
        f"Each cell: the median over {n} fresh processes (run one after another) of that "
        "process's value; a ratio's bracket: the lowest and highest of the processes' median "
        "ratios."
    )
    out[rows[0][0] : rows[0][0]] = [note, ""]  # before the header, after the description
    return "\n".join(out)


def _combine_cell(values: Sequence[str]) -> str:
    ratios = [_RATIO_CELL.match(v) for v in values]
    if all(ratios):
        medians = [float(m.group(1)) for m in ratios]
        d = len(ratios[0].group(2))
        return f"{np.median(medians):.{d}f} [{min(medians):.{d}f}, {max(medians):.{d}f}]"
    numbers = [_NUMBER_CELL.match(v) for v in values]
    if all(numbers):
        d = len(numbers[0].group(1) or "")
        return f"{np.median([float(v) for v in values]):.{d}f}"
    if len(set(values)) == 1:
        return values[0]
    return " / ".join(values)


def _processes_table(script: str, child_argv: Sequence[str], processes: int) -> str:
    """Runs `script child_argv` in `processes` fresh Python processes, one after another, and
    combines their tables (`combine_tables`)."""
    import subprocess

    tables = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, script, *child_argv, "--processes", "1"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        start = out.index("Machine: ")
        end = out.find("\nLoad average", start)
        tables.append(out[start : None if end < 0 else end].strip())
    return combine_tables(tables)


def main(run, doc: str, argv=None, child_argv=None) -> str:
    """Shared command line of the benchmark scripts: parse, pin threads, run, print the table
    with the load average it ran under; `--publish` also writes it into docs/benchmarks.md.

    `--processes P` runs the measurement in P fresh processes instead and reports the median
    of each cell over them (`combine_tables`); `child_argv` are the arguments those processes
    get (default `argv`: a script that consumes options of its own passes its full list)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_common_args(parser)
    add_publish_arg(parser)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="fresh processes to run the measurement in, one after another; cells are medians "
        "over them (timings shift between processes by more than within one)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be >= 1; got {args.processes}")
    before = check_publish_load(args.publish)
    script = sys.modules[run.__module__].__file__
    if args.processes > 1:
        passed = list(argv if child_argv is None else child_argv)
        passed = [a for a in passed if a != "--publish"]
        while "--processes" in passed:
            i = passed.index("--processes")
            del passed[i : i + 2]
        table = _processes_table(script, passed, args.processes)
    else:
        set_threads(args.threads)
        table = run(args.quick, args.rounds, args.calls)
    return finish(table, before, os.path.splitext(os.path.basename(script))[0], args.publish)
