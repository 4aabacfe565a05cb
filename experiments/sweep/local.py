"""A sweep on this machine: DVC's own experiment queue, `dvc queue start --jobs N`.

DVC runs each queued experiment in its own temporary copy of the repository
(.dvc/tmp/exps), so jobs never share a workspace; each gets its share of the cores through
MOVINGLINE_THREADS. The queueing, waiting and clean-up are the learning curve's (it was the
first sweep here), reused as they are.
"""

import logging

from experiments.learning_curve.dvc_queue import dvc, experiments, prepare_queue, start_queue, wait_for
from experiments.sweep.grid import Combination

log = logging.getLogger("sweep")


def run(grid: list[Combination], baseline: str, jobs: int) -> None:
    """Queues the combinations not done yet (a failed one is queued again) and starts the workers."""
    todo = prepare_queue(grid, experiments(baseline), dvc("queue", "status").stdout, fresh=False)
    for combination in todo:
        dvc("exp", "run", "--queue", "--name", combination.name, *combination.set_params())
        log.info("queued %s [%s]", combination.name, combination.describe())
    if todo:
        start_queue(jobs)


def wait(grid: list[Combination], baseline: str, poll_seconds: float) -> list[str]:
    """Waits for the queue; returns one line per combination that did not succeed."""
    found = wait_for(grid, baseline, poll_seconds)
    return [f"{c.name} [{c.describe()}]: see `dvc queue logs {c.name}`" for c in grid
            if found.get(c.name, {}).get("state") != "success"]

