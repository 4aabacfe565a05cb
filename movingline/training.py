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

import csv
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movingline.batching import batch_bounds
from movingline.dataset import DatasetReader
from movingline.errors import ClusterError
from movingline.labels import THRESHOLD
from movingline.model import build_model
from movingline.params import ModelParams, TrainParams
from movingline import runtime
from movingline.runtime import keras, make_deterministic, tf

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


@dataclass(frozen=True)
class StepResult:
    step: int
    epoch: int
    loss: float
    accuracy: float


@dataclass
class TrainingRun:
    """What the loop returns: the model, one curve row per step, and how fast it went."""

    model: keras.Model
    curve: list[StepResult]
    seconds: float
    sequences: int
    step_ends: list[float]  # perf_counter() after each step, for steady-state speeds

    @property
    def sequences_per_second(self) -> float:
        return self.sequences / self.seconds if self.seconds > 0 else float("nan")


def make_train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy, size: int
):
    """The compiled step: (this replica's frames and labels, global batch size) -> global loss, accuracy."""

    def replica_step(frames: tf.Tensor, labels: tf.Tensor, global_size: tf.Tensor):
        with tf.GradientTape() as tape:
            probabilities = model(frames, training=True)
            # Keras's binary cross-entropy, one value per sequence (the same clipping as compile's loss).
            per_sequence = keras.losses.binary_crossentropy(labels[:, None], probabilities)
            loss = tf.nn.compute_average_loss(per_sequence, global_batch_size=global_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        # Keras's optimiser sums the gradients over the replicas before it updates the weights.
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        correct = tf.cast(tf.equal(tf.cast(probabilities[:, 0] >= THRESHOLD, tf.float32), labels), tf.float32)
        return loss, tf.reduce_sum(correct)

    # The number of timesteps is fixed at the frame size here, so the step is traced once.
    @tf.function(
        input_signature=[
            tf.TensorSpec((None, size, size, size, 1), tf.uint8),
            tf.TensorSpec((None,), tf.float32),
            tf.TensorSpec((), tf.int64),
        ]
    )
    def train_step(frames, labels, global_size):
        loss, correct = strategy.run(replica_step, args=(frames, labels, global_size))
        total_loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        total_correct = strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)
        return total_loss, total_correct / tf.cast(global_size, tf.float32)

    return train_step


def _local_batches(reader: DatasetReader, batch_size: int, replica: int, n_replicas: int) -> Iterator[tuple]:
    """This replica's rows of each global batch, read one batch ahead on a thread (two batches in memory at most)."""

    def read(bounds: tuple[int, int]):
        start, stop = replica_rows(*bounds, replica, n_replicas)
        labels = reader.read_labels(start, stop).astype(np.float32)
        return reader.read_frames(start, stop), labels, bounds[1] - bounds[0]

    batches = list(batch_bounds(len(reader), batch_size))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, batches[0])
        for index in range(len(batches)):
            batch = pending.result()
            if index + 1 < len(batches):
                pending = pool.submit(read, batches[index + 1])
            yield batch


def train(
    reader: DatasetReader,
    model_params: ModelParams,
    params: TrainParams,
    strategy: tf.distribute.Strategy | None = None,
    *,
    replica: int = 0,
    progress: int = 0,
) -> TrainingRun:
    """Builds the model and trains it for ``params.epochs`` epochs under ``strategy`` (default: one process).

    ``replica`` is this process's rank among the strategy's replicas (0 in one process); it
    chooses the rows read. ``progress`` is Keras's verbosity: 0 silent, 1 a live bar, 2 a line per epoch.
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
    make_deterministic(params.seed)
    size = reader.info.size
    with strategy.scope():
        model = build_model(size, model_params)
        optimizer = keras.optimizers.Adam(learning_rate=params.learning_rate)
        optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer, strategy, size)
    n_steps = -(-len(reader) // params.batch_size)
    curve: list[StepResult] = []
    step_ends: list[float] = []
    start = time.perf_counter()
    for epoch in range(1, params.epochs + 1):
        if progress:
            print(f"Epoch {epoch}/{params.epochs}", flush=True)
        bar = keras.utils.Progbar(n_steps, verbose=progress) if progress else None
        epoch_sums, epoch_steps = np.zeros(2), 0
        for frames, labels, global_size in _local_batches(reader, params.batch_size, replica, n_replicas):
            try:
                loss, accuracy = train_step(frames, labels, np.int64(global_size))
            except PEER_ERRORS as error:
                if n_replicas == 1:
                    raise
                raise ClusterError(
                    f"worker {replica} of {n_replicas} lost contact with another worker at step {len(curve) + 1} "
                    f"(it stopped, or the network failed; TensorFlow raised {type(error).__name__}); "
                    "no model was written"
                ) from None
            curve.append(StepResult(len(curve) + 1, epoch, float(loss), float(accuracy)))
            step_ends.append(time.perf_counter())
            if bar is not None:
                # Keras's display: the mean over the epoch so far, as fit shows it.
                epoch_sums += (curve[-1].loss, curve[-1].accuracy)
                epoch_steps += 1
                bar.update(epoch_steps, list(zip(("loss", "accuracy"), epoch_sums / epoch_steps)))
    seconds = time.perf_counter() - start
    return TrainingRun(model, curve, seconds, len(reader) * params.epochs, step_ends)


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


def write_curve(curve: list[StepResult], path: Path) -> None:
    """The per-step curve as CSV: step, epoch, and that step's own loss and accuracy on its global batch."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["step", "epoch", "loss", "accuracy"])
        writer.writerows((r.step, r.epoch, f"{r.loss:.6f}", f"{r.accuracy:.6f}") for r in curve)
