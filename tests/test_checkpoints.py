"""Validation, best weights, early stopping, and checkpoints that an interrupted run resumes from.

In-process tests check the checkpoint file and the loop's choices on tiny data; the slow
ones run the real train stage, stop it with real signals (or SIGKILL), run it again and
compare the bytes with an uninterrupted run.
"""

import csv
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from movingline.checkpoints import CurveRow, TrainingState, load_checkpoint, save_checkpoint
from movingline.dataset import DatasetReader, write_dataset
from movingline.params import ModelParams, TrainParams
from movingline.sequences import iter_frame_batches, sample_walks
from movingline.training import train
from movingline.validation import validation_due
from tests.conftest import copy_project, run_stage, stage_env, tiny_params, write_params

SIZE = 8
MODEL = ModelParams(filters=2, kernel_size=2, pool_size=2, lstm_units=4)
FINGERPRINT = {"data file": "abc", "params": "def", "workers": "1", "threads": "1"}


def train_params(**changes) -> TrainParams:
    values = {"seed": 13, "batch_size": 16, "epochs": 1, "learning_rate": 0.01,
              "validation_sequences": 0, "validate_every": 0, "patience": 0} | changes
    return TrainParams(**values)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """56 sequences of 8x8."""
    path = tmp_path_factory.mktemp("checkpoints") / "train.h5"
    walks = sample_walks(np.random.default_rng(7), 56, SIZE)
    write_dataset(path, iter_frame_batches(walks, 56), size=SIZE, n_samples=56, seed=7)
    return path


def a_state() -> TrainingState:
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((3, 2)).astype(np.float32), np.array([-0.0, 1.5], np.float32)]
    curve = [CurveRow(1, 1, 0.7, 0.5), CurveRow(2, 1, 0.6, 0.75, 0.65, 0.5)]
    return TrainingState(2, weights, [np.array(2, np.int64), weights[0] * 2], curve, [w + 1 for w in weights], 0.65, 2, 0, 1.25)


# --- the file ------------------------------------------------------------------------------


def test_a_checkpoint_reads_back_bit_for_bit(tmp_path):
    path, state = tmp_path / "train.npz", a_state()
    save_checkpoint(path, state, FINGERPRINT)
    restored = load_checkpoint(path, FINGERPRINT)
    for ours, theirs in zip(state.weights + state.optimizer + state.best_weights,
                            restored.weights + restored.optimizer + restored.best_weights, strict=True):
        assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()
    assert restored.curve == state.curve
    assert (restored.step, restored.best_loss, restored.best_step, restored.since_best, restored.seconds) == (2, 0.65, 2, 0, 1.25)
    assert [p.name for p in tmp_path.iterdir()] == ["train.npz"]


def test_a_checkpoint_from_other_inputs_is_ignored_saying_what_differs(tmp_path, caplog):
    path = tmp_path / "train.npz"
    save_checkpoint(path, a_state(), FINGERPRINT)
    with caplog.at_level(logging.INFO, logger="movingline.checkpoints"):
        assert load_checkpoint(path, FINGERPRINT | {"params": "xyz", "workers": "2"}) is None
    assert f"ignoring the checkpoint {path}: it was made from other inputs (params, workers differ)" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "empty", "not npz"])
def test_a_damaged_checkpoint_is_ignored(tmp_path, caplog, damage):
    path = tmp_path / "train.npz"
    save_checkpoint(path, a_state(), FINGERPRINT)
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "zeroed": data[:200] + bytes(len(data) - 400) + data[-200:],
        "empty": b"",
        "not npz": b"hello",
    }[damage]
    path.write_bytes(damaged)
    with caplog.at_level(logging.INFO, logger="movingline.checkpoints"):
        assert load_checkpoint(path, FINGERPRINT) is None
    assert f"ignoring the checkpoint {path}: it cannot be read" in caplog.text


# --- validation, best weights, early stopping ----------------------------------------------


def test_validation_schedule():
    # Every 3 steps, and after the last; per epoch when validate_every is 0.
    assert [s for s in range(1, 9) if validation_due(s, s % 4 == 0, s == 8, 3)] == [3, 6, 8]
    assert [s for s in range(1, 9) if validation_due(s, s % 4 == 0, s == 8, 0)] == [4, 8]


def validation_loss(model, reader: DatasetReader, start: int) -> float:
    from movingline.runtime import keras

    frames, labels = reader.read_frames(start, len(reader)), reader.read_labels(start).astype(np.float32)
    probabilities = model.predict_on_batch(frames)
    return float(np.mean(keras.losses.binary_crossentropy(labels[:, None], probabilities)))


