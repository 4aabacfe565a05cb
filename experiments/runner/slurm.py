"""A grid as one Slurm job array: write its plan, submit it, wait for it.

Each array task runs experiments.runner.task on one combination (see there for how tasks
stay out of each other's way). The array is named after the grid (its baseline and
combinations), so a second submission of the same grid while the first still runs is
refused instead of running every combination twice. A task writes its experiment's ref
into the user's repository last, with one `git push` of a finished experiment, so a ref is
never half there: a task cancelled before it leaves nothing in the repository's refs.
"""

import hashlib
import json
import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from experiments.runner.grid import Combination
from experiments.runner.repo import dvc, is_done
from movingline.errors import InputError

log = logging.getLogger("runner")

# Seconds before the time limit at which Slurm tells a task to checkpoint and requeue.
TIME_LIMIT_WARNING = 120
SQUEUE_RETRIES = 5
CODE_ROOT = Path(__file__).resolve().parents[2]

# Under .dvc/tmp, which git and DVC ignore (DVC's own queue works in .dvc/tmp/exps). On a
# cluster the repository sits on a shared file system, so a requeued task finds its
# workspace, and the checkpoint in it, on whichever node it lands.
SWEEP_DIR = Path(".dvc/tmp/sweep")
WORK_DIR = SWEEP_DIR / "work"
LOG_DIR = SWEEP_DIR / "logs"
PLAN_DIR = SWEEP_DIR / "plans"


@dataclass(frozen=True)
class SlurmOptions:
    cpus_per_task: int = 1
    max_running: int | None = None
    sbatch: list[str] = field(default_factory=list)  # passed through: --partition=..., --time=...


def sweep_id(baseline: str, grid: list[Combination]) -> str:
    digest = hashlib.sha1(" ".join([baseline, *sorted(c.name for c in grid)]).encode()).hexdigest()[:8]
    return f"sweep-{digest}"


def squeue(*args: str) -> list[str]:
    """squeue's lines, tolerating a few failures in a row (slurmctld busy)."""
    for attempt in range(SQUEUE_RETRIES):
        result = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split()
        log.warning("squeue failed (%s); trying again", result.stderr.strip())
        time.sleep(2 * (attempt + 1))
    raise InputError(f"squeue {' '.join(args)}: {result.stderr.strip()}")


def write_plan(repo: Path, baseline: str, cache: str, name: str, todo: list[Combination]) -> Path:
    plan = {
        "repo": str(repo),
        "baseline": baseline,
        "cache": cache,
        "combinations": [{"name": c.name, "overrides": [list(pair) for pair in c.overrides]} for c in todo],
    }
    path = repo / PLAN_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=1), encoding="utf-8")
    return path


def sbatch_command(repo: Path, name: str, plan: Path, tasks: int, options: SlurmOptions) -> list[str]:
    array = f"0-{tasks - 1}" + (f"%{options.max_running}" if options.max_running else "")
    # The task runs the code that submitted it, from this interpreter's environment.
    task = (f"cd {shlex.quote(str(CODE_ROOT))} && "
            f"exec {shlex.quote(sys.executable)} -m experiments.runner.task {shlex.quote(str(plan))}")
    return [
        "sbatch", "--parsable", f"--job-name={name}", f"--array={array}",
        f"--cpus-per-task={options.cpus_per_task}", "--ntasks=1", "--requeue",
        f"--signal=B:USR1@{TIME_LIMIT_WARNING}", "--open-mode=append",
        f"--output={repo / LOG_DIR}/%x-%A_%a.out", *options.sbatch, f"--wrap={task}",
    ]


def submit(repo: Path, baseline: str, cache: str, grid: list[Combination], options: SlurmOptions) -> str | None:
    """Submits the combinations not done yet as one array; returns its job id (None: all done)."""
    name = sweep_id(baseline, grid)
    running = squeue("-n", name, "-o", "%A")
    if running:
        raise InputError(f"{name}: this sweep is already running as Slurm job {running[0]}; "
                         f"wait for it (squeue -j {running[0]}) or `scancel {running[0]}`, then run it again")
    todo = [c for c in grid if not is_done(repo, baseline, c.name)]
    if len(todo) < len(grid):
        log.info("%d of %d experiments are already done; submitting the other %d", len(grid) - len(todo),
                 len(grid), len(todo))
    if not todo:
        return None
    (repo / LOG_DIR).mkdir(parents=True, exist_ok=True)
    command = sbatch_command(repo, name, write_plan(repo, baseline, cache, name, todo), len(todo), options)
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise InputError(f"sbatch refused the array: {' '.join(result.stderr.split())}")
    job = result.stdout.strip().split(";")[0]
    log.info("submitted Slurm job array %s (%s): %d task(s), %d core(s) each", job, name, len(todo),
             options.cpus_per_task)
    return job


def shared_cache(repo: Path) -> str:
    """The repository's DVC cache, which every task's clone uses (an absolute path)."""
    return str((repo / dvc("cache", "dir").stdout.strip()).resolve())


def wait(job: str, poll_seconds: float) -> None:
    """Returns once no task of array ``job`` is pending or running."""
    reported = None
    while True:
        left = squeue("-j", job, "-r", "-o", "%i")
        if len(left) != reported:
            log.info("Slurm job %s: %d task(s) pending or running", job, len(left))
            reported = len(left)
        if not left:
            return
        time.sleep(poll_seconds)


def log_path(repo: Path, name: str) -> Path:
    """Where a task appends the output of its experiment's `dvc exp run` (every attempt)."""
    return repo / LOG_DIR / f"{name}.log"


def workspace(repo: Path, baseline: str, name: str) -> Path:
    """The clone one experiment runs in; no other task writes there."""
    return repo / WORK_DIR / f"{name}-{baseline[:8]}"
