"""Who this process is among the training workers: read from TF_CONFIG or a Slurm step.

TF_CONFIG is what Kubernetes TFJob, Kubeflow and the cloud trainers set on every host:

    {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}

Workers are ranked chief first (a "chief" job, if the cluster has one), then the "worker"
job in order; rank 0 is the chief, the only one that writes outputs.

Without TF_CONFIG, a Slurm job step of several tasks (`srun -n N python -m stages.train`)
describes the cluster instead (movingline/slurm.py). ``training_settings`` reads the
train stage's settings, cluster included, once; nothing here imports TensorFlow or writes
the environment: runtime.prepare(settings) hands TensorFlow what it needs.
"""

import json
import logging
from collections.abc import Mapping

from movingline import slurm
from movingline.errors import InputError
from movingline.settings import (
    CHECKPOINT_SECONDS_VARIABLE,
    DEFAULT_CHECKPOINT_SECONDS,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    DEFAULT_PEER_TIMEOUT_S,
    HEARTBEAT_TIMEOUT_VARIABLE,
    PEER_TIMEOUT_VARIABLE,
    TF_CONFIG_VARIABLE as VARIABLE,
    Cluster,
    Settings,
    read_setting,
    read_settings,
    thread_share,
)

log = logging.getLogger(__name__)

# Jobs that train; TF_CONFIG may name others (ps, evaluator) that this trainer has no use for.
TRAINING_JOBS = ("chief", "worker")


def training_settings(env: Mapping[str, str]) -> Settings:
    """The train stage's settings: read_settings' and the cluster (TF_CONFIG, else a Slurm
    step of several tasks, else none), the checkpoint interval and the peer timeouts."""
    settings = read_settings(env)
    cluster, tf_config_value, threads = _read_cluster(env), None, settings.threads
    if cluster is None and (step := slurm_cluster(env)) is not None:
        cluster, tasks_on_node = step
        # TensorFlow learns its cluster from TF_CONFIG alone: the step's is handed over that way.
        tf_config_value = tf_config(cluster.addresses, cluster.rank)
        log.info("train: %s set from the Slurm step (%s=%s, %s=%s)", VARIABLE, slurm.SLURM_TASKS,
                 env[slurm.SLURM_TASKS], slurm.SLURM_NODES, env[slurm.SLURM_NODES])
        # Each of a node's tasks keeps to its share of the cores, as --local-workers does.
        threads = threads if threads is not None else thread_share(tasks_on_node)
    return Settings(
        settings.debug,
        threads,
        cluster,
        tf_config_value,
        read_setting(env, CHECKPOINT_SECONDS_VARIABLE, DEFAULT_CHECKPOINT_SECONDS, "seconds"),
        read_setting(env, PEER_TIMEOUT_VARIABLE, DEFAULT_PEER_TIMEOUT_S, "seconds"),
        read_setting(env, HEARTBEAT_TIMEOUT_VARIABLE, DEFAULT_HEARTBEAT_TIMEOUT_S, "seconds"),
    )


def _read_cluster(env: Mapping[str, str]) -> Cluster | None:
    text = env.get(VARIABLE, "").strip()
    return parse_tf_config(text) if text else None


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
    jobs = _training_jobs(cluster)
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


def _training_jobs(cluster: dict) -> dict[str, list[str]]:
    """The cluster's training jobs and their addresses, checked: host:port strings, each named once."""
    jobs = {job: cluster[job] for job in TRAINING_JOBS if job in cluster}
    for job, addresses in jobs.items():
        addresses_ok = isinstance(addresses, list) and all(isinstance(a, str) and ":" in a for a in addresses)
        if not addresses or not addresses_ok:
            raise InputError(f"{VARIABLE}: cluster.{job} must be a list of host:port addresses, found {addresses!r}")
    if not jobs:
        raise InputError(f"{VARIABLE}: the cluster names no 'worker' (or 'chief') job, found {sorted(cluster)}")
    every = [address for addresses in jobs.values() for address in addresses]
    twice = sorted({address for address in every if every.count(address) > 1})
    if twice:
        # Two workers cannot both listen on one address: the second would wait out the peer timeout.
        raise InputError(f"{VARIABLE}: {', '.join(twice)} is named more than once; every worker needs its own host:port")
    return jobs


def slurm_cluster(env: Mapping[str, str]) -> tuple[Cluster, int] | None:
    """The cluster of a Slurm job step of several tasks (all in one "worker" job, rank 0 the
    chief), and how many of its tasks run on this node; None outside such a step."""
    step = slurm.read_step(env)
    if step is None:
        return None
    n_tasks = len(step.addresses)
    return Cluster(step.addresses, step.rank, "worker", step.rank, (("worker", n_tasks),)), step.tasks_on_node


def tf_config(addresses: list[str] | tuple[str, ...], rank: int) -> str:
    """The TF_CONFIG value of worker ``rank`` in a cluster of workers only (no separate chief job)."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": rank}})
