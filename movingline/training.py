"""The training step and loop, the same under one process and under N workers.

Every step takes one global batch of ``train.batch_size`` consecutive sequences. Under a
``tf.distribute`` strategy of N replicas (one per worker here) replica r reads only its own
rows of that batch (``replica_rows``), computes the binary cross-entropy of each of its
sequences, and divides their sum by the size of the whole global batch
(``tf.nn.compute_average_loss``). The optimiser sums the replicas' gradients (an
all-reduce) before Adam updates the weights on every replica alike, so N workers take the
same steps as one process, up to the order in which floats are summed.

Keras 3's ``model.fit`` cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585),
hence this loop; one process uses it too, under TensorFlow's default strategy.
"""

import contextlib
import csv
import logging
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movingline.batching import batch_bounds
from movingline.checkpoints import CurveRow, save_checkpoint
from movingline.dataset import DatasetReader
from movingline.errors import ClusterError
from movingline.labels import THRESHOLD
from movingline.model import build_model
from movingline.params import ModelParams, TrainParams
from movingline.resume import Checkpointing, Interruptions, snapshot, starting_state, variables
from movingline.runtime import keras, make_deterministic, tf
from movingline.validation import Validation, make_validation_step, record, validation_due

log = logging.getLogger(__name__)

# What a collective op raises when a peer dies or stops answering.
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
    tf.errors.InternalError,
)


def replica_rows(start: int, stop: int, replica: int, n_replicas: int) -> tuple[int, int]:
    """The rows of the global batch [start, stop) that replica ``replica`` of ``n_replicas`` reads.

    Contiguous, in replica order, covering the batch exactly once, and within one row of
    each other in size: with 32 rows and 3 replicas, 10, 11 and 11. A batch shorter than
    the number of replicas leaves some replicas no rows; they still take part in the step
    (their gradient is zero), because every replica must join every all-reduce.
    """
    size = stop - start
    return start + replica * size // n_replicas, start + (replica + 1) * size // n_replicas


@dataclass
class TrainingRun:
    """What the loop returns: the model, one curve row per step, and how fast it went."""

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


def make_train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy, size: int
):
    """The compiled step: (this replica's frames and labels, global batch size, stop vote) ->
    global loss, accuracy, and the sum of the workers' votes to stop after this step."""

    def replica_step(frames: tf.Tensor, labels: tf.Tensor, global_size: tf.Tensor, stop: tf.Tensor):
        with tf.GradientTape() as tape:
            probabilities = model(frames, training=True)
            # Keras's binary cross-entropy, one value per sequence (the same clipping as compile's loss).
            per_sequence = keras.losses.binary_crossentropy(labels[:, None], probabilities)
            loss = tf.nn.compute_average_loss(per_sequence, global_batch_size=global_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        # Keras's optimiser sums the gradients over the replicas before it updates the weights.
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        correct = tf.cast(tf.equal(tf.cast(probabilities[:, 0] >= THRESHOLD, tf.float32), labels), tf.float32)
        return loss, tf.reduce_sum(correct), stop

    # The number of timesteps is fixed at the frame size here, so the step is traced once.
    @tf.function(
        input_signature=[
            tf.TensorSpec((None, size, size, size, 1), tf.uint8),
            tf.TensorSpec((None,), tf.float32),
            tf.TensorSpec((), tf.int64),
            tf.TensorSpec((), tf.float32),
        ]
    )
    def train_step(frames, labels, global_size, stop):
        loss, correct, votes = strategy.run(replica_step, args=(frames, labels, global_size, stop))
        total_loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        total_correct = strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)
        # A worker asked to stop says so in the step's own all-reduce, so that every worker
        # stops after the same step, and none waits for a peer that has left.
        total_votes = strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)
        return total_loss, total_correct / tf.cast(global_size, tf.float32), total_votes

    return train_step


def _read_local(reader: DatasetReader, bounds: tuple[int, int], replica: int, n_replicas: int) -> tuple:
    """This replica's rows of the global batch ``bounds``: frames, float labels, global batch size."""
    start, stop = replica_rows(*bounds, replica, n_replicas)
    labels = reader.read_labels(start, stop).astype(np.float32)
    return reader.read_frames(start, stop), labels, bounds[1] - bounds[0]


def _local_batches(reader: DatasetReader, batches: list[tuple[int, int]], replica: int, n_replicas: int) -> Iterator[tuple]:
    """This replica's rows of each global batch, read one batch ahead on a thread (two batches in memory at most)."""
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_read_local, reader, batches[0], replica, n_replicas)
        for index in range(len(batches)):
            batch = pending.result()
            if index + 1 < len(batches):
                pending = pool.submit(_read_local, reader, batches[index + 1], replica, n_replicas)
            yield batch


