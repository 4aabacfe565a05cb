"""Which worker this process is, from TensorFlow's TF_CONFIG, and the strategy that joins the workers.

TF_CONFIG is what Kubernetes TFJob, Kubeflow and the cloud trainers set on every host:

    {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}

Workers are ranked chief first (a "chief" job, if the cluster has one), then the "worker"
job in order; rank 0 is the chief, the only one that writes outputs.

Without TF_CONFIG, a Slurm job step of several tasks (`srun -n N python -m stages.train`)
describes the cluster instead: its nodes, its tasks per node and each task's rank
(read_slurm_step). Otherwise the process trains alone under TensorFlow's default strategy.

Settings (environment variables, in seconds):
- MOVINGLINE_PEER_TIMEOUT (default 300): how long the workers wait for every peer to
  join before giving up; a chief started alone waits this long, then fails.
- MOVINGLINE_HEARTBEAT_TIMEOUT (default 10): a worker silent this long counts as dead,
  and every other worker stops with an error.
"""

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from movingline import slurm
from movingline.errors import ClusterError, InputError
from movingline.runtime import (
    THREADS_VARIABLE,
    configure_coordination,
    debugging,
    limit_threads,
    positive_setting,
    thread_share,
)

log = logging.getLogger(__name__)

VARIABLE = "TF_CONFIG"
PEER_TIMEOUT_VARIABLE = "MOVINGLINE_PEER_TIMEOUT"
HEARTBEAT_TIMEOUT_VARIABLE = "MOVINGLINE_HEARTBEAT_TIMEOUT"
DEFAULT_PEER_TIMEOUT_S = 300
DEFAULT_HEARTBEAT_TIMEOUT_S = 10
# Jobs that train; TF_CONFIG may name others (ps, evaluator) that this trainer has no use for.
TRAINING_JOBS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training workers."""

    addresses: tuple[str, ...]  # every worker's host:port, by rank
    rank: int
    task_type: str
    task_index: int
    job_sizes: tuple[tuple[str, int], ...]  # (job, number of tasks) of the training jobs, chief first

    @property
    def n_workers(self) -> int:
        return len(self.addresses)

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def parse_tf_config(text: str) -> Cluster:
    """The Cluster that a TF_CONFIG value describes; raises InputError naming TF_CONFIG if it is malformed."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{VARIABLE}: not valid JSON ({error})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        expected = '{"cluster": {...}, "task": {"type": ..., "index": ...}}'
        raise InputError(f"{VARIABLE}: expected {expected}, found {text!r}")
    jobs = {job: cluster[job] for job in TRAINING_JOBS if job in cluster}
    for job, addresses in jobs.items():
        addresses_ok = isinstance(addresses, list) and all(isinstance(a, str) and ":" in a for a in addresses)
        if not addresses or not addresses_ok:
            raise InputError(f"{VARIABLE}: cluster.{job} must be a list of host:port addresses, found {addresses!r}")
    if not jobs:
        raise InputError(f"{VARIABLE}: the cluster names no 'worker' (or 'chief') job, found {sorted(cluster)}")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in jobs:
        raise InputError(
            f"{VARIABLE}: task.type {task_type!r} is not a job of the cluster (expected one of {sorted(jobs)})"
        )
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(jobs[task_type]):
        raise InputError(
            f"{VARIABLE}: task.index {index!r} is out of range: the {task_type} job has {len(jobs[task_type])} "
            f"task(s), so 0 to {len(jobs[task_type]) - 1}"
        )
    ranked = [(job, i) for job in TRAINING_JOBS for i in range(len(jobs.get(job, [])))]
    addresses = tuple(jobs[job][i] for job, i in ranked)
    sizes = tuple((job, len(jobs[job])) for job in TRAINING_JOBS if job in jobs)
    return Cluster(addresses, ranked.index((task_type, index)), task_type, index, sizes)


def read_cluster() -> Cluster | None:
    """The cluster TF_CONFIG describes, else the Slurm step's, or None: one process.

    Under Slurm each worker also gets its share of its node's cores, as with --local-workers,
    unless MOVINGLINE_THREADS is set; this runs before TensorFlow loads, which reads it.
    """
    text = os.environ.get(VARIABLE, "").strip()
    if text:
        cluster = parse_tf_config(text)
    else:
        step = read_slurm_step(os.environ)
        if step is None:
            return None
        cluster, tasks_on_node = step
        # The strategy learns its cluster from TF_CONFIG alone; the step's is handed over that way.
        os.environ[VARIABLE] = tf_config(cluster)
        log.info("train: %s set from the Slurm step (%s=%s, %s=%s)", VARIABLE, slurm.SLURM_TASKS, os.environ[slurm.SLURM_TASKS],
                 slurm.SLURM_NODES, os.environ[slurm.SLURM_NODES])
        if not os.environ.get(THREADS_VARIABLE, "").strip():
            os.environ[THREADS_VARIABLE] = str(thread_share(tasks_on_node))
            limit_threads()
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "2" and not debugging():
        # A lost peer makes TensorFlow's C++ log a burst of errors; the stage says it in one
        # line instead (MOVINGLINE_DEBUG=1 shows them). Read when TensorFlow loads, after this.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return cluster


