"""dvc.yaml against the code, and a real `dvc repro` end to end on tiny params."""

import json

import pytest
import yaml

from movingline.params import load_params
from movingline.training.checkpoint import code_files
from tests.conftest import FIRST_REPRO_LOG, ROOT, copy_repo, dvc

STAGES = ["generate_train", "generate_test", "train", "evaluate", "predict", "export"]


def pipeline() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_lists_exactly_the_code_it_runs(stage):
    deps = {dep for dep in pipeline()["stages"][stage]["deps"] if dep.endswith(".py")}
    code = {path.relative_to(ROOT).as_posix() for path in code_files(ROOT / f"stages/{stage}.py")}
    assert deps == code


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
