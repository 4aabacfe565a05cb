"""models/model.keras -> ONNX, with stable bytes, checked against Keras by onnxruntime.

The conversion is Keras 3's own ``model.export(format="onnx")`` (tf2onnx underneath,
which converts this model with TensorFlow 2.21 and NumPy 2). tf2onnx numbers the names
it makes with a counter that keeps running within a process, so the same model gives
other bytes on a second export; ``canonical_names`` renames every node and tensor in
graph order, which makes the file depend on the model alone. The time axis stays free:
the graph takes (batch, time, size, size, 1) uint8 frames with batch and time unknown.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from movingline import runtime
from movingline.inference.onnx_runtime import INPUT_NAME, OUTPUT_NAME, OnnxModel

if TYPE_CHECKING:
    import keras
    import onnx

# The largest |Keras - onnxruntime| probability difference the export may show. Measured on
# the default model: 6.2e-8 at 50 frames, 1.2e-7 at 25 (docs/sharing.md); the two runtimes
# sum the float32 LSTM in another order, so exact equality is not to be expected.
TOLERANCE = 1e-5
# How many test sequences the export stage checks, at full length and at half length
# (which shows that the time axis stayed free).
CHECK_SEQUENCES = 64


def export_onnx(model: keras.Model) -> onnx.ModelProto:
    """The ONNX graph of ``model``, its names made canonical."""
    import onnx

    size = int(model.input_shape[2])
    signature = [runtime.tf.TensorSpec((None, None, size, size, 1), runtime.tf.uint8, name=INPUT_NAME)]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(), _quiet("tf2onnx"):
        # Keras's patch for tf2onnx on NumPy 2 probes np.object, which NumPy warns about.
        warnings.simplefilter("ignore", FutureWarning)
        path = Path(folder) / "model.onnx"
        model.export(path, format="onnx", input_signature=signature, verbose=False)
        graph = onnx.load(path)
    return canonical_names(graph)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Keeps a library's INFO lines (tf2onnx's optimiser report) out of the stage's log."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def canonical_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its tensors named t0, t1 ... and its nodes OpType_0 ... in graph order.

    The input keeps its name and the output is named OUTPUT_NAME: the names serving uses.
    """
    graph = model.graph
    if len(graph.output) != 1 or any(attribute.g.node for node in graph.node for attribute in node.attribute):
        raise ValueError("expected a graph with one output and no subgraphs, as tf2onnx writes for the CNN-LSTM")
    names = {entry.name: entry.name for entry in graph.input}
    names[graph.output[0].name] = OUTPUT_NAME

    def rename(name: str) -> str:
        return names.setdefault(name, f"t{len(names)}") if name else name

    # Names follow the nodes, and the weights are sorted by them: tf2onnx's own order of the
    # weights follows its counter too.
    for index, node in enumerate(graph.node):
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        node.name = f"{node.op_type}_{index}"
    initializers = [type(tensor)() for tensor in graph.initializer]
    for copy, tensor in zip(initializers, graph.initializer):
        copy.CopyFrom(tensor)
        copy.name = rename(tensor.name)
    initializers.sort(key=lambda tensor: _order(tensor.name))
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    graph.output[0].name = OUTPUT_NAME
    # Shapes inferred for intermediate tensors carry the old names; onnxruntime infers them again.
    del graph.value_info[:]
    graph.name = "cnn_lstm"
    graph.doc_string = ""
    return model


def _order(name: str) -> int:
    """Where a canonical tensor name comes in graph order (the input and output first)."""
    return int(name[1:]) if name.startswith("t") and name[1:].isdigit() else -1


@dataclass(frozen=True)
class Agreement:
    """How the exported model's answers compare with Keras's on the same frames."""

    max_difference: float  # largest |probability difference|
    label_mismatches: int  # sequences given another label
    n_sequences: int

    @property
    def holds(self) -> bool:
        return self.max_difference <= TOLERANCE and self.label_mismatches == 0


def compare(keras_model: keras.Model, onnx_model: OnnxModel, frames: np.ndarray) -> Agreement:
    """Runs both models on ``frames`` (uint8, (n, time, s, s, 1)) and compares their probabilities."""
    from movingline.inference.metrics import predicted_labels

    expected = np.asarray(keras_model.predict_on_batch(frames), dtype=np.float64).reshape(-1)
    found = np.asarray(onnx_model.predict_on_batch(frames), dtype=np.float64).reshape(-1)
    return Agreement(
        max_difference=float(np.max(np.abs(expected - found))) if len(frames) else 0.0,
        label_mismatches=int(np.sum(predicted_labels(expected) != predicted_labels(found))),
        n_sequences=len(frames),
    )
