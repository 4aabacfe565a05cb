"""The checkpoint file: it reads back bit for bit, is ignored when damaged or made from other
inputs, and its key covers exactly the code the train stage runs."""

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from movingline.training.checkpoint import Checkpoint, code_files, run_key
from movingline.params import load_params
from movingline.training.state import CurveRow, TrainingState
from tests.conftest import ROOT

FINGERPRINT = {"data file": "abc", "params": "def", "workers": "1", "threads": "1"}


def a_state() -> TrainingState:
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((3, 2)).astype(np.float32), np.array([-0.0, 1.5], np.float32)]
    curve = [CurveRow(1, 1, 0.7, 0.5), CurveRow(2, 1, 0.6, 0.75, 0.65, 0.5)]
    return TrainingState(2, weights, [np.array(2, np.int64), weights[0] * 2], curve, [w + 1 for w in weights], 0.65, 2, 0, 1.25)


def test_a_checkpoint_reads_back_bit_for_bit(tmp_path):
    path, state = tmp_path / "train.npz", a_state()
    Checkpoint(path, FINGERPRINT, 60).save(state)
    restored = Checkpoint(path, FINGERPRINT, 60).load()
    for ours, theirs in zip(state.weights + state.optimizer + state.best_weights,
                            restored.weights + restored.optimizer + restored.best_weights, strict=True):
        assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()
    assert restored.curve == state.curve
    assert (restored.step, restored.best_loss, restored.best_step, restored.since_best, restored.seconds) == (2, 0.65, 2, 0, 1.25)
    assert [p.name for p in tmp_path.iterdir()] == ["train.npz"]


def test_a_checkpoint_from_other_inputs_is_ignored_saying_what_differs(tmp_path, caplog):
    path = tmp_path / "train.npz"
    Checkpoint(path, FINGERPRINT, 60).save(a_state())
    with caplog.at_level(logging.INFO, logger="movingline.training.checkpoint"):
        assert Checkpoint(path, FINGERPRINT | {"params": "xyz", "workers": "2"}, 60).load() is None
    assert f"ignoring the checkpoint {path}: it was made from other inputs (params, workers differ)" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "empty", "not npz"])
def test_a_damaged_checkpoint_is_ignored(tmp_path, caplog, damage):
    path = tmp_path / "train.npz"
    Checkpoint(path, FINGERPRINT, 60).save(a_state())
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "zeroed": data[:200] + bytes(len(data) - 400) + data[-200:],
        "empty": b"",
        "not npz": b"hello",
    }[damage]
    path.write_bytes(damaged)
    with caplog.at_level(logging.INFO, logger="movingline.training.checkpoint"):
        assert Checkpoint(path, FINGERPRINT, 60).load() is None
    assert f"ignoring the checkpoint {path}: it cannot be read" in caplog.text


def test_the_key_hashes_the_code_dvc_yaml_lists_for_the_train_stage():
    """Derived from the imports, so labels.THRESHOLD and every module the stage runs are in it."""
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    hashed = {path.relative_to(ROOT).as_posix() for path in code_files(ROOT / "stages/train.py")}
    assert hashed == {dep for dep in deps if dep.endswith(".py")}
    assert {"movingline/data/labels.py", "movingline/training/state.py", "stages/train.py"} <= hashed


def test_the_key_changes_with_the_code(tmp_path):
    data = tmp_path / "train.h5"
    data.write_bytes(b"data")
    params, setup = load_params(ROOT / "params.yaml"), {"threads": "1"}
    code = code_files(ROOT / "stages/train.py")
    key = run_key(data, params, 1, setup, code)
    assert key == run_key(data, params, 1, setup, list(code))
    without_labels = [path for path in code if path.name != "labels.py"]
    assert run_key(data, params, 1, setup, without_labels)["training code"] != key["training code"]
    assert run_key(data, params, 2, setup, code)["workers"] == "2"


def test_code_files_follow_imports_only_into_the_project(tmp_path):
    assert code_files(ROOT / "movingline/errors.py") == [ROOT / "movingline/__init__.py", ROOT / "movingline/errors.py"]
    assert Path(ROOT / "movingline/cluster/slurm.py") in code_files(ROOT / "movingline/cluster/team.py")
    assert Path(ROOT / "movingline/cluster/slurm.py") not in code_files(ROOT / "movingline/settings.py")
    # Python runs a package's __init__.py before its modules: those are code the run executes too.
    assert Path(ROOT / "movingline/cluster/__init__.py") in code_files(ROOT / "movingline/cluster/team.py")
