"""The reference implementation's approach, kept as the baseline the benchmark measures against.

Per-sample Python loops build float64 frames pixel by pixel, as the classic CNN-LSTM
example does; the whole set is held in memory as one array and passed to ``model.fit``,
with the per-frame CNN wrapped in Keras ``TimeDistributed``. The model comes from
``movingline.model.build_model(..., time_distributed=True)``: the same architecture and
weights as the pipeline's, only the per-frame CNN is computed the reference's way.

    python -m bench.baseline generate --size 50 --n-samples 2000
    python -m bench.baseline train --size 50 --n-samples 2000

Each prints one JSON line of its phase timings; the benchmark runs each in its own process
so that each has its own peak memory.
"""

import argparse
import json
import os
import random
import time

import numpy as np

SEED = 1
BATCH_SIZE = 32
LEARNING_RATE = 0.001


def next_frame(last_step: int, last_frame: np.ndarray, column: int, rng: random.Random) -> tuple[np.ndarray, int]:
    """The previous frame with one more pixel, in ``column``, one row up, level or down."""
    lower = max(0, last_step - 1)
    upper = min(last_frame.shape[0] - 1, last_step + 1)
    step = rng.randint(lower, upper)
    frame = last_frame.copy()
    frame[step, column] = 1
    return frame, step


def build_frames(size: int, rng: random.Random) -> tuple[list[np.ndarray], int]:
    """One sequence as a list of ``size`` float64 frames, and its label (1 = right)."""
    frames = []
    frame = np.zeros((size, size))
    step = rng.randint(0, size - 1)
    right = 1 if rng.random() < 0.5 else 0
    column = 0 if right else size - 1
    frame[step, column] = 1
    frames.append(frame)
    for index in range(1, size):
        column = index if right else size - 1 - index
        frame, step = next_frame(step, frame, column, rng)
        frames.append(frame)
    return frames, right


def generate_examples(size: int, n_samples: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """The whole set in memory: float64 frames (n, size, size, size, 1) and labels (n, 1)."""
    sequences, labels = [], []
    for _ in range(n_samples):
        frames, right = build_frames(size, rng)
        sequences.append(frames)
        labels.append(right)
    frames = np.array(sequences).reshape(n_samples, size, size, size, 1)
    return frames, np.array(labels).reshape(n_samples, 1)


def train(frames: np.ndarray, labels: np.ndarray, size: int) -> None:
    """One epoch of the reference's training: the TimeDistributed model on the in-memory set."""
    from movingline import runtime
    from movingline.settings import read_settings

    runtime.prepare(read_settings(os.environ))
    from bench.fit import compile_model
    from movingline.model import build_model
    from movingline.params import ModelParams
    from movingline.runtime import keras

    keras.utils.set_random_seed(SEED)
    model = build_model(size, ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=50), time_distributed=True)
    compile_model(model, LEARNING_RATE)
    model.fit(frames, labels, batch_size=BATCH_SIZE, epochs=1, verbose=0)


def main() -> None:
    from movingline.runtime import LOG_LEVEL_VARIABLE

    os.environ.setdefault(LOG_LEVEL_VARIABLE, "2")
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["generate", "train"], help="generate only, or generate then train")
    parser.add_argument("--size", type=int, default=50, help="frame size (default: %(default)s)")
    parser.add_argument("--n-samples", type=int, default=2000, help="sequences (default: %(default)s)")
    args = parser.parse_args()

    start, start_cpu = time.perf_counter(), time.process_time()
    frames, labels = generate_examples(args.size, args.n_samples, random.Random(SEED))
    timings = {"generate_s": time.perf_counter() - start, "generate_cpu_s": time.process_time() - start_cpu}
    if args.phase == "train":
        start = time.perf_counter()
        train(frames, labels, args.size)
        timings["train_s"] = time.perf_counter() - start
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
