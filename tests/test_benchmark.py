"""The benchmark runs end to end at a tiny size and prints every row; timings are never asserted."""

import sys

import pytest

from tests.conftest import ROOT, run

pytestmark = pytest.mark.slow


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
