"""One training worker among several: joining them, and the team that training is handed.

The train stage reads the cluster (``read_cluster``: TF_CONFIG, else a Slurm step of several
tasks), gives runtime.prepare what the workers need before TensorFlow loads
(``worker_settings``), and then ``join``s the others: MultiWorkerMirroredStrategy with our
timeouts (MOVINGLINE_PEER_TIMEOUT, MOVINGLINE_HEARTBEAT_TIMEOUT) and a watchdog for a peer that
never joins. What it gets back, ``Workers``, answers what training asks of its team
(movingline/training/team.py): the rows each worker reads, the chief's checkpoint for all,
when to stop together, and a lost peer as one error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping

import numpy as np

from movingline import runtime
from movingline.cluster import slurm
from movingline.cluster.tf_config import VARIABLE, Cluster, parse_tf_config, tf_config
from movingline.errors import ClusterError
from movingline.settings import PEER_TIMEOUT_VARIABLE, Settings, thread_share

log = logging.getLogger(__name__)


def read_cluster(env: Mapping[str, str]) -> Cluster | None:
    """The training cluster this process is a worker of: TF_CONFIG's, else a Slurm step's of
    several tasks (all in one "worker" job, rank 0 the chief); None to train alone."""
    text = env.get(VARIABLE, "").strip()
    if text:
        return parse_tf_config(text)
    step = slurm.read_step(env)
    if step is None:
        return None
    log.info("train: %s set from the Slurm step (%s=%s, %s=%s)", VARIABLE, slurm.SLURM_TASKS,
             env[slurm.SLURM_TASKS], slurm.SLURM_NODES, env[slurm.SLURM_NODES])
    n_tasks = len(step.addresses)
    # TensorFlow learns its cluster from TF_CONFIG alone: the step's is handed over that way.
    return Cluster(step.addresses, step.rank, "worker", step.rank, (("worker", n_tasks),),
                   tf_config(step.addresses, step.rank), step.tasks_on_node)


def worker_settings(cluster: Cluster, settings: Settings, env: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings of a worker of ``cluster`` (its share of the node's cores, unless
    MOVINGLINE_THREADS is set), and the variables runtime.prepare must add for it."""
    if settings.threads is None and cluster.handed_config is not None:
        # Each of a node's tasks keeps to its share of the cores, as --local-workers does.
        settings = dataclasses.replace(settings, threads=thread_share(cluster.tasks_on_node))
    more = {VARIABLE: cluster.handed_config} if cluster.handed_config is not None else {}
    if env.get(runtime.LOG_LEVEL_VARIABLE, "2") == "2" and not settings.debug:
        # A lost peer makes TensorFlow's C++ log a burst of errors; the stage says it in one
        # line instead (MOVINGLINE_DEBUG=1 shows them).
        more[runtime.LOG_LEVEL_VARIABLE] = "3"
    return settings, more


class Workers:
    """This process's place among the cluster's workers, and the moves they make together."""

    def __init__(self, strategy, cluster: Cluster):
        self.strategy, self.rank, self.count = strategy, cluster.rank, cluster.n_workers

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def rows(self, start: int, stop: int) -> tuple[int, int]:
        return replica_rows(start, stop, self.rank, self.count)

    def from_chief(self, payload: bytes) -> bytes:
        """The chief's bytes on every worker, through two all-reduces (its length, then its int32
        words): the others add zeros, and integer sums with zero are exact, so every bit arrives."""
        n_bytes = int(self._summed(np.array([len(payload) if self.is_chief else 0], np.int64).view(np.int32)).view(np.int64)[0])
        if n_bytes == 0:
            return b""
        n_words = -(-n_bytes // 4)
        words = np.frombuffer(payload.ljust(4 * n_words, b"\0"), np.int32) if self.is_chief else np.zeros(n_words, np.int32)
        return self._summed(words).tobytes()[:n_bytes]

    def _summed(self, local: np.ndarray) -> np.ndarray:
        tf = runtime.tf
        value = self.strategy.experimental_distribute_values_from_function(lambda context: tf.constant(local))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy()

    def stopping(self, signalled: bool, voted: bool) -> bool:
        # Workers stop together, after the step whose all-reduce carried a vote to stop.
        return voted

    @contextlib.contextmanager
    def guard(self, step: int) -> Iterator[None]:
        """Turns the error a collective op raises when a peer is gone into one ClusterError line."""
        errors = runtime.tf.errors
        peer_errors = (errors.UnavailableError, errors.DeadlineExceededError, errors.CancelledError,
                       errors.AbortedError, errors.InternalError)
        try:
            yield
        except peer_errors as error:
            raise ClusterError(
                f"worker {self.rank} of {self.count} lost contact with another worker at step {step} "
                f"(it stopped, or the network failed; TensorFlow raised {type(error).__name__}); "
                "no model was written"
            ) from None


def replica_rows(start: int, stop: int, replica: int, n_replicas: int) -> tuple[int, int]:
    """The rows of the global batch [start, stop) that replica ``replica`` of ``n_replicas`` reads.

    Contiguous, in replica order, covering the batch exactly once, and within one row of
    each other in size: with 32 rows and 3 replicas, 10, 11 and 11. A batch shorter than
    the number of replicas leaves some replicas no rows; they still take part in the step
    (their gradient is zero), because every replica must join every all-reduce.
    """
    size = stop - start
    return start + replica * size // n_replicas, start + (replica + 1) * size // n_replicas


def join(cluster: Cluster, settings: Settings) -> Workers:
    """Waits for every worker of ``cluster`` to join, under MultiWorkerMirroredStrategy with our
    timeouts; a peer that does not join within MOVINGLINE_PEER_TIMEOUT ends this process with an error."""
    tf = runtime.tf
    # The strategy logs its set-up at INFO level; the stage's own lines say what matters.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    peer_timeout = settings.peer_timeout_s
    # The strategy configures TensorFlow's coordination service itself, but without a way to
    # set its timeouts: configured first, it keeps ours. The service's heartbeats are what
    # notice a dead worker; its registration barrier is what makes a lone chief wait.
    _configure_coordination(cluster.job_sizes, peer_timeout, settings.heartbeat_timeout_s)
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
    if strategy.num_replicas_in_sync != cluster.n_workers:
        # Each process feeds one replica; several GPUs in one host take one worker each.
        raise ValueError(f"{strategy.num_replicas_in_sync} replicas on {cluster.n_workers} worker(s): run one "
                         "worker per GPU (set CUDA_VISIBLE_DEVICES per worker)")
    return Workers(strategy, cluster)


def _configure_coordination(job_sizes: tuple[tuple[str, int], ...], peer_timeout_s: int, heartbeat_timeout_s: int) -> None:
    """Sets up TensorFlow's coordination service for the training jobs (name, number of tasks),
    led by the first job's task 0, with our timeouts: how long to wait for every peer to join
    (and to leave), and how long a silent peer counts as alive."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{job_sizes[0][0]}/replica:0/task:0",
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=n) for job, n in job_sizes],
        cluster_register_timeout_in_ms=peer_timeout_s * 1000,
        heartbeat_timeout_in_ms=heartbeat_timeout_s * 1000,
        shutdown_barrier_timeout_in_ms=peer_timeout_s * 1000,
    )


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
