"""Command-line error helpers: one-line ``PROG: error: MESSAGE`` and exit status 2.

This module imports nothing heavy, so a training script can parse its arguments and check
its input files before TensorFlow loads. The same names are exported by
:mod:`igr_tf.training`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

__all__ = ["ArgumentParser", "fail"]


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

    For errors found after argument parsing: missing or malformed data files, divergence.
    ``prog`` defaults to the script's file name, as argparse does. Newlines and runs of
    whitespace in ``message`` become single spaces.
    """
    prog = prog if prog is not None else os.path.basename(sys.argv[0] or "python")
    sys.stderr.write(f"{prog}: error: {_one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(status)
