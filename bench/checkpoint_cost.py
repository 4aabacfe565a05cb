"""What one checkpoint save costs at the default model (params.yaml): copying the variables
out of TensorFlow, then writing the .npz (with fsync) and renaming it into place.

    python -m bench.checkpoint_cost            # 20 saves, into a temporary folder

It prints the CPU, the file's size and the median and worst time per save, and the share
of training time that saving every MOVINGLINE_CHECKPOINT_SECONDS (default 60) s costs.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from movingline.environment import describe_cpu


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    from movingline import runtime
    from movingline.settings import read_settings
    from movingline.training.checkpoint import Checkpoint
    from movingline.model import build_model
    from movingline.params import load_params

    runtime.prepare(read_settings(os.environ))
    keras = runtime.keras
    from movingline.settings import DEFAULT_CHECKPOINT_SECONDS as DEFAULT_SECONDS
    from movingline.training.state import TrainingState

    params = load_params(args.params)
    model = build_model(params.data.size, params.model)
    optimizer = keras.optimizers.Adam(learning_rate=params.train.learning_rate)
    optimizer.build(model.trainable_variables)
    fingerprint = {"bench": "checkpoints"}
    times = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.npz"
        for _ in range(args.saves):
            started = time.perf_counter()
            weights = [variable.numpy().copy() for variable in model.weights]
            state = TrainingState(157, weights, [variable.numpy().copy() for variable in optimizer.variables], [],
                                  best_weights=[w.copy() for w in weights], best_loss=0.1, best_step=150)
            Checkpoint(path, fingerprint, DEFAULT_SECONDS).save(state)
            times.append(time.perf_counter() - started)
        size = path.stat().st_size
    median = statistics.median(times)
    print(f"CPU: {describe_cpu()}")
    print(f"checkpoint of the default model with best weights: {size / 1e6:.1f} MB")
    print(f"per save over {args.saves}: median {median * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms")
    print(f"every {DEFAULT_SECONDS} s of training: {100 * median / DEFAULT_SECONDS:.2f}% of the training time")


if __name__ == "__main__":
    main()
