"""Outputs appear whole or not at all; stale temporaries are swept; JSON is written stably."""

import os
import subprocess
import sys

import pytest

from movingline.errors import InputError
from movingline.outputs import atomic_outputs, temporary_path, write_json


def test_a_failing_stage_leaves_earlier_outputs_and_no_temporaries(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "sub" / "b.png"
    first.write_bytes(b"earlier output\n")
    with pytest.raises(InputError), atomic_outputs(first, second) as (first_temporary, _):
        first_temporary.write_text("half of the new output")
        raise InputError("stopped half-way")
    assert first.read_bytes() == b"earlier output\n"
    assert not second.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.csv"]


def test_outputs_are_replaced_together_on_success(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.json"
    first.write_bytes(b"old")
    with atomic_outputs(first, second) as (first_temporary, second_temporary):
        assert first_temporary.name.startswith(".a.partial-") and first_temporary.suffix == ".csv"
        first_temporary.write_text("new a")
        second_temporary.write_text("new b")
        assert first.read_bytes() == b"old"
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]


def test_temporaries_of_killed_runs_are_swept_but_not_those_of_live_ones(tmp_path):
    destination = tmp_path / "train.h5"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=False
    )
    stale = temporary_path(destination, int(dead.stdout))
    live = temporary_path(destination, os.getppid())
    for path in (stale, live):
        path.write_bytes(b"left behind")
    with atomic_outputs(destination) as (temporary,):
        temporary.write_bytes(b"new")
    assert not stale.exists()
    assert live.exists()


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("directory", "is a directory, expected the path of a file to write"), ("file as folder", "a folder on its path is a file")],
)
def test_an_output_path_that_cannot_be_a_file_is_refused_before_work(tmp_path, kind, problem):
    target = tmp_path / "metrics.json"
    if kind == "directory":
        target.mkdir()
    else:
        (tmp_path / "plots").write_text("a file")
        target = tmp_path / "plots" / "roc.json"
    with pytest.raises(InputError) as caught, atomic_outputs(target):
        pytest.fail("the body must not run")
    assert str(caught.value) == f"{target}: {problem}"


def test_write_json_is_indented_with_a_final_newline(tmp_path):
    write_json({"b": 1, "a": [0.5]}, tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text() == '{\n  "b": 1,\n  "a": [\n    0.5\n  ]\n}\n'
