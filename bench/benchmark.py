"""Speed and peak memory of the generate_train and train stages against the original example's approach.

    python -m bench.benchmark                      # size 50, 2,000 sequences (bash run.sh bench)
    python -m bench.benchmark --n-samples 5000 --repeat 5
    python -m bench.benchmark --memory-scaling     # peak memory at 5,000 and at 20,000 sequences

Every measurement is one whole process, timed from start to exit, its peak resident memory
read from the kernel's accounting of that one child (``os.wait4``). The project's stages
run as a user runs them (``python -m stages.NAME``) on a params.yaml of the chosen size in a
temporary folder, the HDF5 write and the model save included. The baseline (bench/baseline.py)
generates the original example's way in one process, and generates then trains in another; its
training time is that process's time less its own generation, so both sides count the
interpreter, the TensorFlow import, building the model and the epoch. Generation runs
``--repeat`` times and the median run counts (the range is printed too): the project's runs
take a fraction of a second and the baseline's, bound by page faults on gigabytes of
float64, vary several-fold with other work on the machine. Training runs once. Timings are
not asserted anywhere: they depend on the machine.
"""

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml

from bench.machine import ROOT, commit
from bench.process import run_measured
from movingline.environment import describe_cpu

log = logging.getLogger("benchmark")

MB = 1e6

SCALING_SIZES = (5000, 20000)


@dataclass(frozen=True)
class Measurement:
    """One process: what it did, how long it took and the most memory it held."""

    name: str
    n_samples: int
    wall_s: float
    cpu_s: float
    peak_bytes: int
    wall_runs_s: tuple[float, ...] = ()

    @property
    def per_second(self) -> float:
        return self.n_samples / self.wall_s


