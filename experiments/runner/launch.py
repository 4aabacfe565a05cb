"""Where a grid runs: DVC's queue on this machine, or one Slurm job array with --slurm.

The door both front ends use: ``start`` checks the grid against params.yaml and starts what
is not done yet, ``wait`` waits for it and returns what `dvc exp show` lists, ``failures``
names each combination that did not succeed and where its log is.
"""

import argparse
from pathlib import Path

from experiments.runner import local, slurm
from experiments.runner.grid import PARAMS_FILE, Combination, check_all
from experiments.runner.repo import experiments
from movingline.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--slurm and the job array's options (each front end adds its own --jobs and --poll)."""
    add = parser.add_argument
    add("--slurm", action="store_true", help="run the combinations as one Slurm job array")
    add("--cpus-per-task", type=int, default=1, help="cores per task, used by TensorFlow (default: %(default)s)")
    add("--max-running", type=int, help="at most this many tasks at once (sbatch --array=...%%N)")
    add("--partition", help="sbatch --partition")
    add("--time", help="sbatch --time, per task (the task checkpoints and requeues before it)")
    add("--account", help="sbatch --account")
    add("--sbatch-option", action="append", default=[], metavar="OPTION",
        help="any other sbatch option, e.g. --sbatch-option=--mem=4G (repeatable)")


def slurm_options(args: argparse.Namespace) -> slurm.SlurmOptions:
    if args.cpus_per_task < 1 or (args.max_running is not None and args.max_running < 1):
        raise InputError("--cpus-per-task and --max-running: expected an integer of at least 1")
    named = [f"--{flag}={value}" for flag, value in
             (("partition", args.partition), ("time", args.time), ("account", args.account)) if value]
    return slurm.SlurmOptions(args.cpus_per_task, args.max_running, named + list(args.sbatch_option))


def check_arguments(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise InputError(f"--jobs: expected an integer of at least 1, found {args.jobs}")
    slurm_options(args)


def start(grid: list[Combination], baseline: str, args: argparse.Namespace, fresh: bool = False) -> str | None:
    """Starts the combinations not done yet; with --slurm returns the array's job id (None: all done).

    Every combination is checked first: if any cannot run, nothing starts. The grid's failed
    experiments (with ``fresh``, all of them) are removed and run again.
    """
    check_all(grid, Path(PARAMS_FILE))
    if not args.slurm:
        local.start(grid, baseline, args.jobs, fresh)
        return None
    local.still_to_run(grid, experiments(baseline), fresh)  # the removal only: the queue is not used
    repo = Path.cwd().resolve()
    return slurm.submit(repo, baseline, slurm.shared_cache(repo), grid, slurm_options(args))


def wait(grid: list[Combination], baseline: str, args: argparse.Namespace, job: str | None) -> dict[str, dict]:
    """Waits until none of ``grid`` is queued, pending or running; returns the baseline's experiments."""
    if not args.slurm:
        return local.wait(grid, baseline, args.poll)
    if job is not None:
        slurm.wait(job, args.poll)
    return experiments(baseline)


def failures(grid: list[Combination], found: dict[str, dict], args: argparse.Namespace) -> list[str]:
    """One line per combination of ``grid`` that ``found`` does not hold as a success."""
    def log_of(combination: Combination) -> str:
        if args.slurm:
            return str(slurm.log_path(Path.cwd().resolve(), combination.name))
        return f"`dvc queue logs {combination.name}`"

    return [f"{c.name} [{c.describe()}]: see {log_of(c)}" for c in grid
            if found.get(c.name, {}).get("state") != "success"]
