"""One training run as an object: its state and its moves.

A Session builds the model and optimiser under its team's strategy, starts from a
checkpoint or step 0 (movingline/training/checkpoint.py), and then makes the moves the loop
in movingline/training/loop.py calls in order: the next batch, a step, a validation when
due, a checkpoint when due, and a stop when patience runs out. Its team (team.py) says which
rows of each global batch this process reads: all of them when it trains alone.

Validation scores the last ``train.validation_sequences`` of the training file: every
``train.validate_every`` steps, or at each epoch's end when it is 0, and after the last step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from movingline import runtime
from movingline.data.batching import batch_bounds
from movingline.data.dataset import DatasetReader
from movingline.model import build_model
from movingline.params import ModelParams, TrainParams
from movingline.training.checkpoint import Checkpoint, resume, snapshot
from movingline.training.state import CurveRow
from movingline.training.steps import make_train_step, make_validation_step
from movingline.training.team import Team

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """What a session ends with: the model, one curve row per step, and how fast it went."""

    model: keras.Model
    curve: list[CurveRow]
    seconds: float  # this process's training time
    sequences: int  # sequences trained on in this process
    step_ends: list[float]  # perf_counter() after each step of this process, for steady-state speeds
    resumed_at: int = 0  # steps taken before this process, restored from a checkpoint
    earlier_seconds: float = 0.0  # training time of the runs it continued
    best_step: int | None = None  # the step whose weights the model holds, with validation on
    last_weights: list[np.ndarray] | None = None  # the last step's, where the model holds the best

    @property
    def sequences_per_second(self) -> float:
        """Of this process's training."""
        return self.sequences / self.seconds if self.seconds > 0 else float("nan")


def validation_due(step: int, epoch_end: bool, last: bool, validate_every: int) -> bool:
    """Whether to validate after global step ``step``: every ``validate_every`` steps, or at each
    epoch's end when it is 0, and always after the last step, so the final weights are a candidate."""
    return last or (step % validate_every == 0 if validate_every else epoch_end)


def epoch_schedule(n_train: int, params: TrainParams) -> list[tuple[int, tuple[int, int]]]:
    """(epoch, global batch bounds) of every step of the run, in order."""
    return [(epoch, bounds) for epoch in range(1, params.epochs + 1) for bounds in batch_bounds(n_train, params.batch_size)]


