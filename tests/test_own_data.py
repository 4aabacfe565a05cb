"""docs/own-data.md followed as written: its writer script, its dvc.yaml stages, then train and evaluate."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, copy_project, dvc, git_project, run, tiny_params

DOC = ROOT / "docs" / "own-data.md"
SIZE = 8


def doc_block(language: str) -> str:
    """The first fenced block of ``language`` in docs/own-data.md."""
    match = re.search(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert match, f"docs/own-data.md has no {language} block"
    return match.group(1)


def save_videos(folder: Path, prefix: str, n: int, seed: int) -> None:
    """``n`` videos of SIZE frames of SIZE x SIZE pixels, some of them grey-level, and 0/1 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int64)
    videos = np.zeros((n, SIZE, SIZE, SIZE), dtype=np.float32)
    for index, label in enumerate(labels):
        # A dot moving along the middle row, rightward for 1, with a few grey pixels.
        for t in range(SIZE):
            videos[index, t:, SIZE // 2, t if label else SIZE - 1 - t] = rng.uniform(0.2, 1.0)
    np.save(folder / f"{prefix}_videos.npy", videos)
    np.save(folder / f"{prefix}_labels.npy", labels)


def write_script(project: Path) -> None:
    (project / "write_my_data.py").write_text(doc_block("python"), encoding="utf-8")


@pytest.mark.slow


@pytest.mark.full
def test_documented_route_trains_and_evaluates_on_own_data(tmp_path: Path):
    project = git_project(tmp_path / "repo", tiny_params(data={"size": SIZE}))
    (project / "data").mkdir()  # a clone has it: git tracks data/.gitignore
    write_script(project)
    save_videos(project, "my", 48, seed=1)
    save_videos(project, "my_test", 20, seed=2)

    pipeline = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))
    mine = yaml.safe_load(doc_block("yaml"))["generate_train"]
    pipeline["stages"]["generate_train"] = mine
    # "Do the same for generate_test": the doc's stage with the test files.
    pipeline["stages"]["generate_test"] = {
        "cmd": "python write_my_data.py my_test_videos.npy my_test_labels.npy data/test.h5",
        "deps": ["write_my_data.py", "my_test_videos.npy", "my_test_labels.npy"],
        "outs": ["data/test.h5"],
    }
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")

    dvc(project, "repro", "evaluate")

    metrics = json.loads((project / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n_samples"] == 20
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert (project / "models" / "model.keras").stat().st_size > 0
    # A second repro finds the own-data stages up to date.
    assert "didn't change" in dvc(project, "repro", "evaluate").stdout


def test_writer_output_passes_the_readers_checks(tmp_path: Path):
    from movingline.data.dataset import DatasetReader

    project = copy_project(tmp_path / "project")
    write_script(project)
    save_videos(project, "my", 5, seed=3)
    run([sys.executable, "write_my_data.py", "my_videos.npy", "my_labels.npy", "out.h5"], project)
    with DatasetReader(project / "out.h5") as reader:
        assert (reader.info.size, reader.info.n_samples) == (SIZE, 5)
        frames = reader.read_frames(0, 5)
        assert set(np.unique(frames)) <= {0, 1}
        assert frames.sum() > 0
        assert reader.read_labels().tolist() == np.load(project / "my_labels.npy").tolist()


def test_writer_refuses_videos_whose_frame_count_differs_from_the_side(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    write_script(project)
    np.save(project / "my_videos.npy", np.zeros((3, SIZE - 1, SIZE, SIZE), dtype=np.uint8))
    np.save(project / "my_labels.npy", np.zeros(3, dtype=np.uint8))
    result = run([sys.executable, "write_my_data.py", "my_videos.npy", "my_labels.npy", "out.h5"], project, check=False)
    assert result.returncode == 1
    assert f"my_videos.npy: {SIZE - 1} frames of {SIZE}x{SIZE}" in result.stderr
    assert not (project / "out.h5").exists()
