"""The export stage (Keras -> ONNX, checked by onnxruntime) and predict through onnxruntime without TensorFlow."""

import csv
import sys

import numpy as np
import pytest

from movingline.inference import export as onnx_export
from movingline.errors import InputError
from movingline.model import load_model
from movingline.inference.onnx_runtime import OnnxModel, load_onnx_model
from movingline.inference.export import TOLERANCE, Agreement
from tests.conftest import SETTINGS, run, run_stage


def cumulative_frames(n: int, time: int, size: int, seed: int) -> np.ndarray:
    """Frames with random pixels added one step at a time: any length, as the model takes."""
    steps = np.random.default_rng(seed).random((n, time, size, size, 1)) > 0.97
    return np.logical_or.accumulate(steps, axis=1).astype(np.uint8)


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.parametrize("time", [30, 50])
def test_export_agrees_with_keras_whatever_the_number_of_frames(built_project, exported, time):
    keras_model = load_model(built_project / "models/model.keras", SETTINGS)
    agreement = onnx_export.compare(keras_model, load_onnx_model(exported), cumulative_frames(16, time, 8, seed=time))
    assert agreement.holds, agreement
    assert agreement.max_difference <= TOLERANCE and agreement.n_sequences == 16


@pytest.mark.slow
@pytest.mark.full
def test_export_gives_the_same_bytes_twice(built_project, exported, tmp_path):
    again = tmp_path / "again.onnx"
    run_stage("export", built_project, "--output", str(again))
    assert again.read_bytes() == exported.read_bytes()


@pytest.mark.slow
@pytest.mark.full
def test_export_stops_without_a_file_when_onnxruntime_disagrees(built_project, tmp_path, monkeypatch, capsys):
    import stages.export

    output = tmp_path / "model.onnx"
    monkeypatch.setattr(stages.export, "compare", lambda *args: Agreement(3e-3, 2, 40))
    monkeypatch.chdir(built_project)
    monkeypatch.setattr(sys, "argv", ["export", "--output", str(output)])
    with pytest.raises(SystemExit) as exit_status:
        stages.export.run_stage(stages.export.main)
    assert exit_status.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "disagrees with Keras" in line and "3.00e-03" in line and "2 labels differ" in line
    assert not output.exists() and not list(tmp_path.iterdir())


def test_a_file_that_is_not_onnx_is_refused_with_its_name(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(InputError, match=f"{path}: not an ONNX model"):
        load_onnx_model(path)
    with pytest.raises(InputError, match="model file not found"):
        load_onnx_model(tmp_path / "missing.onnx")


# Runs the predict stage in a fresh interpreter and says whether TensorFlow or Keras got imported.
PREDICT_WITHOUT_TENSORFLOW = """
import runpy, sys
sys.argv = ["predict", *sys.argv[1:]]
try:
    runpy.run_module("stages.predict", run_name="__main__")
finally:
    print("imported:", sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
"""


@pytest.mark.slow
@pytest.mark.full
def test_predict_with_the_onnx_file_never_imports_tensorflow(built_project, exported, tmp_path):
    onnx_csv, keras_csv = tmp_path / "onnx.csv", tmp_path / "keras.csv"
    data = str(built_project / "data/test.h5")
    served = run([sys.executable, "-c", PREDICT_WITHOUT_TENSORFLOW, "--model", str(exported), "--input", data,
                  "--output", str(onnx_csv)], built_project)
    assert "imported: []" in served.stdout
    kept = run_stage("predict", built_project, "--input", data, "--output", str(keras_csv))
    # The same captions, labels and columns; probabilities within the export's tolerance
    # (plus the CSV's rounding to 6 decimals).
    assert served.stdout.split("imported:")[0] == kept.stdout
    onnx_rows, keras_rows = (list(csv.DictReader(path.open())) for path in (onnx_csv, keras_csv))
    assert [row.keys() for row in onnx_rows] == [row.keys() for row in keras_rows]
    assert [(r["predicted"], r["expected"]) for r in onnx_rows] == [(r["predicted"], r["expected"]) for r in keras_rows]
    differences = [abs(float(a["probability_right"]) - float(b["probability_right"])) for a, b in zip(onnx_rows, keras_rows)]
    assert max(differences) <= TOLERANCE + 1e-6
    assert (tmp_path / "onnx.png").read_bytes() == (tmp_path / "keras.png").read_bytes()


@pytest.mark.slow
@pytest.mark.full
def test_predict_refuses_a_damaged_onnx_file_in_one_line(built_project, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07garbage")
    result = run_stage("predict", built_project, "--model", str(model), "--output", str(tmp_path / "p.csv"), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {model}: not an ONNX model")
    assert not (tmp_path / "p.csv").exists()


def test_onnx_model_reports_the_frame_size_and_probabilities(tmp_path):
    """A hand-built graph of the export's shape: frames in, the mean pixel out as the probability."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["frames"], ["floats"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["floats"], ["right"], axes=[1, 2, 3, 4], keepdims=0),
        ],
        "mean",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", "time", 6, 6, 1])],
        [helper.make_tensor_value_info("right", TensorProto.FLOAT, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    served = OnnxModel(model.SerializeToString(), "mean.onnx")
    frames = cumulative_frames(3, 5, 6, seed=1)
    assert served.input_shape == (None, None, 6, 6, 1)
    np.testing.assert_allclose(served.predict_on_batch(frames), frames.mean(axis=(1, 2, 3, 4)), rtol=1e-6)
    onnx.checker.check_model(model)
