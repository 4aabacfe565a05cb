"""Where this task is in a Slurm job step (`srun -n N`), read from Slurm's environment.

TensorFlow's own SlurmClusterResolver needs nvidia-smi and GPUs, so the step's variables
are read here: the step's nodes (a compressed hostlist), how many tasks run on each, this
task's rank, and a port for each task that every task works out alike without talking.
Nothing here imports TensorFlow; team.py turns the step into the cluster.
"""

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from movingline.errors import InputError, whole_number


@dataclass(frozen=True)
class SlurmStep:
    addresses: tuple[str, ...]  # every task's host:port, by rank
    rank: int
    tasks_on_node: int  # tasks of the step on this task's node, which share its cores


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
    return whole_number(variable, _required(env, variable), low, high)


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


def read_step(env: Mapping[str, str]) -> SlurmStep | None:
    """This task's place in a Slurm job step of several tasks.

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
    return SlurmStep(addresses, rank, counts[node])
