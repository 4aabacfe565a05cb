"""Sweeps (python -m experiments.sweep): the grid and its checks alone, then whole sweeps on a real Slurm.

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

from experiments.sweep.grid import PARAMS_FILE, check_all, combinations, name_of
from experiments.sweep.repo import PLAN_DIR, exp_ref, log_path, workspace
from experiments.sweep.slurm import SlurmOptions, sbatch_command, sweep_id
from experiments.sweep.task import SHARED_CACHE, prepare_clone
from movingline.errors import InputError
from tests.conftest import ROOT, copy_repo, dvc, git_project, run, slurm_env, tiny_params, write_params

SWEEP = [sys.executable, "-m", "experiments.sweep"]
SEEDS = ["-S", "train.seed=21,22,23"]


def test_several_set_params_make_a_grid_with_stable_names():
    grid = combinations(["train.seed=21,22,23", "train.batch_size=8,16"], "sw")
    assert [c.describe() for c in grid[:2]] == ["train.seed=21 train.batch_size=8", "train.seed=21 train.batch_size=16"]
    assert len(grid) == 6 and len({c.name for c in grid}) == 6
    assert grid[1].set_params() == ["-S", "train.seed=21", "-S", "train.batch_size=16"]
    # The same settings in another order are the same experiment: a rerun finds it.
    assert grid[1].name == name_of("sw", ((PARAMS_FILE, "train.batch_size=16"), (PARAMS_FILE, "train.seed=21")))


def test_every_invalid_combination_is_named(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_params())
    grid = combinations(["train.batch_size=16,0", "train.learning_rate=0.01,-1"], "sw")
    with pytest.raises(InputError) as error:
        check_all(grid, params)
    message = str(error.value)
    assert message.startswith("3 of 4 combinations cannot run, nothing was started: "), message
    assert "[train.batch_size=0 train.learning_rate=0.01] params.yaml: train.batch_size: expected an integer" in message
    assert "[train.batch_size=16 train.learning_rate=-1] params.yaml: train.learning_rate:" in message
    assert str(tmp_path) not in message
    check_all(grid[:1], params)


def test_an_unknown_key_is_refused_as_dvc_would(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_params())
    with pytest.raises(InputError, match=r"\[train.sed=1\] Invalid `--set-param` value .*train.sed"):
        check_all(combinations(["train.sed=1"], "sw"), params)


def test_the_array_asks_for_its_cores_and_passes_sbatch_options_through(tmp_path):
    options = SlurmOptions(cpus_per_task=2, max_running=3, sbatch=["--partition=p", "--time=1:00:00"])
    command = sbatch_command(tmp_path, "sweep-x", tmp_path / "plan.json", 5, options)
    assert {"--array=0-4%3", "--cpus-per-task=2", "--requeue", "--partition=p", "--time=1:00:00"} <= set(command)
    assert command[-1].startswith("--wrap=cd ") and command[-1].endswith(f"experiments.sweep.task {tmp_path}/plan.json")


@pytest.mark.slow
def test_a_second_attempt_reuses_its_clone_and_keeps_the_checkpoint(repo):
    baseline = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    clone, cache = workspace(repo, baseline, "sw-1"), str(repo / ".dvc/cache")
    prepare_clone(repo, baseline, clone, cache)
    (clone / "checkpoints").mkdir()
    (clone / "checkpoints/state").write_text("step 3")
    (clone / "params.yaml").write_text("changed by an interrupted `dvc exp run -S`")
    prepare_clone(repo, baseline, clone, cache)
    assert (clone / "checkpoints/state").read_text() == "step 3"
    assert (clone / "params.yaml").read_bytes() == (repo / "params.yaml").read_bytes()
    # The clone writes its own cache and pushes the finished outputs to the repo's.
    assert dvc(clone, "cache", "dir").stdout.strip() == str(clone / ".dvc/cache")
    assert dvc(clone, "remote", "list").stdout.split() == [SHARED_CACHE, cache]
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def sweep(repo: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = slurm_env() | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([*SWEEP, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert not check or result.returncode == 0, result.stderr
    return result


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
