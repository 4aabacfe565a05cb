"""One line that says which numbers this machine's TensorFlow computes for this project.

    python -m reproduction.fingerprint            # a few seconds
    MOVINGLINE_THREADS=1 python -m reproduction.fingerprint
    python -m reproduction.fingerprint --ops      # also one md5 per kind of op, to find which differ

Trains a small fixed CNN-LSTM (frames of 16x16, 256 sequences, 8 steps of 32) with the
project's own generator, training loop and byte-stable save, and prints the CPU, the
kernel path, the thread count, TensorFlow's version and the md5 of the saved model. Two
machines that print the same md5 computed the same bits; docs/reproducibility.md keeps a
table of them. The model is tiny so that the line comes in seconds; it runs the same
kinds of ops as the default model (convolution, pooling, LSTM, dense, Adam).
"""

import argparse
import hashlib
import logging
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from movingline.data.dataset import DatasetReader, write_dataset
from movingline.environment import describe_cpu
from movingline.params import ModelParams, TrainParams
from movingline.data.sequences import iter_frame_batches, sample_walks

SIZE = 16
N_SAMPLES = 256
DATA_SEED = 7
MODEL = ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=16, conv_layers=1)
TRAINING = TrainParams(seed=3, batch_size=32, epochs=1, learning_rate=0.001)


def fingerprint_md5(folder: Path) -> str:
    """Trains the fixed model in ``folder`` and returns the md5 of its saved bytes."""
    from movingline.model import save_model
    from movingline.training.loop import train

    data = folder / "data.h5"
    walks = sample_walks(np.random.default_rng(DATA_SEED), N_SAMPLES, SIZE)
    write_dataset(data, iter_frame_batches(walks, 64), size=SIZE, n_samples=N_SAMPLES, seed=DATA_SEED)
    with DatasetReader(data) as reader:
        run = train(reader, MODEL, TRAINING)
    model_path = folder / "model.keras"
    save_model(run.model, model_path)
    return hashlib.md5(model_path.read_bytes()).hexdigest()


def op_md5s() -> dict[str, str]:
    """The md5 of each kind of op the model runs, forward and backward, on fixed inputs.

    Two machines whose fingerprints differ can compare these lines to see which ops
    compute other bits there.
    """
    from movingline.runtime import keras, tf

    rng = np.random.default_rng(0)

    def values(*shape: int) -> tf.Tensor:
        return tf.constant(rng.standard_normal(shape).astype(np.float32))

    def md5(*tensors) -> str:
        return hashlib.md5(b"".join(np.asarray(t).tobytes() for t in tensors)).hexdigest()[:12]

    def forward_backward(layer, inputs: tf.Tensor) -> str:
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(outputs * values(*outputs.shape))
        gradients = tape.gradient(loss, [inputs, *layer.trainable_variables])
        return md5(outputs, *gradients)

    keras.utils.set_random_seed(1)
    frames = values(8, 16, 16, 16, 1)
    results = {
        "conv3d (1x2x2)": forward_backward(keras.layers.Conv3D(2, (1, 2, 2), activation="relu"), frames),
        "maxpool3d (1x2x2)": forward_backward(keras.layers.MaxPooling3D((1, 2, 2)), frames),
        "lstm": forward_backward(keras.layers.LSTM(16), values(8, 16, 128)),
        "dense sigmoid": forward_backward(keras.layers.Dense(1, activation="sigmoid"), values(8, 16)),
        "matmul 64x128x64": md5(tf.linalg.matmul(values(64, 128), values(128, 64))),
        "tanh, sigmoid, exp": md5(tf.tanh(values(4096)), tf.sigmoid(values(4096)), tf.exp(values(4096))),
        "reduce_sum 1e6": md5(tf.reduce_sum(values(1000, 1000), axis=0)),
    }
    variable = tf.Variable(values(256))
    optimizer = keras.optimizers.Adam(learning_rate=0.001)
    for _ in range(3):
        optimizer.apply_gradients([(values(256), variable)])
    results["adam, 3 updates"] = md5(variable)
    return results


def fingerprint() -> str:
    from movingline import runtime
    from movingline.settings import read_settings

    setup = runtime.prepare(read_settings(os.environ))
    with tempfile.TemporaryDirectory() as folder:
        md5 = fingerprint_md5(Path(folder))
    devices = ", ".join(device.name for device in runtime.tf.config.list_logical_devices("GPU")) or "CPU only"
    n_threads = setup.threads
    return (
        f"fingerprint: {describe_cpu()}; {platform.machine()}; {setup.kernels}; "
        f"{n_threads} thread{'s' if n_threads != 1 else ''}; {devices}; TensorFlow {runtime.tf.__version__}; "
        f"model md5 {md5}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reproduction.fingerprint", description=__doc__.splitlines()[0])
    parser.add_argument("--ops", action="store_true", help="also print one md5 per kind of op")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(fingerprint())
    if args.ops:
        for name, md5 in op_md5s().items():
            print(f"  {name}: {md5}")


if __name__ == "__main__":
    main()