def tf_config(cluster: Cluster) -> str:
    """The TF_CONFIG value of a cluster of workers only (no separate chief job)."""
    task = {"type": "worker", "index": cluster.rank}
    return json.dumps({"cluster": {"worker": list(cluster.addresses)}, "task": task})


def read_slurm_step(env: Mapping[str, str]) -> tuple[Cluster, int] | None:
    """The cluster of a Slurm job step of several tasks (all in one "worker" job, rank 0 the
    chief), and how many of its tasks run on this node; None outside such a step."""
    step = slurm.read_step(env)
    if step is None:
        return None
    n_tasks = len(step.addresses)
    return Cluster(step.addresses, step.rank, "worker", step.rank, (("worker", n_tasks),)), step.tasks_on_node


def make_strategy(cluster: Cluster | None):
    """TensorFlow's default strategy for one process, else MultiWorkerMirroredStrategy with our timeouts.

    It returns once every worker has joined; a peer that does not join within
    MOVINGLINE_PEER_TIMEOUT ends this process with an error.
    """
    from movingline.runtime import tf

    if cluster is None:
        return tf.distribute.get_strategy()
    # The strategy logs its set-up at INFO level; the stage's own lines say what matters.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    peer_timeout = positive_setting(PEER_TIMEOUT_VARIABLE, DEFAULT_PEER_TIMEOUT_S, "seconds")
    heartbeat_timeout = positive_setting(HEARTBEAT_TIMEOUT_VARIABLE, DEFAULT_HEARTBEAT_TIMEOUT_S, "seconds")
    # The strategy configures TensorFlow's coordination service itself, but without a way to
    # set its timeouts: configured first, it keeps ours. The service's heartbeats are what
    # notice a dead worker; its registration barrier is what makes a lone chief wait.
    configure_coordination(cluster.job_sizes, peer_timeout, heartbeat_timeout)
    log.info(
        "train: worker %d of %d, waiting up to %d s (%s) for the others to join: %s",
        cluster.rank, cluster.n_workers, peer_timeout, PEER_TIMEOUT_VARIABLE,
        ", ".join(a for i, a in enumerate(cluster.addresses) if i != cluster.rank),
    )
    message = (
        f"error: {VARIABLE}: worker {cluster.rank} of {cluster.n_workers} waited {peer_timeout} s for the other "
        f"workers to join and gave up (start every worker in {VARIABLE}, or raise {PEER_TIMEOUT_VARIABLE})"
    )
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    with _watchdog(peer_timeout, message):
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=tf.distribute.experimental.CommunicationOptions(
                    implementation=tf.distribute.experimental.CommunicationImplementation.RING
                )
            )
        except tf.errors.OpError as error:
            problem = f"worker {cluster.rank} could not join the others: {error.message}"
            raise ClusterError(f"{VARIABLE}: {problem}") from None
    # TensorFlow's coordination service takes SIGTERM over for its own preemption notices,
    # which this trainer does not use; without this a worker ignored SIGTERM (Slurm's signal
    # before a time limit) and trained on.
    signal.signal(signal.SIGTERM, sigterm_handler)
    return strategy


# Run as a separate process: sleeps, then, if its parent is still waiting, says why and ends it.
_WATCHDOG = """
import os, signal, sys, time
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
try:
    time.sleep(seconds)
except KeyboardInterrupt:
    message = "error: interrupted by SIGINT while waiting for the other workers; no output was written"
if os.getppid() == parent:
    print(message, file=sys.stderr, flush=True)
    os.kill(parent, signal.SIGKILL)
"""


@contextlib.contextmanager
def _watchdog(seconds: int, message: str) -> Iterator[None]:
    """Ends this process with ``message`` if the block runs longer than ``seconds``, or on Ctrl-C.

    While the strategy waits for its peers, TensorFlow's C++ holds the interpreter: no
    Python thread, timer or signal handler of this process runs until it returns. So the
    clock runs in a small child process instead, stopped when the block ends.
    """
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message])
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 now (the kernel picks them)."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_tf_configs(n_workers: int) -> list[str]:
    """One TF_CONFIG per worker of a cluster of ``n_workers`` on the loopback address."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(n_workers)]
    return [
        json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        for index in range(n_workers)
    ]


def run_local_workers(n_workers: int, argv: list[str]) -> int:
    """Runs ``python -m stages.train ARGV`` as ``n_workers`` workers on this machine; returns the exit status.

    Each worker gets its own TF_CONFIG and, unless MOVINGLINE_THREADS is set, an equal share
    of the cores. When one fails the others are stopped at once, and the first failure's
    status is returned.
    """
    workers = []
    for config in local_tf_configs(n_workers):
        env = dict(os.environ, **{VARIABLE: config})
        env.setdefault(THREADS_VARIABLE, str(thread_share(n_workers)))
        workers.append(subprocess.Popen([sys.executable, "-m", "stages.train", *argv], env=env))
    status = 0
    try:
        while any(worker.poll() is None for worker in workers) and status == 0:
            status = next((w.returncode for w in workers if w.returncode not in (None, 0)), 0)
            time.sleep(0.2)
        status = status or next((w.returncode for w in workers if w.returncode), 0)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Blocked in TensorFlow's C++ (waiting for a peer), where SIGTERM is not handled.
                worker.kill()
                worker.wait()
    # A worker ended by a signal reports it as the shell does: 128 + the signal's number.
    return status if status >= 0 else 128 - status
