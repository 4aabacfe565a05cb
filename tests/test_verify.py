"""reproduction.verify: the verdict on a workspace against what HEAD records.

The comparisons are unit-tested on small dicts; the verdicts end to end on a tiny repository
after a real `dvc repro`, where "another numeric environment" is made by committing what such
an environment would have recorded (other model bytes, a slightly other loss and curve).
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest
import yaml

from reproduction import verify
from tests.conftest import ROOT, copy_repo, dvc, run, write_params

LOCK = {
    "schema": "2.0",
    "stages": {
        "generate_train": {"deps": [{"path": "stages/generate_train.py", "md5": "a"}],
                           "params": {"params.yaml": {"data.size": 8}},
                           "outs": [{"path": "data/train.h5", "md5": "d1"}]},
        "train": {"deps": [{"path": "data/train.h5", "md5": "d1"}, {"path": "stages/train.py", "md5": "b"}],
                  "params": {"params.yaml": {"train": {"seed": 13}}},
                  "outs": [{"path": "models/model.keras", "md5": "m"}, {"path": "training.json", "md5": "r"}]},
        "evaluate": {"deps": [{"path": "models/model.keras", "md5": "m"}],
                     "outs": [{"path": "metrics.json", "md5": "x"}]},
    },
}


def test_only_stages_that_run_no_model_make_model_free_outputs():
    assert verify.model_free_outputs(LOCK) == {"data/train.h5"}


def test_input_differences_name_the_param_and_the_code_but_not_the_data_a_stage_wrote():
    other = yaml.safe_load(yaml.safe_dump(LOCK))
    other["stages"]["train"]["params"]["params.yaml"]["train"]["seed"] = 9
    other["stages"]["train"]["deps"][0]["md5"] = "d2"  # written by generate_train: an output, not an input
    other["stages"]["train"]["deps"][1]["md5"] = "c"
    assert verify.input_differences(other, LOCK) == [
        "train: param train.seed is 9 (HEAD: 13)",
        "train: stages/train.py differs from HEAD's",
    ]
    assert verify.input_differences(LOCK, LOCK) == []


def test_metrics_within_tolerance_pass_and_an_other_accuracy_never_does():
    head = {"accuracy": 1.0, "loss": 0.0010946449, "n_samples": 40}
    comparison = verify.Comparison()
    verify.compare_metrics({**head, "loss": 0.0010946706}, head, comparison)
    assert comparison.problems == []
    assert "loss 0.0010946706 (HEAD 0.0010946449, relative 2.3e-05)" in comparison.lines[0][1]

    comparison = verify.Comparison()
    verify.compare_metrics({**head, "accuracy": 0.975, "loss": 0.002}, head, comparison)
    assert [problem.split(":")[1].split()[0] for problem in comparison.problems] == ["accuracy", "loss"]


def test_the_largest_curve_difference_names_its_column_and_step():
    head = {"loss": [0.7, 0.5, 0.1], "accuracy": [0.5, 0.75, 1.0]}
    assert verify.largest_curve_difference(head, head) == ("loss", 0.0, 0)
    assert verify.largest_curve_difference({**head, "accuracy": [0.5, 0.5, 1.0]}, head) == ("accuracy", 0.25, 2)
    assert verify.largest_curve_difference({**head, "loss": [0.7]}, head)[1] == float("inf")


def test_other_bits_in_the_same_environment_are_not_a_reproduction():
    comparison = verify.Comparison(differing=["models/model.keras"])
    assert verify.verdict(comparison, other_environment=False) == "not reproduced"
    assert verify.verdict(verify.Comparison(differing=["models/model.keras"]), True) == "reproduced within tolerance"
    assert verify.verdict(verify.Comparison(), False) == "bit-identical"


def run_verify(repo: Path, check: bool = False):
    return run([sys.executable, "-m", "reproduction.verify", "--repo", str(repo)], ROOT, check=check)


def commit_as_another_environment(repo: Path, loss_factor: float, curve_shift: float) -> None:
    """Commits what another numeric environment would have: its training.json (other threads,
    a shifted curve), its metrics.json (another loss) and dvc.lock with their hashes and other
    model bytes. The workspace then holds this machine's run again, as after a `dvc repro`."""
    originals = {name: (repo / name).read_bytes() for name in ("training.json", "metrics.json", "dvc.lock")}
    record = json.loads(originals["training.json"])
    record["environment"]["threads"] += 7
    record["curve"]["loss"] = [value + curve_shift for value in record["curve"]["loss"]]
    metrics = json.loads(originals["metrics.json"])
    metrics["loss"] *= loss_factor
    edited = {"training.json": json.dumps(record, indent=2) + "\n", "metrics.json": json.dumps(metrics, indent=2) + "\n"}
    lock = originals["dvc.lock"].decode()
    for name, text in edited.items():
        (repo / name).write_text(text, encoding="utf-8")
        old, new = hashlib.md5(originals[name]).hexdigest(), hashlib.md5(text.encode()).hexdigest()
        lock = lock.replace(old, new)
    lock = lock.replace(hashlib.md5((repo / "models/model.keras").read_bytes()).hexdigest(), "0" * 32)
    (repo / "dvc.lock").write_text(lock, encoding="utf-8")
    run(["git", "commit", "-qam", "as another environment computed it"], repo)
    for name, content in originals.items():
        (repo / name).write_bytes(content)


