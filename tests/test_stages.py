"""Each stage run alone, as `python -m stages.NAME` from the project root, on tiny params."""

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.badfiles import (
    assert_one_line,
    delete,
    flip_byte_in_chunk,
    replace_dataset,
    set_attribute,
    truncate,
    write_good_dataset,
    write_zip_that_is_not_a_model,
)
from tests.conftest import TINY_PARAMS, run_stage, stage_env, tiny_params

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


# ---------------------------------------------------------------------------------------
# Bad input, as a user runs the stages: exit status 2, one line naming the file or key,
# nothing written or changed. The exact messages are checked beside each module.


class Inputs:
    """Bad inputs for one test, built in its own folder from the built project's files."""

    def __init__(self, root: Path, folder: Path):
        self.root = root
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def params(self, **overrides: dict) -> str:
        return self.params_text(yaml.safe_dump(tiny_params(**overrides), sort_keys=False))

    def params_text(self, text: str) -> str:
        path = self.folder / "params.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def renamed_key(self, section: str, key: str, new_key: str) -> str:
        params = tiny_params()
        params[section][new_key] = params[section].pop(key)
        return self.params_text(yaml.safe_dump(params, sort_keys=False))

    def copy(self, relative: str, name: str) -> Path:
        return Path(shutil.copy(self.root / relative, self.folder / name))

    def corrupt(self, relative: str, sample: int) -> str:
        path = self.copy(relative, "corrupt.h5")
        flip_byte_in_chunk(path, sample)
        return str(path)

    def spoiled(self, relative: str, spoil: Callable[[Path], object]) -> str:
        path = self.copy(relative, "spoiled.h5")
        spoil(path)
        return str(path)

    def raw(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def dataset(self, size: int, n_samples: int = 10) -> str:
        return str(write_good_dataset(self.folder / f"size{size}.h5", size=size, n_samples=n_samples))

    def not_a_model(self) -> str:
        return str(write_zip_that_is_not_a_model(self.folder / "zip.keras"))


# Each stage's outputs, written under the test's own folder; the first one exists beforehand.
OUTPUT_FLAGS = {
    "generate_train": [("--output", "train.h5"), ("--strip", "strip.png")],
    "train": [("--model", "model.keras"), ("--curve", "curve.csv"), ("--record", "record.json")],
    "evaluate": [("--metrics", "metrics.json"), ("--roc", "roc.json"), ("--confusion", "confusion.json"), ("--record", "record.json")],
    "predict": [("--output", "predictions.csv"), ("--image", "predictions.png")],
}

GARBAGE = np.random.default_rng(2).bytes(4000)

# (id, stage, its arguments given the Inputs, the words the one line must hold)
# Cases that load TensorFlow before they fail, like another case of the same kind that the
# quick set keeps: only the full set (`bash run.sh test --all`) runs these (seconds each).
FULL_SET_ONLY = {"test data corrupt", "predict input corrupt", "model for other frames (predict --input)",
                 "model for other frames (predict)"}

STAGE_CASES: list[tuple[str, str, Callable[[Inputs], list[str]], list[str]]] = [
    (
        "params missing",
        "train",
        lambda i: ["--params", str(i.folder / "nope.yaml")],
        ["nope.yaml: params file not found"],
    ),
    (
        "params not YAML",
        "generate_train",
        lambda i: ["--params", i.params_text("data: [\n")],
        ["params.yaml: not valid YAML: line 2"],
    ),
    (
        "typo in evaluate stops train",
        "train",
        lambda i: ["--params", i.renamed_key("evaluate", "batch_size", "batch_sise")],
        ["params.yaml: evaluate.batch_sise: unknown key 'batch_sise'", "did you mean 'batch_size'?"],
    ),
    (
        "typo in train",
        "train",
        lambda i: ["--params", i.renamed_key("train", "learning_rate", "learnig_rate")],
        ["train.learnig_rate: unknown key", "did you mean 'learning_rate'?"],
    ),
    (
        "float epochs",
        "train",
        lambda i: ["--params", i.params(train={"epochs": 1.5})],
        ["params.yaml: train.epochs: expected an integer", "found float 1.5"],
    ),
    (
        "size 1000 at the first stage",
        "generate_train",
        lambda i: ["--params", i.params(data={"size": 1000})],
        ["params.yaml: the model section with data.size = 1000, train.batch_size = 16: training", "of memory"],
    ),
    (
        "size 1000 at predict",
        "predict",
        lambda i: ["--params", i.params(data={"size": 1000})],
        ["data.size = 1000", "of memory, but only"],
    ),
    (
        "n_samples beyond memory",
        "generate_train",
        lambda i: ["--params", i.params(generate_train={"n_samples": 10**13})],
        ["generate_train.n_samples = 10000000000000: drawing 10000000000000 random walks needs", "of memory, but only"],
    ),
    (
        "model beyond memory",
        "train",
        lambda i: ["--params", i.params(model={"lstm_units": 200_000})],
        ["params.yaml: the model section", "of memory, but only"],
    ),
    (
        "predict count beyond memory",
        "predict",
        lambda i: ["--params", i.params(predict={"n_samples": 10**13})],
        ["predict.n_samples = 10000000000000", "of memory"],
    ),
    ("train data missing", "train", lambda i: ["--data", str(i.folder / "nope.h5")], ["nope.h5: file not found"]),
    (
        "train data truncated",
        "train",
        lambda i: ["--data", i.spoiled("data/train.h5", truncate)],
        ["spoiled.h5: truncated HDF5 file"],
    ),
    ("train data not HDF5", "train", lambda i: ["--data", i.raw("x.h5", GARBAGE)], ["x.h5: not an HDF5 file"]),
    (
        "train data without labels",
        "train",
        lambda i: ["--data", i.spoiled("data/train.h5", lambda p: delete(p, "labels"))],
        ["spoiled.h5: dataset 'labels' is missing"],
    ),
    (
        "train data of another size",
        "train",
        lambda i: ["--data", i.dataset(size=6)],
        ["size6.h5: holds 6x6 frames", "data.size = 8"],
    ),
    (
        "train data corrupt",
        "train",
        lambda i: ["--data", i.corrupt("data/train.h5", 50)],
        ["corrupt.h5: sample 50 is corrupt"],
    ),
    (
        "test data corrupt",
        "evaluate",
        lambda i: ["--data", i.corrupt("data/test.h5", 33)],
        ["corrupt.h5: sample 33 is corrupt"],
    ),
    (
        "predict input corrupt",
        "predict",
        lambda i: ["--input", i.corrupt("data/test.h5", 2)],
        ["corrupt.h5: sample 2 is corrupt"],
    ),
    (
        "test data wrong version",
        "evaluate",
        lambda i: ["--data", i.spoiled("data/test.h5", lambda p: set_attribute(p, "format_version", 2))],
        ["spoiled.h5: format version 2 is not supported"],
    ),
    (
        "model missing",
        "evaluate",
        lambda i: ["--model", str(i.folder / "nope.keras")],
        ["nope.keras: model file not found"],
    ),
    (
        "model random bytes",
        "evaluate",
        lambda i: ["--model", i.raw("m.keras", GARBAGE)],
        ["m.keras: not a Keras model file"],
    ),
    (
        "model a foreign zip",
        "predict",
        lambda i: ["--model", i.not_a_model()],
        ["zip.keras: a zip archive but not a Keras model"],
    ),
    (
        "model for other frames (evaluate)",
        "evaluate",
        lambda i: ["--data", i.dataset(size=6)],
        ["the model was trained on 8x8 frames, but", "size6.h5 holds 6x6 frames"],
    ),
    (
        "model for other frames (predict --input)",
        "predict",
        lambda i: ["--input", i.dataset(size=6)],
        ["the model was trained on 8x8 frames, but", "size6.h5 holds 6x6 frames"],
    ),
    (
        "model for other frames (predict)",
        "predict",
        lambda i: ["--params", i.params(data={"size": 6})],
        ["the model was trained on 8x8 frames, but", "sets data.size = 6"],
    ),
    (
        "predict input of the wrong shape",
        "predict",
        lambda i: [
            "--input",
            i.spoiled("data/test.h5", lambda p: replace_dataset(p, "frames", np.zeros((40, 8, 8, 8), np.uint8))),
        ],
        ["spoiled.h5: 'frames' has shape (40, 8, 8, 8), expected (40, 8, 8, 8, 1)"],
    ),
    (
        "output is a directory",
        "evaluate",
        lambda i: ["--roc", str(i.folder)],
        ["is a directory, expected the path of a file"],
    ),
]


def stage_command(stage: str, args: list[str], out: Path) -> list[str]:
    """python -m stages.STAGE with ``args``, outputs redirected into ``out`` unless ``args`` set them."""
    command = [sys.executable, "-m", f"stages.{stage}", *args]
    for flag, name in OUTPUT_FLAGS[stage]:
        if flag not in args:
            command += [flag, str(out / name)]
    return command


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (bytecode caches aside), hidden ones included."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(
    ("case_id", "stage", "arguments", "needles"),
    [pytest.param(*case, id=case[0], marks=[pytest.mark.full] if case[0] in FULL_SET_ONLY else []) for case in STAGE_CASES],
)
def test_stage_refuses_bad_input_in_one_line_and_changes_nothing(
    built_project, tmp_path, case_id, stage, arguments, needles
):
    inputs = Inputs(built_project, tmp_path / "inputs")
    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_FLAGS[stage][0][1]).write_bytes(b"the previous output\n")
    project_before = snapshot(built_project)
    before = snapshot(out)

    result = subprocess.run(
        stage_command(stage, arguments(inputs), out),
        cwd=built_project,
        env=stage_env(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert_one_line(result.stderr.strip(), *needles)
    assert snapshot(out) == before, "an output was written or changed"
    assert snapshot(built_project) == project_before


def test_a_params_typo_stops_train_before_any_training(built_project, tmp_path):
    """train validates all of params.yaml first: no TensorFlow import, no model, within seconds."""
    inputs = Inputs(built_project, tmp_path / "inputs")
    params = inputs.renamed_key("predict", "seed", "sead")
    script = (
        "import sys, runpy; sys.argv = ['train'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('stages.train', run_name='__main__')\n"
        "finally:\n    print('tensorflow' in sys.modules, file=sys.stdout)\n"
    )
    command = [
        sys.executable,
        "-c",
        script,
        "--params",
        params,
        "--model",
        str(tmp_path / "m.keras"),
        "--curve",
        str(tmp_path / "c.csv"),
    ]
    result = subprocess.run(command, cwd=built_project, env=stage_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert_one_line(result.stderr.strip(), "predict.sead: unknown key 'sead'", "did you mean 'seed'?")
    assert result.stdout.strip() == "False", "TensorFlow was loaded before params.yaml was checked"
    assert not list(tmp_path.glob("*.keras")) and not list(tmp_path.glob(".*"))


def test_debug_shows_the_traceback(built_project, tmp_path):
    command = stage_command("train", ["--data", str(tmp_path / "nope.h5")], tmp_path)
    result = subprocess.run(
        command,
        cwd=built_project,
        env={**stage_env(), "MOVINGLINE_DEBUG": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "movingline.errors.InputError: " in result.stderr and "nope.h5: file not found" in result.stderr
    assert not list(tmp_path.iterdir())
