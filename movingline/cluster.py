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
import itertools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

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
        log.info("train: %s set from the Slurm step (%s=%s, %s=%s)", VARIABLE, SLURM_TASKS, os.environ[SLURM_TASKS],
                 SLURM_NODES, os.environ[SLURM_NODES])
        if not os.environ.get(THREADS_VARIABLE, "").strip():
            os.environ[THREADS_VARIABLE] = str(thread_share(tasks_on_node))
            limit_threads()
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "2" and not debugging():
        # A lost peer makes TensorFlow's C++ log a burst of errors; the stage says it in one
        # line instead (MOVINGLINE_DEBUG=1 shows them). Read when TensorFlow loads, after this.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return cluster


# Slurm's environment in a job step (srun), as far as the cluster needs it. The batch
# script itself also has SLURM_NTASKS but runs one process, so only srun's step
# variables turn training across workers on.
SLURM_TASKS = "SLURM_STEP_NUM_TASKS"
SLURM_RANK = "SLURM_PROCID"
SLURM_LOCAL_RANK = "SLURM_LOCALID"
SLURM_NODE = "SLURMD_NODENAME"
SLURM_NODES = "SLURM_STEP_NODELIST"
SLURM_TASKS_PER_NODE = "SLURM_STEP_TASKS_PER_NODE"
SLURM_PORTS = "SLURM_STEP_RESV_PORTS"
SLURM_JOB = "SLURM_JOB_ID"
SLURM_STEP = "SLURM_STEP_ID"
# Without reserved ports the job and step ids pick one of PORT_BLOCKS blocks of PORT_BLOCK
# ports from FIRST_PORT on: below Linux's ephemeral range (32768 on), and the same on every
# task without any talking.
FIRST_PORT = 10000
PORT_BLOCK = 20
PORT_BLOCKS = 1000
_NUMBER_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_TASK_COUNT = re.compile(r"(\d+)(?:\(x(\d+)\))?")


def expand_ranges(text: str, variable: str) -> list[str]:
    """``01-03,7`` -> ``["01", "02", "03", "7"]``: Slurm's number ranges, zero padding kept."""
    numbers = []
    for piece in text.split(","):
        match = _NUMBER_RANGE.fullmatch(piece.strip())
        if not match:
            raise InputError(f"{variable}: {piece!r} is not a number or a range like 1-4, in {text!r}")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(high) < int(low):
            raise InputError(f"{variable}: the range {piece!r} runs backwards, in {text!r}")
        numbers.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
    return numbers


def expand_hostlist(text: str, variable: str) -> list[str]:
    """The host names a Slurm hostlist names, in order: ``node[01-02,5],gpu1`` -> node01, node02, node5, gpu1.

    Several bracketed ranges in one name combine every way (``r[1-2]n[1-2]`` -> r1n1, r1n2, r2n1, r2n2).
    """
    items, depth, start = [], 0, 0
    for position, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise InputError(f"{variable}: unbalanced or nested brackets in {text!r}")
        if char == "," and depth == 0:
            items.append(text[start:position])
            start = position + 1
    if depth != 0:
        raise InputError(f"{variable}: unbalanced or nested brackets in {text!r}")
    items.append(text[start:])
    hosts = []
    for item in items:
        parts = re.split(r"(\[[^\]]*\])", item.strip())
        if not item.strip() or "]" in "".join(parts[::2]):
            raise InputError(f"{variable}: empty or malformed host name {item!r} in {text!r}")
        choices = [expand_ranges(part[1:-1], variable) if part.startswith("[") else [part] for part in parts]
        hosts.extend("".join(combination) for combination in itertools.product(*choices))
    return hosts


