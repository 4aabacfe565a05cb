"""Kill and resume, in one process: the real train stage stopped with real signals (or
SIGKILL) mid-training, run again, and compared byte for byte with an uninterrupted run."""

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import project_with_data, run_stage, stage_env, tiny_params, write_params
from tests.resuming import (
    LONG,
    LONG_VALIDATED,
    RESUMED,
    same_outputs,
    start_train,
    train_to_the_end,
    wait_for_checkpoint,
)


@pytest.mark.slow


@pytest.mark.full
@pytest.mark.parametrize("name", ["long", "validated"])
def test_killed_then_rerun_gives_the_uninterrupted_bytes(tmp_path, data, uninterrupted, name):
    root = project_with_data(tmp_path / "project", data, LONG if name == "long" else LONG_VALIDATED)
    process = start_train(root)
    wait_for_checkpoint(root, process)
    process.kill()
    process.wait()
    assert not (root / "models/model.keras").exists()
    stderr = train_to_the_end(root)
    resumed = [line for line in stderr.splitlines() if "resuming" in line]
    assert len(resumed) == 1 and resumed[0].startswith(RESUMED)
    assert int(resumed[0].split()[-1]) > 0
    same_outputs(root, uninterrupted[name])
    assert not (root / "checkpoints/train.npz").exists()


@pytest.mark.slow


@pytest.mark.full
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_exits_promptly(tmp_path, data, uninterrupted, signum):
    root = project_with_data(tmp_path / "project", data, LONG_VALIDATED)
    process = start_train(root, "--checkpoints", "elsewhere")
    wait_for_checkpoint(root, process, "elsewhere")
    sent = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 5, "the stage took more than 5 s to stop"
    assert process.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1] == f"error: interrupted by {signal.Signals(signum).name}; no partial output was left"
    assert lines[-2].startswith("train: saved a checkpoint at step ") and "elsewhere/train.npz" in lines[-2]
    assert not (root / "models/model.keras").exists()
    train_to_the_end(root, "--checkpoints", "elsewhere")
    same_outputs(root, uninterrupted["validated"])


@pytest.mark.slow


@pytest.mark.full
def test_a_checkpoint_from_other_params_or_a_truncated_one_is_ignored(tmp_path, data, uninterrupted):
    root = project_with_data(tmp_path / "project", data, tiny_params(train={"epochs": 300, "learning_rate": 0.02}))
    process = start_train(root)
    wait_for_checkpoint(root, process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    checkpoint = (root / "checkpoints/train.npz").read_bytes()
    write_params(root / "params.yaml", LONG)
    stderr = train_to_the_end(root)
    assert "ignoring the checkpoint checkpoints/train.npz: it was made from other inputs (params differ)" in stderr
    same_outputs(root, uninterrupted["long"])
    (root / "checkpoints/train.npz").write_bytes(checkpoint[: len(checkpoint) // 3])
    write_params(root / "params.yaml", tiny_params(train={"epochs": 300, "learning_rate": 0.02}))
    stderr = train_to_the_end(root)
    assert "ignoring the checkpoint checkpoints/train.npz: it cannot be read" in stderr


@pytest.mark.slow


@pytest.mark.full
def test_holding_out_every_sequence_is_refused(tmp_path, data):
    root = project_with_data(tmp_path / "project", data, tiny_params(train={"validation_sequences": 64}))
    result = run_stage("train", root, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "error: params.yaml: train.validation_sequences: 64 would hold out all of the 64 sequences of "
        "data/train.h5; keep it below 64\n"
    )
    assert not (root / "models").exists() and not (root / "checkpoints").exists()


@pytest.mark.slow


@pytest.mark.full
def test_a_bad_checkpoint_interval_is_refused(tmp_path, data):
    root = project_with_data(tmp_path / "project", data, tiny_params())
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=root, capture_output=True, text=True,
                            env=stage_env() | {"MOVINGLINE_CHECKPOINT_SECONDS": "soon"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: MOVINGLINE_CHECKPOINT_SECONDS: expected a whole number of seconds")
    assert not (root / "models").exists()


def read_curve(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow


@pytest.mark.full
def test_the_curve_has_validation_values_where_validated(tmp_path, data):
    root = project_with_data(tmp_path / "project", data, tiny_params(train={"epochs": 3, "validation_sequences": 16}))
    run_stage("train", root)
    rows = read_curve(root / "plots/training.csv")
    # 48 training sequences, 3 steps an epoch, validated at each epoch's end.
    assert [bool(row["val_loss"]) for row in rows] == [False, False, True] * 3
    assert all(0 <= float(row["val_accuracy"]) <= 1 for row in rows if row["val_accuracy"])
    assert all(bool(row["val_loss"]) == bool(row["val_accuracy"]) for row in rows)
