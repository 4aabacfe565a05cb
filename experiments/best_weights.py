"""Does keeping the best validation weights remove the learning curve's dip at 2,000 sequences?

For the learning-curve runs that dipped (docs/learning-curve.md: the reference and batch8
at 2,000 training sequences, train.seed 3, 4 and 5), this trains each run twice on this
machine, in this process, with the learning curve's data and params:

- as in the grid: all 2,000 sequences trained on, the last step's weights tested;
- with the last ``--held-out`` of them held out for validation, scored every
  ``--validate-every`` steps: tested at the last step's weights, and at the best
  validation loss's (what the train stage saves with validation on).

Every model is tested on the learning curve's 1,000 test sequences. It writes one row per
run and variant to ``--output`` (default docs/best-weights.csv).

    python -m experiments.best_weights
"""

import argparse
import csv
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger("best_weights")

RUNS = {"reference": {}, "batch8": {"batch_size": 8}}  # train params each model sets (as in the grid)
BUDGET = 2000
SEEDS = (3, 4, 5)
COLUMNS = ["model", "train_seed", "variant", "trained_on", "held_out", "validate_every", "tested_step",
           "steps", "accuracy", "loss", "train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.best_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--validate-every", type=int, default=10)
    parser.add_argument("--output", type=Path, default=Path("docs/best-weights.csv"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from movingline import runtime
    from movingline.settings import read_settings

    runtime.prepare(read_settings(os.environ))
    from movingline.data.dataset import DatasetReader
    from movingline.inference.metrics import compute_metrics
    from movingline.data.generate import generate_dataset
    from movingline.params import load_params
    from movingline.inference.prediction import predict_batches
    from movingline.runtime import keras
    from movingline.training.loop import train

    params = load_params(args.params)
    size = params.data.size

    def test(model) -> dict:
        with DatasetReader(test_path) as reader:
            predictions = predict_batches(model, reader.iter_batches(params.evaluate.batch_size), n_shown=0)
        return compute_metrics(predictions.expected, predictions.probabilities)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        train_path, test_path = Path(folder) / "train.h5", Path(folder) / "test.h5"
        for path, n, seed in ((train_path, BUDGET, params.generate_train.seed), (test_path, params.generate_test.n_samples, params.generate_test.seed)):
            generate_dataset(path, Path(folder) / f"{path.stem}.png", size=size, n_samples=n, seed=seed, label=str(path))
        for model_name, changes in RUNS.items():
            for seed in SEEDS:
                for held_out in (0, args.held_out):
                    train_params = dataclasses.replace(
                        params.train, **changes, seed=seed, validation_sequences=held_out,
                        validate_every=args.validate_every if held_out else 0,
                    )
                    with DatasetReader(train_path) as reader:
                        run = train(reader, params.model, train_params)
                    common = {"model": model_name, "train_seed": seed, "trained_on": BUDGET - held_out,
                              "held_out": held_out, "validate_every": train_params.validate_every,
                              "steps": len(run.curve), "train_seconds": f"{run.seconds:.1f}"}
                    variants = [("last", len(run.curve), run.model)]
                    if held_out:
                        last = keras.models.clone_model(run.model)
                        last.set_weights(run.last_weights)
                        variants = [("last", len(run.curve), last), ("best", run.best_step, run.model)]
                    for variant, step, model in variants:
                        metrics = test(model)
                        rows.append(common | {"variant": variant, "tested_step": step,
                                              "accuracy": f"{metrics['accuracy']:.4f}", "loss": f"{metrics['loss']:.6f}"})
                        log.info("%s", rows[-1])
    with open(args.output, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    log.info("took %.0f s", time.perf_counter() - started)
