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


def main(run, doc: str, argv=None) -> str:
    """Shared command line of the benchmark scripts: parse, pin threads, run, print the table
    with the load average it ran under; `--publish` also writes it into docs/benchmarks.md."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_common_args(parser)
    add_publish_arg(parser)
    args = parser.parse_args(argv)
    before = check_publish_load(args.publish)
    set_threads(args.threads)
    table = run(args.quick, args.rounds, args.calls)
    script = sys.modules[run.__module__].__file__
    return finish(table, before, os.path.splitext(os.path.basename(script))[0], args.publish)
