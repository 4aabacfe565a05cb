"""Learning curves through DVC's experiment queue: test accuracy against training sequences.

Queues one DVC experiment per model, training budget (generate_train.n_samples) and
training seed (train.seed), runs the queue with `dvc queue start --jobs N`, waits for it,
and collects test accuracy and loss from `dvc exp show --json` and each run's training
time from its queue log. Writes a per-run CSV, a Markdown summary (mean and worst over
seeds), a PNG of the curves, and the answer: the smallest budget at which each model
reaches ACCURACY_GOAL on every seed. See docs/learning-curve.md.

Run from the project root, in the project's environment:
    python -m experiments.learning_curve [--jobs N] [--fresh] [--smoke]
    python -m experiments.learning_curve --slurm [--max-running N] [--partition P] [--time T] ...

With --slurm the grid runs as one Slurm job array instead (the sweep's, docs/scaling.md).

Experiments are named PREFIX-MODEL-nBUDGET-sSEED and are based on the current commit.
Finished ones of those names are reused (a rerun resumes), failed ones are queued again;
no other experiment is touched. Experiments already queued by someone else stop the script
before it queues anything, since `dvc queue start` would run them too.

The learning curve is a sweep (experiments.runner runs it) plus its report: grid.py (what
runs), results.py (what each run gave) and report.py (CSV, tables, picture); this file is the
command line that strings them together.
"""

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from experiments.learning_curve.grid import (
    BUDGETS,
    MODELS,
    PREFIX,
    SEEDS,
    SMOKE_BUDGETS,
    SMOKE_PARAMS,
    SMOKE_PREFIX,
    SMOKE_SEEDS,
    grid,
    set_params,
)
from experiments.learning_curve.report import markdown, plot, update_doc, write_csv
from experiments.learning_curve.results import collect, with_earlier_times
from experiments.runner import launch
from experiments.runner.grid import Combination
from experiments.runner.repo import check_workspace
from movingline.cli import run_stage
from movingline.settings import Settings
from movingline.errors import InputError
from movingline.params import load_params

log = logging.getLogger("learning_curve")

DEFAULT_CSV = Path("docs/learning-curve.csv")
DEFAULT_PNG = Path("docs/learning-curve.png")
DEFAULT_DOC = Path("docs/learning-curve.md")


def main(settings: Settings) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.learning_curve", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--jobs", type=int, default=1, help="queue workers (default: %(default)s; more at once, noisier times)")
    add("--fresh", action="store_true", help="remove this grid's earlier experiments and run them all again")
    add("--smoke", action="store_true", help="tiny sequences and budgets to check the machinery (results: a temp dir)")
    add("--out-dir", type=Path, help="where to write the CSV and PNG (default: docs/, or a temp dir with --smoke)")
    add("--doc", type=Path, help="Markdown file whose results section to rewrite (default: docs/learning-curve.md)")
    add("--poll", type=float, default=20.0, help="seconds between queue checks (default: %(default)s)")
    launch.add_arguments(parser)
    args = parser.parse_args()
    launch.check_arguments(args)

    if args.smoke:
        budgets, seeds, prefix, base = SMOKE_BUDGETS, SMOKE_SEEDS, SMOKE_PREFIX, SMOKE_PARAMS
        out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="learning-curve-smoke-"))
        doc = args.doc
    else:
        budgets, seeds, prefix, base = BUDGETS, SEEDS, PREFIX, {}
        out_dir = args.out_dir or DEFAULT_CSV.parent
        doc = args.doc or DEFAULT_DOC
    csv_path, png_path = out_dir / DEFAULT_CSV.name, out_dir / DEFAULT_PNG.name
    if doc is not None and not doc.is_file():
        raise InputError(f"{doc}: results document not found")

    started = time.monotonic()
    baseline = check_workspace([csv_path, png_path, *([doc] if doc else [])])
    runs = grid(MODELS, budgets, seeds, prefix)
    sweep = [Combination.of(run.name, set_params(run, MODELS, base)) for run in runs]
    job = launch.start(sweep, baseline, args, fresh=args.fresh)
    found = launch.wait(sweep, baseline, args, job)
    failed = launch.failures(sweep, found, args)
    if failed:
        raise InputError(f"{len(failed)} of {len(runs)} experiment(s) did not succeed, the first {failed[0]}; "
                         "rerun this script to retry them")
    results = with_earlier_times(collect(runs, found), csv_path)
    wall = time.monotonic() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results, csv_path)
    plot(results, png_path)
    # The picture's link, relative to the Markdown file that shows it.
    shown_from = out_dir if doc is None else doc.parent
    png_link = Path(os.path.relpath(png_path, shown_from)).as_posix()
    section = markdown(results, MODELS, base, wall, png_link, load_params().generate_train.n_samples)
    if doc is not None:
        update_doc(doc, section)
        log.info("wrote the results section of %s", doc)
    else:
        (out_dir / "learning-curve-results.md").write_text(section, encoding="utf-8")
    print(section, end="")
    log.info("wrote %s and %s", csv_path, png_path)


if __name__ == "__main__":
    run_stage(main)
