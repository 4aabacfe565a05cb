"""dvc.yaml against the code, and a real `dvc repro` end to end on tiny params."""

import ast
import json
from pathlib import Path

import pytest
import yaml

from movingline.params import load_params
from tests.conftest import FIRST_REPRO_LOG, ROOT, copy_repo, dvc

STAGES = ["generate_train", "generate_test", "train", "evaluate", "predict", "export"]


def pipeline() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def project_imports(path: Path, seen: set[str] | None = None) -> set[str]:
    """Every project module (movingline or stages) a file imports, directly or through other project modules."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module in ("movingline", "stages"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]  # from movingline import prediction
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith(("movingline.", "stages.")) and name not in seen:
                seen.add(name)
                project_imports(ROOT / (name.replace(".", "/") + ".py"), seen)
    return seen


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_lists_exactly_the_code_it_runs(stage):
    deps = {dep for dep in pipeline()["stages"][stage]["deps"] if dep.endswith(".py")}
    script = ROOT / f"stages/{stage}.py"
    code = {f"stages/{stage}.py"} | {name.replace(".", "/") + ".py" for name in project_imports(script)}
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
