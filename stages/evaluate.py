"""Stage evaluate: models/model.keras on data/test.h5 -> metrics.json, ROC and confusion-matrix data.

DVC's plot templates draw the ROC curve (plots/roc.json) and the confusion matrix (plots/confusion.json).
The train stage's record (its numeric environment) is copied to training.json, which git keeps beside
metrics.json for `bash run.sh verify`.
"""

from movingline.cli import add_path, run_stage, stage_parser
from movingline.data.dataset import DatasetReader
from movingline.environment import read_record
from movingline.inference.metrics import compute_metrics, confusion_rows, metrics_summary, roc_points
from movingline.model import frame_size, load_model
from movingline.outputs import atomic_outputs, check_destinations, write_json
from movingline.params import load_params
from movingline.inference.prediction import predict_batches
from movingline.preflight import require_model_size, require_prediction_fits, require_training_fits
from movingline.settings import Settings


def main(settings: Settings) -> None:
    parser = stage_parser("evaluate", __doc__.splitlines()[0])
    add_path(parser, "--model", "models/model.keras", "trained model")
    add_path(parser, "--data", "data/test.h5", "test set")
    add_path(parser, "--metrics", "metrics.json", "metrics to write")
    add_path(parser, "--roc", "plots/roc.json", "ROC curve data")
    add_path(parser, "--confusion", "plots/confusion.json", "confusion data")
    add_path(parser, "--training-record", "models/training.json", "the train stage's record")
    add_path(parser, "--record", "training.json", "its copy to keep in git")
    args = parser.parse_args()

    check_destinations(args.metrics, args.roc, args.confusion, args.record)
    params = load_params(args.params)
    record = read_record(args.training_record)
    require_training_fits(params, args.params)
    with DatasetReader(args.data) as reader:
        size, batch_size = reader.info.size, min(params.evaluate.batch_size, len(reader))
        blame = f"{args.params}: evaluate.batch_size = {params.evaluate.batch_size} ({args.data} holds {size}x{size} frames)"
        require_prediction_fits(batch_size, size, blame)
        model = load_model(args.model, settings)
        require_model_size(args.model, frame_size(model), size, args.data)
        predictions = predict_batches(model, reader.iter_batches(batch_size), n_shown=0)

    labels, probabilities = predictions.expected, predictions.probabilities
    metrics = compute_metrics(labels, probabilities)
    with atomic_outputs(args.metrics, args.roc, args.confusion, args.record) as paths:
        write_json(metrics, paths[0])
        write_json({"roc": roc_points(labels, probabilities)}, paths[1])
        write_json({"confusion": confusion_rows(labels, probabilities)}, paths[2])
        write_json(record, paths[3])
    print(f"{args.data}: {metrics_summary(metrics)}")


if __name__ == "__main__":
    run_stage(main)
