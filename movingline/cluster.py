"""The strategy that joins the training workers, and local workers on one machine.

Who this process is comes from the Settings (movingline/settings.py, from TF_CONFIG or a
Slurm step, movingline/workers.py); runtime.prepare() has handed TensorFlow its TF_CONFIG
before it loaded. Here the workers meet: MultiWorkerMirroredStrategy with our timeouts
(MOVINGLINE_PEER_TIMEOUT, MOVINGLINE_HEARTBEAT_TIMEOUT), a watchdog for a peer that never
joins, and ``--local-workers N``'s processes.
"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from movingline.errors import ClusterError
from movingline.runtime import configure_coordination
from movingline.settings import PEER_TIMEOUT_VARIABLE, THREADS_VARIABLE, Settings, thread_share
from movingline.settings import TF_CONFIG_VARIABLE as VARIABLE
from movingline.workers import tf_config

log = logging.getLogger(__name__)


def make_strategy(settings: Settings):
    """TensorFlow's default strategy for one process, else MultiWorkerMirroredStrategy with our timeouts.

    It returns once every worker has joined; a peer that does not join within
    MOVINGLINE_PEER_TIMEOUT ends this process with an error.
    """
    from movingline.runtime import tf

    cluster = settings.cluster
    if cluster is None:
        return tf.distribute.get_strategy()
    # The strategy logs its set-up at INFO level; the stage's own lines say what matters.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    peer_timeout, heartbeat_timeout = settings.peer_timeout_s, settings.heartbeat_timeout_s
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
    return [tf_config(addresses, rank) for rank in range(n_workers)]


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
