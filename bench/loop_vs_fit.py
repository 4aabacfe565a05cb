"""Training speed: the custom loop (movingline/training/loop.py) against Keras's `fit` path it replaced.

    python -m bench.loop_vs_fit                       # 1,500 sequences of size 50, each path twice
    python -m bench.loop_vs_fit --n-samples 5000 --repeat 3

Both paths train the default model (params.yaml), built by movingline.model.build_model, on
the same file, one process each, and the two alternate (fit, loop, fit, loop, ...) so that
other work on the machine hits both alike. The fit path is bench/fit.py: the model compiled,
then `model.fit` on FrameBatches. Both feed the uint8 frames as stored to the same uint8-input
model, so the ratio measures the loop itself (its step under tf.distribute, one batch read
ahead on a thread) against `fit` (a PyDataset read by two threads).

Steady-state speed counts the steps after the first WARMUP_STEPS (graph tracing); wall time
and peak memory are the whole child process's, from bench/process.py.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.machine import ROOT
from bench.process import run_measured

WARMUP_STEPS = 5
PATHS = ("fit", "loop")


def steady_rate(step_ends: list[float], batch_size: int) -> float:
    """Sequences per second over the steps after the warm-up (all steps full-size but maybe the last)."""
    steps = step_ends[WARMUP_STEPS:]
    if len(steps) < 2:
        raise ValueError(f"{len(step_ends)} steps: need at least {WARMUP_STEPS + 2} for a steady-state speed")
    return (len(steps) - 1) * batch_size / (steps[-1] - steps[0])


def run_fit(data: Path, params):
    """Keras's fit path: the project's model, compiled, `fit` for one epoch on uint8 batches.
    Returns the model and the time after each step."""
    from bench.fit import FrameBatches, compile_model
    from movingline.data.dataset import DatasetReader
    from movingline.model import build_model
    from movingline.runtime import keras, make_deterministic

    ends: list[float] = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    with DatasetReader(data) as reader:
        make_deterministic(params.train.seed)
        model = build_model(reader.info.size, params.model)
        compile_model(model, params.train.learning_rate)
        batches = FrameBatches(reader, params.train.batch_size, with_labels=True)
        model.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=[StepTimes()])
    return model, ends


def run_loop(data: Path, params):
    """The train stage's loop (movingline.training.loop.train). Returns the model and the time after each step."""
    from movingline.data.dataset import DatasetReader
    from movingline.training.loop import train

    with DatasetReader(data) as reader:
        run = train(reader, params.model, params.train)
    return run.model, run.step_ends


def child(path: str, data: Path, params_path: Path, result: Path, model_path: Path | None) -> None:
    """One measured run: trains by ``path``, writes its speed and kernel path (and, with ``model_path``, the
    saved model's md5)."""
    from movingline import runtime
    from movingline.params import load_params
    from movingline.settings import read_settings

    params = load_params(params_path)
    kernel_path = runtime.prepare(read_settings(os.environ)).kernels
    model, ends = (run_fit if path == "fit" else run_loop)(data, params)
    report = {"rate": steady_rate(ends, params.train.batch_size), "steps": len(ends), "kernel_path": kernel_path}
    if model_path is not None:
        from movingline.model import save_model

        save_model(model, model_path)
        report["model_md5"] = hashlib.md5(model_path.read_bytes()).hexdigest()
    result.write_text(json.dumps(report), encoding="utf-8")


def child_command(path: str, data: Path, params_path: Path, result: Path, model_path: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "bench.loop_vs_fit", "--child", path, "--data", str(data)]
    command += ["--params", str(params_path), "--result", str(result)]
    return command + (["--model", str(model_path)] if model_path is not None else [])


def measure(path: str, data: Path, params_path: Path, folder: Path) -> dict:
    """One child process training by ``path``: its steady-state rate, steps and peak memory."""
    result = folder / f"{path}.json"
    usage = run_measured(child_command(path, data, params_path, result), folder / f"{path}.log")
    return {**json.loads(result.read_text(encoding="utf-8")), "peak_mb": usage.peak_bytes / 1e6}


def training_set(folder: Path, params_path: Path, n_samples: int) -> Path:
    """A training set of ``n_samples`` sequences at ``params_path``'s other settings, by the generate_train stage."""
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    params["generate_train"]["n_samples"] = n_samples
    generate_params = folder / "generate-params.yaml"
    generate_params.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    data = folder / "train.h5"
    command = [sys.executable, "-m", "stages.generate_train", "--params", str(generate_params)]
    run_measured([*command, "--output", str(data), "--strip", str(folder / "strip.png")], folder / "generate.log")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loop_vs_fit", description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--data", type=Path, help="an existing training set of the default size (skips generating one)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.params, args.result, args.model)
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = args.data or training_set(folder, args.params, args.n_samples)
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
