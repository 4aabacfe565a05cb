"""The learning curve's runs through DVC's experiment queue: queue them, wait for them, collect them.

Everything here talks to git or DVC (`dvc exp run --queue`, `dvc queue start`, `dvc exp show`,
`dvc queue logs`); the tables and the picture are report.py's.
"""

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from experiments.learning_curve.grid import Result, Run
from experiments.learning_curve.report import read_csv
from experiments.sweep.repo import log_path
from movingline.errors import InputError
from movingline.params import ModelParams
from movingline.settings import THREADS_VARIABLE, thread_share

log = logging.getLogger("learning_curve")

# The train stage's last line, e.g. "trained 157 steps in 14.2 s (352 sequences/s)".
TRAINED_LINE = re.compile(r"trained (\d+) steps in ([0-9.]+) s\b")
# Without it, Keras's per-epoch line at verbose=2, e.g. "157/157 - 15s - 95ms/step - ...":
# whole seconds only.
KERAS_EPOCH_LINE = re.compile(r"^\s*\d+/\d+ - (\d+)s - ", re.MULTILINE)

QUEUED_STATES = {"queued", "running"}
# `dvc exp show` can fail while a queue worker removes a finished run's temporary copy
# ("directory '.dvc/tmp/exps/tmp.../.dvc' does not exist"); the next poll no longer sees it.
POLL_RETRIES = 5


def training_seconds(log_text: str) -> tuple[float | None, str]:
    """A run's training time from its queue log, and where it came from."""
    trained = TRAINED_LINE.findall(log_text)
    if trained:
        return float(trained[-1][1]), "train stage"
    epochs = KERAS_EPOCH_LINE.findall(log_text)
    if epochs:
        return float(sum(int(seconds) for seconds in epochs)), "keras epoch lines (whole s)"
    return None, "none (train restored from the run-cache?)"


