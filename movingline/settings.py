"""Every MOVINGLINE_* variable, read once into one frozen Settings that the stage hands down.

- MOVINGLINE_THREADS: caps each of TensorFlow's two thread pools (default: all cores; under
  a Slurm step of several tasks, this node's share of the usable cores).
- MOVINGLINE_DEBUG=1: shows what TensorFlow writes while it loads, and full tracebacks.
- MOVINGLINE_CHECKPOINT_SECONDS (default 60): how often the train stage saves its state.
- MOVINGLINE_PEER_TIMEOUT (default 300 s): how long training workers wait for every peer to
  join before giving up; a chief started alone waits this long, then fails.
- MOVINGLINE_HEARTBEAT_TIMEOUT (default 10 s): a worker silent this long counts as dead,
  and every other worker stops with an error.

cli.run_stage reads them before a stage's main() runs and passes them in. Reading writes
nothing: runtime.prepare(settings) is the one writer of what TensorFlow reads.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from movingline.errors import whole_number

DEBUG_VARIABLE = "MOVINGLINE_DEBUG"
THREADS_VARIABLE = "MOVINGLINE_THREADS"
CHECKPOINT_SECONDS_VARIABLE = "MOVINGLINE_CHECKPOINT_SECONDS"
PEER_TIMEOUT_VARIABLE = "MOVINGLINE_PEER_TIMEOUT"
HEARTBEAT_TIMEOUT_VARIABLE = "MOVINGLINE_HEARTBEAT_TIMEOUT"
DEFAULT_CHECKPOINT_SECONDS = 60
DEFAULT_PEER_TIMEOUT_S = 300
DEFAULT_HEARTBEAT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Settings:
    """This process's settings, as the environment gave them."""

    debug: bool = False
    threads: int | None = None  # each of TensorFlow's pools; None: TensorFlow's own (every core)
    checkpoint_seconds: int = DEFAULT_CHECKPOINT_SECONDS
    peer_timeout_s: int = DEFAULT_PEER_TIMEOUT_S
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S


def read_settings(env: Mapping[str, str]) -> Settings:
    """The settings in ``env``; raises InputError naming a malformed variable."""
    return Settings(
        debug=env.get(DEBUG_VARIABLE, "") not in ("", "0"),
        threads=_whole_number(env, THREADS_VARIABLE, None, "threads"),
        checkpoint_seconds=_whole_number(env, CHECKPOINT_SECONDS_VARIABLE, DEFAULT_CHECKPOINT_SECONDS, "seconds"),
        peer_timeout_s=_whole_number(env, PEER_TIMEOUT_VARIABLE, DEFAULT_PEER_TIMEOUT_S, "seconds"),
        heartbeat_timeout_s=_whole_number(env, HEARTBEAT_TIMEOUT_VARIABLE, DEFAULT_HEARTBEAT_TIMEOUT_S, "seconds"),
    )


def _whole_number(env: Mapping[str, str], variable: str, default: int | None, unit: str) -> int | None:
    """A whole number of at least 1 from ``env`` (``default`` when unset or empty)."""
    text = env.get(variable, "").strip()
    return whole_number(variable, text, unit=unit) if text else default


def usable_cores() -> int:
    """The cores this process may run on (Slurm's --cpus-per-task, taskset), not all the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_share(n_processes: int) -> int:
    """Threads each of ``n_processes`` running at once gets: an equal share of the usable cores, at least one."""
    return max(1, usable_cores() // n_processes)
