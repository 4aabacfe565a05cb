"""Keras's ``fit`` path, as the train stage used it before the tf.distribute loop.

Not used by any stage: bench/loop_vs_fit.py measures the loop against it, and
tests/test_training.py checks that the loop takes the same steps as ``fit``.
"""

import numpy as np

from movingline.data.dataset import DatasetReader
from movingline.runtime import keras


def compile_model(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )



class FrameBatches(keras.utils.PyDataset):
    """Batches of uint8 frames (and labels, if asked) read from a dataset file on demand.

    Two threads read the next batches while the model works on the current one, and at most
    QUEUED_BATCHES wait, so memory does not grow with the file. (With one worker Keras would
    instead prefetch through tf.data with AUTOTUNE, whose buffer grows over a long epoch.)
    Batches still come in order: the model sees the same data whatever the timing.
    """

    QUEUED_BATCHES = 2

    def __init__(self, reader: DatasetReader, batch_size: int, *, with_labels: bool):
        super().__init__(workers=2, use_multiprocessing=False, max_queue_size=self.QUEUED_BATCHES)
        self.reader = reader
        self.batch_size = batch_size
        self.with_labels = with_labels

    def __len__(self) -> int:
        return -(-len(self.reader) // self.batch_size)

    def __getitem__(self, index: int):
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.reader))
        frames = self.reader.read_frames(start, stop)
        if not self.with_labels:
            return (frames,)
        return frames, self.reader.read_labels(start, stop).astype(np.float32)
