"""Stage train: data/train.h5 -> models/model.keras and per-step training curves.

Reads the training set in batches, seeds everything from ``train.seed`` and trains the
CNN-LSTM with Adam and binary cross-entropy.
"""

import argparse
import csv
import logging
import sys
from pathlib import Path

from movingline.cli import run_stage
from movingline.dataset import DatasetReader
from movingline.errors import InputError
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import ModelParams, TrainParams, load_params
from movingline.resources import require_training_fits

log = logging.getLogger("train")


def train(reader: DatasetReader, model_params: ModelParams, params: TrainParams, verbose: int | str):
    """Builds and trains the model; returns it with the per-step curve rows (step, epoch, loss, accuracy)."""
    import keras

    from movingline.model import FrameBatches, build_model, compile_model, make_deterministic

    make_deterministic(params.seed)
    model = build_model(reader.info.size, model_params)
    compile_model(model, params.learning_rate)
    rows: list[tuple[int, int, float, float]] = []

    class StepLog(keras.callbacks.Callback):
        # Keras reports, after each batch, the mean loss and accuracy over the epoch so far.
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            rows.append((len(rows) + 1, self.epoch + 1, float(logs["loss"]), float(logs["accuracy"])))

    batches = FrameBatches(reader, params.batch_size, with_labels=True)
    model.fit(batches, epochs=params.epochs, shuffle=False, verbose=verbose, callbacks=[StepLog()])
    return model, rows


def write_curve(rows: list[tuple[int, int, float, float]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["step", "epoch", "loss", "accuracy"])
        writer.writerows((step, epoch, f"{loss:.6f}", f"{accuracy:.6f}") for step, epoch, loss, accuracy in rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: %(default)s)")
    parser.add_argument("--data", default="data/train.h5", type=Path, help="training set (default: %(default)s)")
    parser.add_argument("--model", default="models/model.keras", type=Path, help="model to write (default: %(default)s)")
    parser.add_argument("--curve", default="plots/training.csv", type=Path, help="per-step curves (default: %(default)s)")
    args = parser.parse_args()

    check_destinations(args.model, args.curve)
    params = load_params(args.params)
    with DatasetReader(args.data) as reader:
        if reader.info.size != params.data.size:
            raise InputError(
                f"{args.data}: holds {reader.info.size}x{reader.info.size} frames, but {args.params} sets "
                f"data.size = {params.data.size} (regenerate it with `dvc repro generate_train`)"
            )
        require_training_fits(params, args.params, min(params.train.batch_size, len(reader)))
        from movingline.model import save_model

        with atomic_outputs(args.model, args.curve) as (model_path, curve_path), reader.read_errors_unwrapped():
            verbose = 1 if sys.stdout.isatty() else 2
            model, rows = train(reader, params.model, params.train, verbose)
            save_model(model, model_path)
            write_curve(rows, curve_path)
    log.info("wrote %s (%d parameters) after %d steps", args.model, model.count_params(), len(rows))


if __name__ == "__main__":
    run_stage(main)