def train(
    reader: DatasetReader,
    model_params: ModelParams,
    params: TrainParams,
    strategy: tf.distribute.Strategy | None = None,
    *,
    replica: int = 0,
    progress: int = 0,
    checkpointing: Checkpointing | None = None,
) -> TrainingRun:
    """Builds the model and trains it for ``params.epochs`` epochs under ``strategy`` (default: one process).

    ``replica`` is this process's rank among the strategy's replicas (0 in one process); it
    chooses the rows read. ``progress`` is Keras's verbosity: 0 silent, 1 a live bar, 2 a line per epoch.
    With ``checkpointing`` it continues from a checkpoint of the same run, saves one every
    ``interval_s`` seconds and when interrupted (SIGINT, SIGTERM), and stops early at
    ``params.patience`` validations without improvement. With validation on
    (``params.validation_sequences``), the model returned holds the best validation loss's weights.
    """
    strategy = strategy or tf.distribute.get_strategy()
    n_replicas = strategy.num_replicas_in_sync
    n_workers = getattr(strategy.extended, "_num_workers", 1)
    if n_replicas != n_workers:
        # Each process feeds one replica; several GPUs in one host take one worker each.
        raise ValueError(
            f"{n_replicas} replicas on {n_workers} worker(s): run one worker per GPU "
            "(set CUDA_VISIBLE_DEVICES per worker)"
        )
    if not params.validating and (params.validate_every or params.patience):
        log.info("train: train.validate_every and train.patience have no effect: train.validation_sequences is 0")
    make_deterministic(params.seed)
    size = reader.info.size
    with strategy.scope():
        model = build_model(size, model_params)
        optimizer = keras.optimizers.Adam(learning_rate=params.learning_rate)
        optimizer.build(model.trainable_variables)
    weights, slots = variables(model, optimizer)
    state = starting_state(checkpointing, strategy, weights, slots, replica)
    resumed_at = state.step
    n_train = len(reader) - params.validation_sequences
    schedule = [(epoch, bounds) for epoch in range(1, params.epochs + 1) for bounds in batch_bounds(n_train, params.batch_size)]
    epoch_ends = {index for index, (epoch, _) in enumerate(schedule) if index + 1 == len(schedule) or schedule[index + 1][0] != epoch}
    validation = Validation(lambda bounds: _read_local(reader, bounds, replica, n_replicas),
                            make_validation_step(model, strategy, size), n_train, params.validation_sequences, params.batch_size)
    train_step = make_train_step(model, optimizer, strategy, size)
    display = _Progress(progress, params.epochs, -(-n_train // params.batch_size))
    step_ends: list[float] = []
    previous_seconds = state.seconds
    start = time.perf_counter()
    last_save = time.monotonic()

    def save() -> None:
        state.weights, state.optimizer = snapshot(weights), snapshot(slots)
        state.seconds = previous_seconds + time.perf_counter() - start
        began = time.perf_counter()
        save_checkpoint(checkpointing.path, state, checkpointing.fingerprint)
        log.debug("train: checkpoint at step %d saved in %.3f s", state.step, time.perf_counter() - began)

    batches = _local_batches(reader, [bounds for _, bounds in schedule[resumed_at:]], replica, n_replicas)
    with Interruptions() as interruptions:
        for index in range(resumed_at, len(schedule)):
            epoch = schedule[index][0]
            if index == resumed_at or schedule[index - 1][0] != epoch:
                display.start_epoch(epoch)
            frames, labels, global_size = next(batches)
            vote = np.float32(interruptions.signum is not None)
            with _peers_lost_as_cluster_error(replica, n_replicas, index + 1):
                loss, accuracy, votes = train_step(frames, labels, np.int64(global_size), vote)
                row = CurveRow(index + 1, epoch, float(loss), float(accuracy))
                if params.validating and validation_due(index + 1, index in epoch_ends, index + 1 == len(schedule), params.validate_every):
                    row.val_loss, row.val_accuracy = validation.score()
                    if record(state, row):
                        # Only the chief writes the model; the others keep no copy of the best weights.
                        state.best_weights = snapshot(weights) if replica == 0 else None
            state.curve.append(row)
            state.step = index + 1
            step_ends.append(time.perf_counter())
            display.show(index, row)
            stopping = float(votes) > 0 or (interruptions.signum is not None and n_replicas == 1)
            if checkpointing is not None and checkpointing.writer and (
                stopping or time.monotonic() - last_save >= checkpointing.interval_s
            ):
                save()
                last_save = time.monotonic()
            if stopping:
                if checkpointing is not None and checkpointing.writer:
                    log.info("train: saved a checkpoint at step %d to %s; run again to resume", state.step, checkpointing.path)
                raise interruptions.exception(interruptions.signum if interruptions.signum is not None else signal.SIGTERM)
            if params.patience and state.since_best >= params.patience:
                log.info("train: stopping early at step %d: %d validations without a lower loss than step %d's",
                         state.step, state.since_best, state.best_step)
                break
    seconds = time.perf_counter() - start
    last_weights = None
    if state.best_weights is not None:
        last_weights = snapshot(weights)
        model.set_weights(state.best_weights)
        log.info("train: keeping the weights of step %d, the lowest validation loss (%.6f)", state.best_step, state.best_loss)
    sequences = sum(stop - begin for _, (begin, stop) in schedule[resumed_at : state.step])
    return TrainingRun(
        model, state.curve, seconds, sequences, step_ends, resumed_at, previous_seconds, state.best_step, last_weights
    )


@contextlib.contextmanager
def _peers_lost_as_cluster_error(replica: int, n_replicas: int, step: int) -> Iterator[None]:
    """Turns the error a collective op raises when a peer is gone into one ClusterError line."""
    try:
        yield
    except PEER_ERRORS as error:
        if n_replicas == 1:
            raise
        raise ClusterError(
            f"worker {replica} of {n_replicas} lost contact with another worker at step {step} "
            f"(it stopped, or the network failed; TensorFlow raised {type(error).__name__}); "
            "no model was written"
        ) from None


class _Progress:
    """Keras's progress display: 'Epoch N/M', then a bar (verbosity 1) or a line per epoch (2); 0 shows nothing."""

    def __init__(self, verbosity: int, epochs: int, steps_per_epoch: int):
        self.verbosity, self.epochs, self.steps_per_epoch = verbosity, epochs, steps_per_epoch
        self.bar = None

    def start_epoch(self, epoch: int) -> None:
        if self.verbosity:
            print(f"Epoch {epoch}/{self.epochs}", flush=True)
            self.bar = keras.utils.Progbar(self.steps_per_epoch, verbose=self.verbosity)
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
