"""From sequences to predictions: one path for fresh sequences and for dataset files.

``predict_batches`` runs the model over (frames, labels or None) batches, whichever their
source; the rest turns its result into the predictions table and the reference's captions.
"""

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movingline.data.dataset import DatasetReader
from movingline.inference.metrics import predicted_labels
from movingline.data.labels import LABEL_NAMES
from movingline.data.sequences import drawing_times, iter_frame_batches, sample_walks

Batches = Iterator[tuple[np.ndarray, np.ndarray | None]]

# Sequences per model call in the predict stage, and how many it draws and captions.
PREDICT_BATCH_SIZE = 64
N_SHOWN = 8


@dataclass(frozen=True)
class Predictions:
    probabilities: np.ndarray  # (n,) float64, probability of "right"
    expected: np.ndarray | None  # (n,) uint8 labels, None where the input has none
    shown_times: np.ndarray  # drawing times (sequences.drawing_times) of the first sequences

    @property
    def predicted(self) -> np.ndarray:
        return predicted_labels(self.probabilities)


def output_paths(input_path: Path | None, output: Path | None, image: Path | None) -> tuple[Path, Path]:
    """The predict stage's CSV and PNG to write; ValueError for a combination it must refuse.

    Fresh sequences go to predictions.csv and plots/predictions.png (the pipeline's outputs).
    With an input file, the CSV must be named, so that those are not overwritten; the PNG
    defaults to the CSV's name with .png.
    """
    if input_path is not None and output is None:
        raise ValueError("--output is required with --input, so that the pipeline's predictions.csv is not overwritten")
    output = output or Path("predictions.csv")
    image = image or (output.with_suffix(".png") if input_path is not None else Path("plots/predictions.png"))
    if output.suffix == ".png" or image == output:
        raise ValueError(f"--output {output} and --image {image} must be two different files, a .csv and a .png")
    return output, image


def fresh_batches(size: int, n_samples: int, seed: int) -> tuple[Batches, str]:
    """Batches of ``n_samples`` fresh sequences of ``size`` drawn with ``seed``, and what they are."""
    walks = sample_walks(np.random.default_rng(seed), n_samples, size)
    return iter_frame_batches(walks, PREDICT_BATCH_SIZE), f"{n_samples} fresh sequences (seed {seed})"


def file_batches(reader: DatasetReader) -> Batches:
    """Batches of a dataset file's sequences (labels None if it has none)."""
    return reader.iter_batches(PREDICT_BATCH_SIZE)


def predict_batches(model, batches: Iterable[tuple[np.ndarray, np.ndarray | None]], n_shown: int = N_SHOWN) -> Predictions:
    """Runs ``model`` over uint8 frame batches; keeps the drawing times of the first ``n_shown``."""
    from movingline.model import predict_probabilities

    probabilities, expected, shown = [], [], []
    for frames, labels in batches:
        probabilities.append(predict_probabilities(model, frames))
        expected.append(labels)
        n_kept = sum(len(times) for times in shown)
        if n_kept < n_shown:
            shown.append(drawing_times(frames[: n_shown - n_kept]))
    has_labels = bool(expected) and expected[0] is not None
    return Predictions(
        probabilities=np.concatenate(probabilities) if probabilities else np.empty(0),
        expected=np.concatenate(expected) if has_labels else None,
        shown_times=np.concatenate(shown) if shown else np.empty((0, 0, 0)),
    )


def predictions_table(predictions: Predictions) -> list[list[object]]:
    """The header and one row per sequence: index, probability of "right", predicted (and expected) label."""
    has_expected = predictions.expected is not None
    header = ["index", "probability_right", "predicted", *(["expected"] if has_expected else [])]
    rows = []
    for index, (probability, label) in enumerate(zip(predictions.probabilities, predictions.predicted)):
        row = [index, f"{probability:.6f}", int(label)]
        if has_expected:
            row.append(int(predictions.expected[index]))
        rows.append(row)
    return [header, *rows]


def write_table(table: list[list[object]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file, lineterminator="\n").writerows(table)


def caption(expected: int | None, predicted: int) -> str:
    """The reference's prediction line, e.g. "Expected: Right, Predicted: Right"."""
    expected_name = "?" if expected is None else LABEL_NAMES[int(expected)].capitalize()
    return f"Expected: {expected_name}, Predicted: {LABEL_NAMES[int(predicted)].capitalize()}"


def shown_captions(predictions: Predictions) -> list[str]:
    """The caption of each shown sequence."""
    expected = predictions.expected
    return [
        caption(None if expected is None else expected[index], predictions.predicted[index])
        for index in range(len(predictions.shown_times))
    ]


def shown_correct(predictions: Predictions) -> list[bool | None]:
    """Whether each shown sequence was predicted right; None where the label is unknown."""
    n_shown = len(predictions.shown_times)
    if predictions.expected is None:
        return [None] * n_shown
    return [bool(e == p) for e, p in zip(predictions.expected[:n_shown], predictions.predicted[:n_shown])]


def prediction_summary(predictions: Predictions, source: str) -> str:
    """One line: how many sequences from where, and the share correct where labels are known."""
    line = f"predicted {len(predictions.probabilities)} sequences from {source}"
    if predictions.expected is not None:
        line += f": {np.mean(predictions.predicted == predictions.expected):.1%} correct"
    return line
