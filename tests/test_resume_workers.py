"""Kill and resume under two workers: the chief's checkpoint reaches the other worker by
broadcast, and the resumed run ends with the bytes of an uninterrupted one."""

import signal
import subprocess
import time

import pytest

from tests.conftest import project_with_data, start_workers
from tests.resuming import ENV, LONG_VALIDATED, RESUMED, outputs_of, same_outputs, start_train, train_to_the_end, wait_for_checkpoint

WORKER_ENV = ENV | {"MOVINGLINE_HEARTBEAT_TIMEOUT": "3"}


@pytest.fixture(scope="module")
def two_workers_uninterrupted(tmp_path_factory, data) -> dict[str, bytes]:
    root = project_with_data(tmp_path_factory.mktemp("two") / "project", data, LONG_VALIDATED)
    train_to_the_end(root, "--local-workers", "2")
    return outputs_of(root)


@pytest.mark.slow


@pytest.mark.full
def test_two_workers_stopped_by_sigterm_resume_to_the_same_bytes(tmp_path, data, two_workers_uninterrupted):
    root = project_with_data(tmp_path / "project", data, LONG_VALIDATED)
    process = start_train(root, "--local-workers", "2")
    wait_for_checkpoint(root, process)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "the workers took more than 10 s to stop"
    assert process.returncode == 143, stderr
    assert "train: saved a checkpoint at step " in stderr
    stderr = train_to_the_end(root, "--local-workers", "2")
    assert RESUMED in stderr
    same_outputs(root, two_workers_uninterrupted)


@pytest.mark.slow


@pytest.mark.full
def test_a_killed_worker_then_a_restart_of_both_resumes(tmp_path, data, two_workers_uninterrupted):
    """Each worker in its own project copy, as on two machines: the chief's checkpoint reaches the other by broadcast."""
    roots = [project_with_data(tmp_path / f"worker{i}", data, LONG_VALIDATED) for i in range(2)]
    chief, worker = start_workers(roots, stdout=subprocess.DEVNULL, **WORKER_ENV)
    wait_for_checkpoint(roots[0], chief)
    worker.kill()
    _, stderr = chief.communicate(timeout=120)
    worker.communicate()
    assert chief.returncode == 3, stderr
    assert (roots[0] / "checkpoints/train.npz").exists() and not (roots[1] / "checkpoints").exists()
    results = [p.communicate(timeout=300) + (p.returncode,) for p in start_workers(roots, stdout=subprocess.DEVNULL, **WORKER_ENV)]
    assert [status for _, _, status in results] == [0, 0], results[0][1] + results[1][1]
    assert RESUMED in results[0][1]
    same_outputs(roots[0], two_workers_uninterrupted)
    assert not (roots[0] / "checkpoints/train.npz").exists() and not (roots[1] / "models").exists()
