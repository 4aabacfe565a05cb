"""The benchmarks run end to end at a tiny size and print every row; timings are never asserted."""

import json
import platform
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run, tiny_params, write_params

pytestmark = [pytest.mark.slow, pytest.mark.full]


def test_benchmark_prints_the_comparison_table(tmp_path):
    report = tmp_path / "bench.json"
    result = run(
        [sys.executable, "-m", "bench.benchmark", "--n-samples", "16", "--size", "8", "--repeat", "1", "--json", str(report)],
        ROOT,
    )
    for row in ("generate_train (project)", "train (project)", "generate (baseline)", "train (baseline)"):
        assert row in result.stdout
    assert "speed, project / baseline: generation" in result.stdout
    assert "project: generate_train takes " in result.stdout
    assert "peak memory, project / baseline" in result.stdout
    assert '"peak_bytes"' in report.read_text()


def tiny_training_params(tmp_path) -> Path:
    """The tiny params with batches of 8, so that 64 sequences make 8 steps (enough for a steady state)."""
    return write_params(tmp_path / "params.yaml", tiny_params(train={"batch_size": 8}))


def test_fit_and_loop_benchmark_prints_both_paths_and_their_ratio(tmp_path):
    params = tiny_training_params(tmp_path)
    command = [sys.executable, "-m", "bench.loop_vs_fit", "--params", str(params), "--n-samples", "64", "--repeat", "1"]
    result = run(command, ROOT)
    for path in ("fit", "loop"):
        assert re.search(rf"^{path}: median [0-9.]+ sequences/s \(steady state\), peak \d+ MB$", result.stdout, re.M)
    assert re.search(r"^loop / fit: [0-9.]+x$", result.stdout, re.M)


def test_kernel_benchmark_runs_each_setting_and_writes_its_results(tmp_path):
    params = tiny_training_params(tmp_path)
    command = [sys.executable, "-m", "bench.kernels", "--params", str(params), "--n-samples", "64", "--repeat", "1"]
    result = run([*command, "--out", str(tmp_path / "results")], ROOT)
    assert re.search(r"^cpu: .+, (with avx512_vnni|no avx512_vnni|flags unknown); \d+ CPUs$", result.stdout, re.M)
    for setting in ("pinned", "default", "off"):
        assert re.search(rf"^{setting} +[0-9.]+ +[0-9.]+ +[0-9.]+ +\d+  [0-9a-f]{{32}}  ", result.stdout, re.M)
    if platform.machine() == "x86_64":
        # Each child names the kernels it ran: the project's pin, TensorFlow's choice, Eigen.
        assert re.search(r"^pinned: .*; ran oneDNN, AVX2 kernels$", result.stdout, re.M)
        assert re.search(r"^default: .*; ran .*set by ONEDNN_MAX_CPU_ISA=ALL$", result.stdout, re.M)
        off = r"^off: .*; ran Eigen kernels \(oneDNN off\); set by TF_ENABLE_ONEDNN_OPTS=0$"
        assert re.search(off, result.stdout, re.M)
    assert re.search(r"^pinned / default: [0-9.]+x the steady-state speed", result.stdout, re.M)
    assert re.search(r"^pinned / off: [0-9.]+x the steady-state speed", result.stdout, re.M)
    report = json.loads((tmp_path / "results" / "kernels.json").read_text())
    assert [run["variant"] for run in report["runs"]] == ["pinned", "default", "off"]
    assert report["cpu"] and report["commit"] and set(report["summary"]) == {"pinned", "default", "off"}
    rows = (tmp_path / "results" / "kernels.csv").read_text().splitlines()
    assert rows[0].startswith("variant,run,sequences_per_s,wall_s,cpu_s,peak_mb,model_md5,kernel_path") and len(rows) == 4
