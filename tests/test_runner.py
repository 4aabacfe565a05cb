"""The experiment runner's parts alone (experiments/runner): the grid and its checks, the local
queue's bookkeeping, the Slurm array's command and a task's clone. Whole sweeps through them are
tests/test_sweep.py's and the learning curve's."""

import pytest

from experiments.runner import local
from experiments.runner.grid import PARAMS_FILE, Combination, check_all, combinations, name_of
from experiments.runner.local import queued_elsewhere
from experiments.runner.slurm import SlurmOptions, sbatch_command, workspace
from experiments.runner.task import SHARED_CACHE, prepare_clone
from movingline.errors import InputError
from tests.conftest import dvc, run, tiny_params, write_params


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
    assert command[-1].startswith("--wrap=cd ") and command[-1].endswith(f"experiments.runner.task {tmp_path}/plan.json")


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


def test_a_spec_that_cannot_be_parsed_is_named_alone():
    for spec, reason in [("train.seed", "missing EQUAL"), ("train.seed=[1", "no viable alternative"),
                         ("a:b:c=1", "missing EQUAL at ':'")]:
        with pytest.raises(InputError) as error:
            combinations(["train.epochs=1,2", spec], "sw")
        assert str(error.value).startswith(f"-S {spec}: expected KEY=VALUE[,VALUE...] as `dvc exp run -S` takes ("), error.value
        assert reason in str(error.value) and "https://" not in str(error.value)


def test_a_learning_curve_run_is_a_combination_of_its_settings():
    combination = Combination.of("lc-deep2-n500-s4", {"model.conv_layers": 2, "train.seed": 4})
    assert combination.set_params() == ["-S", "model.conv_layers=2", "-S", "train.seed=4"]
    assert combination.describe() == "model.conv_layers=2 train.seed=4"


def test_experiments_queued_by_others_are_found_in_the_queue_status():
    status = (
        "Task     Name                         Created    Status\n"
        "b6429b1  lc-reference-n250-s3         10:34 AM   Success\n"
        "7ce3afb  lc-deep2-n250-s3             10:34 AM   Queued\n"
        "345bc80  my-own-try                   10:35 AM   Queued\n"
        "08c22a2  my-running-one               10:35 AM   Running\n"
        "\nWorker status: 0 active, 0 idle\n"
    )
    assert queued_elsewhere(status, {"lc-reference-n250-s3", "lc-deep2-n250-s3"}) == ["my-own-try"]
    assert queued_elsewhere("No experiment tasks in the queue.\n\nWorker status: 0 active, 0 idle\n", set()) == []


def test_waiting_outlasts_a_few_failed_polls_but_not_many(monkeypatch):
    runs = [Combination("lc-reference-n250-s3", ())]
    answers = iter([InputError("`dvc exp show` failed: tmp dir gone")] * 2 + [{"lc-reference-n250-s3": {"state": "success"}}])

    def poll(baseline):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(local, "experiments", poll)
    assert local.wait(runs, "abc", poll_seconds=0) == {"lc-reference-n250-s3": {"state": "success"}}

    def always_failing(baseline):
        raise InputError("`dvc exp show` failed: broken")

    monkeypatch.setattr(local, "experiments", always_failing)
    with pytest.raises(InputError, match="broken"):
        local.wait(runs, "abc", poll_seconds=0)