def test_the_saved_weights_are_the_best_validation_steps(dataset):
    params = train_params(epochs=12, learning_rate=0.1, validation_sequences=24, validate_every=2)
    with DatasetReader(dataset) as reader:
        run = train(reader, MODEL, params)
        measured = validation_loss(run.model, reader, 32)
    validated = [row for row in run.curve if row.val_loss is not None]
    # 32 training sequences: 2 steps an epoch, 24 steps, validated every 2nd.
    assert len(run.curve) == 24 and [row.step for row in validated] == list(range(2, 25, 2))
    best = min(validated, key=lambda row: row.val_loss)
    assert run.best_step == best.step
    assert best.step != run.curve[-1].step, "the best step is the last one: this test would not tell them apart"
    assert measured == pytest.approx(best.val_loss, abs=1e-5)
    assert measured < run.curve[-1].val_loss - 1e-4


def test_held_out_sequences_are_never_trained_on(dataset):
    """A model trained on 32 of 56 sequences with 24 held out equals one trained on a 32-sequence file."""
    with DatasetReader(dataset) as reader:
        held_out = train(reader, MODEL, train_params(epochs=2, validation_sequences=24, validate_every=1))
        frames, labels = reader.read_frames(0, 32), reader.read_labels(0, 32)
    path = dataset.with_name("first32.h5")
    write_dataset(path, [(frames, labels)], size=SIZE, n_samples=32, seed=7)
    with DatasetReader(path) as reader:
        alone = train(reader, MODEL, train_params(epochs=2))
    assert [row.loss for row in held_out.curve] == [row.loss for row in alone.curve]


def test_patience_stops_after_that_many_validations_without_improvement(dataset):
    params = train_params(epochs=40, learning_rate=0.1, validation_sequences=24, validate_every=1, patience=3)
    with DatasetReader(dataset) as reader:
        run = train(reader, MODEL, params)
    assert len(run.curve) < 80, "training never stopped early: raise the learning rate"
    losses = [row.val_loss for row in run.curve]
    assert run.best_step == len(run.curve) - 3
    assert all(loss >= losses[run.best_step - 1] for loss in losses[run.best_step :])


# --- the stage: interrupted, rerun ---------------------------------------------------------

# About 20 s of training here, so that a signal lands mid-training.
LONG = tiny_params(train={"epochs": 300})
LONG_VALIDATED = tiny_params(train={"epochs": 300, "validation_sequences": 16, "validate_every": 5})
ENV = {"MOVINGLINE_THREADS": "1", "MOVINGLINE_CHECKPOINT_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
OUTPUTS = ("models/model.keras", "plots/training.csv")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("data") / "project")
    run_stage("generate_train", root)
    return root / "data"


def a_project(folder: Path, data: Path, params: dict) -> Path:
    root = copy_project(folder, params)
    (root / "data").mkdir()
    (root / "data/train.h5").write_bytes((data / "train.h5").read_bytes())
    return root


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
    deadline = time.monotonic() + 120
    while not (root / folder / "train.npz").exists():
        assert process.poll() is None, f"the stage ended before its first checkpoint: {process.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    time.sleep(1.5)  # a later save, mid-training


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data) -> dict[str, dict[str, bytes]]:
    """The outputs of uninterrupted runs, by params name."""
    outputs = {}
    for name, params in (("long", LONG), ("validated", LONG_VALIDATED)):
        root = a_project(tmp_path_factory.mktemp(name) / "project", data, params)
        train_to_the_end(root)
        assert not (root / "checkpoints/train.npz").exists(), "a successful run left its checkpoint"
        outputs[name] = {path: (root / path).read_bytes() for path in OUTPUTS}
    return outputs


def same_outputs(root: Path, expected: dict[str, bytes]) -> None:
    for path, content in expected.items():
        assert (root / path).read_bytes() == content, f"{path} differs from the uninterrupted run's"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["long", "validated"])