def expand_tasks_per_node(text: str, variable: str) -> list[int]:
    """``2(x3),1`` -> ``[2, 2, 2, 1]``: how many tasks run on each node of the step, in node order."""
    counts = []
    for piece in text.split(","):
        match = _TASK_COUNT.fullmatch(piece.strip())
        if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
            raise InputError(f"{variable}: {piece!r} is not a task count like 2 or 2(x3), in {text!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def _whole_number(env: Mapping[str, str], variable: str, low: int, high: int | None = None) -> int:
    text = env.get(variable, "").strip()
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InputError(f"{variable}: expected a whole number {bounds}, found {text!r}" if text else
                         f"{variable}: not set, and the Slurm step needs it ({SLURM_TASKS} is set)")
    return int(text)


def _required(env: Mapping[str, str], variable: str) -> str:
    text = env.get(variable, "").strip()
    if not text:
        raise InputError(f"{variable}: not set, and the Slurm step needs it ({SLURM_TASKS} is set)")
    return text


def slurm_ports(env: Mapping[str, str], most_tasks_on_a_node: int) -> list[int]:
    """The ports of a node's tasks, by local rank: the step's reserved ports, else a block picked by its ids.

    Every node's tasks use the same ports, so each task knows every other's address.
    """
    text = env.get(SLURM_PORTS, "").strip()
    if text:
        ports = [int(port) for port in expand_ranges(text, SLURM_PORTS)]
        if not all(0 < port < 65536 for port in ports):
            raise InputError(f"{SLURM_PORTS}: {text!r} names a port outside 1 to 65535")
        if len(ports) < most_tasks_on_a_node:
            raise InputError(
                f"{SLURM_PORTS}: {text!r} reserves {len(ports)} port(s) but a node of the step runs "
                f"{most_tasks_on_a_node} task(s); one port each is needed (srun --resv-ports={most_tasks_on_a_node})"
            )
        return ports[:most_tasks_on_a_node]
    block = (10 * _whole_number(env, SLURM_JOB, 0) + _whole_number(env, SLURM_STEP, 0)) % PORT_BLOCKS
    return [FIRST_PORT + block * PORT_BLOCK + local for local in range(most_tasks_on_a_node)]


def tf_config(cluster: Cluster) -> str:
    """The TF_CONFIG value of a cluster of workers only (no separate chief job)."""
    task = {"type": "worker", "index": cluster.rank}
    return json.dumps({"cluster": {"worker": list(cluster.addresses)}, "task": task})


def read_slurm_step(env: Mapping[str, str]) -> tuple[Cluster, int] | None:
    """The cluster of a Slurm job step of several tasks, and how many of them run on this node.

    None outside a step (SLURM_STEP_NUM_TASKS unset) or in a one-task step. Tasks are laid out
    by Slurm's default block distribution: ranks 0 to k-1 on the step's first node, and so on;
    a step laid out otherwise is refused, since the tasks could not agree on who is where.
    Raises InputError naming the variable that is missing, malformed or inconsistent.
    """
    if not env.get(SLURM_TASKS, "").strip():
        return None
    n_tasks = _whole_number(env, SLURM_TASKS, 1)
    if n_tasks == 1:
        return None
    rank = _whole_number(env, SLURM_RANK, 0, n_tasks - 1)
    hosts = expand_hostlist(_required(env, SLURM_NODES), SLURM_NODES)
    counts = expand_tasks_per_node(_required(env, SLURM_TASKS_PER_NODE), SLURM_TASKS_PER_NODE)
    if len(counts) != len(hosts) or sum(counts) != n_tasks:
        raise InputError(
            f"{SLURM_TASKS_PER_NODE}: {env[SLURM_TASKS_PER_NODE]!r} gives {len(counts)} node(s) and {sum(counts)} "
            f"task(s), but {SLURM_NODES} names {len(hosts)} node(s) and {SLURM_TASKS} is {n_tasks}"
        )
    ports = slurm_ports(env, max(counts))
    addresses = tuple(f"{host}:{ports[local]}" for host, count in zip(hosts, counts) for local in range(count))
    node = next(index for index, end in enumerate(itertools.accumulate(counts)) if rank < end)
    local_rank = rank - sum(counts[:node])
    expected = {SLURM_NODE: hosts[node], SLURM_LOCAL_RANK: str(local_rank)}
    for variable, value in expected.items():
        found = env.get(variable, "").strip()
        if found and found != value:
            layout = f"{SLURM_NODES}={env[SLURM_NODES]!r}, {SLURM_TASKS_PER_NODE}={env[SLURM_TASKS_PER_NODE]!r}"
            raise InputError(
                f"{variable}: {found!r}, but task {rank} of a step laid out in blocks ({layout}) would be "
                f"{value!r}; run the step with srun's default --distribution=block"
            )
    return Cluster(addresses, rank, "worker", rank, (("worker", n_tasks),)), counts[node]


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
