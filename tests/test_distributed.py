"""Training across workers: TF_CONFIG, only the chief writes, faults end every worker, reproducible bytes.

Each worker runs the train stage's own command (as dvc.yaml runs it) in its own copy of
the project, as on separate machines, on 127.0.0.1.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from movingline.cluster.local import local_tf_configs
from movingline.data.dataset import DatasetReader
from movingline.errors import InputError
from movingline.inference.metrics import compute_metrics
from movingline.inference.prediction import predict_batches
from movingline.cluster.tf_config import Cluster, parse_tf_config
from tests.conftest import SETTINGS, copy_project, project_with_data, run_stage, stage_env, start_workers, tiny_params

# The bytes depend on TensorFlow's thread count too (docs/scaling.md), so runs compared byte
# for byte use the same one; --local-workers would otherwise pick a share of the cores.
ONE_THREAD = {"MOVINGLINE_THREADS": "1"}
TRAIN = [sys.executable, "-m", "stages.train", "--data", "data/train.h5", "--model", "models/model.keras", "--curve", "plots/training.csv"]


def test_parse_tf_config_ranks_the_chief_first():
    workers = {"worker": ["a:1", "b:2"]}
    assert parse_tf_config(json.dumps({"cluster": workers, "task": {"type": "worker", "index": 1}})) == Cluster(
        ("a:1", "b:2"), 1, "worker", 1, (("worker", 2),)
    )
    with_chief = {"chief": ["c:0"], **workers, "ps": ["p:9"]}
    cluster = parse_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert (cluster.rank, cluster.n_workers) == (1, 3)
    assert cluster.job_sizes == (("chief", 1), ("worker", 2))
    assert parse_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})).rank == 0


@pytest.mark.parametrize(
    "config, problem",
    [
        ("{not json", "not valid JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}}', "out of range"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "'ps' is not a job"),
        ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "no 'worker'"),
        ('{"task": {"type": "worker", "index": 0}}', "expected"),
        ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}',
         "127.0.0.1:1 is named more than once"),
        ('{"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:1"]}, "task": {"type": "chief", "index": 0}}',
         "h:1 is named more than once"),
    ],
)
def test_bad_tf_config_is_refused(config, problem):
    with pytest.raises(InputError, match=problem) as error:
        parse_tf_config(config)
    assert str(error.value).startswith("TF_CONFIG: ")


@pytest.mark.slow


@pytest.mark.full
@pytest.mark.parametrize("config", [
    "{not json",
    '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
    '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
])
def test_stage_exits_2_with_one_line_on_bad_tf_config(project, config):
    # At once: a worker that waited for its peers would wait out MOVINGLINE_PEER_TIMEOUT (300 s).
    result = subprocess.run(TRAIN, cwd=project, env=stage_env() | {"TF_CONFIG": config}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: TF_CONFIG: ")
    assert not (project / "models").exists()


def worker_projects(data: Path, folder: Path, n: int, params: dict | None = None) -> list[Path]:
    """``n`` copies of the project with the data, one per worker (as on separate machines)."""
    return [project_with_data(folder / f"worker{index}", data, params) for index in range(n)]


def finish(workers: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str]]:
    results = []
    for worker in workers:
        _, stderr = worker.communicate(timeout=timeout)
        results.append((worker.returncode, stderr))
    return results


@pytest.fixture(scope="module")
def two_worker_run(data, tmp_path_factory) -> list[Path]:
    projects = worker_projects(data, tmp_path_factory.mktemp("two"), 2)
    for status, stderr in finish(start_workers(projects, *TRAIN[3:], **ONE_THREAD)):
        assert status == 0, stderr
    return projects


@pytest.mark.slow


@pytest.mark.full
def test_two_workers_train_and_only_the_chief_writes(two_worker_run):
    chief, worker = two_worker_run
    assert (chief / "models/model.keras").is_file() and (chief / "plots/training.csv").is_file()
    assert not (worker / "models").exists() and not (worker / "plots/training.csv").exists()


def metrics_on(model: Path, test_set: Path) -> dict:
    """What the evaluate stage computes for ``model`` on ``test_set``, in this process."""
    from movingline.model import load_model

    with DatasetReader(test_set) as reader:
        predictions = predict_batches(load_model(model, SETTINGS), reader.iter_batches(16), n_shown=0)
    return compute_metrics(predictions.expected, predictions.probabilities)


@pytest.mark.slow


@pytest.mark.full
def test_two_workers_match_one_process(two_worker_run, data, tmp_path):
    """The same optimisation: the same per-step curve and test accuracy, up to float summation order."""
    (alone,) = worker_projects(data, tmp_path, 1)
    run_stage("train", alone)
    chief = two_worker_run[0]
    metrics = {root: metrics_on(root / "models/model.keras", data / "data/test.h5") for root in (alone, chief)}
    assert metrics[chief]["accuracy"] == metrics[alone]["accuracy"]
    assert metrics[chief]["loss"] == pytest.approx(metrics[alone]["loss"], abs=1e-4)
    curves = [(root / "plots/training.csv").read_text().splitlines() for root in (alone, chief)]
    assert len(curves[0]) == len(curves[1])
    for ours, theirs in zip(curves[0][1:], curves[1][1:]):
        # Validation columns are empty where not measured (here, everywhere).
        ours, theirs = ours.split(","), theirs.split(",")
        assert [v == "" for v in ours] == [v == "" for v in theirs]
        assert [float(v) for v in ours if v] == pytest.approx([float(v) for v in theirs if v], abs=1e-4)


@pytest.mark.slow


@pytest.mark.full
def test_a_second_two_worker_run_with_local_workers_gives_the_same_bytes(two_worker_run, data, tmp_path):
    """Reproducible across runs, and --local-workers 2 is the same training as two TF_CONFIG processes."""
    (local,) = worker_projects(data, tmp_path / "local", 1)
    subprocess.run([*TRAIN, "--local-workers", "2"], cwd=local, env=stage_env() | ONE_THREAD, check=True, capture_output=True)
    assert (local / "models/model.keras").read_bytes() == (two_worker_run[0] / "models/model.keras").read_bytes()
    assert (local / "plots/training.csv").read_bytes() == (two_worker_run[0] / "plots/training.csv").read_bytes()


@pytest.mark.slow


@pytest.mark.full
def test_a_killed_worker_ends_the_other_within_60_s_without_a_model(data, tmp_path):
    # Long enough (two epochs of 1,000 steps) that the kill lands mid-training.
    params = tiny_params(generate_train={"n_samples": 1000}, train={"batch_size": 2, "epochs": 2})
    source = copy_project(tmp_path / "source", params)
    run_stage("generate_train", source)
    chief, worker = worker_projects(source, tmp_path, 2, params)
    workers = start_workers([chief, worker], *TRAIN[3:])
    deadline = time.monotonic() + 240
    # The chief prints where it trains once both workers have joined, just before the first step.
    while time.monotonic() < deadline and workers[0].poll() is None:
        line = workers[0].stdout.readline()
        if "training on" in line:
            break
    time.sleep(3)
    assert workers[0].poll() is None, "the chief finished before the kill; make the run longer"
    workers[1].kill()
    killed_at = time.monotonic()
    _, stderr = workers[0].communicate(timeout=90)
    assert time.monotonic() - killed_at < 60
    assert workers[0].returncode != 0
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: worker 0 of 2 lost contact with another worker"), stderr
    assert not (chief / "models").exists() or not any((chief / "models").iterdir())
    workers[1].communicate()


@pytest.mark.slow


@pytest.mark.full
def test_a_chief_alone_waits_for_its_peer_then_gives_up(data, tmp_path):
    (chief,) = worker_projects(data, tmp_path, 1)
    config = json.loads(local_tf_configs(2)[0])
    started = time.monotonic()
    result = subprocess.run(
        TRAIN, cwd=chief, env=stage_env() | {"TF_CONFIG": json.dumps(config), "MOVINGLINE_PEER_TIMEOUT": "3"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and time.monotonic() - started < 90
    lines = result.stderr.strip().splitlines()
    assert "waiting up to 3 s" in lines[0]
    assert lines[-1].startswith("error: TF_CONFIG: worker 0 of 2 waited 3 s for the other workers to join")
    assert not (chief / "models").exists()
