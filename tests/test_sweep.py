"""Sweeps (python -m experiments.sweep) end to end: on DVC's queue and on a real Slurm. (The runner's
parts alone are tests/test_runner.py's.)

The Slurm tests run on the one-node Slurm of scripts/slurm/single_node.sh (2 CPUs): tiny
params, one core per task, so two tasks run at once. Without Slurm they skip (fail under
MOVINGLINE_REQUIRE_ALL=1).
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.runner.grid import combinations
from experiments.runner.repo import exp_ref
from experiments.runner.slurm import PLAN_DIR, log_path, sweep_id
from tests.conftest import ROOT, copy_repo, dvc, git_project, run, slurm_env

SWEEP = [sys.executable, "-m", "experiments.sweep"]
SEEDS = ["-S", "train.seed=21,22,23"]


def sweep(repo: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = slurm_env() | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([*SWEEP, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert not check or result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["train.seed", "train.seed=1,,2"])
def test_a_malformed_set_param_is_one_error_line_naming_it(spec, tmp_path):
    result = subprocess.run([*SWEEP, "-S", "train.epochs=1", "-S", spec], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1"})
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: -S {spec}: expected KEY=VALUE[,VALUE...]"), result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_invalid_combination_stops_the_sweep_before_anything_is_submitted(repo):
    result = sweep(repo, "--slurm", "--wait", *SEEDS, "-S", "train.batch_size=16,0")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: 3 of 6 combinations cannot run, nothing was started: ")
    assert result.stderr.count("train.batch_size: expected an integer of at least 1, found 0") == 3
    assert not (repo / PLAN_DIR).exists()


@pytest.mark.full
@pytest.mark.slow
def test_a_local_sweep_runs_on_dvcs_queue_and_a_rerun_skips_it(repo):
    first = sweep(repo, "--wait", "--jobs", "2", "--poll", "1", "-S", "train.seed=21,22", check=True)
    names = [c.name for c in combinations(["train.seed=21,22"], "sweep")]
    assert all(0 <= experiments_of(repo)[name]["accuracy"] <= 1 for name in names)
    assert all(name in first.stdout for name in names)
    second = sweep(repo, "--wait", "--poll", "1", "-S", "train.seed=21,22", check=True)
    assert "reusing 2 experiment(s)" in second.stderr and "queued sweep-" not in second.stderr


def experiments_of(repo: Path) -> dict[str, dict]:
    """Name -> metrics of every experiment `dvc exp show` lists."""
    found = {}
    for entry in json.loads(dvc(repo, "exp", "show", "--json", "--no-fetch").stdout):
        for experiment in entry.get("experiments") or []:
            data = experiment["revs"][0].get("data") or {}
            found[experiment["name"]] = ((data.get("metrics") or {}).get("metrics.json") or {}).get("data") or {}
    return found


def running_tasks(name: str) -> int:
    result = subprocess.run(["squeue", "-h", "-r", "-n", name, "-t", "RUNNING", "-o", "%i"], capture_output=True,
                            text=True)
    return len(result.stdout.split())


def baseline_of(repo: Path) -> str:
    return run(["git", "rev-parse", "HEAD"], repo).stdout.strip()


@pytest.fixture(scope="module")
def swept(slurm, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, int, float]:
    """The acceptance run: three seeds at once on Slurm, waited for; with the most tasks seen running at once."""
    repo = git_project(tmp_path_factory.mktemp("swept") / "repo")
    name = sweep_id(baseline_of(repo), combinations(SEEDS[1:], "sweep"))
    env = slurm_env() | {"PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    process = subprocess.Popen([*SWEEP, "--slurm", "--wait", "--poll", "1", *SEEDS], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    most = 0
    while process.poll() is None:
        most = max(most, running_tasks(name))
        time.sleep(0.5)
    stdout, stderr = process.communicate()
    return repo, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), most, \
        time.monotonic() - started


@pytest.mark.full
@pytest.mark.slow
def test_a_slurm_sweep_gives_three_experiments_two_at_a_time(swept):
    repo, result, most, seconds = swept
    assert result.returncode == 0, result.stderr
    found = experiments_of(repo)
    names = [c.name for c in combinations(SEEDS[1:], "sweep")]
    assert all(0 <= found[name]["accuracy"] <= 1 for name in names), found
    assert most == 2, f"at most {most} task(s) ran at once"
    assert all(name in result.stdout for name in names), result.stdout  # the table
    assert run(["git", "status", "--porcelain"], repo).stdout == ""  # the user's workspace is untouched
    assert not list((repo / ".dvc/tmp/sweep/work").iterdir())  # each clone went once its experiment was in
    print(f"submission to table: {seconds:.1f} s")


@pytest.mark.full
@pytest.mark.slow
def test_a_swept_experiment_applies_with_its_outputs_from_the_shared_cache(swept, tmp_path):
    repo = copy_repo(swept[0], tmp_path / "repo")
    name = combinations(["train.seed=22"], "sweep")[0].name
    dvc(repo, "exp", "apply", name)
    assert json.loads((repo / "metrics.json").read_text()) == experiments_of(repo)[name]
    assert "up to date" in dvc(repo, "status").stdout
    assert (repo / "models/model.keras").is_file()


@pytest.mark.full
@pytest.mark.slow
def test_a_failing_combination_is_named_and_the_others_complete(slurm, repo):
    # Valid params, but the train stage refuses to hold out the whole training set (64 sequences).
    result = sweep(repo, "--slurm", "--wait", "--poll", "1", "-S", "train.validation_sequences=0,64")
    assert result.returncode == 1, result.stderr
    good, bad = combinations(["train.validation_sequences=0,64"], "sweep")
    assert result.stderr.splitlines()[-1] == (
        f"error: 1 of 2 experiment(s) failed: {bad.name} [train.validation_sequences=64]: "
        f"see {log_path(repo, bad.name)}"
    )
    assert "would hold out all of the" in log_path(repo, bad.name).read_text()
    assert set(experiments_of(repo)) == {good.name}


@pytest.mark.full
@pytest.mark.slow
def test_a_cancelled_sweep_leaves_the_repo_consistent_and_a_rerun_finishes_it(swept, tmp_path):
    repo = copy_repo(swept[0], tmp_path / "repo")
    specs = ["-S", "train.seed=21,24,25"]  # 21 is done already
    grid = combinations(specs[1:], "sweep")
    first = sweep(repo, "--slurm", *specs, check=True)
    assert "1 of 3 experiments are already done; submitting the other 2" in first.stderr
    job = first.stdout.split()[3].rstrip(":")
    logs = [log_path(repo, c.name) for c in grid[1:]]
    deadline = time.monotonic() + 300
    while not any(path.exists() for path in logs):  # a task has started its `dvc exp run`
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.5)
    time.sleep(3)
    subprocess.run(["scancel", job], check=True)
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)

    assert not all(c.name in experiments_of(repo) for c in grid), "cancelled too late: every task had finished"
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    assert set(refs) == {exp_ref(baseline_of(repo), name) for name in experiments_of(repo)}
    assert not list((repo / ".git").rglob("*.lock")) and run(["git", "status", "--porcelain"], repo).stdout == ""
    second = sweep(repo, "--slurm", "--wait", "--poll", "1", *specs, check=True)
    assert all(c.name in experiments_of(repo) for c in grid), second.stderr
    assert "of 3 experiments are already done" in second.stderr
    # A cancelled task's clone is picked up again (with its checkpoint, if training had begun).
    assert any("resuming in" in out.read_text() for out in (repo / ".dvc/tmp/sweep/logs").glob("*.out"))


@pytest.mark.full
@pytest.mark.slow
def test_a_task_warned_of_its_time_limit_requeues_and_resumes_from_its_checkpoint(slurm, repo):
    # Long enough (ten epochs of 500 steps, 14 s on a quiet 2-core machine) that the warning lands mid-training.
    specs = ["-S", "generate_train.n_samples=1000", "-S", "train.batch_size=2", "-S", "train.epochs=10"]
    (combination,) = combinations(specs[1::2], "sweep")
    job = sweep(repo, "--slurm", *specs, check=True).stdout.split()[3].rstrip(":")
    log = log_path(repo, combination.name)
    try:
        deadline = time.monotonic() + 300
        while not (log.exists() and "training on" in log.read_text()):
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        time.sleep(3)
        # What Slurm sends 120 s before the time limit (sbatch --signal=B:USR1@120).
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
        deadline = time.monotonic() + 600
        while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
            assert time.monotonic() < deadline, "the requeued task did not finish"
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    out = "".join(path.read_text() for path in (repo / ".dvc/tmp/sweep/logs").glob("*.out"))
    assert "stopped by SIGUSR1" in out and "requeueing job" in out and "attempt 2" in out, out
    text = log.read_text()
    assert "train: saved a checkpoint" in text and "train: resuming from the checkpoint" in text, text
    assert combination.name in experiments_of(repo)
