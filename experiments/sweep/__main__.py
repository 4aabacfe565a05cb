"""Runs every combination of `dvc exp run -S` settings as a DVC experiment of this repository.

    python -m experiments.sweep -S train.seed=21,22,23 -S train.batch_size=16 [--jobs N] [--wait]
    python -m experiments.sweep --slurm [--cpus-per-task C] [--partition P] [--time T] [--wait] -S ...

Locally the combinations go through DVC's queue (`--jobs N` at once, each with its share of
the cores); with --slurm they run as one Slurm job array, one task per combination. Every
combination is checked against the project's params rules first: if any cannot run,
nothing starts and each bad one is named. Experiments are named PREFIX-HASH of their
settings and based on the current commit; a rerun skips those already done. With --wait
the command waits and prints the table (`dvc exp show`), and exits non-zero if any failed.
See docs/scaling.md.
"""

import argparse
import logging
import re
import sys

from experiments.runner import launch
from experiments.runner.grid import Combination, combinations
from experiments.runner.repo import check_workspace, dvc
from movingline.cli import run_stage
from movingline.settings import Settings

log = logging.getLogger("sweep")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("-S", "--set-param", action="append", required=True, metavar="KEY=V1,V2",
        help="as `dvc exp run -S`: a comma list sweeps the key; several -S make a grid")
    add("--name", default="sweep", help="experiment name prefix (default: %(default)s)")
    add("--jobs", type=int, default=2, help="local queue: experiments at once (default: %(default)s)")
    add("--wait", action="store_true", help="wait for every experiment, then print the table")
    add("--poll", type=float, default=10.0, help="seconds between checks while waiting (default: %(default)s)")
    launch.add_arguments(parser)
    args = parser.parse_args()
    launch.check_arguments(args)
    return args


def table(grid: list[Combination]) -> str:
    """`dvc exp show` cut to the swept params and the main metrics."""
    keys = sorted({override.split("=", 1)[0].lstrip("+~") for c in grid for _, override in c.overrides})
    columns = "|".join(["Experiment", "State", "accuracy", "loss", "roc_auc", *map(re.escape, keys)])
    shown = dvc("exp", "show", "--no-fetch", "--md", "--drop", ".*", "--keep", f"^({columns})$")
    return shown.stdout


def main(settings: Settings) -> None:
    args = parse_arguments()
    grid = combinations(args.set_param, args.name)
    baseline = check_workspace([])
    log.info("%d combination(s) based on commit %s", len(grid), baseline[:7])
    job = launch.start(grid, baseline, args)
    if not args.wait and args.slurm and job is not None:
        print(f"Slurm job array {job}: follow it with `squeue -j {job}`; each experiment appears in "
              "`dvc exp show` as its task ends (logs in .dvc/tmp/sweep/logs); run this command again "
              "to retry any that failed")
        return
    if not args.wait and not args.slurm:
        print(f"queued on DVC's queue, {args.jobs} at once: `dvc queue status` follows them, "
              "`dvc exp show` lists them when done")
        return
    failed = launch.failures(grid, launch.wait(grid, baseline, args, job), args)
    print(table(grid), end="")
    if failed:
        sys.exit(f"error: {len(failed)} of {len(grid)} experiment(s) failed: {'; '.join(failed)}")


if __name__ == "__main__":
    run_stage(main)