@pytest.mark.slow
def test_a_fresh_reproduction_is_bit_identical(reproduced_repo, tmp_path):
    result = run_verify(copy_repo(reproduced_repo, tmp_path / "repo"), check=True)
    assert result.stdout.splitlines()[-1] == "verdict: bit-identical"
    assert "  data/train.h5" in result.stdout and "environment" in result.stdout


@pytest.mark.slow
def test_another_environment_within_tolerance_is_a_reproduction(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    commit_as_another_environment(repo, loss_factor=1 + 2e-5, curve_shift=1e-6)
    result = run_verify(repo, check=True)
    assert result.stdout.splitlines()[-1] == "verdict: reproduced within tolerance"
    assert "other: threads" in result.stdout
    assert "largest difference 1.0e-06 (loss, step" in result.stdout
    assert "relative 2.0e-05" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("loss_factor", "curve_shift", "why"), [
    (1.01, 0.0, "metrics.json: loss differs by 9.9e-03 relative (tolerance 0.001)"),
    (1.0, 0.01, "the training curve's loss differs by 1.0e-02 at step 1 (tolerance 0.001)"),
])
def test_another_environment_outside_tolerance_is_not_a_reproduction(reproduced_repo, tmp_path, loss_factor, curve_shift, why):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    commit_as_another_environment(repo, loss_factor, curve_shift)
    result = run_verify(repo)
    assert result.returncode == 1
    assert f"why: {why}" in result.stdout
    assert result.stdout.splitlines()[-1] == "verdict: not reproduced"


@pytest.mark.slow
def test_other_params_are_not_a_reproduction(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["predict"]["seed"] += 1
    write_params(repo / "params.yaml", params)
    result = run_verify(repo)
    assert result.returncode == 1
    assert "why: dvc status: predict not up to date with dvc.lock; run dvc repro" in result.stdout

    dvc(repo, "repro")
    result = run_verify(repo)
    assert result.returncode == 1
    assert f"why: other inputs: predict: param predict.seed is {params['predict']['seed']}" in result.stdout
    assert result.stdout.splitlines()[-1] == "verdict: not reproduced"


def test_without_git_it_says_so_in_one_line(tmp_path):
    result = run_verify(tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path}: no dvc.lock in git's HEAD (is this a clone of the project?)"


@pytest.mark.parametrize(("text", "why"), [
    ("stages:\n  train: [\n", "not valid YAML: "),
    ("schema: '2.0'\n\tstages: {}\n", "not valid YAML: found character '\\t' that cannot start any token (line 2, column 1)"),
    ("", "not a dvc.lock: expected a mapping with a 'stages' mapping"),
    ("- generate_train\n- train\n", "not a dvc.lock: expected a mapping with a 'stages' mapping"),
    ("stages:\n  train: 3\n", "not a dvc.lock: stage 'train' is not a mapping"),
    ("stages:\n  train:\n    deps:\n      - stages/train.py\n", "not a dvc.lock: train.deps is not a list of entries with a path"),
    ("stages:\n  train:\n    params: [train.seed]\n", "not a dvc.lock: train.params is not a mapping of files to their values"),
])
def test_a_damaged_lock_is_named_with_what_is_wrong(text, why):
    with pytest.raises(verify.VerifyError) as raised:
        verify.parse_lock(text, "somewhere/dvc.lock")
    assert str(raised.value).startswith(f"somewhere/dvc.lock: {why}")
    assert "\n" not in str(raised.value)


def test_a_damaged_record_or_metrics_file_is_named_with_what_is_wrong():
    for text, why in [("{", "not valid JSON: Expecting property name"), ("[1, 2]", "not a training record: expected a JSON object"),
                      ('{"environment": [], "curve": {}}', "not a training record: 'environment' and 'curve' must be JSON objects"),
                      ('{"environment": {}, "curve": {"loss": [0.5, "x"]}}', "not a training record: curve.loss must be a list of numbers")]:
        with pytest.raises(verify.VerifyError, match=f"^training.json: {why}"):
            verify.parse_record(text, "training.json")
    with pytest.raises(verify.VerifyError, match="^metrics.json: not a metrics file: expected a JSON object$"):
        verify.parse_object("0.98", "metrics.json", "a metrics file")


def committed_workspace(repo: Path, lock: str, files: dict[str, str] | None = None) -> Path:
    """A git repository whose HEAD holds ``lock`` as dvc.lock and ``files``; the workspace holds the same."""
    repo.mkdir()
    run(["git", "init", "-q"], repo)
    for name, text in {"dvc.lock": lock, **(files or {})}.items():
        (repo / name).write_text(text, encoding="utf-8")
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "committed"], repo)
    return repo


