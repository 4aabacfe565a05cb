"""The DVC workflows a user relies on, each run end to end on tiny params in a temporary repo.

Every test starts from its own copy of ``reproduced_repo`` (one `dvc repro`, committed), so
the tests share that run but not each other's changes, and pass in any order.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_PARAMS, copy_repo, dvc, output_hashes, run, stage_env, tiny_params, write_params

pytestmark = [pytest.mark.slow, pytest.mark.full]

STAGES = ["generate_train", "generate_test", "train", "evaluate", "predict", "export"]
UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture
def workspace(reproduced_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the reproduced and committed repo."""
    return copy_repo(reproduced_repo, tmp_path / "repo")


def running_stages(output: str) -> list[str]:
    """The stages a `dvc repro` or `dvc exp run` ran, in order, from its "Running stage" lines."""
    return re.findall(r"Running stage '(\w+)'", output)


def experiments(repo: Path) -> dict[str, dict]:
    """Each experiment that `dvc exp show --json` lists, by name: its params and metrics."""
    table = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    found = {}
    for baseline in table:
        for experiment in baseline.get("experiments") or []:
            data = experiment["revs"][0]["data"]
            # Only queued and --temp runs have an executor; a run in the workspace has none.
            found[experiment["name"]] = {
                "state": (experiment["executor"] or {}).get("state"),
                "params": data["params"]["params.yaml"]["data"],
                "metrics": data["metrics"]["metrics.json"]["data"],
            }
    return found


def committed_metrics(repo: Path) -> dict:
    return json.loads(run(["git", "show", "HEAD:metrics.json"], repo).stdout)


@pytest.mark.parametrize(
    ("section", "key", "value", "changed", "rerun"),
    [
        # (A training param is the exp-run and status tests below: they retrain once for both.)
        # Fresh prediction sequences touch nothing but predict.
        ("predict", "seed", 41, ["predict"], ["predict"]),
        # The frame size is read by every stage but evaluate, which reruns on the new model and test set.
        ("data", "size", 6, ["generate_test", "generate_train", "predict", "train"], STAGES),
    ],
    ids=["predict.seed", "data.size"],
)
def test_changing_a_param_reruns_only_the_stages_that_read_it(workspace, section, key, value, changed, rerun):
    write_params(workspace / "params.yaml", tiny_params(**{section: {key: value}}))

    status = json.loads(dvc(workspace, "status", "--json").stdout)
    assert sorted(status) == changed
    for stage in changed:
        # A stage that reads a whole section (train: [model, train]) reports the section.
        (changes,) = status[stage]
        assert list(changes["changed deps"]["params.yaml"]) in ([section], [f"{section}.{key}"])

    result = dvc(workspace, "repro")
    assert running_stages(result.stdout) == rerun
    for stage in set(STAGES) - set(rerun):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    assert dvc(workspace, "status").stdout.strip() == UP_TO_DATE


def test_params_metrics_and_plots_diff_show_the_change(workspace, tmp_path):
    # A new test set: only generate_test and evaluate rerun, and every metric moves.
    write_params(workspace / "params.yaml", tiny_params(generate_test={"seed": 22}))
    assert running_stages(dvc(workspace, "repro").stdout) == ["generate_test", "evaluate", "export"]

    params_diff = dvc(workspace, "params", "diff").stdout
    assert re.search(r"params\.yaml\s+generate_test\.seed\s+12\s+22", params_diff), params_diff
    assert json.loads(dvc(workspace, "params", "diff", "--json").stdout) == {
        "params.yaml": {"generate_test.seed": {"old": 12, "new": 22, "diff": 10}}
    }

    metrics_diff = json.loads(dvc(workspace, "metrics", "diff", "--json").stdout)["metrics.json"]
    new_metrics = json.loads((workspace / "metrics.json").read_text())
    assert metrics_diff["loss"]["old"] == committed_metrics(workspace)["loss"]
    assert metrics_diff["loss"]["new"] == new_metrics["loss"] != metrics_diff["loss"]["old"]
    assert "n_samples" not in metrics_diff  # unchanged metrics are left out
    assert re.search(r"metrics\.json\s+loss\s", dvc(workspace, "metrics", "diff").stdout)

    html_dir = tmp_path / "plots_diff"
    dvc(workspace, "plots", "diff", "-o", str(html_dir))
    html = (html_dir / "index.html").read_text(encoding="utf-8")
    plots = yaml.safe_load((workspace / "dvc.yaml").read_text())["plots"]
    titles = [next(iter(plot)) for plot in plots if isinstance(plot, dict)]
    assert len(titles) == 3
    for title in titles:
        assert title in html
    # Images are copied beside the page, one per revision.
    for image in ("test_sequences", "train_sequences", "predictions"):
        for revision in ("HEAD", "workspace"):
            assert f"static/{revision}_plots_{image}.png" in html
            assert (html_dir / "static" / f"{revision}_plots_{image}.png").is_file()


