"""Stage predict: classify sequences with models/model.keras and write one CSV row per sequence.

Without --input it predicts predict.n_samples fresh sequences drawn with predict.seed.
With --input FILE.h5 (the dataset format; labels optional) it predicts that file's sequences:

    python -m stages.predict --model models/model.keras --input data/test.h5 --output test_predictions.csv

Also draws the first sequences captioned "Expected: Right, Predicted: Right" (a PNG beside
the CSV unless --image says where) and prints such a line for each of them.
"""

import argparse
import csv
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from movingline.cli import run_stage
from movingline.dataset import DatasetReader
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.plots import caption, drawing_times, save_prediction_grid
from movingline.resources import prediction_bytes, require_memory, require_paths_fit, require_training_fits
from movingline.sequences import iter_frame_batches, sample_paths

log = logging.getLogger("predict")

BATCH_SIZE = 64
N_SHOWN = 8


def batches_from_file(reader: DatasetReader) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    for start in range(0, len(reader), BATCH_SIZE):
        stop = min(start + BATCH_SIZE, len(reader))
        labels = reader.read_labels(start, stop) if reader.info.has_labels else None
        yield reader.read_frames(start, stop), labels


def predict(model, batches: Iterator[tuple[np.ndarray, np.ndarray | None]]):
    """Probabilities, expected labels (or None) and drawing times of the first N_SHOWN sequences."""
    from movingline.model import predict_probabilities

    probabilities, expected, shown = [], [], []
    for frames, labels in batches:
        probabilities.append(predict_probabilities(model, frames))
        expected.append(labels)
        if sum(len(s) for s in shown) < N_SHOWN:
            shown.append(drawing_times(frames[:N_SHOWN]))
    has_labels = expected[0] is not None
    return (
        np.concatenate(probabilities),
        np.concatenate(expected) if has_labels else None,
        np.concatenate(shown)[:N_SHOWN],
    )


def write_predictions(probabilities: np.ndarray, expected: np.ndarray | None, path: Path) -> None:
    predicted = (probabilities >= 0.5).astype(int)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["index", "probability_right", "predicted", *(["expected"] if expected is not None else [])])
        for index, (probability, label) in enumerate(zip(probabilities, predicted)):
            row = [index, f"{probability:.6f}", label]
            if expected is not None:
                row.append(int(expected[index]))
            writer.writerow(row)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file, read without --input (default: %(default)s)")
    parser.add_argument("--model", default="models/model.keras", type=Path, help="trained model (default: %(default)s)")
    parser.add_argument("--input", type=Path, help="HDF5 dataset to classify (default: fresh sequences from params)")
    parser.add_argument("--output", type=Path, help="CSV to write (default: predictions.csv; required with --input)")
    parser.add_argument("--image", type=Path, help="PNG of the first sequences (default: plots/predictions.png, or the CSV's name with .png)")
    args = parser.parse_args()
    if args.input is not None and args.output is None:
        parser.error("--output is required with --input, so that the pipeline's predictions.csv is not overwritten")
    output = args.output or Path("predictions.csv")
    image = args.image or (output.with_suffix(".png") if args.input is not None else Path("plots/predictions.png"))
    if output.suffix == ".png" or image == output:
        parser.error(f"--output {output} and --image {image} must be two different files, a .csv and a .png")

    check_destinations(output, image)
    if args.input is None:
        # Checked before TensorFlow loads, so that a bad params.yaml fails at once.
        params = load_params(args.params)
        require_training_fits(params, args.params)
        size, settings = params.data.size, params.predict
        require_memory(prediction_bytes(BATCH_SIZE, size), "one prediction batch", f"{args.params}: data.size = {size}")
        require_paths_fit(settings.n_samples, size, f"{args.params}: predict.n_samples = {settings.n_samples}")
        from movingline.model import check_frame_size, load_model

        model = load_model(args.model)
        check_frame_size(model, args.model, size, args.params, from_params=True)
        paths = sample_paths(np.random.default_rng(settings.seed), settings.n_samples, size)
        probabilities, expected, shown = predict(model, iter_frame_batches(paths, BATCH_SIZE))
        source = f"{settings.n_samples} fresh sequences (seed {settings.seed})"
    else:
        with DatasetReader(args.input, require_labels=False) as reader:
            require_memory(
                prediction_bytes(min(BATCH_SIZE, len(reader)), reader.info.size),
                "one prediction batch",
                f"{args.input} ({reader.info.size}x{reader.info.size} frames)",
            )
            from movingline.model import check_frame_size, load_model

            model = load_model(args.model)
            check_frame_size(model, args.model, reader.info.size, args.input)
            probabilities, expected, shown = predict(model, batches_from_file(reader))
        source = str(args.input)

    predicted = (probabilities >= 0.5).astype(int)
    with atomic_outputs(output, image) as (csv_path, image_path):
        write_predictions(probabilities, expected, csv_path)
        n_shown = len(shown)
        save_prediction_grid(
            shown,
            None if expected is None else expected[:n_shown],
            predicted[:n_shown],
            probabilities[:n_shown],
            image_path,
        )
    for index in range(len(shown)):
        print(caption(None if expected is None else expected[index], predicted[index]))
    summary = f"predicted {len(probabilities)} sequences from {source}"
    if expected is not None:
        summary += f": {np.mean(predicted == expected):.1%} correct"
    log.info("%s; wrote %s and %s", summary, output, image)


if __name__ == "__main__":
    run_stage(main)