class Session:
    """A training run's state (step, curve, best weights, patience, time) and its moves."""

    def __init__(self, reader: DatasetReader, model_params: ModelParams, params: TrainParams,
                 team: Team, checkpoint: Checkpoint | None):
        if not params.validating and (params.validate_every or params.patience):
            log.info("train: train.validate_every and train.patience have no effect: train.validation_sequences is 0")
        self.reader, self.params, self.team, self.checkpoint = reader, params, team, checkpoint
        runtime.make_deterministic(params.seed)
        size, strategy = reader.info.size, team.strategy
        with strategy.scope():
            self.model = build_model(size, model_params)
            optimizer = runtime.keras.optimizers.Adam(learning_rate=params.learning_rate)
            optimizer.build(self.model.trainable_variables)
        self.weights, self.slots = list(self.model.weights), list(optimizer.variables)
        self.state = resume(checkpoint, team, self.weights, self.slots)
        self.resumed_at, self.earlier_seconds = self.state.step, self.state.seconds
        self.n_train = len(reader) - params.validation_sequences
        self.schedule = epoch_schedule(self.n_train, params)
        self.validation_step = make_validation_step(self.model, strategy, size)
        self.train_step = make_train_step(self.model, optimizer, strategy, size)
        self.step_ends: list[float] = []
        self.stop_voted = False
        self.started = time.perf_counter()

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // self.params.batch_size)

    def starts_epoch(self, index: int) -> bool:
        """Whether step ``index`` (from 0) is the first of an epoch in this process."""
        return index == self.resumed_at or self.schedule[index - 1][0] != self.schedule[index][0]

    def ends_epoch(self, index: int) -> bool:
        return index + 1 == len(self.schedule) or self.schedule[index + 1][0] != self.schedule[index][0]

    def read(self, bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
        """This worker's rows of the global batch ``bounds``: frames, float labels, global batch size."""
        start, stop = self.team.rows(*bounds)
        labels = self.reader.read_labels(start, stop).astype(np.float32)
        return self.reader.read_frames(start, stop), labels, bounds[1] - bounds[0]

    def batches(self) -> Iterator[tuple[int, int, tuple]]:
        """(step index from 0, epoch, this worker's batch) for every step left, each read one step
        ahead on a thread (two batches in memory at most)."""
        left = range(self.resumed_at, len(self.schedule))
        if not left:
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.read, self.schedule[left[0]][1])
            for index in left:
                batch = pending.result()
                if index + 1 < len(self.schedule):
                    pending = pool.submit(self.read, self.schedule[index + 1][1])
                yield index, self.schedule[index][0], batch

    def step(self, index: int, epoch: int, batch: tuple, stop_vote: bool) -> CurveRow:
        """Trains on one global batch; a vote to stop is summed over the workers in the step's all-reduce."""
        frames, labels, global_size = batch
        loss, accuracy, votes = self.train_step(frames, labels, np.int64(global_size), np.float32(stop_vote))
        self.stop_voted = float(votes) > 0
        return CurveRow(index + 1, epoch, float(loss), float(accuracy))

    def validate_if_due(self, row: CurveRow) -> None:
        """Scores the held-out sequences into ``row`` when due, and keeps the best weights (the chief only)."""
        index = row.step - 1
        if not self.params.validating or not validation_due(
            row.step, self.ends_epoch(index), row.step == len(self.schedule), self.params.validate_every
        ):
            return
        row.val_loss, row.val_accuracy = self.validation_scores()
        if self.state.is_new_best(row):
            # Only the chief writes the model; the others keep no copy of the best weights.
            self.state.best_weights = snapshot(self.weights) if self.team.is_chief else None

    def validation_scores(self) -> tuple[float, float]:
        """Mean binary cross-entropy and accuracy over the validation sequences, at the current weights."""
        loss_sum, correct, n = 0.0, 0.0, self.params.validation_sequences
        for start, stop in batch_bounds(n, self.params.batch_size):
            frames, labels, _ = self.read((self.n_train + start, self.n_train + stop))
            batch_loss, batch_correct = self.validation_step(frames, labels)
            loss_sum += float(batch_loss)
            correct += float(batch_correct)
        return loss_sum / n, correct / n

    def record(self, row: CurveRow) -> None:
        self.state.add(row)
        self.step_ends.append(time.perf_counter())

    def save_if_due(self, stopping: bool) -> None:
        """The chief saves a checkpoint when one is due (checkpoint.py says when)."""
        if self.checkpoint is None or not self.team.is_chief or not self.checkpoint.due(stopping):
            return
        self.state.weights, self.state.optimizer = snapshot(self.weights), snapshot(self.slots)
        self.state.seconds = self.earlier_seconds + time.perf_counter() - self.started
        began = time.perf_counter()
        self.checkpoint.save(self.state)
        log.debug("train: checkpoint at step %d saved in %.3f s", self.state.step, time.perf_counter() - began)
        if stopping:
            log.info("train: saved a checkpoint at step %d to %s; run again to resume", self.state.step, self.checkpoint.path)

    def out_of_patience(self) -> bool:
        if not self.state.out_of_patience(self.params.patience):
            return False
        log.info("train: stopping early at step %d: %d validations without a lower loss than step %d's",
                 self.state.step, self.state.since_best, self.state.best_step)
        return True

    def finish(self) -> TrainingRun:
        """The run's result; with validation on, the model holds the best validation loss's weights."""
        seconds = time.perf_counter() - self.started
        state, last_weights = self.state, None
        if state.best_weights is not None:
            last_weights = snapshot(self.weights)
            self.model.set_weights(state.best_weights)
            log.info("train: keeping the weights of step %d, the lowest validation loss (%.6f)", state.best_step, state.best_loss)
        sequences = sum(stop - start for _, (start, stop) in self.schedule[self.resumed_at : state.step])
        return TrainingRun(self.model, state.curve, seconds, sequences, self.step_ends, self.resumed_at,
                           self.earlier_seconds, state.best_step, last_weights)