def repeated(name: str, n_samples: int, command: list[str], log_path: Path, repeat: int) -> Measurement:
    """The median of ``repeat`` runs of ``command`` (by wall time), with the highest peak memory of them all."""
    runs = sorted(run_measured(command, log_path) for _ in range(repeat))
    wall, cpu, _ = runs[(len(runs) - 1) // 2]
    return Measurement(name, n_samples, wall, cpu, max(peak for _, _, peak in runs), tuple(run[0] for run in runs))


def write_params(folder: Path, size: int, n_samples: int) -> Path:
    """The project's params.yaml with ``data.size`` and ``generate_train.n_samples`` replaced."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["size"] = size
    params["generate_train"]["n_samples"] = n_samples
    path = folder / f"params-{size}-{n_samples}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def stage_command(stage: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", f"stages.{stage}", *map(str, args)]


def measure_project(folder: Path, size: int, n_samples: int, repeat: int, *, evaluate: bool = False) -> list[Measurement]:
    """The generate_train stage (median of ``repeat``), then train on its file, then evaluate if asked."""
    params = write_params(folder, size, n_samples)
    data, model = folder / f"train-{n_samples}.h5", folder / f"model-{n_samples}.keras"
    results = [
        repeated(
            "generate_train (project)",
            n_samples,
            stage_command("generate_train", "--params", params, "--output", data, "--strip", folder / "strip.png"),
            folder / "generate_train.log",
            repeat,
        )
    ]
    log.info("generate_train: %.2f s", results[-1].wall_s)
    train = stage_command(
        "train", "--params", params, "--data", data, "--model", model, "--curve", folder / "training.csv",
        "--record", folder / "record.json",
    )  # fmt: skip
    results.append(Measurement("train (project)", n_samples, *run_measured(train, folder / "train.log")))
    log.info("train: %.2f s", results[-1].wall_s)
    if evaluate:
        command = stage_command(
            "evaluate", "--params", params, "--model", model, "--data", data, "--metrics", folder / "metrics.json",
            "--roc", folder / "roc.json", "--confusion", folder / "confusion.json",
            "--training-record", folder / "record.json", "--record", folder / "training.json",
        )  # fmt: skip
        results.append(Measurement("evaluate (project)", n_samples, *run_measured(command, folder / "evaluate.log")))
        log.info("evaluate: %.2f s", results[-1].wall_s)
    return results


def measure_baseline(folder: Path, size: int, n_samples: int, repeat: int) -> list[Measurement]:
    """The baseline's generation (median of ``repeat``) and, in a process of its own, its training."""
    base = [sys.executable, "-m", "bench.baseline"]
    sizes = ["--size", str(size), "--n-samples", str(n_samples)]
    generation = repeated(
        "generate (baseline)", n_samples, [*base, "generate", *sizes], folder / "baseline-generate.log", repeat
    )
    log.info("baseline generation: %.2f s", generation.wall_s)
    log_path = folder / "baseline-train.log"
    wall, cpu, peak = run_measured([*base, "train", *sizes], log_path)
    # The process generated its set before training; count only the rest, as for the project.
    phases = json.loads(log_path.read_text(encoding="utf-8").strip().splitlines()[-1])
    training = Measurement(
        "train (baseline)", n_samples, wall - phases["generate_s"], cpu - phases["generate_cpu_s"], peak
    )
    log.info("baseline training: %.2f s", training.wall_s)
    return [generation, training]


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    versions = []
    for package in ("tensorflow-cpu", "tensorflow", "keras", "h5py", "numpy"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return (
        f"{describe_cpu()}, {os.cpu_count()} CPUs, {memory / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{', '.join(versions)}; commit {commit()}, {datetime.now(timezone.utc):%Y-%m-%d}"
    )


def print_comparison(results: dict[str, Measurement]) -> None:
    print(f"{'':28s} {'wall s':>8s} {'seq/s':>9s} {'CPU s':>8s} {'peak MB':>9s}  wall s of each run")
    for m in results.values():
        runs = " ".join(f"{wall:.2f}" for wall in m.wall_runs_s)
        print(f"{m.name:28s} {m.wall_s:8.2f} {m.per_second:9.0f} {m.cpu_s:8.2f} {m.peak_bytes / MB:9.0f}  {runs}")
    generation = results["generate (baseline)"].wall_s / results["generate_train (project)"].wall_s
    training = results["train (baseline)"].wall_s / results["train (project)"].wall_s
    print(f"speed, project / baseline: generation {generation:.1f}x, training {training:.1f}x")
    share = results["generate_train (project)"].wall_s / results["train (project)"].wall_s
    print(f"project: generate_train takes {share:.1%} of train's wall time")
    for step in ("generate", "train"):
        project = results["generate_train (project)" if step == "generate" else "train (project)"].peak_bytes
        baseline = results[f"{step} (baseline)"].peak_bytes
        print(f"peak memory, project / baseline: {step} {project / baseline:.3f}x")


def print_scaling(results: dict[int, list[Measurement]]) -> None:
    small, large = SCALING_SIZES
    print(f"{'peak MB':28s} {small:>9,d} {large:>9,d} {'ratio':>7s}")
    for index, first in enumerate(results[small]):
        second = results[large][index]
        ratio = second.peak_bytes / first.peak_bytes
        print(f"{first.name:28s} {first.peak_bytes / MB:9.0f} {second.peak_bytes / MB:9.0f} {ratio:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--n-samples", type=int, default=2000, help="training sequences (default: %(default)s)")
    parser.add_argument("--size", type=int, default=50, help="frame size (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each generation; the median counts (default: %(default)s)")
    parser.add_argument(
        "--memory-scaling",
        action="store_true",
        help=f"instead, peak memory of generate_train, train and evaluate at {SCALING_SIZES[0]:,} and {SCALING_SIZES[1]:,} sequences",
    )
    parser.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    args = parser.parse_args()
    if args.n_samples < 1 or args.size < 2 or args.repeat < 1:
        parser.error("--n-samples and --repeat must be at least 1, --size at least 2")
    logging.basicConfig(level=logging.INFO, format="benchmark: %(message)s", stream=sys.stderr)

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="movingline-bench-") as folder:
        folder = Path(folder)
        if args.memory_scaling:
            print(f"size {args.size}, batch 32, one epoch; evaluate reads the same file as its test set")
            scaling = {n: measure_project(folder, args.size, n, 1, evaluate=True) for n in SCALING_SIZES}
            print_scaling(scaling)
            report = {str(n): [asdict(m) for m in ms] for n, ms in scaling.items()}
        else:
            print(f"size {args.size}, {args.n_samples:,} sequences, batch 32, one epoch, median of {args.repeat} generations")
            measurements = [
                *measure_project(folder, args.size, args.n_samples, args.repeat),
                *measure_baseline(folder, args.size, args.n_samples, args.repeat),
            ]
            results = {m.name: m for m in measurements}
            print_comparison(results)
            report = {m.name: asdict(m) for m in measurements}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "args": vars(args) | {"json": str(args.json)}, "results": report}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
