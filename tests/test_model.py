"""The CNN-LSTM: the reference architecture, and the per-frame CNN's two equivalent forms."""

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from movingline.errors import InputError
from movingline.model import build_model, frame_size, load_model, save_model
from movingline.params import ModelParams
from tests.badfiles import assert_one_line, write_zip_that_is_not_a_model
from tests.conftest import SETTINGS, TINY_PARAMS

SIZE = TINY_PARAMS["data"]["size"]

REFERENCE = ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=50)


def test_reference_model_has_240661_parameters():
    model = build_model(50, REFERENCE)
    assert model.count_params() == 240_661
    assert [layer.count_params() for layer in model.layers[1:]] == [0, 10, 0, 0, 240_600, 51]
    assert model.input_shape == (None, None, 50, 50, 1)
    # Frames go in as stored (uint8); the first layer makes them float32.
    assert model.inputs[0].dtype == "uint8" and model.layers[1].compute_dtype == "float32"
    assert frame_size(model) == 50


def test_any_number_of_timesteps_is_accepted():
    model = build_model(6, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=3))
    for timesteps in (1, 6, 9):
        assert model.predict(np.zeros((2, timesteps, 6, 6, 1), np.float32), verbose=0).shape == (2, 1)


@pytest.mark.parametrize(
    "params",
    [
        REFERENCE,
        ModelParams(filters=3, kernel_size=3, pool_size=2, lstm_units=7),
        ModelParams(filters=3, kernel_size=2, pool_size=2, lstm_units=5, conv_layers=2),
    ],
)
def test_folded_cnn_equals_time_distributed_cnn(params):
    folded = build_model(12, params)
    distributed = build_model(12, params, time_distributed=True)
    assert folded.count_params() == distributed.count_params()
    weights = folded.get_weights()
    # Conv3D's kernel has a leading depth axis of 1; Conv2D's is the same array without it.
    # (Only the Conv3D kernels are 5-D.)
    distributed.set_weights([weight[0] if weight.ndim == 5 else weight for weight in weights])
    frames = (np.random.default_rng(0).random((4, 12, 12, 12, 1)) < 0.2).astype(np.float32)
    # Equal up to float32 rounding: the two forms may sum a 3x3 window in another order.
    np.testing.assert_allclose(
        folded.predict(frames, verbose=0), distributed.predict(frames, verbose=0), rtol=1e-6, atol=1e-7
    )


def test_saved_model_loads_with_keras_alone_and_is_byte_stable(tmp_path):
    import keras

    model = build_model(8, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=4))
    save_model(model, tmp_path / "a.keras")
    save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = keras.models.load_model(tmp_path / "a.keras")
    frames = np.ones((1, 8, 8, 8, 1), np.float32)
    assert np.array_equal(loaded.predict(frames, verbose=0), model.predict(frames, verbose=0))
    assert frame_size(load_model(tmp_path / "a.keras", SETTINGS)) == 8


# Refusing what is not our model, with one line naming the file


@pytest.fixture(scope="module")
def keras_model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.keras"
    save_model(build_model(SIZE, ModelParams(**TINY_PARAMS["model"])), path)
    return path


