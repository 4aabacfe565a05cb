"""One measured child process: what every benchmark here times, one process per measurement."""

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from bench.machine import ROOT
from movingline.runtime import LOG_LEVEL_VARIABLE


class Usage(NamedTuple):
    """What one child process took: wall time from start to exit, CPU time, and its peak resident memory."""

    wall_s: float
    cpu_s: float
    peak_bytes: int


def child_environment(changes: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment for a child run from the project root, with ``changes``
    applied: a value sets the variable, None removes it."""
    env = {**os.environ, LOG_LEVEL_VARIABLE: "2", "PYTHONPATH": str(ROOT)}
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_measured(command: list[str], log_path: Path, env_changes: Mapping[str, str | None] | None = None) -> Usage:
    """Runs ``command`` from the project root in ``child_environment(env_changes)`` and measures it.

    Output goes to ``log_path`` (a pipe could fill and stall the child). ``os.wait4`` returns
    the resource usage of that one child, so its peak is not mixed with any other process's.
    Raises RuntimeError with the end of the log if the child fails.
    """
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=child_environment(env_changes), stdout=output, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{tail}")
    # Linux reports ru_maxrss in kilobytes.
    return Usage(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)