def command(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise InputError(f"`{' '.join(args)}` failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    # The dvc beside this interpreter: the project's environment, whatever PATH says.
    return command([str(Path(sys.executable).parent / "dvc"), *args], check=check)


def experiments(baseline: str) -> dict[str, dict]:
    """Experiments based on ``baseline`` by name: state, params and metrics (as `dvc exp show --json`)."""
    found = {}
    for entry in json.loads(dvc("exp", "show", "--json", "--no-fetch").stdout):
        if entry.get("rev") != baseline:
            continue
        for experiment in entry.get("experiments") or []:
            data = experiment["revs"][0].get("data") or {}
            found[experiment["name"]] = {
                "state": (experiment.get("executor") or {}).get("state") or "success",
                "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {},
                "metrics": ((data.get("metrics") or {}).get("metrics.json") or {}).get("data") or {},
            }
    return found


def check_workspace(outputs: list[Path]) -> str:
    """The commit experiments will start from; refuses a workspace with uncommitted changes
    (other than this script's outputs), since queued runs would carry them."""
    if not (Path("dvc.yaml").is_file() and Path("params.yaml").is_file()):
        raise InputError(f"{Path.cwd()}: not the project root (no dvc.yaml and params.yaml here)")
    changed = command(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.splitlines()
    ours = {str(path) for path in outputs}
    changed = [line[3:] for line in changed if line[3:] not in ours]
    if changed:
        raise InputError(
            f"{changed[0]}: uncommitted change; commit or stash it first, so that every experiment "
            "runs the committed code"
        )
    return command(["git", "rev-parse", "HEAD"]).stdout.strip()


def queued_elsewhere(queue_status: str, names: set[str]) -> list[str]:
    """Tasks that `dvc queue status` lists as queued and that are not ``names`` (by name, else task id).

    Its rows read "TASK  NAME  CREATED  STATUS"; any base commit's queued experiments are listed.
    """
    found = []
    for line in queue_status.splitlines():
        words = line.split()
        if len(words) >= 3 and words[-1] == "Queued" and words[1] not in names:
            found.append(words[1] if not words[1][:1].isdigit() else words[0])
    return found


def prepare_queue(runs: list[Run], existing: dict[str, dict], queue_status: str, fresh: bool) -> list[Run]:
    """The runs still to queue. Removes our own failed (or, with ``fresh``, all our) experiments;
    refuses if experiments not ours are queued."""
    names = {run.name for run in runs}
    foreign = queued_elsewhere(queue_status, names)
    if foreign:
        raise InputError(
            f"dvc queue: {len(foreign)} experiment(s) not from this grid are queued ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); `dvc queue start` would run them too: "
            "run them first, or remove them with `dvc exp remove --queue`"
        )
    ours = {name: info for name, info in existing.items() if name in names}
    stale = [name for name, info in ours.items() if fresh or info["state"] not in QUEUED_STATES | {"success"}]
    if any(ours[name]["state"] == "running" for name in stale):
        raise InputError("dvc queue: experiments of this grid are running; wait for them or `dvc queue kill` them")
    if stale:
        log.info("removing %d earlier experiment(s) of this grid", len(stale))
        dvc("exp", "remove", *stale)
    keep = set(ours) - set(stale)
    if keep:
        log.info("reusing %d experiment(s) of this grid already queued or done", len(keep))
    return [run for run in runs if run.name not in keep]


def queue(run: Run, params: dict[str, object]) -> None:
    settings = [argument for key, value in params.items() for argument in ("-S", f"{key}={value}")]
    dvc("exp", "run", "--queue", "--name", run.name, *settings)


def start_queue(jobs: int) -> None:
    # The workers `dvc queue start` leaves running inherit its stdout and stderr: read
    # through pipes, the call would only return once they exit, when the queue is done.
    # Each job gets its share of the cores (MOVINGLINE_THREADS, docs/scaling.md) unless the
    # user set it: jobs contending for every core run slower than jobs that share them.
    env = dict(os.environ)
    env.setdefault(THREADS_VARIABLE, str(thread_share(jobs)))
    log.info("queue workers train with %s=%s", THREADS_VARIABLE, env[THREADS_VARIABLE])
    status = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "queue", "start", "--jobs", str(jobs)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode
    if status != 0:
        raise InputError(f"`dvc queue start --jobs {jobs}` failed (exit {status}); try it by hand to see why")


def wait_for(runs: list[Run], baseline: str, poll_seconds: float) -> dict[str, dict]:
    """Polls `dvc exp show` until none of ``runs`` is queued or running."""
    names = {run.name for run in runs}
    reported, failures = -1, 0
    while True:
        try:
            found = experiments(baseline)
        except InputError as error:
            failures += 1
            if failures > POLL_RETRIES:
                raise
            log.warning("polling the queue failed (%s); trying again in %g s", error, poll_seconds)
            time.sleep(poll_seconds)
            continue
        failures = 0
        pending = [name for name in names if found.get(name, {}).get("state", "queued") in QUEUED_STATES]
        done = len(names) - len(pending)
        if done != reported:
            log.info("%d/%d experiments finished", done, len(names))
            reported = done
        if not pending:
            return found
        time.sleep(poll_seconds)


def run_log(name: str) -> str:
    """A run's output: the queue's log, or for a run on Slurm (--slurm) its sweep task's."""
    queued = dvc("queue", "logs", name, check=False).stdout
    task_log = log_path(Path.cwd(), name)
    return queued or (task_log.read_text(encoding="utf-8") if task_log.is_file() else "")


def describe_test_set(params: dict) -> str:
    """The test set every run is evaluated on, from a run's params (as `dvc exp show` gives them)."""
    size, test = params["data"]["size"], params["generate_test"]
    return f"{test['n_samples']} sequences of {size}x{size} frames, generate_test.seed = {test['seed']}"


def collect(runs: list[Run], found: dict[str, dict]) -> list[Result]:
    failed = [run.name for run in runs if found.get(run.name, {}).get("state") != "success"]
    if failed:
        raise InputError(
            f"{failed[0]}: experiment did not succeed ({len(failed)} of {len(runs)} failed); "
            f"see `dvc queue logs {failed[0]}` (with --slurm: {log_path(Path('.'), failed[0])}), "
            "then rerun this script to retry them"
        )
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
