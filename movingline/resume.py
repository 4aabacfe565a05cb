"""Where a training run starts and how it stops: resuming from a checkpoint, on every worker.

The chief reads the checkpoint (movingline/checkpoints.py) and, under N workers, hands its
every bit to the others through one all-reduce, so that all continue from the same state
with no copy of the file on their machines. A signal (SIGINT, SIGTERM) is noted rather than
obeyed at once, so that the loop stops between steps, after the same step on every worker,
and the chief can save first.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from movingline import runtime
from movingline.checkpoints import load_checkpoint
from movingline.errors import Terminated
from movingline.state import TrainingState
from movingline.settings import Worker

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often the training loop saves its state (the chief saves; the other
    workers restore what the chief broadcasts)."""

    path: Path
    fingerprint: dict[str, str]
    interval_s: float


class Interruptions:
    """Notes SIGINT and SIGTERM instead of stopping at once, so that the loop stops between steps.

    A second signal stops at once, without a checkpoint.
    """

    def __init__(self):
        self.signum: int | None = None

    def __enter__(self) -> "Interruptions":
        # Only the main thread may set handlers; elsewhere signals keep their usual effect.
        if threading.current_thread() is not threading.main_thread():
            self._previous = {}
            return self
        self._previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in self._previous:
            signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise self.exception(signum)
        self.signum = signum
        log.info("train: %s received; stopping after this step (again to stop at once)", signal.Signals(signum).name)

    @staticmethod
    def exception(signum: int | None) -> BaseException:
        """What the stage's runner turns into the usual exit status (130 or 143)."""
        return KeyboardInterrupt() if signum in (None, signal.SIGINT) else Terminated(signum)


def variables(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> tuple[list, list]:
    return list(model.weights), list(optimizer.variables)


def snapshot(variables: list) -> list[np.ndarray]:
    return [np.array(variable.numpy()) for variable in variables]


def restore(variables: list, values: list[np.ndarray]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def fits(variables: list, values: list[np.ndarray]) -> bool:
    return len(variables) == len(values) and all(
        tuple(v.shape) == w.shape and np.dtype(v.dtype) == w.dtype for v, w in zip(variables, values)
    )


def broadcast_from_chief(strategy: tf.distribute.Strategy, local: np.ndarray) -> np.ndarray:
    """The chief's ``local`` int32 vector on every worker: the others contribute zeros to one
    all-reduce, and integer sums with zero are exact, so every bit arrives as it was."""
    tf = runtime.tf
    value = strategy.experimental_distribute_values_from_function(lambda context: tf.constant(local))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy()


def share_state(
    strategy: tf.distribute.Strategy, state: TrainingState | None, variables: list, n_weights: int, chief: bool
) -> TrainingState | None:
    """Under N workers, what the chief restored, given to every worker (without the curve and
    the best weights, which only the chief writes)."""
    best = np.array([math.nan if state is None or state.best_loss is None else state.best_loss], np.float64)
    numbers = (1, state.step, state.since_best, state.best_step or 0) if state is not None else (0, 0, 0, 0)
    header = np.array(numbers, np.int64)
    values = state.weights + state.optimizer if state is not None else [np.zeros(v.shape, np.dtype(v.dtype)) for v in variables]
    parts = [header.view(np.int32), best.view(np.int32)] + [np.ascontiguousarray(v).view(np.int32).ravel() for v in values]
    local = np.concatenate(parts) if chief else np.zeros(sum(len(p) for p in parts), np.int32)
    shared = broadcast_from_chief(strategy, local)
    if not shared[:2].view(np.int64)[0]:
        return None
    if chief:
        return state
    step, since_best, best_step = (int(x) for x in shared[2:8].view(np.int64))
    best_loss = float(shared[8:10].view(np.float64)[0])
    offset, restored = 10, []
    for variable in variables:
        dtype, shape = np.dtype(variable.dtype), tuple(variable.shape)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // 4
        restored.append(shared[offset : offset + n].view(dtype).reshape(shape).copy())
        offset += n
    best_loss = None if math.isnan(best_loss) else best_loss
    return TrainingState(step, restored[:n_weights], restored[n_weights:], [], best_loss=best_loss,
                         best_step=best_step or None, since_best=since_best)


def starting_state(
    checkpointing: Checkpointing | None, strategy: tf.distribute.Strategy, weights: list, slots: list, worker: Worker
) -> TrainingState:
    """The state training starts from, restored into the model and optimiser: the checkpoint's
    (read by the chief, broadcast to the other workers), or step 0."""
    state = restored_state(checkpointing, weights, slots, worker.is_chief)
    if worker.count > 1:
        state = share_state(strategy, state, weights + slots, len(weights), worker.is_chief)
    if state is None:
        return TrainingState(0, [], [])
    restore(weights + slots, state.weights + state.optimizer)
    if worker.is_chief:
        log.info("train: resuming from the checkpoint %s at step %d", checkpointing.path, state.step)
    return state


def restored_state(checkpointing: Checkpointing | None, weights: list, slots: list, chief: bool) -> TrainingState | None:
    """The checkpoint this run can continue from, read by the chief; None to start afresh."""
    if checkpointing is None or not chief:
        return None
    state = load_checkpoint(checkpointing.path, checkpointing.fingerprint)
    if state is None:
        return None
    if not (fits(weights, state.weights) and fits(slots, state.optimizer)):
        log.info("train: ignoring the checkpoint %s: its variables do not fit this model", checkpointing.path)
        return None
    if state.best_weights is not None and not fits(weights, state.best_weights):
        log.info("train: ignoring the checkpoint %s: its best weights do not fit this model", checkpointing.path)
        return None
    return state
