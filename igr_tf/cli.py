"""Command-line helpers that import nothing heavy: one-line errors, a quiet TensorFlow import.

A training script parses its arguments and checks its files with these before TensorFlow loads,
so that `--help` and flag errors are fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import NoReturn

__all__ = ["ArgumentParser", "fail", "import_tensorflow"]


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``PROG: error: MESSAGE``.

    Exits with status 2, like argparse, but without printing the usage block.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def fail(message: str, prog: str | None = None, status: int = 2) -> NoReturn:
    """Prints ``PROG: error: MESSAGE`` as one line to stderr and exits with ``status`` (2).

    For errors found after argument parsing: malformed data or checkpoint files, divergence.
    ``prog`` defaults to the script's file name, as argparse does. Newlines and runs of
    whitespace in ``message`` become single spaces.
    """
    prog = prog if prog is not None else os.path.basename(sys.argv[0] or "python")
    sys.stderr.write(f"{prog}: error: {_one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(status)


#: Lines TensorFlow's C++ runtime writes to stderr while it loads, before its logging is
#: initialized, so that ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them (TF 2.21): absl's banner,
#: the oneDNN notice, and the CUDA build's "no driver" notices on a machine without a GPU.
TF_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ (port|cudart_stub|cuda_platform|cpu_feature_guard)\.cc:\d+\] "
    r"(oneDNN custom operations are on|Could not find cuda drivers|failed call to cuInit"
    r"|This TensorFlow binary is optimized).*)$"
)


@contextlib.contextmanager
def _stderr_without(noise: re.Pattern[str]) -> Iterator[None]:
    """Captures file descriptor 2 (C++ and Python writes alike) and, on exit, passes every line
    that does not match ``noise`` on to stderr, in order; exceptions propagate unchanged."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not noise.match(line.rstrip("\n"))
            ]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def import_tensorflow(min_log_level: str = "3") -> ModuleType:
    """Imports TensorFlow with its start-up lines out of the way, and returns the module.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` before the import unless it is set (default ``3``: TF's C++
    log shows fatal errors only; its other "errors" on a working run are notices such as oneDNN's
    "supports DT_INT64 only on platforms with AVX-512", and real failures reach Python as
    exceptions; set ``TF_CPP_MIN_LOG_LEVEL=0`` to see everything), and drops the lines of
    :data:`TF_STARTUP_NOISE` that TF writes while it loads and looks for devices; anything else
    written meanwhile is passed on. Listing the physical devices does not initialize the runtime,
    so logical devices can still be set up.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", min_log_level)
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _stderr_without(TF_STARTUP_NOISE):
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