def test_a_damaged_workspace_lock_ends_in_one_error_line(tmp_path):
    repo = committed_workspace(tmp_path / "repo", yaml.safe_dump(LOCK))
    (repo / "dvc.lock").write_text("stages:\n  train: [\n", encoding="utf-8")
    result = run_verify(repo)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: {repo / 'dvc.lock'}: not valid YAML: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_damaged_committed_lock_ends_in_one_error_line(tmp_path):
    repo = committed_workspace(tmp_path / "repo", "[generate_train, train]\n")
    (repo / "dvc.lock").write_text(yaml.safe_dump(LOCK), encoding="utf-8")
    result = run_verify(repo)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"error: {repo / 'dvc.lock'} in git's HEAD: not a dvc.lock: "
                             "expected a mapping with a 'stages' mapping\n")


RECORD = json.dumps({"environment": {"threads": 2}, "curve": {"loss": [0.7, 0.1], "accuracy": [0.5, 1.0]}})


@pytest.mark.parametrize(("damaged", "where", "why"), [
    ("metrics.json", "in git's HEAD", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    ("training.json", "in git's HEAD", "not a training record: expected a JSON object"),
    ("metrics.json", "", "not a metrics file: expected a JSON object"),
    ("training.json", "", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
])
def test_a_damaged_metrics_file_or_record_ends_in_one_error_line(tmp_path, monkeypatch, capsys, damaged, where, why):
    # The workspace's lock gives metrics.json other bytes than HEAD's, so both copies are read.
    ours = yaml.safe_load(yaml.safe_dump(LOCK))
    ours["stages"]["evaluate"]["outs"][0]["md5"] = "y"
    files = {"metrics.json": '{"accuracy": 1.0}', "training.json": RECORD}
    bad = {"metrics.json": "nan?" if where else "[0.98]", "training.json": "[]" if where else ""}[damaged]
    repo = committed_workspace(tmp_path / "repo", yaml.safe_dump(LOCK), {**files, **({damaged: bad} if where else {})})
    (repo / "dvc.lock").write_text(yaml.safe_dump(ours), encoding="utf-8")
    if where:
        (repo / damaged).write_text(files[damaged], encoding="utf-8")
    else:
        (repo / damaged).write_text(bad, encoding="utf-8")
    monkeypatch.setattr(verify, "pending_stages", lambda repo: [])  # no DVC project here: dvc status is not the point
    monkeypatch.setattr(sys, "argv", ["verify", "--repo", str(repo)])
    with pytest.raises(SystemExit) as exited:
        verify.main()
    output = capsys.readouterr()
    assert (exited.value.code, output.out) == (2, "")
    assert output.err == f"error: {' '.join(filter(None, [str(repo / damaged), where]))}: {why}\n"