def test_killed_then_rerun_gives_the_uninterrupted_bytes(tmp_path, data, uninterrupted, name):
    root = a_project(tmp_path / "project", data, LONG if name == "long" else LONG_VALIDATED)
    process = start_train(root)
    wait_for_checkpoint(root, process)
    process.kill()
    process.wait()
    assert not (root / "models/model.keras").exists()
    stderr = train_to_the_end(root)
    resumed = [line for line in stderr.splitlines() if "resuming" in line]
    assert len(resumed) == 1 and resumed[0].startswith("train: resuming from the checkpoint checkpoints/train.npz at step ")
    assert int(resumed[0].split()[-1]) > 0
    same_outputs(root, uninterrupted[name])
    assert not (root / "checkpoints/train.npz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_exits_promptly(tmp_path, data, uninterrupted, signum):
    root = a_project(tmp_path / "project", data, LONG_VALIDATED)
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
def test_a_checkpoint_from_other_params_or_a_truncated_one_is_ignored(tmp_path, data, uninterrupted):
    root = a_project(tmp_path / "project", data, tiny_params(train={"epochs": 300, "learning_rate": 0.02}))
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
def test_holding_out_every_sequence_is_refused(tmp_path, data):
    root = a_project(tmp_path / "project", data, tiny_params(train={"validation_sequences": 64}))
    result = run_stage("train", root, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "error: params.yaml: train.validation_sequences: 64 would hold out all of the 64 sequences of "
        "data/train.h5; keep it below 64\n"
    )
    assert not (root / "models").exists() and not (root / "checkpoints").exists()


@pytest.mark.slow
def test_a_bad_checkpoint_interval_is_refused(tmp_path, data):
    root = a_project(tmp_path / "project", data, tiny_params())
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=root, capture_output=True, text=True,
                            env=stage_env() | {"MOVINGLINE_CHECKPOINT_SECONDS": "soon"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: MOVINGLINE_CHECKPOINT_SECONDS: expected a whole number of seconds")
    assert not (root / "models").exists()


def read_curve(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_the_curve_has_validation_values_where_validated(tmp_path, data):
    root = a_project(tmp_path / "project", data, tiny_params(train={"epochs": 3, "validation_sequences": 16}))
    run_stage("train", root)
    rows = read_curve(root / "plots/training.csv")
    # 48 training sequences, 3 steps an epoch, validated at each epoch's end.
    assert [bool(row["val_loss"]) for row in rows] == [False, False, True] * 3
    assert all(0 <= float(row["val_accuracy"]) <= 1 for row in rows if row["val_accuracy"])
    assert all(bool(row["val_loss"]) == bool(row["val_accuracy"]) for row in rows)


# --- two workers ---------------------------------------------------------------------------


def start_workers(roots: list[Path]) -> list[subprocess.Popen]:
    from movingline.cluster import local_tf_configs

    env = stage_env() | ENV | {"MOVINGLINE_HEARTBEAT_TIMEOUT": "3"}
    return [
        subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=root, env=env | {"TF_CONFIG": config},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for root, config in zip(roots, local_tf_configs(len(roots)))
    ]


@pytest.fixture(scope="module")
def two_workers_uninterrupted(tmp_path_factory, data) -> dict[str, bytes]:
    root = a_project(tmp_path_factory.mktemp("two") / "project", data, LONG_VALIDATED)
    train_to_the_end(root, "--local-workers", "2")
    return {path: (root / path).read_bytes() for path in OUTPUTS}


@pytest.mark.slow
def test_two_workers_stopped_by_sigterm_resume_to_the_same_bytes(tmp_path, data, two_workers_uninterrupted):
    root = a_project(tmp_path / "project", data, LONG_VALIDATED)
    process = start_train(root, "--local-workers", "2")
    wait_for_checkpoint(root, process)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "the workers took more than 10 s to stop"
    assert process.returncode == 143, stderr
    assert "train: saved a checkpoint at step " in stderr
    stderr = train_to_the_end(root, "--local-workers", "2")
    assert "train: resuming from the checkpoint checkpoints/train.npz at step " in stderr
    same_outputs(root, two_workers_uninterrupted)


@pytest.mark.slow
def test_a_killed_worker_then_a_restart_of_both_resumes(tmp_path, data, two_workers_uninterrupted):
    """Each worker in its own project copy, as on two machines: the chief's checkpoint reaches the other by broadcast."""
    roots = [a_project(tmp_path / f"worker{i}", data, LONG_VALIDATED) for i in range(2)]
    chief, worker = start_workers(roots)
    wait_for_checkpoint(roots[0], chief)
    worker.kill()
    _, stderr = chief.communicate(timeout=120)
    worker.communicate()
    assert chief.returncode == 3, stderr
    assert (roots[0] / "checkpoints/train.npz").exists() and not (roots[1] / "checkpoints").exists()
    results = [p.communicate(timeout=300) + (p.returncode,) for p in start_workers(roots)]
    assert [status for _, _, status in results] == [0, 0], results[0][1] + results[1][1]
    assert "train: resuming from the checkpoint checkpoints/train.npz at step " in results[0][1]
    same_outputs(roots[0], two_workers_uninterrupted)
    assert not (roots[0] / "checkpoints/train.npz").exists() and not (roots[1] / "models").exists()


@pytest.mark.slow
def test_dvc_repro_after_an_interrupted_dvc_repro_resumes(tmp_path, uninterrupted):
    """Ctrl-C in a terminal (SIGINT to the whole foreground group) during `dvc repro`, then `dvc repro` again."""
    import os

    from tests.conftest import git_project

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
    assert "train: resuming from the checkpoint checkpoints/train.npz at step " in result.stdout + result.stderr
    same_outputs(repo, uninterrupted["validated"])
