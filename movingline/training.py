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
import math
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movingline.batching import batch_bounds
from movingline.checkpoints import CurveRow, TrainingState, load_checkpoint, save_checkpoint
from movingline.dataset import DatasetReader
from movingline.errors import ClusterError, Terminated
from movingline.labels import THRESHOLD
from movingline.model import build_model
from movingline.params import ModelParams, TrainParams
from movingline import runtime
from movingline.runtime import keras, make_deterministic, tf

log = logging.getLogger("train")

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


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often the training loop saves its state, and whether this process writes it."""

    path: Path
    fingerprint: dict[str, str]
    interval_s: float
    writer: bool  # the chief; other workers restore what the chief broadcasts


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


def make_validation_step(model: keras.Model, strategy: tf.distribute.Strategy, size: int):
    """The compiled validation batch: this replica's frames and labels -> the global sums of loss and correct."""

    def replica_step(frames: tf.Tensor, labels: tf.Tensor):
        probabilities = model(frames, training=False)
        per_sequence = keras.losses.binary_crossentropy(labels[:, None], probabilities)
        correct = tf.cast(tf.equal(tf.cast(probabilities[:, 0] >= THRESHOLD, tf.float32), labels), tf.float32)
        return tf.reduce_sum(per_sequence), tf.reduce_sum(correct)

    @tf.function(
        input_signature=[tf.TensorSpec((None, size, size, size, 1), tf.uint8), tf.TensorSpec((None,), tf.float32)]
    )
    def validation_step(frames, labels):
        loss, correct = strategy.run(replica_step, args=(frames, labels))
        return (
            strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None),
        )

    return validation_step


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


def validation_due(step: int, epoch_end: bool, last: bool, validate_every: int) -> bool:
    """Whether to validate after global step ``step``: every ``validate_every`` steps, or at each
    epoch's end when it is 0, and always after the last step, so the final weights are a candidate."""
    return last or (step % validate_every == 0 if validate_every else epoch_end)


class _Interruptions:
    """Notes SIGINT and SIGTERM instead of stopping at once, so that the loop stops between steps.

    A second signal stops at once, without a checkpoint.
    """

    def __init__(self):
        self.signum: int | None = None

    def __enter__(self) -> "_Interruptions":
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


