"""The compiled training and validation steps, the same under one process and under N workers.

Every step takes one global batch of ``train.batch_size`` consecutive sequences. Each replica
(one process alone, or one per worker) computes the binary cross-entropy of each sequence it
was given and divides their sum by the size of the whole global batch
(``tf.nn.compute_average_loss``); the optimiser sums the replicas' gradients (an all-reduce,
nothing to sum alone) before Adam updates the weights, so N workers take the same steps as
one process, up to the order in which floats are summed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from movingline import runtime
from movingline.data.labels import THRESHOLD

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


def replica_metrics(probabilities: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """This replica's binary cross-entropy per sequence (Keras's, with compile's clipping), and
    how many sequences it classified right: what the training and validation steps both report."""
    tf, keras = runtime.tf, runtime.keras
    per_sequence = keras.losses.binary_crossentropy(labels[:, None], probabilities)
    correct = tf.cast(tf.equal(tf.cast(probabilities[:, 0] >= THRESHOLD, tf.float32), labels), tf.float32)
    return per_sequence, tf.reduce_sum(correct)


def _summed(strategy: tf.distribute.Strategy, *values: tf.Tensor) -> list[tf.Tensor]:
    """Each per-replica value summed over the replicas (an all-reduce)."""
    return [strategy.reduce(runtime.tf.distribute.ReduceOp.SUM, value, axis=None) for value in values]


def _batch_signature(size: int, *more) -> list:
    """A batch of this replica's uint8 frames and float labels, then ``more``. The number of
    timesteps is fixed at the frame size here, so each step is traced once."""
    tf = runtime.tf
    return [tf.TensorSpec((None, size, size, size, 1), tf.uint8), tf.TensorSpec((None,), tf.float32), *more]


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy, size: int):
    """The compiled step: (this replica's frames and labels, global batch size, stop vote) ->
    global loss, accuracy, and the sum of the workers' votes to stop after this step."""
    tf = runtime.tf

    def replica_step(frames: tf.Tensor, labels: tf.Tensor, global_size: tf.Tensor, stop: tf.Tensor):
        with tf.GradientTape() as tape:
            probabilities = model(frames, training=True)
            per_sequence, correct = replica_metrics(probabilities, labels)
            loss = tf.nn.compute_average_loss(per_sequence, global_batch_size=global_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        # Keras's optimiser sums the gradients over the replicas before it updates the weights.
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss, correct, stop

    @tf.function(input_signature=_batch_signature(size, tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.float32)))
    def train_step(frames, labels, global_size, stop):
        # A worker asked to stop says so in the step's own all-reduce, so that every worker
        # stops after the same step, and none waits for a peer that has left.
        loss, correct, votes = _summed(strategy, *strategy.run(replica_step, args=(frames, labels, global_size, stop)))
        return loss, correct / tf.cast(global_size, tf.float32), votes

    return train_step


def make_validation_step(model: keras.Model, strategy: tf.distribute.Strategy, size: int):
    """The compiled validation batch: this replica's frames and labels -> the global sums of loss and correct."""
    tf = runtime.tf

    def replica_step(frames: tf.Tensor, labels: tf.Tensor):
        per_sequence, correct = replica_metrics(model(frames, training=False), labels)
        return tf.reduce_sum(per_sequence), correct

    @tf.function(input_signature=_batch_signature(size))
    def validation_step(frames, labels):
        return tuple(_summed(strategy, *strategy.run(replica_step, args=(frames, labels))))

    return validation_step
