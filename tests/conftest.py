"""Shared fixtures: tiny params, and copies of the project to run stages and DVC in."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from movingline import runtime
from movingline.settings import read_settings
from movingline.data.dataset import write_dataset
from movingline.params import ModelParams, TrainParams
from movingline.data.sequences import iter_frame_batches, sample_walks

# Tests that train in this process get the same TensorFlow settings as the stages, set
# before anything imports TensorFlow.
SETTINGS = read_settings(os.environ)
runtime.prepare(SETTINGS)

ROOT = Path(__file__).resolve().parents[1]

# Small enough that a whole `dvc repro` takes seconds, big enough that every stage does real work.
TINY_PARAMS = {
    "data": {"size": 8},
    "generate_train": {"n_samples": 64, "seed": 11},
    "generate_test": {"n_samples": 40, "seed": 12},
    "model": {"filters": 2, "kernel_size": 2, "pool_size": 2, "lstm_units": 4, "conv_layers": 1},
    "train": {"seed": 13, "batch_size": 16, "epochs": 1, "learning_rate": 0.01,
              "validation_sequences": 0, "validate_every": 0, "patience": 0},
    "evaluate": {"batch_size": 16},
    "predict": {"n_samples": 5, "seed": 14},
}

# What a clone of the project holds that the pipeline needs (outputs and caches excluded).
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "stages", "movingline", ".dvc/config", ".dvc/.gitignore", "report/template.html", "report/training-chart.json"]


def tiny_params(**overrides: dict) -> dict:
    """TINY_PARAMS with some sections' keys replaced, e.g. tiny_params(train={"epochs": 2})."""
    params = {section: dict(values) for section, values in TINY_PARAMS.items()}
    for section, values in overrides.items():
        params[section].update(values)
    return params


TINY_MODEL = ModelParams(**TINY_PARAMS["model"])


def train_params(**changes) -> TrainParams:
    """TINY_PARAMS' train section as TrainParams, with some keys changed (for training in this process)."""
    return TrainParams(**(TINY_PARAMS["train"] | changes))


def tiny_dataset(path: Path, n_samples: int, seed: int, size: int = 8) -> Path:
    """A training set of ``n_samples`` sequences of ``size`` x ``size`` at ``path``."""
    walks = sample_walks(np.random.default_rng(seed), n_samples, size)
    write_dataset(path, iter_frame_batches(walks, n_samples), size=size, n_samples=n_samples, seed=seed)
    return path


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def stage_env() -> dict[str, str]:
    """The environment stages run in: this interpreter's venv first on PATH, no analytics."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = ""
    env["DVC_NO_ANALYTICS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("MOVINGLINE_DEBUG", None)
    return env


def run(args: list[str], cwd: Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command in ``cwd`` capturing text output; on an unexpected status shows it all."""
    result = subprocess.run(args, cwd=cwd, env=stage_env(), capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def run_stage(name: str, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``python -m stages.NAME ARGS`` in ``cwd``, as a user would from the project root."""
    return run([sys.executable, "-m", f"stages.{name}", *args], cwd, check=check)


def copy_project(destination: Path, params: dict | None = None) -> Path:
    """Copies the project's code and pipeline (no outputs) to ``destination`` with tiny params."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    write_params(destination / "params.yaml", params or TINY_PARAMS)
    return destination


def git_project(destination: Path, params: dict | None = None) -> Path:
    """A copy of the project in a new git repository with one commit, ready for `dvc repro`."""
    copy_project(destination, params)
    for command in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "tests@example.com"],
        ["git", "config", "user.name", "tests"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "tiny project"],
    ):
        run(command, destination)
    return destination


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).parent / "dvc"), *args], cwd, check=check)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A plain (non-git) copy of the project with tiny params, for running stages alone."""
    return copy_project(tmp_path / "project")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the project with tiny params, for running DVC."""
    return git_project(tmp_path / "repo")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A project copy holding the tiny training and test sets, generated once per test module, to
    copy into each worker's project (tests/test_distributed.py, tests/test_slurm.py)."""
    root = copy_project(tmp_path_factory.mktemp("data") / "project")
    run_stage("generate_train", root)
    run_stage("generate_test", root)
    return root


