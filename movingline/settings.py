"""Every setting read from the environment, read once into one frozen Settings.

- MOVINGLINE_THREADS: caps each of TensorFlow's two thread pools (default: all cores; under
  a Slurm step of several tasks, this node's share of the usable cores).
- MOVINGLINE_DEBUG=1: shows what TensorFlow writes while it loads, and full tracebacks.
- MOVINGLINE_CHECKPOINT_SECONDS (default 60): how often the train stage saves its state.
- MOVINGLINE_PEER_TIMEOUT (default 300 s): how long the workers wait for every peer to
  join before giving up; a chief started alone waits this long, then fails.
- MOVINGLINE_HEARTBEAT_TIMEOUT (default 10 s): a worker silent this long counts as dead,
  and every other worker stops with an error.
- TF_CONFIG, else a Slurm step of several tasks: the training cluster (movingline/workers.py).

Reading writes nothing: runtime.prepare(settings) is the one writer of what TensorFlow reads.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from movingline.errors import whole_number
from movingline.workers import VARIABLE as TF_CONFIG_VARIABLE
from movingline.workers import Cluster, Worker, parse_tf_config, slurm_cluster, tf_config

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
    """This process's settings. The training ones keep their defaults unless read for training."""

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


def read_settings(env: Mapping[str, str], *, training: bool = False) -> Settings:
    """The settings ``env`` holds; with ``training``, also the cluster and the training's own.

    Raises InputError naming the first variable that is malformed.
    """
    debug = env.get(DEBUG_VARIABLE, "") not in ("", "0")
    threads = _setting(env, THREADS_VARIABLE, None, "threads")
    if not training:
        return Settings(debug, threads)
    cluster, handed_over = _cluster(env)
    if handed_over is not None and threads is None:
        # Each of a node's tasks keeps to its share of the cores, as --local-workers does.
        threads = thread_share(handed_over)
    return Settings(
        debug,
        threads,
        cluster,
        tf_config(cluster.addresses, cluster.rank) if handed_over is not None else None,
        _setting(env, CHECKPOINT_SECONDS_VARIABLE, DEFAULT_CHECKPOINT_SECONDS, "seconds"),
        _setting(env, PEER_TIMEOUT_VARIABLE, DEFAULT_PEER_TIMEOUT_S, "seconds"),
        _setting(env, HEARTBEAT_TIMEOUT_VARIABLE, DEFAULT_HEARTBEAT_TIMEOUT_S, "seconds"),
    )


def _cluster(env: Mapping[str, str]) -> tuple[Cluster | None, int | None]:
    """TF_CONFIG's cluster, else the Slurm step's with the number of its tasks on this node
    (TensorFlow learns it through TF_CONFIG, so it is handed over), else (None, None)."""
    text = env.get(TF_CONFIG_VARIABLE, "").strip()
    if text:
        return parse_tf_config(text), None
    step = slurm_cluster(env)
    return step if step is not None else (None, None)


def _setting(env: Mapping[str, str], variable: str, default: int | None, unit: str) -> int | None:
    text = env.get(variable, "").strip()
    return whole_number(variable, text, unit=unit) if text else default


def usable_cores() -> int:
    """The cores this process may run on (Slurm's --cpus-per-task, taskset), not all the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_share(n_processes: int) -> int:
    """Threads each of ``n_processes`` running at once gets: an equal share of the usable cores, at least one."""
    return max(1, usable_cores() // n_processes)
