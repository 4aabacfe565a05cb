"""dvc.yaml against the code, and a real `dvc repro` end to end on tiny params."""

import json
import shutil
import sys

import pytest
import yaml

from movingline.params import load_params
from scripts import stage_deps
from tests.conftest import FIRST_REPRO_LOG, ROOT, copy_project, copy_repo, dvc, run

STAGES = ["generate_train", "generate_test", "train", "evaluate", "predict", "export"]


def pipeline() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_each_stage_lists_exactly_the_code_it_runs():
    # The check of `python -m scripts.stage_deps --check`: each stage's .py deps are its script
    # and what it imports (movingline.training.checkpoint.code_files).
    assert stage_deps.disagreements(ROOT / "dvc.yaml") == []
    checked = {name for name, stage in pipeline()["stages"].items() if stage_deps.stage_script(stage["cmd"])}
    assert checked == set(STAGES)


def test_the_deps_script_names_what_disagrees_and_writes_dvc_yaml_back_byte_for_byte(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    committed = (project / "dvc.yaml").read_text(encoding="utf-8")
    assert "      - movingline/model.py\n      - movingline/outputs.py\n" in committed  # the train stage's
    edited = committed.replace("      - movingline/model.py\n      - movingline/outputs.py\n",
                               "      - movingline/model.py\n      - movingline/gone.py\n", 1)
    (project / "dvc.yaml").write_text(edited, encoding="utf-8")
    command = [sys.executable, "-m", "scripts.stage_deps"]

    check = run([*command, "--check"], project, check=False)
    assert check.returncode == 1
    assert check.stdout.splitlines() == [
        "dvc.yaml: train: imports but does not list movingline/outputs.py",
        "dvc.yaml: train: lists but does not import movingline/gone.py",
        "dvc.yaml: code deps disagree with the stages' imports; run python -m scripts.stage_deps",
    ]
    assert (project / "dvc.yaml").read_text(encoding="utf-8") == edited  # --check writes nothing

    written = run(command, project)
    assert written.stdout == "dvc.yaml: train: added movingline/outputs.py; removed movingline/gone.py\n"
    assert (project / "dvc.yaml").read_text(encoding="utf-8") == committed
    assert run([*command, "--check"], project).stdout == "dvc.yaml: code deps agree with the stages' imports\n"


def test_the_deps_script_refuses_a_damaged_dvc_yaml_in_one_line(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages:\n  train: [\n", encoding="utf-8")
    result = run([sys.executable, "-m", "scripts.stage_deps", "--check", "--file", str(tmp_path / "dvc.yaml")], ROOT,
                 check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: {tmp_path / 'dvc.yaml'}: not valid YAML: ")
    assert len(result.stderr.splitlines()) == 1


def test_each_stage_lists_only_params_keys_that_exist():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for stage in STAGES:
        for key in pipeline()["stages"][stage].get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"{stage}: {key} is not in params.yaml"
                node = node[part]


def test_default_params_reproduce_the_reference():
    params = load_params(ROOT / "params.yaml")
    assert params.data.size == 50
    assert (params.generate_train.n_samples, params.train.batch_size, params.train.epochs) == (5000, 32, 1)
    assert params.train.learning_rate == 0.001
    assert params.generate_test.n_samples >= 1000


@pytest.mark.slow
def test_dvc_repro_runs_everything_then_nothing(reproduced_repo, tmp_path):
    first = (reproduced_repo.parent / FIRST_REPRO_LOG).read_text(encoding="utf-8")
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    metrics = json.loads((repo / "metrics.json").read_text())
    assert metrics["n_samples"] == 40
    assert (repo / "models/model.keras").exists() and (repo / "dvc.lock").exists()

    second = dvc(repo, "repro")
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date." in second.stdout
    status = dvc(repo, "status", "--json")
    assert json.loads(status.stdout) == {}
