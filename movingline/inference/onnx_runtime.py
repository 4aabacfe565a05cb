"""The exported model, served by onnxruntime: no TensorFlow in the process.

``OnnxModel`` answers the two questions the prediction code asks a Keras model
(``input_shape`` and ``predict_on_batch``), so ``prediction.predict_batches`` and
``model.frame_size`` take either. ``load_predictor`` picks the route from the file name;
only a ``.keras`` file loads TensorFlow (runtime.prepare, then movingline.model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movingline.errors import InputError, one_line
from movingline.settings import Settings

ONNX_SUFFIX = ".onnx"
# The names the export gives the graph's input and output (export.py).
INPUT_NAME = "frames"
OUTPUT_NAME = "right"


class OnnxModel:
    """A CNN-LSTM exported to ONNX, run by onnxruntime on the CPU."""

    def __init__(self, model_bytes: bytes, source: str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # onnxruntime's own start-up notices would otherwise reach the stage's log.
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for a damaged file
            detail = one_line(str(error), 300)
            raise InputError(f"{source}: not an ONNX model that onnxruntime can load ({detail})") from None
        inputs = self.session.get_inputs()
        shape = tuple(dim if isinstance(dim, int) else None for dim in inputs[0].shape) if len(inputs) == 1 else ()
        if len(shape) != 5 or shape[2] is None or shape[2:] != (shape[2], shape[2], 1):
            raise InputError(
                f"{source}: the ONNX model takes input {[(i.name, i.shape) for i in inputs]}, "
                "expected one input of shape (batch, time, size, size, 1) as the export stage writes"
            )
        self.input_name = inputs[0].name
        self.input_shape = shape

    def predict_on_batch(self, frames: np.ndarray) -> np.ndarray:
        """Probability of "right" for each sequence of uint8 frames, shape (n, 1), float32."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(frames, dtype=np.uint8)})[0]


def load_onnx_model(path: Path) -> OnnxModel:
    """Loads an exported model; raises InputError naming the file if it is missing or not ONNX."""
    if not path.is_file():
        raise InputError(f"{path}: model file not found (run the export stage first: `dvc repro export`)")
    return OnnxModel(path.read_bytes(), str(path))


def load_predictor(path: Path, settings: Settings):
    """The model at ``path``: onnxruntime's for a .onnx file, else Keras's (which loads TensorFlow
    with ``settings``)."""
    if path.suffix == ONNX_SUFFIX:
        return load_onnx_model(path)
    from movingline.model import load_model

    return load_model(path, settings)
