"""TF_CONFIG: the training cluster as Kubernetes TFJob, Kubeflow and the cloud trainers describe it.

    {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}

Workers are ranked chief first (a "chief" job, if the cluster has one), then the "worker"
job in order; rank 0 is the chief, the only one that writes outputs. A Slurm step is turned
into the same Cluster (team.py), and handed to TensorFlow as a TF_CONFIG of its own.
"""

import json
from dataclasses import dataclass

from movingline.errors import InputError

VARIABLE = "TF_CONFIG"
# Jobs that train; TF_CONFIG may name others (ps, evaluator) that this trainer has no use for.
TRAINING_JOBS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """The training workers' addresses, and where this process stands among them."""

    addresses: tuple[str, ...]  # every worker's host:port, by rank
    rank: int
    task_type: str
    task_index: int
    job_sizes: tuple[tuple[str, int], ...]  # (job, number of tasks) of the training jobs, chief first
    handed_config: str | None = None  # the TF_CONFIG to hand TensorFlow (a Slurm step's); None: already set
    tasks_on_node: int = 1  # workers on this machine, which share its cores (a Slurm step's)

    @property
    def n_workers(self) -> int:
        return len(self.addresses)


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


def tf_config(addresses: list[str] | tuple[str, ...], rank: int) -> str:
    """The TF_CONFIG value of worker ``rank`` in a cluster of workers only (no separate chief job)."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": rank}})
