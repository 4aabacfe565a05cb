"""The training loop on tiny data in one process, and the arithmetic of splitting a global batch."""

import csv

import numpy as np
import pytest

from movingline.data.dataset import DatasetReader
from movingline.cluster.team import replica_rows
from movingline.training.loop import train, write_curve
from tests.conftest import TINY_MODEL as MODEL
from tests.conftest import tiny_dataset, train_params

SIZE = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """40 sequences of 8x8: an epoch of 3 global batches of 16, the last one short (8)."""
    return tiny_dataset(tmp_path_factory.mktemp("training") / "train.h5", 40, seed=5)


@pytest.mark.parametrize("n_rows, n_replicas", [(32, 1), (32, 2), (32, 3), (7, 4), (1, 2), (16, 16), (5, 8)])
def test_replica_rows_cover_the_global_batch_once_in_order(n_rows, n_replicas):
    start = 100
    shares = [replica_rows(start, start + n_rows, r, n_replicas) for r in range(n_replicas)]
    assert shares[0][0] == start and shares[-1][1] == start + n_rows
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
    sizes = [stop - begin for begin, stop in shares]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n_rows


def test_replica_rows_examples():
    assert [replica_rows(0, 32, r, 3) for r in range(3)] == [(0, 10), (10, 21), (21, 32)]
    # A one-row last batch on two workers: worker 0 reads nothing, worker 1 the row.
    assert [replica_rows(64, 65, r, 2) for r in range(2)] == [(64, 64), (64, 65)]


def test_shares_of_the_mean_loss_add_up_to_the_global_mean():
    # What each replica contributes: the sum of its per-sequence losses over the global batch size.
    losses = np.random.default_rng(0).random(13)
    for n_replicas in (1, 2, 3, 5):
        parts = [losses[slice(*replica_rows(0, 13, r, n_replicas))].sum() / 13 for r in range(n_replicas)]
        assert sum(parts) == pytest.approx(losses.mean(), rel=1e-12)


def test_loop_learns_and_writes_one_curve_row_per_step(dataset, tmp_path):
    with DatasetReader(dataset) as reader:
        run = train(reader, MODEL, train_params(epochs=6, learning_rate=0.02))
    assert [(row.step, row.epoch) for row in run.curve] == [(s + 1, s // 3 + 1) for s in range(18)]
    first, last = (np.mean([row.loss for row in run.curve if row.epoch == e]) for e in (1, 6))
    assert last < first - 0.01
    # Accuracy per step is a fraction of the step's own global batch (16, 16 then 8 sequences).
    assert all(round(row.accuracy * (8 if row.step % 3 == 0 else 16), 6).is_integer() for row in run.curve)
    assert run.sequences == 240 and len(run.step_ends) == 18
    write_curve(run.curve, tmp_path / "curve.csv")
    with open(tmp_path / "curve.csv") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"] and len(rows) == 18
    assert all(row["val_loss"] == row["val_accuracy"] == "" for row in rows)
    assert float(rows[4]["loss"]) == pytest.approx(run.curve[4].loss, abs=1e-6)


def test_loop_takes_the_same_steps_as_keras_fit(dataset):
    """The loop's first step loss is Keras's compiled loss, and one epoch ends at fit's weights."""
    from bench.fit import FrameBatches, compile_model
    from movingline.model import build_model
    from movingline.runtime import make_deterministic

    params = train_params()
    with DatasetReader(dataset) as reader:
        run = train(reader, MODEL, params)
        make_deterministic(params.seed)
        model = build_model(SIZE, MODEL)
        compile_model(model, params.learning_rate)
        first = model.evaluate(*FrameBatches(reader, 16, with_labels=True)[0], verbose=0, return_dict=True)
        model.fit(FrameBatches(reader, params.batch_size, with_labels=True), epochs=1, shuffle=False, verbose=0)
    assert run.curve[0].loss == pytest.approx(first["loss"], rel=1e-5)
    for ours, keras_weights in zip(run.model.get_weights(), model.get_weights()):
        np.testing.assert_allclose(ours, keras_weights, rtol=1e-4, atol=1e-6)


def test_same_params_give_the_same_model_bytes(dataset, tmp_path):
    from movingline.model import save_model

    for name, seed in (("a", 13), ("b", 13), ("c", 14)):
        with DatasetReader(dataset) as reader:
            save_model(train(reader, MODEL, train_params(seed=seed)).model, tmp_path / f"{name}.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    assert (tmp_path / "a.keras").read_bytes() != (tmp_path / "c.keras").read_bytes()
