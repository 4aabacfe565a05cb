"""Training speed under three CPU kernel settings, measured in one run on one machine.

    python -m bench.kernels                        # 1,500 sequences of size 50, each setting twice
    python -m bench.kernels --n-samples 2000 --repeat 3

The settings (VARIANTS), each given to the child process's environment:

- pinned: neither TF_ENABLE_ONEDNN_OPTS nor ONEDNN_MAX_CPU_ISA set, so the project chooses:
  oneDNN on, capped at AVX2 on x86-64 (movingline/runtime.py).
- default: ONEDNN_MAX_CPU_ISA=ALL. The project leaves the kernel settings alone when the user
  set either variable, so TensorFlow decides as it does by default (oneDNN on or off by
  CPU), with no cap on the instruction set.
- off: TF_ENABLE_ONEDNN_OPTS=0, oneDNN off (TensorFlow's Eigen kernels).

Every run is one process training the default model (params.yaml) for one epoch on the same
file, as the train stage does (movingline.training.train, then movingline.model.save_model;
bench/loop_vs_fit.py's loop child), and the settings alternate (pinned, default, off, pinned,
...) so that other work on the machine hits them alike. The child is not `python -m
stages.train` itself because the stage logs only its mean speed over all steps, the first
step's graph tracing included; the child records the end of every step. Per setting the
table gives the median steady-state speed (the steps after bench/loop_vs_fit.py's WARMUP_STEPS),
the median wall time of the whole process (interpreter, TensorFlow's import, training and the
save) and the saved model's md5. The results are also written to bench/results/kernels.json
and kernels.csv, with the CPU, the commit and the load average.
"""

import argparse
import csv
import json
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.machine import ROOT, commit
from bench.process import run_measured
from bench.loop_vs_fit import child_command, training_set
from movingline.environment import describe_cpu
from movingline.runtime import ISA_VARIABLE, ONEDNN_VARIABLE

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Variant:
    """A kernel setting: its name, and the variables set (a value) or removed (None) for the child."""

    name: str
    env: dict[str, str | None] = field(hash=False)
    meaning: str


VARIANTS = (
    Variant("pinned", {ONEDNN_VARIABLE: None, ISA_VARIABLE: None}, "no kernel variables set: the project's choice"),
    Variant("default", {ONEDNN_VARIABLE: None, ISA_VARIABLE: "ALL"},
            f"{ISA_VARIABLE}=ALL: TensorFlow's own choice, no ISA cap"),
    Variant("off", {ONEDNN_VARIABLE: "0", ISA_VARIABLE: None}, f"{ONEDNN_VARIABLE}=0: oneDNN off"),
)


@dataclass(frozen=True)
class KernelRun:
    """One child process under one setting."""

    variant: str
    run: int
    rate: float  # steady-state sequences/s
    wall_s: float
    cpu_s: float  # the whole process's CPU time, user and system: less swayed by other work than wall time
    peak_bytes: int
    model_md5: str
    kernel_path: str  # as the child's movingline.runtime.kernel_path() named it


def summarise(runs: list[KernelRun]) -> dict[str, dict]:
    """Per setting, in VARIANTS order: the median steady-state speed, wall and CPU time, each run's figures,
    the md5s and the kernel paths the children named."""
    summary = {}
    for variant in VARIANTS:
        ours = [run for run in runs if run.variant == variant.name]
        if ours:
            summary[variant.name] = {
                "rate": statistics.median(run.rate for run in ours),
                "wall_s": statistics.median(run.wall_s for run in ours),
                "cpu_s": statistics.median(run.cpu_s for run in ours),
                "rates": [run.rate for run in ours],
                "walls_s": [run.wall_s for run in ours],
                "peak_mb": max(run.peak_bytes for run in ours) / 1e6,
                "model_md5s": sorted({run.model_md5 for run in ours}),
                "kernel_paths": sorted({run.kernel_path for run in ours}),
            }
    return summary


