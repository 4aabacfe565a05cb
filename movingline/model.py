"""The CNN-LSTM: one small CNN applied to every frame with shared weights, an LSTM over time.

The per-frame CNN is written as Conv3D and MaxPooling3D whose windows span one frame
(depth 1). That is exactly a Conv2D and a MaxPooling2D applied to each frame with the same
weights, computed as one convolution over all frames of the batch: time folded into the
batch, with built-in layers only, so ``keras.models.load_model`` needs nothing of ours.
It gives the same outputs as the ``TimeDistributed`` form (tests/test_model.py checks the
equality; ``time_distributed=True`` builds that form), and trains faster: one convolution
over every frame of the batch instead of one per frame. Training itself is
movingline/training/; Keras's ``fit`` path is kept in bench/fit.py, which the benchmark
and the tests compare the loop against.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from movingline import runtime
from movingline.errors import InputError, one_line
from movingline.outputs import temporary_path
from movingline.params import ModelParams
from movingline.settings import Settings

if TYPE_CHECKING:
    import keras

# Importing this module loads nothing heavy; load_model loads TensorFlow (runtime.prepare)
# only once the file looks right, so that a wrong path fails at once.


def build_model(size: int, params: ModelParams, *, time_distributed: bool = False) -> keras.Model:
    """The uncompiled CNN-LSTM for frames of ``size`` x ``size``; any number of timesteps."""
    keras = runtime.keras
    # Frames come in as the uint8 they are stored as, and become float32 inside the model:
    # a quarter of the bytes to feed to each step. Rescaling by 1 is the built-in layer that
    # casts, so load_model needs nothing of ours.
    frames = keras.Input(shape=(None, size, size, 1), dtype="uint8", name="frames")
    x = keras.layers.Rescaling(1.0, name="to_float")(frames)
    # model.conv_layers blocks; the first keeps the reference's layer names, later ones are
    # numbered (conv_2, pool_2, ...).
    for block in range(1, params.conv_layers + 1):
        suffix = "" if block == 1 else f"_{block}"
        if time_distributed:
            conv = keras.layers.Conv2D(params.filters, params.kernel_size, activation="relu")
            x = keras.layers.TimeDistributed(conv, name=f"conv{suffix}")(x)
            x = keras.layers.TimeDistributed(keras.layers.MaxPooling2D(params.pool_size), name=f"pool{suffix}")(x)
        else:
            kernel = (1, params.kernel_size, params.kernel_size)
            x = keras.layers.Conv3D(params.filters, kernel, activation="relu", name=f"conv{suffix}")(x)
            x = keras.layers.MaxPooling3D((1, params.pool_size, params.pool_size), name=f"pool{suffix}")(x)
    if time_distributed:
        x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="flatten")(x)
    else:
        _, _, height, width, channels = x.shape
        x = keras.layers.Reshape((-1, height * width * channels), name="flatten")(x)
    x = keras.layers.LSTM(params.lstm_units, name="lstm")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="right")(x)
    return keras.Model(frames, probability, name="cnn_lstm")


def frame_size(model: keras.Model) -> int:
    """The frame size a model was built for, read from its input shape."""
    return int(model.input_shape[2])


def predict_probabilities(model: keras.Model, frames: np.ndarray) -> np.ndarray:
    """Probability of "right" for each sequence of one batch of uint8 frames, shape (n,), float64."""
    return np.asarray(model.predict_on_batch(frames)).reshape(-1).astype(np.float64)


# Zip entry times are set to this fixed date (the earliest a zip file can hold).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_model(model: keras.Model, path: Path) -> None:
    """Saves in the Keras native format, made byte-stable.

    Keras records a save date in metadata.json, write times on the zip entries, and
    object ids (which vary from run to run) as ``shared_object_id`` in config.json.
    The date is dropped, the times fixed and the ids renumbered in order of appearance;
    the model loads and predicts exactly as before.
    """
    buffer = io.BytesIO()
    # Keras writes the raw file beside the destination, named as every temporary output is.
    raw_path = temporary_path(path)
    try:
        model.save(raw_path)
        with zipfile.ZipFile(raw_path) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
            for name in sorted(source.namelist()):
                data = source.read(name)
                if name == "metadata.json":
                    metadata = json.loads(data)
                    metadata.pop("date_saved", None)
                    data = json.dumps(metadata, sort_keys=True).encode()
                elif name == "config.json":
                    data = json.dumps(_renumber_shared_ids(json.loads(data)), sort_keys=True).encode()
                info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                target.writestr(info, data)
    finally:
        raw_path.unlink(missing_ok=True)
    path.write_bytes(buffer.getvalue())


def _renumber_shared_ids(config: object) -> object:
    numbers: dict[int, int] = {}

    def visit(node: object) -> object:
        if isinstance(node, dict):
            return {
                key: numbers.setdefault(value, len(numbers)) if key == "shared_object_id" else visit(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    return visit(config)


def load_model(path: str | Path, settings: Settings) -> keras.Model:
    """Loads a saved model, TensorFlow with ``settings`` first (runtime.prepare) once the file
    looks right; raises InputError naming the file if it is missing or not a Keras model."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found (run the train stage first)")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a Keras model file (expected a .keras zip archive, as the train stage writes)")
    with zipfile.ZipFile(path) as archive:
        missing = [name for name in ("config.json", "metadata.json") if name not in archive.namelist()]
    if missing:
        raise InputError(f"{path}: a zip archive but not a Keras model (it has no {missing[0]})")
    runtime.prepare(settings)
    try:
        model = runtime.keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a damaged file
        detail = one_line(str(error), 300)
        raise InputError(f"{path}: cannot load the Keras model ({type(error).__name__}: {detail})") from None
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 5 and shape[2] is not None and shape[2:] == (shape[2], shape[2], 1)):
        raise InputError(
            f"{path}: the model takes input of shape {shape}, "
            "expected (batch, time, size, size, 1) as the train stage builds"
        )
    return model
