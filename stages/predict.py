"""Stage predict: a model's predictions for fresh sequences (predict.*) or --input FILE.h5, one CSV row each.

Draws and prints the first captions. A .onnx --model predicts through onnxruntime, without TensorFlow.
"""

import argparse
import contextlib
import logging

from movingline.inference import prediction as p
from movingline.cli import add_path, run_stage, stage_parser
from movingline.data.dataset import DatasetReader
from movingline.model import frame_size
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.inference.pictures import save_prediction_grid
from movingline.preflight import require_fresh_predictions_fit, require_model_size, require_prediction_fits
from movingline.settings import Settings
from movingline.inference.onnx_runtime import load_predictor

log = logging.getLogger(__name__)


def main(settings: Settings) -> None:
    parser = stage_parser("predict", __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path(parser, "--model", "models/model.keras", "trained model: .keras, or .onnx (no TensorFlow)")
    add_path(parser, "--input", None, "HDF5 dataset to classify (default: fresh sequences from params)")
    add_path(parser, "--output", None, "CSV to write (default: predictions.csv; required with --input)")
    add_path(parser, "--image", None, "PNG of the first sequences (default: plots/predictions.png, or the CSV's name with .png)")
    args = parser.parse_args()
    try:
        output, image = p.output_paths(args.input, args.output, args.image)
    except ValueError as error:
        parser.error(str(error))
    check_destinations(output, image)
    with contextlib.ExitStack() as stack:
        # Every check runs before TensorFlow loads, so that bad input fails at once.
        if args.input is None:
            params = load_params(args.params)
            require_fresh_predictions_fit(params, args.params, p.PREDICT_BATCH_SIZE)
            size, frames_from = params.data.size, args.params
            batches, source = p.fresh_batches(size, params.predict.n_samples, params.predict.seed)
        else:
            reader = stack.enter_context(DatasetReader(args.input, require_labels=False))
            size, frames_from, source = reader.info.size, args.input, str(args.input)
            require_prediction_fits(min(p.PREDICT_BATCH_SIZE, len(reader)), size, f"{args.input} ({size}x{size} frames)")
            batches = p.file_batches(reader)
        model = load_predictor(args.model, settings)
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