def table(summary: dict[str, dict]) -> list[str]:
    """The result lines: one row per setting (medians), then the pinned setting's figures against the others'."""
    header = f"{'setting':8s} {'seq/s':>7s} {'wall s':>7s} {'CPU s':>7s} {'peak MB':>8s}  {'model md5':32s}"
    lines = [f"{header}  seq/s, wall s of each run"]
    for name, row in summary.items():
        runs = ", ".join(f"{rate:.1f} {wall:.1f}" for rate, wall in zip(row["rates"], row["walls_s"]))
        md5 = " / ".join(row["model_md5s"])  # more than one: the setting gave different bytes from run to run
        figures = f"{row['rate']:7.1f} {row['wall_s']:7.1f} {row['cpu_s']:7.1f} {row['peak_mb']:8.0f}"
        lines.append(f"{name:8s} {figures}  {md5:32s}  {runs}")
    pinned = summary.get("pinned")
    for other in ("default", "off"):
        if pinned and other in summary:
            speed = pinned["rate"] / summary[other]["rate"]
            wall = pinned["wall_s"] / summary[other]["wall_s"]
            cpu = pinned["cpu_s"] / summary[other]["cpu_s"]
            same = "same" if pinned["model_md5s"] == summary[other]["model_md5s"] else "different"
            lines.append(
                f"pinned / {other}: {speed:.2f}x the steady-state speed, {wall:.2f}x the wall time, "
                f"{cpu:.2f}x the CPU time; {same} model bytes"
            )
    return lines


def write_results(folder: Path, runs: list[KernelRun], details: dict) -> tuple[Path, Path]:
    """bench/results/kernels.json (everything) and kernels.csv (one row per run, with the CPU and commit)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = folder / "kernels.json", folder / "kernels.csv"
    report = {**details, "runs": [asdict(run) for run in runs], "summary": summarise(runs)}
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        header = ["variant", "run", "sequences_per_s", "wall_s", "cpu_s", "peak_mb", "model_md5", "kernel_path", "cpu"]
        writer.writerow([*header, "commit", "date"])
        for run in runs:
            writer.writerow(
                [run.variant, run.run, f"{run.rate:.2f}", f"{run.wall_s:.2f}", f"{run.cpu_s:.2f}",
                 f"{run.peak_bytes / 1e6:.0f}",
                 run.model_md5, run.kernel_path, details["cpu"], details["commit"], details["date"]]
            )  # fmt: skip
    return json_path, csv_path


def measure(variant: Variant, run: int, data: Path, params: Path, folder: Path) -> KernelRun:
    result, model = folder / f"{variant.name}-{run}.json", folder / f"{variant.name}-{run}.keras"
    usage = run_measured(
        child_command("loop", data, params, result, model), folder / f"{variant.name}-{run}.log", variant.env
    )
    figures = json.loads(result.read_text(encoding="utf-8"))
    return KernelRun(
        variant.name, run, figures["rate"], usage.wall_s, usage.cpu_s, usage.peak_bytes, figures["model_md5"],
        figures["kernel_path"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kernels",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--n-samples", type=int, default=1500, help="training sequences (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each setting (default: %(default)s)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--data", type=Path, help="an existing training set at --params' size (skips generating one)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for kernels.json and kernels.csv (default: bench/results)"
    )
    args = parser.parse_args()
    if args.n_samples < 1 or args.repeat < 1:
        parser.error("--n-samples and --repeat must be at least 1")

    details = {
        "cpu": describe_cpu(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "commit": commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "n_samples": args.n_samples,
        "repeat": args.repeat,
        "variants": {variant.name: variant.meaning for variant in VARIANTS},
        "load_average_before": os.getloadavg()[0],
    }
    print(f"cpu: {details['cpu']}; {details['cpus']} CPUs")
    print(f"commit {details['commit']}, {details['date']}, load average {details['load_average_before']:.2f} before")
    runs: list[KernelRun] = []
    with tempfile.TemporaryDirectory(prefix="movingline-kernels-") as folder:
        folder = Path(folder)
        data = args.data or training_set(folder, args.params, args.n_samples)
        for run in range(1, args.repeat + 1):
            for variant in VARIANTS:
                runs.append(measure(variant, run, data, args.params, folder))
                print(f"run {run} {variant.name}: {runs[-1].rate:.1f} sequences/s, {runs[-1].wall_s:.1f} s", flush=True)
    details["load_average_after"] = os.getloadavg()[0]
    summary = summarise(runs)
    for variant in VARIANTS:
        ran = " / ".join(summary[variant.name]["kernel_paths"])
        print(f"{variant.name}: {variant.meaning}; ran {ran}")
    for line in table(summary):
        print(line)
    print(f"load average {details['load_average_after']:.2f} after (other work on the machine slows every setting)")
    json_path, csv_path = write_results(args.out, runs, details)
    print(f"wrote {json_path} and {csv_path}")


if __name__ == "__main__":
    main()
