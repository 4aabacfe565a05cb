"""What the learning curve's experiments gave: test accuracy and loss from `dvc exp show`,
training time from each run's log (the queue's, or its Slurm task's).

The tables and the picture are report.py's; running the experiments is the runner's.
"""

import dataclasses
import re
from pathlib import Path

from experiments.learning_curve.grid import Result, Run
from experiments.learning_curve.report import read_csv
from experiments.runner.repo import dvc
from experiments.runner.slurm import log_path
from movingline.errors import InputError
from movingline.params import ModelParams

# The train stage's last line, e.g. "trained 157 steps in 14.2 s (352 sequences/s)".
TRAINED_LINE = re.compile(r"trained (\d+) steps in ([0-9.]+) s\b")
# Without it, Keras's per-epoch line at verbose=2, e.g. "157/157 - 15s - 95ms/step - ...":
# whole seconds only.
KERAS_EPOCH_LINE = re.compile(r"^\s*\d+/\d+ - (\d+)s - ", re.MULTILINE)


def training_seconds(log_text: str) -> tuple[float | None, str]:
    """A run's training time from its log, and where it came from."""
    trained = TRAINED_LINE.findall(log_text)
    if trained:
        return float(trained[-1][1]), "train stage"
    epochs = KERAS_EPOCH_LINE.findall(log_text)
    if epochs:
        return float(sum(int(seconds) for seconds in epochs)), "keras epoch lines (whole s)"
    return None, "none (train restored from the run-cache?)"


def run_log(name: str) -> str:
    """A run's output: the queue's log, or for a run on Slurm (--slurm) its task's."""
    queued = dvc("queue", "logs", name, check=False).stdout
    task_log = log_path(Path.cwd(), name)
    return queued or (task_log.read_text(encoding="utf-8") if task_log.is_file() else "")


def describe_test_set(params: dict) -> str:
    """The test set every run is evaluated on, from a run's params (as `dvc exp show` gives them)."""
    size, test = params["data"]["size"], params["generate_test"]
    return f"{test['n_samples']} sequences of {size}x{size} frames, generate_test.seed = {test['seed']}"


def collect(runs: list[Run], found: dict[str, dict]) -> list[Result]:
    """The result of each run from ``found`` (the runner's experiments, every run a success)."""
    results = []
    for run in runs:
        info = found[run.name]
        params = info["params"]
        if params["generate_train"]["n_samples"] != run.budget or params["train"]["seed"] != run.seed:
            raise InputError(f"{run.name}: its params do not match its name; rerun with --fresh")
        seconds, source = training_seconds(run_log(run.name))
        model = ModelParams(**params["model"])
        results.append(
            Result(
                run,
                float(info["metrics"]["accuracy"]),
                float(info["metrics"]["loss"]),
                seconds,
                source,
                model.parameter_count(params["data"]["size"]),
                describe_test_set(params),
            )
        )
    return results


def with_earlier_times(results: list[Result], earlier_csv: Path) -> list[Result]:
    """Fills in the training time of runs whose train stage DVC restored from its run-cache
    (same code, data and params as an earlier run, so no training and no time in the log)
    from an earlier CSV of this script, where it has that run's time."""
    if not earlier_csv.is_file():
        return results
    earlier = {
        (r.run.model, r.run.budget, r.run.seed): r.train_seconds
        for r in read_csv(earlier_csv, test_set="")
        if r.train_seconds is not None
    }
    filled = []
    for result in results:
        key = (result.run.model, result.run.budget, result.run.seed)
        if result.train_seconds is None and key in earlier:
            result = dataclasses.replace(result, train_seconds=earlier[key], time_source=f"earlier run ({earlier_csv})")
        filled.append(result)
    return filled
