"""Training: a short loop over a Session, and the stage's outputs of it.

The session (session.py) holds the run's state and makes its moves; the loop only orders
them, shows progress and stops between steps when asked: a signal (SIGINT, SIGTERM) is
noted (``Interruptions``), and the run stops after the step, once the chief has saved a
checkpoint (checkpoint.py). Under N workers the signal is put to a vote in the next step's
all-reduce, so that all stop after the same step; the team (team.py) says which.

Keras 3's ``model.fit`` cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585),
hence this loop; one process uses it too, under TensorFlow's default strategy.
"""

from __future__ import annotations

import csv
import logging
import signal
import threading
from pathlib import Path

import numpy as np

from movingline import runtime
from movingline.data.dataset import DatasetReader
from movingline.environment import training_record
from movingline.errors import Terminated
from movingline.model import save_model
from movingline.outputs import write_json
from movingline.params import ModelParams, TrainParams
from movingline.training.checkpoint import Checkpoint
from movingline.training.session import Session, TrainingRun
from movingline.training.state import CurveRow
from movingline.training.team import Alone, Team

log = logging.getLogger(__name__)


def train(
    reader: DatasetReader,
    model_params: ModelParams,
    params: TrainParams,
    *,
    team: Team | None = None,
    progress: int = 0,
    checkpoint: Checkpoint | None = None,
) -> TrainingRun:
    """Builds the model and trains it for ``params.epochs`` epochs.

    ``team`` is the processes it trains in (default: this one, ``Alone``). ``progress`` is
    Keras's verbosity: 0 silent, 1 a live bar, 2 a line per epoch. With ``checkpoint`` it
    continues from a checkpoint of the same run, and the chief saves one when due and when
    interrupted. It stops early at ``params.patience`` validations without improvement; with
    validation on (``params.validation_sequences``), the model returned holds the best
    validation loss's weights.
    """
    team = team if team is not None else Alone()
    session = Session(reader, model_params, params, team, checkpoint)
    display = _Progress(progress, params.epochs, session.steps_per_epoch)
    with Interruptions() as interruptions:
        for index, epoch, batch in session.batches():
            if session.starts_epoch(index):
                display.start_epoch(epoch)
            # A signal noted before this step is this worker's vote to stop after it.
            vote = interruptions.signum is not None
            with team.guard(index + 1):
                row = session.step(index, epoch, batch, stop_vote=vote)
                session.validate_if_due(row)
            session.record(row)
            display.show(index, row)
            stopping = team.stopping(signalled=interruptions.signum is not None, voted=session.stop_voted)
            session.save_if_due(stopping)
            if stopping:
                raise interruptions.exception(interruptions.signum if interruptions.signum is not None else signal.SIGTERM)
            if session.out_of_patience():
                break
    return session.finish()


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


def log_summary(run: TrainingRun) -> None:
    """The stage's lines on how long training took, with the interrupted runs it continued."""
    steps = len(run.step_ends)  # this run's; a resumed run took the others before
    log.info("trained %d steps in %.1f s (%.1f sequences/s)", steps, run.seconds, run.sequences_per_second)
    if run.resumed_at:
        log.info("train: %d steps in all, %.1f s of training with the interrupted runs", run.resumed_at + steps,
                 run.seconds + run.earlier_seconds)


class _Progress:
    """Keras's progress display: 'Epoch N/M', then a bar (verbosity 1) or a line per epoch (2); 0 shows nothing."""

    def __init__(self, verbosity: int, epochs: int, steps_per_epoch: int):
        self.verbosity, self.epochs, self.steps_per_epoch = verbosity, epochs, steps_per_epoch
        self.bar = None

    def start_epoch(self, epoch: int) -> None:
        if self.verbosity:
            print(f"Epoch {epoch}/{self.epochs}", flush=True)
            self.bar = runtime.keras.utils.Progbar(self.steps_per_epoch, verbose=self.verbosity)
            self.sums, self.shown = np.zeros(2), 0

    def show(self, index: int, row: CurveRow) -> None:
        """After step ``index`` (from 0, over all epochs): the mean over the epoch so far, as fit shows it."""
        if self.bar is None:
            return
        self.sums += (row.loss, row.accuracy)
        self.shown += 1
        self.bar.update(index % self.steps_per_epoch + 1, list(zip(("loss", "accuracy"), self.sums / self.shown)))


def write_curve(curve: list[CurveRow], path: Path) -> None:
    """The per-step curve as CSV: step, epoch, that step's own loss and accuracy on its global batch,
    and the validation loss and accuracy after it, empty where not measured (all of them
    without validation), so that one chart definition draws every run."""

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.6f}"

    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"])
        for r in curve:
            writer.writerow([r.step, r.epoch, f"{r.loss:.6f}", f"{r.accuracy:.6f}", number(r.val_loss), number(r.val_accuracy)])


def write_outputs(run: TrainingRun, environment: dict, model_path: Path, curve_path: Path, record_path: Path) -> None:
    """The chief's outputs: the model, its curve (CSV, 6 decimals) and its record (training.json)."""
    save_model(run.model, model_path)
    write_curve(run.curve, curve_path)
    write_json(training_record(environment, run.curve), record_path)
