"""One task of a grid's Slurm job array: one combination, as a DVC experiment of the user's repo.

    python -m experiments.runner.task PLAN      (sbatch runs it; SLURM_ARRAY_TASK_ID picks the combination)

The task works in its own git clone of the user's repository (slurm.workspace), so no two
tasks ever write the same workspace, and nothing in the user's workspace changes. The clone
keeps its own DVC cache while it runs: two tasks that wrote the same object into one cache at
the same time made DVC refuse to relink it ("unable to remove ... without a confirmation").
`dvc exp run` records the experiment in the clone, and `dvc exp push -r SHARED_CACHE` hands
its ref to the user's repository (the clone's `origin`) and copies its outputs into the
user's DVC cache, which a local remote of the clone points at (a DVC 3 local remote has the
cache's layout, and an upload lands whole or not at all). A task whose experiment is already
there does nothing, so rerunning a sweep reruns only what is missing. The clone is removed
once its experiment is pushed.

Signals: SIGUSR1 (sbatch --signal=B:USR1@SECONDS before the time limit) stops the
experiment, whose train stage checkpoints, and requeues the task; SIGTERM (scancel,
preemption) and SIGINT stop it the same way without requeueing. Either way the clone keeps
the checkpoint, and the next run of the task resumes from it.
"""

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.runner.grid import Combination
from experiments.runner.repo import DVC, dvc, exp_ref, git, is_done
from experiments.runner.slurm import log_path, workspace
from movingline.cli import run_stage
from movingline.errors import InputError
from movingline.settings import THREADS_VARIABLE, Settings

log = logging.getLogger("runner")
# The clone's name for the user's DVC cache, as a remote that its experiment is pushed to.
SHARED_CACHE = "sweep-shared-cache"

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# How long the stopped experiment gets to write its checkpoint and exit.
STOP_SECONDS = 60


def read_plan(path: Path, index: int) -> tuple[dict, Combination]:
    plan = json.loads(path.read_text(encoding="utf-8"))
    entries = plan["combinations"]
    if not 0 <= index < len(entries):
        raise InputError(f"{path}: no combination {index} (the plan has {len(entries)})")
    entry = entries[index]
    return plan, Combination(entry["name"], tuple(tuple(pair) for pair in entry["overrides"]))


def prepare_clone(repo: Path, baseline: str, clone: Path, cache: str) -> None:
    """A clone of ``repo`` at ``baseline`` whose remote SHARED_CACHE is ``cache``; an earlier
    attempt's clone is reused (reset to ``baseline``, keeping its ignored files: outputs, its
    cache and the checkpoint)."""
    if (clone / ".git").is_dir():
        git("reset", "-q", "--hard", baseline, cwd=clone)
        log.info("resuming in %s", clone)
    else:
        # Made beside its final place and renamed, so that a half-made clone is never reused.
        partial = clone.with_name(clone.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", "--no-checkout", str(repo), str(partial), cwd=repo)
        git("checkout", "-q", "--detach", baseline, cwd=partial)
        partial.rename(clone)
    dvc("remote", "add", "--local", "--force", SHARED_CACHE, cache, cwd=clone)


def task_env() -> dict[str, str]:
    """The experiment's environment: TensorFlow gets the cores Slurm gave the task (--cpus-per-task)."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env[THREADS_VARIABLE] = os.environ.get("SLURM_CPUS_PER_TASK", env.get(THREADS_VARIABLE, "1"))
    return env


def run_experiment(clone: Path, combination: Combination, log_file: Path) -> tuple[int, int | None]:
    """Runs `dvc exp run` in ``clone``; returns its exit status and the stop signal received, if any."""
    command = [DVC, "exp", "run", "--name", combination.name, *combination.set_params()]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8") as output:
        output.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command[1:])}\n")
        output.flush()
        process = subprocess.Popen(command, cwd=clone, env=task_env(), stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    received: list[int] = []

    def stop(signum: int, frame) -> None:
        # SIGINT, as Ctrl-C would: DVC lets its stage handle it (the train stage checkpoints)
        # and then exits on its own, releasing its locks.
        received.append(signum)
        os.killpg(process.pid, signal.SIGINT)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    status = process.wait()
    wait_for_group(process.pid)
    return status, (received[0] if received else None)


def wait_for_group(group: int) -> None:
    """Waits (at most STOP_SECONDS) until the stage processes DVC started have exited too."""
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)


def requeue() -> None:
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        log.info("requeueing job %s; the next run resumes from the checkpoint", job)
        subprocess.run(["scontrol", "requeue", job], check=False)


def main(settings: Settings) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.runner.task", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="the sweep's plan (JSON, written by python -m experiments.sweep or experiments.learning_curve)")
    parser.add_argument("--index", type=int, help="which combination (default: SLURM_ARRAY_TASK_ID)")
    args = parser.parse_args()
    index = args.index if args.index is not None else int(os.environ.get("SLURM_ARRAY_TASK_ID", "-1"))
    plan, combination = read_plan(args.plan, index)
    repo, baseline = Path(plan["repo"]), plan["baseline"]
    attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0")) + 1
    log.info("task %d: %s [%s], attempt %d", index, combination.name, combination.describe(), attempt)
    if is_done(repo, baseline, combination.name):
        log.info("%s is already in %s; nothing to do", combination.name, repo)
        return
    clone = workspace(repo, baseline, combination.name)
    prepare_clone(repo, baseline, clone, plan["cache"])
    finish(repo, baseline, clone, combination)


def finish(repo: Path, baseline: str, clone: Path, combination: Combination) -> None:
    """Runs the experiment (unless an earlier attempt ran it and was stopped while pushing), then pushes it."""
    name, log_file = combination.name, log_path(repo, combination.name)
    if not is_done(clone, baseline, name):
        status, stopped = run_experiment(clone, combination, log_file)
        if stopped is not None:
            log.info("stopped by %s; the checkpoint stays in %s", signal.Signals(stopped).name, clone)
            if stopped == signal.SIGUSR1:
                requeue()
            sys.exit(128 + stopped)
        if status != 0:
            raise InputError(f"{name}: `dvc exp run` failed (exit {status}); see {log_file}")
    dvc("exp", "push", "--remote", SHARED_CACHE, "origin", name, cwd=clone)
    if not is_done(repo, baseline, name):
        raise RuntimeError(f"{name}: pushed, but {exp_ref(baseline, name)} is not in {repo}")
    shutil.rmtree(clone)
    log.info("%s done: %s", name, exp_ref(baseline, name))


if __name__ == "__main__":
    run_stage(main)