def _variables(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> tuple[list, list]:
    return list(model.weights), list(optimizer.variables)


def _snapshot(variables: list) -> list[np.ndarray]:
    return [np.array(variable.numpy()) for variable in variables]


def _restore(variables: list, values: list[np.ndarray]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def _fits(variables: list, values: list[np.ndarray]) -> bool:
    return len(variables) == len(values) and all(
        tuple(v.shape) == w.shape and np.dtype(v.dtype) == w.dtype for v, w in zip(variables, values)
    )


def _broadcast_from_chief(strategy: tf.distribute.Strategy, local: np.ndarray) -> np.ndarray:
    """The chief's ``local`` int32 vector on every worker: the others contribute zeros to one
    all-reduce, and integer sums with zero are exact, so every bit arrives as it was."""
    value = strategy.experimental_distribute_values_from_function(lambda context: tf.constant(local))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy()


def _share_state(
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
    shared = _broadcast_from_chief(strategy, local)
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
    weights, slots = _variables(model, optimizer)
    state = _starting_state(checkpointing, strategy, weights, slots, replica)
    resumed_at = state.step
    n_train = len(reader) - params.validation_sequences
    schedule = [(epoch, bounds) for epoch in range(1, params.epochs + 1) for bounds in batch_bounds(n_train, params.batch_size)]
    epoch_ends = {index for index, (epoch, _) in enumerate(schedule) if index + 1 == len(schedule) or schedule[index + 1][0] != epoch}
    validation = _Validation(reader, make_validation_step(model, strategy, size), n_train, params, replica, n_replicas)
    train_step = make_train_step(model, optimizer, strategy, size)
    display = _Progress(progress, params.epochs, -(-n_train // params.batch_size))
    step_ends: list[float] = []
    previous_seconds = state.seconds
    start = time.perf_counter()
    last_save = time.monotonic()

    def save() -> None:
        state.weights, state.optimizer = _snapshot(weights), _snapshot(slots)
        state.seconds = previous_seconds + time.perf_counter() - start
        began = time.perf_counter()
        save_checkpoint(checkpointing.path, state, checkpointing.fingerprint)
        log.debug("train: checkpoint at step %d saved in %.3f s", state.step, time.perf_counter() - began)

    batches = _local_batches(reader, [bounds for _, bounds in schedule[resumed_at:]], replica, n_replicas)
    with _Interruptions() as interruptions:
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
                    validation.update(state, row, weights, replica == 0)
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
        last_weights = _snapshot(weights)
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


def _starting_state(
    checkpointing: Checkpointing | None, strategy: tf.distribute.Strategy, weights: list, slots: list, replica: int
) -> TrainingState:
    """The state training starts from, restored into the model and optimiser: the checkpoint's
    (read by the chief, broadcast to the other workers), or step 0."""
    state = _restored_state(checkpointing, weights, slots, replica == 0)
    if strategy.num_replicas_in_sync > 1:
        state = _share_state(strategy, state, weights + slots, len(weights), replica == 0)
    if state is None:
        return TrainingState(0, [], [], [])
    _restore(weights + slots, state.weights + state.optimizer)
    if replica == 0:
        log.info("train: resuming from the checkpoint %s at step %d", checkpointing.path, state.step)
    return state


def _restored_state(checkpointing: Checkpointing | None, weights: list, slots: list, chief: bool) -> TrainingState | None:
    """The checkpoint this run can continue from, read by the chief; None to start afresh."""
    if checkpointing is None or not chief:
        return None
    state = load_checkpoint(checkpointing.path, checkpointing.fingerprint)
    if state is None:
        return None
    if not (_fits(weights, state.weights) and _fits(slots, state.optimizer)):
        log.info("train: ignoring the checkpoint %s: its variables do not fit this model", checkpointing.path)
        return None
    if state.best_weights is not None and not _fits(weights, state.best_weights):
        log.info("train: ignoring the checkpoint %s: its best weights do not fit this model", checkpointing.path)
        return None
    return state


class _Validation:
    """Scores the held-out sequences, and keeps the best weights seen."""

    def __init__(self, reader: DatasetReader, step, start: int, params: TrainParams, replica: int, n_replicas: int):
        self.reader, self.step, self.start, self.params = reader, step, start, params
        self.replica, self.n_replicas = replica, n_replicas

    def score(self) -> tuple[float, float]:
        """Mean binary cross-entropy and accuracy over the validation sequences, at the current weights."""
        loss_sum, correct = 0.0, 0.0
        for start, stop in batch_bounds(len(self.reader) - self.start, self.params.batch_size):
            frames, labels, _ = _read_local(self.reader, (self.start + start, self.start + stop), self.replica, self.n_replicas)
            batch_loss, batch_correct = self.step(frames, labels)
            loss_sum += float(batch_loss)
            correct += float(batch_correct)
        n = self.params.validation_sequences
        return loss_sum / n, correct / n

    @staticmethod
    def update(state: TrainingState, row: CurveRow, weights: list, keep: bool) -> None:
        """Counts a validation without improvement, or records a new best (its weights only where ``keep``)."""
        if state.best_loss is None or row.val_loss < state.best_loss:
            state.best_loss, state.best_step, state.since_best = row.val_loss, row.step, 0
            state.best_weights = _snapshot(weights) if keep else None
        else:
            state.since_best += 1


def describe_devices(strategy: tf.distribute.Strategy) -> str:
    """E.g. '2 workers (2 replicas in all), devices here: /CPU:0 (oneDNN, AVX2 kernels, 1 thread)',
    for the log line that says where training runs and which kernels computed it."""
    n_workers = getattr(strategy.extended, "_num_workers", 1)
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    n_threads = runtime.threads()
    cpu = f"/CPU:0 ({runtime.kernel_path()}, {n_threads} thread{'s' if n_threads != 1 else ''})"
    devices = ", ".join([*gpus, cpu])
    workers = f"{n_workers} worker{'s' if n_workers != 1 else ''}"
    replicas = f"{strategy.num_replicas_in_sync} replica{'s' if strategy.num_replicas_in_sync != 1 else ''}"
    return f"{workers} ({replicas} in all), devices here: {devices}"


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
