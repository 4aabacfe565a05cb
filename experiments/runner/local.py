"""A grid on this machine: DVC's own experiment queue, `dvc exp run --queue` and `dvc queue start --jobs N`.

DVC runs each queued experiment in its own temporary copy of the repository
(.dvc/tmp/exps), so jobs never share a workspace; each gets its share of the cores through
MOVINGLINE_THREADS unless the user set it. Experiments already queued by someone else stop
the grid before anything is queued, since `dvc queue start` would run them too.
"""

import logging
import os
import time

from experiments.runner.grid import Combination
from experiments.runner.repo import dvc, experiments
from movingline.errors import InputError
from movingline.settings import THREADS_VARIABLE, thread_share

log = logging.getLogger("runner")

QUEUED_STATES = {"queued", "running"}
# `dvc exp show` can fail while a queue worker removes a finished run's temporary copy
# ("directory '.dvc/tmp/exps/tmp.../.dvc' does not exist"); the next poll no longer sees it.
POLL_RETRIES = 5


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


def still_to_run(grid: list[Combination], existing: dict[str, dict], fresh: bool) -> list[Combination]:
    """The combinations not done or queued yet. Removes the grid's failed (or, with ``fresh``,
    all its) experiments from ``existing`` (`experiments()` of the baseline)."""
    names = {combination.name for combination in grid}
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
    return [combination for combination in grid if combination.name not in keep]


def start(grid: list[Combination], baseline: str, jobs: int, fresh: bool) -> None:
    """Queues the combinations still to run and starts ``jobs`` queue workers."""
    names = {combination.name for combination in grid}
    foreign = queued_elsewhere(dvc("queue", "status").stdout, names)
    if foreign:
        raise InputError(
            f"dvc queue: {len(foreign)} experiment(s) not from this grid are queued ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); `dvc queue start` would run them too: "
            "run them first, or remove them with `dvc exp remove --queue`"
        )
    todo = still_to_run(grid, experiments(baseline), fresh)
    for index, combination in enumerate(todo, 1):
        dvc("exp", "run", "--queue", "--name", combination.name, *combination.set_params())
        log.info("queued %s (%d/%d): %s", combination.name, index, len(todo), combination.describe())
    if not todo:
        return
    # Jobs contending for every core run slower than jobs that share them (docs/scaling.md).
    env = dict(os.environ)
    env.setdefault(THREADS_VARIABLE, str(thread_share(jobs)))
    log.info("queue workers train with %s=%s", THREADS_VARIABLE, env[THREADS_VARIABLE])
    dvc("queue", "start", "--jobs", str(jobs), env=env, detached=True)
    log.info("started %d queue worker(s); follow one run with `dvc queue logs -f NAME`", jobs)


def wait(grid: list[Combination], baseline: str, poll_seconds: float) -> dict[str, dict]:
    """Polls `dvc exp show` until none of ``grid`` is queued or running; returns what it shows."""
    names = {combination.name for combination in grid}
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
