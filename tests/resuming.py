"""What the kill-and-resume tests share: long tiny runs of the real train stage, started,
waited on until they have checkpointed, and compared with uninterrupted runs."""

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import stage_env, tiny_params, wait_until

# About 20 s of training here, so that a signal lands mid-training.
LONG = tiny_params(train={"epochs": 300})
LONG_VALIDATED = tiny_params(train={"epochs": 300, "validation_sequences": 16, "validate_every": 5})
ENV = {"MOVINGLINE_THREADS": "1", "MOVINGLINE_CHECKPOINT_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
OUTPUTS = ("models/model.keras", "plots/training.csv")
RESUMED = "train: resuming from the checkpoint checkpoints/train.npz at step "


def start_train(root: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "stages.train", *args]
    return subprocess.Popen(command, cwd=root, env=stage_env() | ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def train_to_the_end(root: Path, *args: str) -> str:
    process = start_train(root, *args)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return stderr


def wait_for_checkpoint(root: Path, process: subprocess.Popen, folder: str = "checkpoints") -> None:
    wait_until((root / folder / "train.npz").exists, "its first checkpoint", 120, process)
    time.sleep(1.5)  # a later save, mid-training


def outputs_of(root: Path) -> dict[str, bytes]:
    return {path: (root / path).read_bytes() for path in OUTPUTS}


def same_outputs(root: Path, expected: dict[str, bytes]) -> None:
    for path, content in expected.items():
        assert (root / path).read_bytes() == content, f"{path} differs from the uninterrupted run's"
