"""Every setting read from the environment, read once into one frozen Settings, and who
this process is among the training workers.

- MOVINGLINE_THREADS: caps each of TensorFlow's two thread pools (default: all cores; under
  a Slurm step of several tasks, this node's share of the usable cores).
- MOVINGLINE_DEBUG=1: shows what TensorFlow writes while it loads, and full tracebacks.
- MOVINGLINE_CHECKPOINT_SECONDS (default 60): how often the train stage saves its state.
- MOVINGLINE_PEER_TIMEOUT (default 300 s): how long the workers wait for every peer to
  join before giving up; a chief started alone waits this long, then fails.
- MOVINGLINE_HEARTBEAT_TIMEOUT (default 10 s): a worker silent this long counts as dead,
  and every other worker stops with an error.
- TF_CONFIG, else a Slurm step of several tasks: the training cluster, read for the train
  stage only (movingline/workers.py, training_settings).

Reading writes nothing: runtime.prepare(settings) is the one writer of what TensorFlow reads.
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
TF_CONFIG_VARIABLE = "TF_CONFIG"
DEFAULT_CHECKPOINT_SECONDS = 60
DEFAULT_PEER_TIMEOUT_S = 300
DEFAULT_HEARTBEAT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Worker:
    """This process's place in the training: its rank among ``count`` workers. The one answer
    to "am I the chief" (the only writer of outputs and checkpoints) and "how many are we"."""

    rank: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Cluster:
    """The training workers' addresses, and where this process stands among them."""

    addresses: tuple[str, ...]  # every worker's host:port, by rank
    rank: int
    task_type: str
    task_index: int
    job_sizes: tuple[tuple[str, int], ...]  # (job, number of tasks) of the training jobs, chief first

    @property
    def n_workers(self) -> int:
        return len(self.addresses)

    @property
    def worker(self) -> Worker:
        return Worker(self.rank, self.n_workers)


@dataclass(frozen=True)
class Settings:
    """This process's settings; the training ones keep their defaults outside the train stage."""

    debug: bool = False
    threads: int | None = None  # each of TensorFlow's pools; None: TensorFlow's own (every core)
    cluster: Cluster | None = None  # None: one process
    tf_config: str | None = None  # TF_CONFIG to hand TensorFlow (a Slurm step's); None: leave it be
    checkpoint_seconds: int = DEFAULT_CHECKPOINT_SECONDS
    peer_timeout_s: int = DEFAULT_PEER_TIMEOUT_S
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S

    @property
    def worker(self) -> Worker:
        return self.cluster.worker if self.cluster is not None else Worker()


def read_settings(env: Mapping[str, str]) -> Settings:
    """The settings every stage reads; raises InputError naming a malformed variable."""
    return Settings(env.get(DEBUG_VARIABLE, "") not in ("", "0"), read_setting(env, THREADS_VARIABLE, None, "threads"))


def read_setting(env: Mapping[str, str], variable: str, default: int | None, unit: str) -> int | None:
    """A whole number of at least 1 from ``env`` (``default`` when unset or empty)."""
    text = env.get(variable, "").strip()
    return whole_number(variable, text, unit=unit) if text else default


def usable_cores() -> int:
    """The cores this process may run on (Slurm's --cpus-per-task, taskset), not all the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_share(n_processes: int) -> int:
    """Threads each of ``n_processes`` running at once gets: an equal share of the usable cores, at least one."""
    return max(1, usable_cores() // n_processes)
