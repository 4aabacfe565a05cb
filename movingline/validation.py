"""Validation while training: when to score the held-out sequences, scoring them, and the best so far.

The held-out sequences are the last ``train.validation_sequences`` of the training file.
Under N workers each scores its own rows of every batch and the sums go through an
all-reduce, so every worker sees the same scores and makes the same choices.
"""

from collections.abc import Callable

from movingline.batching import batch_bounds
from movingline.checkpoints import CurveRow, TrainingState
from movingline.labels import THRESHOLD
from movingline.runtime import keras, tf


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


def validation_due(step: int, epoch_end: bool, last: bool, validate_every: int) -> bool:
    """Whether to validate after global step ``step``: every ``validate_every`` steps, or at each
    epoch's end when it is 0, and always after the last step, so the final weights are a candidate."""
    return last or (step % validate_every == 0 if validate_every else epoch_end)


class Validation:
    """Scores the sequences ``start`` .. ``start + n - 1``, a global batch at a time.

    ``read`` gives this worker's frames and labels of a global batch's (start, stop) rows;
    ``step`` is ``make_validation_step``'s compiled batch.
    """

    def __init__(self, read: Callable[[tuple[int, int]], tuple], step, start: int, n: int, batch_size: int):
        self.read, self.step, self.start, self.n, self.batch_size = read, step, start, n, batch_size

    def score(self) -> tuple[float, float]:
        """Mean binary cross-entropy and accuracy over the validation sequences, at the current weights."""
        loss_sum, correct = 0.0, 0.0
        for start, stop in batch_bounds(self.n, self.batch_size):
            frames, labels, _ = self.read((self.start + start, self.start + stop))
            batch_loss, batch_correct = self.step(frames, labels)
            loss_sum += float(batch_loss)
            correct += float(batch_correct)
        return loss_sum / self.n, correct / self.n


def record(state: TrainingState, row: CurveRow) -> bool:
    """Counts a validation without improvement, or records ``row`` as the new best; True for a new best."""
    if state.best_loss is None or row.val_loss < state.best_loss:
        state.best_loss, state.best_step, state.since_best = row.val_loss, row.step, 0
        return True
    state.since_best += 1
    return False
