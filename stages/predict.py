"""Stage predict: classify sequences with models/model.keras and write one CSV row per sequence.

With --model FILE.onnx (the export stage's) onnxruntime predicts, and TensorFlow never loads.

Without --input: predict.n_samples fresh sequences drawn with predict.seed. With --input
FILE.h5 (the dataset format, labels optional) and --output OUT.csv: that file's sequences.
Also draws the first sequences captioned "Expected: Right, Predicted: Right" and prints the captions.
"""

import argparse
import contextlib
import logging
from pathlib import Path

from movingline import prediction as p
from movingline.cli import add_path, run_stage, stage_parser
from movingline.dataset import DatasetReader
from movingline.model import frame_size
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.plots import save_prediction_grid
from movingline.preflight import (
    require_model_size,
    require_prediction_fits,
    require_training_fits,
    require_walks_fit,
)
from movingline.serving import load_predictor

log = logging.getLogger(__name__)


def output_paths(input_path: Path | None, output: Path | None, image: Path | None) -> tuple[Path, Path]:
    """The CSV and PNG to write; ValueError for a combination the stage must refuse.

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


def main() -> None:
    parser = stage_parser("predict", __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path(parser, "--model", "models/model.keras", "trained model: .keras, or .onnx (no TensorFlow)")
    add_path(parser, "--input", None, "HDF5 dataset to classify (default: fresh sequences from params)")
    add_path(parser, "--output", None, "CSV to write (default: predictions.csv; required with --input)")
    add_path(parser, "--image", None, "PNG of the first sequences (default: plots/predictions.png, or the CSV's name with .png)")
    args = parser.parse_args()
    try:
        output, image = output_paths(args.input, args.output, args.image)
    except ValueError as error:
        parser.error(str(error))

    check_destinations(output, image)
    with contextlib.ExitStack() as stack:
        # Every check runs before TensorFlow loads, so that bad input fails at once.
        if args.input is None:
            params = load_params(args.params)
            require_training_fits(params, args.params)
            size, settings, frames_from = params.data.size, params.predict, args.params
            require_prediction_fits(p.PREDICT_BATCH_SIZE, size, f"{args.params}: data.size = {size}")
            require_walks_fit(settings.n_samples, size, f"{args.params}: predict.n_samples = {settings.n_samples}")
            batches = p.fresh_batches(size, settings.n_samples, settings.seed)
            source = f"{settings.n_samples} fresh sequences (seed {settings.seed})"
        else:
            reader = stack.enter_context(DatasetReader(args.input, require_labels=False))
            size, frames_from, source = reader.info.size, args.input, str(args.input)
            blame = f"{args.input} ({size}x{size} frames)"
            require_prediction_fits(min(p.PREDICT_BATCH_SIZE, len(reader)), size, blame)
            batches = p.file_batches(reader)
        model = load_predictor(args.model)
        require_model_size(args.model, frame_size(model), size, frames_from, from_params=args.input is None)
        predictions = p.predict_batches(model, batches)

    captions = p.shown_captions(predictions)
    with atomic_outputs(output, image) as (csv_path, image_path):
        p.write_table(p.predictions_table(predictions), csv_path)
        save_prediction_grid(predictions.shown_times, predictions.probabilities, captions, p.shown_correct(predictions), image_path)
    print("\n".join(captions))
    log.info("%s; wrote %s and %s", p.prediction_summary(predictions, source), output, image)


if __name__ == "__main__":
    run_stage(main)