def test_changing_a_training_param_changes_only_train_by_its_section(workspace):
    # Training longer would retrain and re-evaluate, but leave both datasets alone.
    write_params(workspace / "params.yaml", tiny_params(train={"epochs": 2}))
    status = json.loads(dvc(workspace, "status", "--json").stdout)
    assert list(status) == ["train"]
    (changes,) = status["train"]
    assert list(changes["changed deps"]["params.yaml"]) == ["train"]


def test_exp_run_is_listed_with_its_metrics_and_setting_back_restores_from_the_run_cache(workspace, reproduced_repo):
    import keras

    first = output_hashes(reproduced_repo)
    result = dvc(workspace, "exp", "run", "--name", "deep2", "--set-param", "model.conv_layers=2")
    assert running_stages(result.stdout) == ["train", "evaluate", "predict", "export"]
    for stage in ("generate_train", "generate_test"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    # The saved model has a second CNN block (docs/learning-curve.md).
    model = keras.models.load_model(workspace / "models" / "model.keras")
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv3D)] == ["conv", "conv_2"]

    experiment = experiments(workspace)["deep2"]
    assert experiment["params"]["model"]["conv_layers"] == 2
    metrics = experiment["metrics"]
    assert set(metrics) >= {"accuracy", "loss", "precision", "recall", "f1", "roc_auc", "n_samples"}
    assert metrics == json.loads((workspace / "metrics.json").read_text())
    assert metrics["loss"] != committed_metrics(workspace)["loss"]
    # The CSV table holds the same row, named.
    assert any(line.startswith("deep2,") for line in dvc(workspace, "exp", "show", "--csv").stdout.splitlines())
    assert output_hashes(workspace)["models/model.keras"] != first["models/model.keras"]

    # The experiment ran in the workspace; the committed params bring the committed outputs back.
    write_params(workspace / "params.yaml", TINY_PARAMS)
    result = dvc(workspace, "repro")
    assert running_stages(result.stdout) == []
    for stage in ("train", "evaluate", "predict", "export"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in result.stdout
    assert output_hashes(workspace) == first
    assert (workspace / "dvc.lock").read_bytes() == (reproduced_repo / "dvc.lock").read_bytes()


def test_queued_sweep_runs_two_experiments_at_once(workspace, tmp_path):
    queued = dvc(workspace, "exp", "run", "--queue", "--set-param", "model.lstm_units=3,5")
    assert queued.stdout.count("Queued experiment") == 2
    # Queued experiments run in temporary copies of the repo, in queue workers that inherit
    # this environment: this venv's python and dvc, and one thread per TensorFlow pool for
    # each of the two jobs (docs/scaling.md). `dvc queue start --jobs 2` starts the same workers.
    env = stage_env() | {"MOVINGLINE_THREADS": "1"}
    command = [str(Path(sys.executable).parent / "dvc"), "exp", "run", "--run-all", "--jobs", "2"]
    # Not through a pipe: the queue's workers keep this command's output open until they finish.
    with open(tmp_path / "run-all.log", "w+") as log:
        sweep = subprocess.Popen(command, cwd=workspace, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        most_running, seen, deadline = 0, [], time.monotonic() + 900
        try:
            while sweep.poll() is None and time.monotonic() < deadline:
                status = dvc(workspace, "queue", "status").stdout
                seen.append(status)
                most_running = max(most_running, len(re.findall(r"\bRunning\b", status)))
                time.sleep(1)
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait()
            dvc(workspace, "queue", "stop", check=False)
        log.seek(0)
        output = log.read()
    assert sweep.returncode == 0, output  # -9: still running after 900 s, so killed
    assert most_running == 2, "\n".join(seen)
    # --run-all follows each experiment's log in turn.
    assert running_stages(output) == ["train", "evaluate", "predict", "export"] * 2

    found = experiments(workspace)
    assert sorted(e["params"]["model"]["lstm_units"] for e in found.values()) == [3, 5]
    for experiment in found.values():
        assert experiment["state"] == "success"
        assert experiment["metrics"]["n_samples"] == TINY_PARAMS["generate_test"]["n_samples"]
    losses = {e["metrics"]["loss"] for e in found.values()}
    assert len(losses) == 2
    # The workspace itself is left as it was.
    assert dvc(workspace, "status").stdout.strip() == UP_TO_DATE


def test_push_then_pull_into_a_fresh_clone(workspace, tmp_path):
    remote = tmp_path / "remote"
    dvc(workspace, "remote", "add", "--default", "local", str(remote))
    run(["git", "commit", "-q", "-m", "local DVC remote", ".dvc/config"], workspace)
    pushed = dvc(workspace, "push").stdout
    assert re.search(r"\b\d+ files? pushed", pushed), pushed

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    # Git brings the pictures (README.md shows them) and the metrics; DVC brings the rest.
    assert (clone / "plots/predictions.png").is_file() and (clone / "metrics.json").is_file()
    assert not (clone / "models/model.keras").exists() and not (clone / "data/train.h5").exists()
    dvc(clone, "pull")
    assert dvc(clone, "status").stdout.strip() == UP_TO_DATE
    assert output_hashes(clone) == output_hashes(workspace)
