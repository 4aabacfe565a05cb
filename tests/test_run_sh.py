"""run.sh's choice of Python and its refusals, with stand-in commands on PATH.

Every case stops before a venv is made, so nothing is installed: run.sh is copied into a
temporary directory and PATH holds only the few tools it calls plus the stand-ins.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("dirname", "head", "cmp", "cp", "rm", "sed", "uname")


@pytest.fixture
def sandbox(tmp_path):
    """A copy of run.sh and requirements.lock, and a bin/ with only the tools run.sh uses."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("run.sh", "requirements.lock"):
        shutil.copy(ROOT / name, project / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return project, bin_dir


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)


def run_sh(project: Path, bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("bash"), str(project / "run.sh"), *args],
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


OLD_PYTHON = 'if [ "$1" = --version ]; then echo "Python 3.10.14"; exit 0; fi; exit 1'


def test_no_supported_python_is_one_line_and_status_2(sandbox):
    project, bin_dir = sandbox
    stand_in(bin_dir, "python3", OLD_PYTHON)
    result = run_sh(project, bin_dir, "setup")
    assert result.returncode == 2
    assert result.stderr == "run.sh: needs Python 3.11, 3.12 or 3.13 (with pip and venv); found Python 3.10.14\n"
    assert not (project / ".venv").exists()


def test_python_variable_naming_an_unsupported_version_is_refused(sandbox):
    project, bin_dir = sandbox
    stand_in(bin_dir, "old-python", OLD_PYTHON)
    result = run_sh(project, bin_dir, "repro", PYTHON="old-python")
    assert result.returncode == 2
    assert result.stderr == "run.sh: PYTHON=old-python is not Python 3.11, 3.12 or 3.13 (Python 3.10.14)\n"


def test_newest_python_that_runs_is_chosen(sandbox):
    # python3.13 is a pyenv shim without its version (it fails), python3.12 works, and
    # python3.11 would work too: run.sh must pick python3.12. Its venv step fails on purpose.
    project, bin_dir = sandbox
    stand_in(bin_dir, "python3.13", 'echo "pyenv: python3.13: command not found" >&2; exit 127')
    stand_in(bin_dir, "python3.12", f'[ "$1" = -m ] && exit 1; exec {sys.executable} "$@"')
    stand_in(bin_dir, "python3.11", f'[ "$1" = -m ] && exit 1; exec {sys.executable} "$@"')
    result = run_sh(project, bin_dir, "setup")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "run.sh: could not create .venv with python3.12 (on Debian/Ubuntu: apt install python3-venv)"
    )


@pytest.mark.parametrize(
    ("system", "machine", "message"),
    [
        ("Darwin", "arm64", "run.sh: --gpu: no CUDA on macOS; TensorFlow runs on the CPU there (plain setup)"),
        ("Linux", "aarch64", "run.sh: --gpu: CUDA libraries are installed on Linux x86_64 only, not on Linux aarch64"),
    ],
)
def test_gpu_setup_outside_linux_x86_64_stops_before_installing(sandbox, system, machine, message):
    project, bin_dir = sandbox
    (bin_dir / "uname").unlink()
    stand_in(bin_dir, "uname", f'[ "$1" = -s ] && echo {system} || echo {machine}')
    result = run_sh(project, bin_dir, "setup", "--gpu")
    assert result.returncode == 2
    assert result.stderr == message + "\n"
    assert not (project / ".venv").exists()
