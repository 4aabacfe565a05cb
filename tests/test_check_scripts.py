"""The maintainers' machine checks refuse cleanly where they cannot run: scripts/check_gpu.sh on a
machine without an NVIDIA GPU (every machine of the project so far), and the arguments of both
it and scripts/check_aarch64.sh. Each case stops before anything is copied or installed."""

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def run_script(name: str, *args: str, path: str = SYSTEM_PATH, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          env={"PATH": path, "HOME": os.environ.get("HOME", "/root"), **env}, timeout=60)


def fake_nvidia_smi(bin_dir: Path, body: str) -> str:
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return f"{bin_dir}:{SYSTEM_PATH}"


def assert_refused(result: subprocess.CompletedProcess, message: str, work: Path | None = None) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [message]
    assert result.stdout == ""
    if work is not None:
        assert not work.exists()


needs_x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="both checks run on Linux x86_64 only")


@needs_x86_64
@pytest.mark.skipif(shutil.which("nvidia-smi", path=SYSTEM_PATH) is not None, reason="this machine has nvidia-smi")
def test_check_gpu_refuses_without_nvidia_smi(tmp_path):
    result = run_script("check_gpu.sh", MOVINGLINE_GPU_WORK=str(tmp_path / "work"))
    assert_refused(result, "check_gpu: error: no nvidia-smi on PATH: no NVIDIA driver here, so no GPU to check",
                   tmp_path / "work")


@needs_x86_64
def test_check_gpu_refuses_when_the_driver_finds_no_gpu(tmp_path):
    path = fake_nvidia_smi(tmp_path / "bin", 'echo "No devices were found"; exit 6')
    result = run_script("check_gpu.sh", path=path, MOVINGLINE_GPU_WORK=str(tmp_path / "work"))
    assert_refused(result, "check_gpu: error: nvidia-smi -L failed: No devices were found", tmp_path / "work")
    path = f"{tmp_path / 'bin'}:{SYSTEM_PATH}"
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho\n")
    result = run_script("check_gpu.sh", path=path, MOVINGLINE_GPU_WORK=str(tmp_path / "work"))
    assert_refused(result, "check_gpu: error: nvidia-smi lists no GPU: ", tmp_path / "work")


@needs_x86_64
def test_check_gpu_takes_no_arguments_and_leaves_a_folder_it_did_not_make(tmp_path):
    assert_refused(run_script("check_gpu.sh", "--fast"),
                   "check_gpu: error: takes no arguments (got --fast); MOVINGLINE_GPU_WORK=DIR sets where it works")
    path = fake_nvidia_smi(tmp_path / "bin", 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"')
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("the user's\n")
    result = run_script("check_gpu.sh", path=path, MOVINGLINE_GPU_WORK=str(work))
    assert_refused(result, f"check_gpu: error: {work} exists but was not made by this script; remove it, "
                           "or set MOVINGLINE_GPU_WORK")
    assert [p.name for p in work.iterdir()] == ["notes.txt"]


@needs_x86_64
@pytest.mark.parametrize(("args", "message"), [
    (["--tests"], "--tests needs one of: part, quick, none"),
    (["--tests", "all"], "--tests all: expected part, quick or none"),
    (["--fast"], "unknown argument --fast (usage: bash scripts/check_aarch64.sh [--tests part|quick|none])"),
])
def test_check_aarch64_refuses_a_wrong_argument_before_anything_else(args, message, tmp_path):
    root = tmp_path / "root"
    result = run_script("check_aarch64.sh", *args, MOVINGLINE_ARM64_ROOT=str(root))
    assert_refused(result, f"check_aarch64: error: {message}", root)