def write_dense_model(path: Path) -> Path:
    import keras

    inputs = keras.Input(shape=(3,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(path)
    return path


NOT_A_KERAS_FILE = "not a Keras model file (expected a .keras zip archive, as the train stage writes)"

# (id, how to make the file, the message after "<file>: ")
MODEL_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("missing", lambda p: None, "model file not found (run the train stage first)"),
    ("random bytes", lambda p: p.write_bytes(np.random.default_rng(1).bytes(3000)), NOT_A_KERAS_FILE),
    ("empty", lambda p: p.write_bytes(b""), NOT_A_KERAS_FILE),
    ("a zip but not a model", write_zip_that_is_not_a_model, "a zip archive but not a Keras model (it has no config.json)"),
    (
        "another kind of model",
        write_dense_model,
        "the model takes input of shape (None, 3), expected (batch, time, size, size, 1) as the train stage builds",
    ),
]


@pytest.mark.parametrize(("case_id", "make", "message"), MODEL_CASES, ids=[case[0] for case in MODEL_CASES])
def test_load_model_refuses_what_is_not_our_model(tmp_path, case_id, make, message):
    path = tmp_path / "m.keras"
    make(path)
    with pytest.raises(InputError) as caught:
        load_model(path, SETTINGS)
    assert str(caught.value) == f"{path}: {message}"


def test_a_damaged_model_archive_is_refused(tmp_path, keras_model_file):
    damaged = tmp_path / "m.keras"
    with zipfile.ZipFile(keras_model_file) as source, zipfile.ZipFile(damaged, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, data[: len(data) // 3] if name.endswith(".h5") else data)
    with pytest.raises(InputError) as caught:
        load_model(damaged, SETTINGS)
    # The rest of the message is Keras's own words, which vary between versions.
    assert_one_line(str(caught.value), f"{damaged}: cannot load the Keras model (")


# At size 50 with 2 filters, 2x2 kernels, 2x2 pooling and 50 LSTM units, by hand:
# - block 1: Conv 50 -> 49, pool -> 24; weights 2*2*1*2 + 2 = 10.
# - block 2: Conv 24 -> 23, pool -> 11; weights 2*2*2*2 + 2 = 18 (2 input channels now).
# - the uint8 -> float32 cast (Rescaling by 1) has no weights.
# - LSTM on F features: 4 * 50 * (F + 50 + 1); Dense: 50 + 1 = 51.
# Depth 1: F = 24*24*2 = 1,152; LSTM 200 * 1,203 = 240,600; total 10 + 240,600 + 51 = 240,661.
# Depth 2: F = 11*11*2 = 242;   LSTM 200 * 293 = 58,600;     total 10 + 18 + 58,600 + 51 = 58,679.
@pytest.mark.parametrize(
    ("conv_layers", "per_layer", "total"),
    [(1, [0, 10, 0, 0, 240_600, 51], 240_661), (2, [0, 10, 0, 18, 0, 0, 58_600, 51], 58_679)],
)
def test_parameter_count_by_depth(conv_layers, per_layer, total):
    params = ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=50, conv_layers=conv_layers)
    model = build_model(50, params)
    assert [layer.count_params() for layer in model.layers[1:]] == per_layer
    assert model.count_params() == total
    assert params.parameter_count(50) == total


def test_two_blocks_give_two_convolutions_named_after_the_first():
    import keras

    model = build_model(50, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=50, conv_layers=2))
    assert [layer.name for layer in model.layers] == [
        "frames", "to_float", "conv", "pool", "conv_2", "pool_2", "flatten", "lstm", "right"
    ]
    assert sum(isinstance(layer, keras.layers.Conv3D) for layer in model.layers) == 2
    assert model.get_layer("flatten").output.shape[-1] == 242


def test_the_default_depth_builds_the_reference_byte_for_byte(tmp_path):
    explicit = ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=50, conv_layers=1)
    assert explicit == REFERENCE
    import keras

    keras.utils.set_random_seed(0)
    save_model(build_model(50, REFERENCE), tmp_path / "reference.keras")
    keras.utils.set_random_seed(0)
    save_model(build_model(50, explicit), tmp_path / "depth1.keras")
    assert (tmp_path / "reference.keras").read_bytes() == (tmp_path / "depth1.keras").read_bytes()


def test_a_two_block_model_saves_and_loads_with_keras_alone(tmp_path):
    import keras

    model = build_model(8, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=4, conv_layers=2))
    save_model(model, tmp_path / "deep.keras")
    loaded = keras.models.load_model(tmp_path / "deep.keras")
    assert [layer.name for layer in loaded.layers if isinstance(layer, keras.layers.Conv3D)] == ["conv", "conv_2"]
    frames = (np.random.default_rng(1).random((3, 8, 8, 8, 1)) < 0.3).astype(np.float32)
    assert np.array_equal(loaded.predict(frames, verbose=0), model.predict(frames, verbose=0))


@pytest.mark.parametrize(
    ("size", "params"),
    [
        (30, ModelParams(filters=3, kernel_size=3, pool_size=2, lstm_units=6, conv_layers=3)),
        (50, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=50, conv_layers=4)),
        (17, ModelParams(filters=4, kernel_size=2, pool_size=3, lstm_units=5, conv_layers=2)),
    ],
)
def test_parameter_count_and_feature_size_match_the_built_model(size, params):
    model = build_model(size, params)
    assert params.parameter_count(size) == model.count_params()
    assert model.get_layer("flatten").output.shape[-1] == params.features(size)
