"""From batches to the predictions table and captions: one path for both predict modes."""

from pathlib import Path

import numpy as np
import pytest

from movingline.data.dataset import DatasetReader, write_dataset
from movingline.inference.prediction import (
    Predictions,
    caption,
    file_batches,
    fresh_batches,
    output_paths,
    predict_batches,
    predictions_table,
    shown_captions,
    shown_correct,
    prediction_summary,
    write_table,
)
from movingline.data.sequences import drawing_times, iter_frame_batches, render_frames, sample_walks
from tests.badfiles import delete, write_good_dataset

PROBABILITIES = np.array([0.9, 0.25, 0.5])


def test_caption_is_the_references_line():
    assert caption(1, 1) == "Expected: Right, Predicted: Right"
    assert caption(0, 1) == "Expected: Left, Predicted: Right"
    assert caption(None, 0) == "Expected: ?, Predicted: Left"


def test_the_table_has_one_row_per_sequence_with_the_expected_label_when_known(tmp_path):
    labelled = Predictions(PROBABILITIES, np.array([1, 1, 0], np.uint8), np.zeros((2, 4, 4)))
    assert predictions_table(labelled) == [
        ["index", "probability_right", "predicted", "expected"],
        [0, "0.900000", 1, 1],
        [1, "0.250000", 0, 1],
        [2, "0.500000", 1, 0],
    ]
    unlabelled = Predictions(PROBABILITIES, None, np.zeros((2, 4, 4)))
    assert predictions_table(unlabelled)[:2] == [["index", "probability_right", "predicted"], [0, "0.900000", 1]]
    write_table(predictions_table(unlabelled), tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text() == (
        "index,probability_right,predicted\n0,0.900000,1\n1,0.250000,0\n2,0.500000,1\n"
    )


def test_captions_and_colours_of_the_shown_sequences():
    labelled = Predictions(PROBABILITIES, np.array([1, 1, 0], np.uint8), np.zeros((2, 4, 4)))
    assert shown_captions(labelled) == ["Expected: Right, Predicted: Right", "Expected: Right, Predicted: Left"]
    assert shown_correct(labelled) == [True, False]
    unlabelled = Predictions(PROBABILITIES, None, np.zeros((2, 4, 4)))
    assert shown_correct(unlabelled) == [None, None]
    assert prediction_summary(labelled, "x.h5") == "predicted 3 sequences from x.h5: 33.3% correct"
    assert prediction_summary(unlabelled, "x.h5") == "predicted 3 sequences from x.h5"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ((None, None, None), ("predictions.csv", "plots/predictions.png")),
        ((None, "out/p.csv", None), ("out/p.csv", "plots/predictions.png")),
        (("d.h5", "out/p.csv", None), ("out/p.csv", "out/p.png")),
        (("d.h5", "p.csv", "pic.png"), ("p.csv", "pic.png")),
    ],
)
def test_output_paths(arguments, expected):
    paths = [None if a is None else Path(a) for a in arguments]
    assert output_paths(*paths) == tuple(map(Path, expected))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("d.h5", None, None),
            "--output is required with --input, so that the pipeline's predictions.csv is not overwritten",
        ),
        ((None, "p.png", None), "--output p.png and --image plots/predictions.png must be two different files, a .csv and a .png"),
        ((None, "p.csv", "p.csv"), "--output p.csv and --image p.csv must be two different files, a .csv and a .png"),
    ],
)
def test_output_paths_refuses_what_would_overwrite_or_clash(arguments, message):
    with pytest.raises(ValueError) as caught:
        output_paths(*[None if a is None else Path(a) for a in arguments])
    assert str(caught.value) == message


@pytest.fixture(scope="module")
def tiny_model():
    from movingline.model import build_model
    from movingline.params import ModelParams

    return build_model(6, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=3))


def test_fresh_and_file_batches_give_the_same_predictions(tiny_model, tmp_path):
    from movingline.model import predict_probabilities

    walks = sample_walks(np.random.default_rng(4), 11, 6)
    fresh = predict_batches(tiny_model, fresh_batches(6, 11, 4)[0], n_shown=5)
    frames = render_frames(walks)
    assert np.allclose(fresh.probabilities, predict_probabilities(tiny_model, frames), atol=1e-6)
    assert np.array_equal(fresh.expected, walks.labels)
    np.testing.assert_array_equal(fresh.shown_times, drawing_times(frames[:5]))

    path = tmp_path / "d.h5"
    write_dataset(path, iter_frame_batches(walks, 3), size=6, n_samples=11, seed=4)
    with DatasetReader(path) as reader:
        from_file = predict_batches(tiny_model, file_batches(reader), n_shown=5)
    assert np.allclose(from_file.probabilities, fresh.probabilities, atol=1e-6)
    assert np.array_equal(from_file.expected, fresh.expected)


def test_a_file_without_labels_gives_no_expected_labels(tiny_model, tmp_path):
    path = write_good_dataset(tmp_path / "d.h5", size=6, n_samples=3)
    delete(path, "labels")
    with DatasetReader(path, require_labels=False) as reader:
        predictions = predict_batches(tiny_model, file_batches(reader))
    assert predictions.expected is None
    assert predictions.probabilities.shape == (3,) and predictions.shown_times.shape == (3, 6, 6)
