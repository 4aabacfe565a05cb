"""Training speed: the custom loop (movingline/training.py) against the `fit` path it replaced.

    python -m bench.training                       # 1,500 sequences of size 50, each path twice
    python -m bench.training --n-samples 5000 --repeat 3

Both paths train the default model (params.yaml) on the same file, one process each, and
the two alternate (fit, loop, fit, loop, ...) so that other work on the machine hits both
alike. The fit path is the train stage as it was before the loop: the model with float32
input, compiled, and `model.fit` on FrameBatches casting each batch to float32. Steady-state
speed counts the steps after the first WARMUP_STEPS (graph tracing); peak memory is the
child's peak resident set, from the kernel (``os.wait4``).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 5
PATHS = ("fit", "loop")


def steady_rate(step_ends: list[float], batch_size: int) -> float:
    """Sequences per second over the steps after the warm-up (all steps full-size but maybe the last)."""
    steps = step_ends[WARMUP_STEPS:]
    return (len(steps) - 1) * batch_size / (steps[-1] - steps[0])


def run_fit(data: Path, params) -> list[float]:
    """Today's fit path before the loop, faithfully: float32 input model, compile, fit on float32 batches."""
    import keras
    import numpy as np

    from movingline.dataset import DatasetReader
    from bench.fit import FrameBatches, compile_model
    from movingline.runtime import make_deterministic

    class Float32Batches(FrameBatches):
        def __getitem__(self, index):
            frames, labels = super().__getitem__(index)
            return frames.astype(np.float32), labels

    ends: list[float] = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    with DatasetReader(data) as reader:
        make_deterministic(params.train.seed)
        model = float32_model(reader.info.size, params.model)
        compile_model(model, params.train.learning_rate)
        batches = Float32Batches(reader, params.train.batch_size, with_labels=True)
        model.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=[StepTimes()])
    return ends


def float32_model(size: int, params):
    """build_model as it was: float32 input, the same layers otherwise."""
    import keras

    frames = keras.Input(shape=(None, size, size, 1), name="frames")
    x = keras.layers.Conv3D(params.filters, (1, params.kernel_size, params.kernel_size), activation="relu")(frames)
    x = keras.layers.MaxPooling3D((1, params.pool_size, params.pool_size))(x)
    _, _, height, width, channels = x.shape
    x = keras.layers.Reshape((-1, height * width * channels))(x)
    x = keras.layers.LSTM(params.lstm_units)(x)
    return keras.Model(frames, keras.layers.Dense(1, activation="sigmoid")(x))


def run_loop(data: Path, params) -> list[float]:
    from movingline.dataset import DatasetReader
    from movingline.training import train

    with DatasetReader(data) as reader:
        return train(reader, params.model, params.train).step_ends


def child(path: str, data: Path, params_path: Path, result: Path) -> None:
    from movingline.params import load_params

    params = load_params(params_path)
    ends = (run_fit if path == "fit" else run_loop)(data, params)
    result.write_text(json.dumps({"rate": steady_rate(ends, params.train.batch_size), "steps": len(ends)}))


def measure(path: str, data: Path, params_path: Path, folder: Path) -> dict:
    result = folder / f"{path}.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "bench.training", "--child", path, "--data", str(data), "--params", str(params_path), "--result", str(result)]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    # ru_maxrss is in KiB on Linux.
    return {**json.loads(result.read_text()), "peak_mb": usage.ru_maxrss * 1024 / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--data", type=Path, help="an existing training set of the default size (skips generating one)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.params, args.result)
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        params = yaml.safe_load(args.params.read_text())
        data = args.data
        if data is None:
            params["generate_train"]["n_samples"] = args.n_samples
            (folder / "params.yaml").write_text(yaml.safe_dump(params))
            data = folder / "train.h5"
            subprocess.run(
                [sys.executable, "-m", "stages.generate_train", "--params", str(folder / "params.yaml"), "--output", str(data),
                 "--strip", str(folder / "strip.png")],
                cwd=ROOT, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            )
        results = {path: [] for path in PATHS}
        for run in range(args.repeat):
            for path in PATHS:
                results[path].append(measure(path, data, args.params, folder))
                print(f"run {run + 1} {path}: {results[path][-1]['rate']:.1f} sequences/s, "
                      f"peak {results[path][-1]['peak_mb']:.0f} MB", flush=True)
    rates = {path: statistics.median(r["rate"] for r in results[path]) for path in PATHS}
    for path in PATHS:
        print(f"{path}: median {rates[path]:.1f} sequences/s (steady state), peak {max(r['peak_mb'] for r in results[path]):.0f} MB")
    print(f"loop / fit: {rates['loop'] / rates['fit']:.2f}x")


if __name__ == "__main__":
    main()