def wait_until(condition, what: str, seconds: float, process: subprocess.Popen | None = None, interval: float = 0.05) -> None:
    """Polls ``condition`` every ``interval`` seconds until it holds; fails if ``process`` ends
    first (showing its stderr), or when ``seconds`` pass (killing ``process``)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the stage ended (status {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            if process is not None:
                process.kill()
            pytest.fail(f"waited {seconds} s for {what}")
        time.sleep(interval)


def project_with_data(folder: Path, data: Path, params: dict | None = None) -> Path:
    """A copy of the project at ``folder`` holding the datasets of the ``data`` fixture."""
    root = copy_project(folder, params)
    shutil.copytree(data / "data", root / "data")
    return root


def start_workers(roots: list[Path], *args: str, stdout=subprocess.PIPE, **env: str) -> list[subprocess.Popen]:
    """`python -m stages.train ARGS` in each project copy, as the workers of one cluster on
    127.0.0.1 (each its own TF_CONFIG), with ``env`` added to the stages' environment."""
    from movingline.cluster.local import local_tf_configs

    return [
        subprocess.Popen([sys.executable, "-m", "stages.train", *args], cwd=root, env=stage_env() | env | {"TF_CONFIG": config},
                         stdout=stdout, stderr=subprocess.PIPE, text=True)
        for root, config in zip(roots, local_tf_configs(len(roots)))
    ]


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The outputs of uninterrupted long runs of the train stage (tests/resuming.py), by params
    name, on the same training set as the ``data`` fixture's (the same params make the same bytes)."""
    from tests.resuming import LONG, LONG_VALIDATED, outputs_of, train_to_the_end

    outputs = {}
    for name, params in (("long", LONG), ("validated", LONG_VALIDATED)):
        root = copy_project(tmp_path_factory.mktemp(name) / "project", params)
        run_stage("generate_train", root)
        train_to_the_end(root)
        assert not (root / "checkpoints/train.npz").exists(), "a successful run left its checkpoint"
        outputs[name] = outputs_of(root)
    return outputs


@pytest.fixture(scope="session")
def built_project(tmp_path_factory) -> Path:
    """A project copy in which every stage has run once at tiny params (shared, read-only)."""
    root = copy_project(tmp_path_factory.mktemp("built") / "project")
    for stage in ("generate_train", "generate_test", "train", "evaluate", "predict"):
        run_stage(stage, root)
    return root


@pytest.fixture(scope="session")
def exported(built_project, tmp_path_factory) -> Path:
    """built_project's model exported to ONNX by the export stage (tests/test_export.py, tests/test_server.py)."""
    output = tmp_path_factory.mktemp("export") / "model.onnx"
    result = run_stage("export", built_project, "--output", str(output))
    assert f"wrote {output}" in result.stdout
    return output


# Tests that need a service this machine may lack (headless Chromium, a running Slurm, ...)
# skip without it, so that a user's own CI still passes; with this variable set to 1 they
# fail instead, as in the project's CI (.ci/run), where a skip would hide a broken feature.
REQUIRE_ALL = "MOVINGLINE_REQUIRE_ALL"


def skip_or_fail(problem: str) -> None:
    """Skips the calling test for ``problem``, or fails it when MOVINGLINE_REQUIRE_ALL=1."""
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{REQUIRE_ALL}=1 and {problem}")
    pytest.skip(problem)


# A one-node Slurm for the tests that submit to it (tests/test_slurm.py, tests/test_sweep.py).
SINGLE_NODE = ROOT / "scripts/slurm/single_node.sh"
THREAD_VARIABLES = ("MOVINGLINE_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def slurm_problem() -> str | None:
    """Why no Slurm can run a two-task step here, or None when one can."""
    if not shutil.which("srun") or not shutil.which("sinfo"):
        return "Slurm is not installed (bash scripts/slurm/single_node.sh installs and starts it)"
    answer = subprocess.run(["sinfo", "-h", "-o", "%t %c"], capture_output=True, text=True, timeout=30)
    if answer.returncode != 0 or not answer.stdout.strip():
        return f"Slurm does not answer: sinfo says {(answer.stderr or answer.stdout).strip()!r}"
    states = [line.split() for line in answer.stdout.splitlines()]
    if not any(state in ("idle", "mix") and int(cpus) >= 2 for state, cpus in states):
        return f"no idle Slurm node with 2 CPUs: sinfo says {answer.stdout.strip()!r}"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    """A Slurm that runs steps of two tasks: started here if installed but stopped; else skip (fail under MOVINGLINE_REQUIRE_ALL=1)."""
    problem = slurm_problem()
    if problem and shutil.which("srun") and os.geteuid() == 0:
        subprocess.run(["bash", str(SINGLE_NODE), "--no-install"], capture_output=True, timeout=120)
        problem = slurm_problem()
    if problem:
        skip_or_fail(problem)


def slurm_env() -> dict[str, str]:
    """The environment for srun and sbatch: the stages' own, with the thread share left to the Slurm rule."""
    env = stage_env()
    for variable in ("TF_CONFIG", *THREAD_VARIABLES):
        env.pop(variable, None)
    return env


FIRST_REPRO_LOG = "first_repro.log"


def copy_repo(source: Path, destination: Path) -> Path:
    """A full copy of a git + DVC repository (history, DVC cache, run-cache, outputs)."""
    shutil.copytree(source, destination, symlinks=True)
    return destination


def output_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every output that ``root``'s dvc.lock records, by path."""
    import hashlib

    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    paths = sorted({out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])})
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in paths}


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory) -> Path:
    """A git repository at tiny params after one `dvc repro`, everything committed (shared, read-only).

    Tests that change it work on a copy_repo() of it. What that first `dvc repro` printed
    is kept beside it, in FIRST_REPRO_LOG.
    """
    root = git_project(tmp_path_factory.mktemp("reproduced") / "repo")
    first = dvc(root, "repro")
    (root.parent / FIRST_REPRO_LOG).write_text(first.stdout, encoding="utf-8")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "dvc repro at tiny params"], root)
    return root
