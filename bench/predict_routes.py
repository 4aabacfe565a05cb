"""Start-up time and peak memory of the two prediction routes, Keras and onnxruntime, in one run.

    python -m bench.predict_routes --keras models/model.keras --onnx models/model.onnx --data data/test.h5

Each measurement is one whole process (bench/process.py): "start-up" imports what the route
needs, loads the model and predicts one sequence; "predict stage" is
`python -m stages.predict --model M --input DATA` over the whole file. Prints a Markdown
table with the CPU, the commit and the date, as docs/performance.md shows it.
"""

import argparse
import datetime
import logging
import sys
import tempfile
from pathlib import Path

from bench.machine import commit
from bench.process import Usage, run_measured
from movingline.environment import describe_cpu

log = logging.getLogger(__name__)

# Import, load, predict one sequence: the least a server does before its first answer.
STARTUP = """
import sys
from pathlib import Path
from movingline.data.dataset import DatasetReader
from movingline.inference.onnx_runtime import load_predictor
from movingline.settings import Settings
with DatasetReader(sys.argv[2], require_labels=False) as reader:
    frames = reader.read_frames(0, 1)
load_predictor(Path(sys.argv[1]), Settings()).predict_on_batch(frames)
"""


def measure_route(model: Path, data: Path, folder: Path, repeat: int) -> tuple[Usage, Usage]:
    """(start-up, predict stage) for one model file; the start-up is the fastest of ``repeat``."""
    runs = [run_measured([sys.executable, "-c", STARTUP, str(model), str(data)], folder / "startup.log") for _ in range(repeat)]
    startup = min(runs, key=lambda usage: usage.wall_s)
    output = folder / f"{model.suffix[1:]}.csv"
    stage = run_measured(
        [sys.executable, "-m", "stages.predict", "--model", str(model), "--input", str(data), "--output", str(output)],
        folder / "predict.log",
    )
    return startup, stage


def table(results: dict[str, tuple[Usage, Usage]], data: Path) -> str:
    lines = [
        f"| route | start-up s | start-up peak memory | predict stage on {data} s | its peak memory |",
        "|---|--:|--:|--:|--:|",
    ]
    for route, (startup, stage) in results.items():
        lines.append(
            f"| {route} | {startup.wall_s:.2f} | {startup.peak_bytes / 1e6:.0f} MB | {stage.wall_s:.2f} | {stage.peak_bytes / 1e6:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.predict_routes", description=__doc__.splitlines()[0])
    parser.add_argument("--keras", type=Path, default=Path("models/model.keras"), help="Keras model (default: %(default)s)")
    parser.add_argument("--onnx", type=Path, default=Path("models/model.onnx"), help="its export (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=Path("data/test.h5"), help="sequences to predict (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="start-ups per route; the fastest counts (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for route, model in (("Keras (TensorFlow)", args.keras), ("ONNX (onnxruntime)", args.onnx)):
            log.info("measuring %s", route)
            results[route] = measure_route(model.resolve(), args.data.resolve(), Path(folder), args.repeat)
    print(f"{describe_cpu()}; commit {commit()}; {datetime.date.today().isoformat()}")
    print(table(results, args.data))


if __name__ == "__main__":
    main()
