"""The CNN-LSTM: the reference architecture, and the per-frame CNN's two equivalent forms."""

import numpy as np
import pytest

from movingline.model import build_model, frame_size, load_model, save_model
from movingline.params import ModelParams

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


@pytest.mark.parametrize("params", [REFERENCE, ModelParams(filters=3, kernel_size=3, pool_size=2, lstm_units=7)])
def test_folded_cnn_equals_time_distributed_cnn(params):
    folded = build_model(12, params)
    distributed = build_model(12, params, time_distributed=True)
    assert folded.count_params() == distributed.count_params()
    weights = folded.get_weights()
    # Conv3D's kernel has a leading depth axis of 1; Conv2D's is the same array without it.
    distributed.set_weights([weights[0][0], *weights[1:]])
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
    assert frame_size(load_model(tmp_path / "a.keras")) == 8
