"""Where the time of sb_cap's step goes: per-op times from the TensorFlow profiler, one K_max.

Builds the step of benchmarks/sb_cap.py (sample + KL + gradient, V = 20, batch 100, float32,
no XLA) for one K_max and route, times it (CPU, median of `--calls` calls after warm-up), then
traces `--traced` calls with `tf.profiler.experimental` and prints the ops with the largest
total time per step (the profiler itself slows the ops down: read the shares, not the sums).
Ops whose width is K_max (the output's padding, ψ, the parameters' gradient) are the ones the
bucketed route cannot avoid; anything else wide is a regression.

    python benchmarks/sb_cap_profile.py [--k-max 1000] [--route bucketed|masked] [--top 30]
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

import _common


def op_times(step, calls: int) -> collections.Counter:
    """Milliseconds per step by op name, from a profiler trace of `calls` calls."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            _common._sync(step())
        tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # kernels, not the executor's frames
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name != "ExecutorState::Process":
                    totals[name] += event.duration_ps / 1e9 / calls
    return totals


def main(argv=None) -> str:
    import sb_cap

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k-max", type=int, default=1000)
    parser.add_argument("--route", choices=sorted(sb_cap.ROUTES), default="bucketed")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--traced", type=int, default=5)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    _common.set_threads(1)
    step = sb_cap.make_step(*sb_cap.make_layer(args.k_max, args.route), jit_compile=False)
    for _ in range(3):
        _common._sync(step())
    times = []
    for _ in range(args.calls):
        start = time.process_time()
        _common._sync(step())
        times.append(time.process_time() - start)
    times.sort()
    lines = [
        f"K_max={args.k_max} route={args.route}: CPU {1e3 * times[len(times) // 2]:.2f} ms/step "
        f"(median of {args.calls}); /proc/loadavg {sb_cap._loadavg()}",
        "ms/step (traced)  op",
    ]
    for name, ms in op_times(step, args.traced).most_common(args.top):
        lines.append(f"{ms:9.3f}  {name}")
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
