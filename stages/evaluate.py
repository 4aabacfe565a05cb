"""Stage evaluate: models/model.keras on data/test.h5 -> metrics.json, ROC and confusion-matrix data.

The test set is streamed through the model in batches. DVC's plot templates draw the ROC
curve (plots/roc.json) and the confusion matrix (plots/confusion.json).
"""

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from movingline.cli import run_stage
from movingline.dataset import DatasetReader
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.resources import prediction_bytes, require_memory, require_training_fits

log = logging.getLogger("evaluate")

THRESHOLD = 0.5


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | int]:
    """Classification metrics at the 0.5 threshold, plus log loss and ROC AUC."""
    from sklearn import metrics

    predicted = (probabilities >= THRESHOLD).astype(np.uint8)
    both_classes = len(np.unique(labels)) == 2
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "loss": float(metrics.log_loss(labels, probabilities, labels=[0, 1])),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0)),
        # AUC is undefined when the test set holds one class only.
        "roc_auc": float(metrics.roc_auc_score(labels, probabilities)) if both_classes else None,
        "n_samples": int(len(labels)),
    }


def roc_points(labels: np.ndarray, probabilities: np.ndarray) -> list[dict[str, float]]:
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        return []
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    # sklearn's first threshold is +inf, which JSON cannot hold; any value above 1 means the same.
    thresholds = np.minimum(thresholds, 1.0 + 1e-9)
    return [
        {"fpr": round(float(f), 6), "tpr": round(float(t), 6), "threshold": round(float(h), 6)}
        for f, t, h in zip(fpr, tpr, thresholds)
    ]


def confusion_rows(labels: np.ndarray, probabilities: np.ndarray) -> list[dict[str, str]]:
    """One row per sequence, as DVC's confusion template expects."""
    names = {0: "left", 1: "right"}
    predicted = probabilities >= THRESHOLD
    return [{"actual": names[int(a)], "predicted": names[int(p)]} for a, p in zip(labels, predicted)]


def write_json(data: object, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: %(default)s)")
    parser.add_argument("--model", default="models/model.keras", type=Path, help="trained model (default: %(default)s)")
    parser.add_argument("--data", default="data/test.h5", type=Path, help="test set (default: %(default)s)")
    parser.add_argument("--metrics", default="metrics.json", type=Path, help="metrics to write (default: %(default)s)")
    parser.add_argument("--roc", default="plots/roc.json", type=Path, help="ROC curve data (default: %(default)s)")
    parser.add_argument(
        "--confusion", default="plots/confusion.json", type=Path, help="confusion data (default: %(default)s)"
    )
    args = parser.parse_args()

    check_destinations(args.metrics, args.roc, args.confusion)
    params = load_params(args.params)
    require_training_fits(params, args.params)
    with DatasetReader(args.data) as reader:
        batch_size = min(params.evaluate.batch_size, len(reader))
        require_memory(
            prediction_bytes(batch_size, reader.info.size),
            f"one batch of {batch_size} sequences",
            f"{args.params}: evaluate.batch_size = {params.evaluate.batch_size} ({args.data} holds "
            f"{reader.info.size}x{reader.info.size} frames)",
        )
        from movingline.model import FrameBatches, check_frame_size, load_model, predict_probabilities

        model = load_model(args.model)
        check_frame_size(model, args.model, reader.info.size, args.data)
        labels = reader.read_labels()
        with reader.read_errors_unwrapped():
            probabilities = predict_probabilities(model, FrameBatches(reader, batch_size, with_labels=False))

    results = compute_metrics(labels, probabilities)
    with atomic_outputs(args.metrics, args.roc, args.confusion) as (metrics_path, roc_path, confusion_path):
        write_json(results, metrics_path)
        write_json({"roc": roc_points(labels, probabilities)}, roc_path)
        write_json({"confusion": confusion_rows(labels, probabilities)}, confusion_path)
    summary = ", ".join(f"{key} {value:.4f}" for key, value in results.items() if isinstance(value, float))
    print(f"{args.data}: {results['n_samples']} sequences: {summary}")


if __name__ == "__main__":
    run_stage(main)
