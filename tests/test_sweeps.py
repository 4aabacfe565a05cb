"""Parallel sweeps: `dvc queue start --jobs 2` runs two queued experiments at once, each on its share of the cores."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import copy_repo, dvc, stage_env

pytestmark = pytest.mark.slow


def test_queue_runs_two_experiments_at_once(reproduced_repo: Path, tmp_path: Path):
    workspace = copy_repo(reproduced_repo, tmp_path / "repo")
    queued = dvc(workspace, "exp", "run", "--queue", "--set-param", "train.seed=21,22")
    assert queued.stdout.count("Queued experiment") == 2
    # Each job's stages keep to one thread per TensorFlow pool (docs/scaling.md).
    env = stage_env() | {"MOVINGLINE_THREADS": "1"}
    # Not through a pipe: the queue's workers keep this command's output open until they finish.
    with open(tmp_path / "queue-start.log", "w") as log:
        dvc_command = [str(Path(sys.executable).parent / "dvc"), "queue", "start", "--jobs", "2"]
        subprocess.run(dvc_command, cwd=workspace, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    most_running, deadline, seen = 0, time.monotonic() + 900, []
    try:
        while time.monotonic() < deadline:
            status = dvc(workspace, "queue", "status").stdout
            seen.append(status)
            most_running = max(most_running, len(re.findall(r"\bRunning\b", status)))
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(1)
    finally:
        dvc(workspace, "queue", "stop", check=False)
    assert most_running == 2, "\n".join(seen)
    assert len(re.findall(r"\bSuccess\b", status)) == 2, status
    shown = dvc(workspace, "exp", "show", "--csv").stdout
    # Two finished experiments, besides the workspace and main rows.
    assert shown.count(",Success,") == 2, shown
