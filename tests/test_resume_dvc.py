"""Kill and resume through DVC: Ctrl-C during `dvc repro`, then `dvc repro` resumes the train stage."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git_project, stage_env
from tests.resuming import ENV, LONG_VALIDATED, RESUMED, same_outputs, wait_for_checkpoint


@pytest.mark.slow


@pytest.mark.full
def test_dvc_repro_after_an_interrupted_dvc_repro_resumes(tmp_path, uninterrupted):
    """Ctrl-C in a terminal (SIGINT to the whole foreground group) during `dvc repro`, then `dvc repro` again."""
    repo = git_project(tmp_path / "repo", LONG_VALIDATED)
    dvc = [str(Path(sys.executable).parent / "dvc"), "repro"]
    env = stage_env() | ENV
    process = subprocess.Popen(dvc, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    wait_for_checkpoint(repo, process)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and (repo / "checkpoints/train.npz").exists(), stderr
    result = subprocess.run(dvc, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert RESUMED in result.stdout + result.stderr
    same_outputs(repo, uninterrupted["validated"])
