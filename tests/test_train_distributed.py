"""train.py under tf.distribute, each run a separate process (started once by the `runs` fixture):

mirrored:    vae and sop with --strategy mirrored --cpu-devices 2, XLA on
multiworker: two processes of one MultiWorkerMirroredStrategy run on 127.0.0.1 (TF_CONFIG)
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import socket
import subprocess
import sys

import pytest
from test_train_cli import ENV, REPO, Run, run_cli, tiny_npz, vae_flags


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def multiworker(data_file: str, out: str) -> list[Run]:
    """Two worker processes of one MultiWorkerMirroredStrategy run, on 127.0.0.1 only."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(ENV, TF_CONFIG=json.dumps(config))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "train.py",
                    *vae_flags(data_file, out, 2, "--strategy", "multiworker", "--dist", "gs"),
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        results.append(Run(proc.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    data_file = tiny_npz(tmp / "tiny.npz")
    out = {name: str(tmp / name) for name in ("vae2", "sop2", "mw")}
    mirrored = ("--strategy", "mirrored", "--cpu-devices", "2")
    # vae2 keeps the file's batches of 20 (20, 20, 14: a partial last batch under mirrored XLA);
    # sop2 takes 3 full batches of 18, sparing the per-replica XLA retrace and recompile for the
    # partial batch (~10 of its ~42 CPU s), which vae2 already covers.
    sop = ["sop", "--data-file", data_file, "--batch-size", "18", "--eval-samples", "5",
           "--dist", "igr_i", "--epochs", "1", "--verbose", "0", "--out", out["sop2"]]  # fmt: skip
    res: dict = {"out": out}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {
            "vae2": pool.submit(
                run_cli, *vae_flags(data_file, out["vae2"], 1, *mirrored, jit=True)
            ),
            "sop2": pool.submit(run_cli, *sop, *mirrored),
            "mw": pool.submit(multiworker, data_file, out["mw"]),
        }
        res.update({name: job.result() for name, job in jobs.items()})
    for name in out:
        path = os.path.join(out[name], "results.json")
        res[f"{name}_results"] = json.load(open(path)) if os.path.exists(path) else None
    return res


# --- tf.distribute, XLA on ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vae2", "sop2"])
def test_mirrored_strategy_on_two_logical_cpus_with_xla(runs, name):
    run, res = runs[name], runs[f"{name}_results"]
    assert run.returncode == 0 and not run.stderr, run.stderr[-3000:]
    assert res["replicas"] == 2 and res["flags"]["strategy"] == "mirrored"
    assert res["flags"]["no_jit"] is False
    assert res["epochs_completed"] == 1 and res["timing"]["train_steps"] == 3
    assert all(math.isfinite(v) for v in res["metrics"].values() if isinstance(v, float))
    assert math.isfinite(res["history"]["loss"][0])


def test_multiworker_strategy_two_processes_on_localhost(runs):
    chief, worker = runs["mw"]
    for run in (chief, worker):
        assert run.returncode == 0 and not run.stderr, run.stderr[-3000:]
    assert "Results written to" in chief.stdout and "Results written" not in worker.stdout
    res = runs["mw_results"]
    assert res["replicas"] == 2 and res["flags"]["strategy"] == "multiworker"
    assert res["epochs_completed"] == 2 and res["timing"]["train_steps"] == 6
    assert all(math.isfinite(v) for v in res["history"]["loss"])
    # The worker's test metrics are the chief's: one model, synchronized.
    line = [ln for ln in chief.stdout.splitlines() if ln.startswith("Test metrics")]
    assert line and line == [ln for ln in worker.stdout.splitlines() if ln.startswith("Test")]
    assert sorted(os.listdir(os.path.join(runs["out"]["mw"], "checkpoint"))) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
        "ckpt-2.data-00000-of-00001", "ckpt-2.index",
    ]  # fmt: skip
