"""Validation while training, in this process on tiny data: when it runs, the best weights
kept, the held-out sequences never trained on, and early stopping."""

import numpy as np
import pytest

from movingline.data.dataset import DatasetReader, write_dataset
from movingline.training.session import validation_due
from movingline.training.loop import train
from tests.conftest import TINY_MODEL, tiny_dataset, train_params


@pytest.fixture(scope="module")
def validation_set(tmp_path_factory):
    """56 sequences of 8x8."""
    return tiny_dataset(tmp_path_factory.mktemp("validation") / "train.h5", 56, seed=7)


def test_validation_schedule():
    # Every 3 steps, and after the last; per epoch when validate_every is 0.
    assert [s for s in range(1, 9) if validation_due(s, s % 4 == 0, s == 8, 3)] == [3, 6, 8]
    assert [s for s in range(1, 9) if validation_due(s, s % 4 == 0, s == 8, 0)] == [4, 8]


def validation_loss(model, reader: DatasetReader, start: int) -> float:
    from movingline.runtime import keras

    frames, labels = reader.read_frames(start, len(reader)), reader.read_labels(start).astype(np.float32)
    probabilities = model.predict_on_batch(frames)
    return float(np.mean(keras.losses.binary_crossentropy(labels[:, None], probabilities)))


def test_the_saved_weights_are_the_best_validation_steps(validation_set):
    params = train_params(epochs=12, learning_rate=0.1, validation_sequences=24, validate_every=2)
    with DatasetReader(validation_set) as reader:
        run = train(reader, TINY_MODEL, params)
        measured = validation_loss(run.model, reader, 32)
    validated = [row for row in run.curve if row.val_loss is not None]
    # 32 training sequences: 2 steps an epoch, 24 steps, validated every 2nd.
    assert len(run.curve) == 24 and [row.step for row in validated] == list(range(2, 25, 2))
    best = min(validated, key=lambda row: row.val_loss)
    assert run.best_step == best.step
    assert best.step != run.curve[-1].step, "the best step is the last one: this test would not tell them apart"
    assert measured == pytest.approx(best.val_loss, abs=1e-5)
    assert measured < run.curve[-1].val_loss - 1e-4


def test_held_out_sequences_are_never_trained_on(validation_set):
    """A model trained on 32 of 56 sequences with 24 held out equals one trained on a 32-sequence file."""
    with DatasetReader(validation_set) as reader:
        held_out = train(reader, TINY_MODEL, train_params(epochs=2, validation_sequences=24, validate_every=1))
        frames, labels = reader.read_frames(0, 32), reader.read_labels(0, 32)
    path = validation_set.with_name("first32.h5")
    write_dataset(path, [(frames, labels)], size=8, n_samples=32, seed=7)
    with DatasetReader(path) as reader:
        alone = train(reader, TINY_MODEL, train_params(epochs=2))
    assert [row.loss for row in held_out.curve] == [row.loss for row in alone.curve]


def test_patience_stops_after_that_many_validations_without_improvement(validation_set):
    params = train_params(epochs=40, learning_rate=0.1, validation_sequences=24, validate_every=1, patience=3)
    with DatasetReader(validation_set) as reader:
        run = train(reader, TINY_MODEL, params)
    assert len(run.curve) < 80, "training never stopped early: raise the learning rate"
    losses = [row.val_loss for row in run.curve]
    assert run.best_step == len(run.curve) - 3
    assert all(loss >= losses[run.best_step - 1] for loss in losses[run.best_step :])
