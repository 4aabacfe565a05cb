"""Each stage run alone, as `python -m stages.NAME` from the project root, on tiny params."""

import csv
import json

import h5py
import numpy as np
import pytest

from tests.conftest import TINY_PARAMS, run_stage

pytestmark = pytest.mark.slow

SIZE = TINY_PARAMS["data"]["size"]


def test_generate_stages_write_datasets_and_strips(built_project):
    for split in ("train", "test"):
        with h5py.File(built_project / f"data/{split}.h5") as file:
            n = TINY_PARAMS[f"generate_{split}"]["n_samples"]
            assert file["frames"].shape == (n, SIZE, SIZE, SIZE, 1)
            assert file.attrs["seed"] == TINY_PARAMS[f"generate_{split}"]["seed"]
        assert (built_project / f"plots/{split}_sequences.png").read_bytes()[:4] == b"\x89PNG"


def test_train_writes_a_loadable_model_and_per_step_curves(built_project):
    import keras

    model = keras.models.load_model(built_project / "models/model.keras")
    assert model.input_shape == (None, None, SIZE, SIZE, 1)
    with open(built_project / "plots/training.csv") as file:
        rows = list(csv.DictReader(file))
    n_steps = -(-TINY_PARAMS["generate_train"]["n_samples"] // TINY_PARAMS["train"]["batch_size"])
    assert [int(row["step"]) for row in rows] == list(range(1, n_steps + 1))
    assert all(0.0 <= float(row["accuracy"]) <= 1.0 and float(row["loss"]) > 0 for row in rows)


def test_evaluate_writes_every_metric_and_plot_data(built_project):
    metrics = json.loads((built_project / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "loss", "precision", "recall", "f1", "roc_auc", "n_samples"}
    assert metrics["n_samples"] == TINY_PARAMS["generate_test"]["n_samples"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    roc = json.loads((built_project / "plots/roc.json").read_text())["roc"]
    assert roc[0]["fpr"] == 0.0 and roc[-1]["tpr"] == 1.0
    confusion = json.loads((built_project / "plots/confusion.json").read_text())["confusion"]
    assert len(confusion) == metrics["n_samples"]
    correct = sum(row["actual"] == row["predicted"] for row in confusion)
    assert correct / len(confusion) == pytest.approx(metrics["accuracy"])


def test_predict_default_writes_fresh_predictions(built_project):
    with open(built_project / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == TINY_PARAMS["predict"]["n_samples"]
    assert list(rows[0]) == ["index", "probability_right", "predicted", "expected"]
    for row in rows:
        assert int(row["predicted"]) == int(float(row["probability_right"]) >= 0.5)
    assert (built_project / "plots/predictions.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_on_a_file_without_labels(built_project, tmp_path):
    unlabelled = tmp_path / "unlabelled.h5"
    with h5py.File(built_project / "data/test.h5") as source, h5py.File(unlabelled, "w") as target:
        for key, value in source.attrs.items():
            target.attrs[key] = value
        target.create_dataset("frames", data=source["frames"][()])
    output = tmp_path / "out.csv"
    result = run_stage(
        "predict", built_project, "--model", "models/model.keras", "--input", str(unlabelled), "--output", str(output)
    )
    with open(output) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == TINY_PARAMS["generate_test"]["n_samples"]
    assert "expected" not in rows[0]
    assert "Expected: ?, Predicted: " in result.stdout
    assert output.with_suffix(".png").exists()


def test_predict_on_a_labelled_file_matches_evaluate(built_project, tmp_path):
    output = tmp_path / "test.csv"
    result = run_stage("predict", built_project, "--input", "data/test.h5", "--output", str(output))
    with open(output) as file:
        rows = list(csv.DictReader(file))
    accuracy = np.mean([row["predicted"] == row["expected"] for row in rows])
    metrics = json.loads((built_project / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["accuracy"])
    first = rows[0]
    names = {"0": "Left", "1": "Right"}
    assert result.stdout.splitlines()[0] == f"Expected: {names[first['expected']]}, Predicted: {names[first['predicted']]}"
