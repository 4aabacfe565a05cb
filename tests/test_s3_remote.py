"""A DVC S3 remote against a real S3 API: moto's server on 127.0.0.1 (tests/s3server.py).

Push with the run-cache, a fresh clone that pulls the committed bytes, `dvc repro --pull`
restoring train from the run-cache, credentials kept out of git, and two faults: a wrong
key, and the server stopped in the middle of a push.
"""

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_repo, dvc, output_hashes, run, stage_env
from tests.s3server import BUCKET, MotoServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.full]

DVC = str(Path(sys.executable).parent / "dvc")
# The tiny params' learning rate, and another one whose run only the run-cache remembers.
OTHER_LEARNING_RATE = 0.02


def dvc_with(cwd: Path, *args: str, key_id: str, secret: str, check: bool = True) -> subprocess.CompletedProcess:
    """DVC with the credentials in the environment, as a user without .dvc/config.local has them."""
    env = dict(stage_env(), AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
    result = subprocess.run([DVC, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def add_remote(repo: Path, server: MotoServer) -> None:
    """The documented route: the remote and its endpoint in .dvc/config, the key in .dvc/config.local."""
    dvc(repo, "remote", "add", "--force", "-d", "storage", f"s3://{BUCKET}/cache")
    dvc(repo, "remote", "modify", "storage", "endpointurl", server.url)
    dvc(repo, "remote", "modify", "--local", "storage", "access_key_id", server.access_key_id)
    dvc(repo, "remote", "modify", "--local", "storage", "secret_access_key", server.secret_access_key)


def set_learning_rate(repo: Path, value: float) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["learning_rate"] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR")]


def cache_is_intact(repo: Path) -> int:
    """How many files DVC's cache holds, after checking that each one's bytes hash to its name."""
    files = [path for path in (repo / ".dvc/cache/files/md5").rglob("*") if path.is_file() and not path.name.endswith(".dir")]
    for path in files:
        assert hashlib.md5(path.read_bytes()).hexdigest() == path.parent.name + path.name, path
    return len(files)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    moto = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log", free_port()).start()
    yield moto
    moto.stop()


@pytest.fixture(scope="module")
def shared(reproduced_repo, server, tmp_path_factory):
    """The reproduced repo with an S3 remote committed, everything pushed with the run-cache,
    including a run at another learning rate that only the run-cache records."""
    repo = copy_repo(reproduced_repo, tmp_path_factory.mktemp("shared") / "repo")
    add_remote(repo, server)
    run(["git", "add", ".dvc/config"], repo)
    run(["git", "commit", "-q", "-m", "S3 remote"], repo)
    pushed = dvc(repo, "push", "--run-cache")
    set_learning_rate(repo, OTHER_LEARNING_RATE)
    dvc(repo, "repro")
    other_model = (repo / "models/model.keras").read_bytes()
    dvc(repo, "push", "--run-cache")
    # Back to the committed run: every tracked file the other run rewrote (params, dvc.lock, metrics, pictures).
    run(["git", "checkout", "--", "."], repo)
    dvc(repo, "checkout")
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    return repo, other_model, pushed


def test_credentials_stay_out_of_git(shared, server):
    repo, _, pushed = shared
    assert "files pushed" in pushed.stdout
    committed = run(["git", "log", "-p", "--all"], repo).stdout
    assert server.url in committed and "endpointurl" in committed
    assert server.secret_access_key not in committed and server.access_key_id not in committed
    assert server.secret_access_key in (repo / ".dvc/config.local").read_text()
    run(["git", "check-ignore", "-q", ".dvc/config.local"], repo)


def test_a_fresh_clone_pulls_the_committed_bytes(shared, server, tmp_path):
    repo, _, _ = shared
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "models/model.keras").exists() and not (clone / ".dvc/config.local").exists()
    dvc_with(clone, "pull", key_id=server.access_key_id, secret=server.secret_access_key)
    assert output_hashes(clone) == output_hashes(repo)
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
    status = dvc_with(clone, "status", key_id=server.access_key_id, secret=server.secret_access_key)
    assert "Data and pipelines are up to date." in status.stdout


# Every output of train is cached by DVC (models/training.json too; evaluate copies it to git):
# DVC pushes no object for an uncached output, so one would leave the remote's run-cache entry
# for train unusable and train would run again.
def test_repro_pull_restores_train_from_the_run_cache_without_training(shared, server, tmp_path):
    repo, other_model, _ = shared
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    set_learning_rate(clone, OTHER_LEARNING_RATE)
    result = dvc_with(clone, "repro", "--pull", key_id=server.access_key_id, secret=server.secret_access_key)
    assert "Stage 'train' is cached - skipping run, checking out outputs" in result.stdout
    assert "Running stage 'train'" not in result.stdout
    assert (clone / "models/model.keras").read_bytes() == other_model


def test_a_wrong_key_fails_in_one_line_and_a_rerun_with_the_right_one_pushes(shared, server, tmp_path):
    repo = copy_repo(shared[0], tmp_path / "repo")
    (repo / "notes.txt").write_text("pushed after a failed try\n")
    dvc(repo, "add", "notes.txt")
    dvc(repo, "remote", "modify", "--local", "storage", "secret_access_key", "wrong")
    before = cache_is_intact(repo)
    failed = dvc(repo, "push", check=False)
    assert failed.returncode != 0
    (line,) = error_lines(failed)
    assert "InvalidAccessKeyId" in line or "SignatureDoesNotMatch" in line
    assert cache_is_intact(repo) == before
    dvc(repo, "remote", "modify", "--local", "storage", "secret_access_key", server.secret_access_key)
    assert "1 file pushed" in dvc(repo, "push").stdout


def test_a_push_cut_by_the_server_stopping_leaves_the_cache_whole_and_a_rerun_completes(shared, tmp_path):
    """The server dies at its first upload; moto keeps objects in memory, so the restarted
    server starts empty and the rerun uploads everything."""
    repo = copy_repo(shared[0], tmp_path / "repo")
    # Enough to upload that the push is still running when the server dies.
    (repo / "big").mkdir()
    for index in range(40):
        (repo / "big" / f"{index}.bin").write_bytes(os.urandom(2_000_000))
    dvc(repo, "add", "big")
    server = MotoServer(tmp_path / "moto.log", free_port(), authenticate=False).start()
    add_remote(repo, server)
    before = cache_is_intact(repo)
    push = subprocess.Popen([DVC, "push"], cwd=repo, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(push.stdout.read()))
    reader.start()
    while server.requests(f"PUT /{BUCKET}/") == 0 and push.poll() is None:
        threading.Event().wait(0.02)
    server.stop()
    push.wait(timeout=300)
    reader.join()
    assert push.returncode != 0, output
    # DVC names each file it could not upload, then ends with one line that says what happened.
    *per_file, summary = [line for line in output[0].splitlines() if line.startswith("ERROR")]
    assert summary.startswith("ERROR: failed to push data to the cloud - ") and "failed to upload" in summary, output
    assert all("failed to transfer" in line and "Could not connect to the endpoint URL" in line for line in per_file)
    assert cache_is_intact(repo) == before
    server.start()
    rerun = dvc(repo, "push")
    assert "files pushed" in rerun.stdout
    assert "Cache and remote 'storage' are in sync." in dvc(repo, "status", "--cloud").stdout
    server.stop()


LOAD_BOTH = """
import sys
import onnxruntime
from movingline.model import load_model
from movingline.settings import Settings
print(load_model(sys.argv[1], Settings()).count_params(), onnxruntime.InferenceSession(sys.argv[2]).get_inputs()[0].name)
"""


def test_a_registered_version_is_fetched_with_the_same_bytes_from_the_repo_and_from_s3(shared, server, tmp_path):
    repo = copy_repo(shared[0], tmp_path / "repo")
    for artifact in ("cnn-lstm", "cnn-lstm-onnx"):
        run([str(Path(sys.executable).parent / "gto"), "register", artifact, "--version", "v1.0.0"], repo)
    assert "cnn-lstm@v1.0.0" in run(["git", "tag"], repo).stdout
    # From the repo itself (its cache holds the files) and from a clone with no DVC cache,
    # whose files can only come from the S3 remote.
    bare_clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(bare_clone)], tmp_path)
    keys = {"key_id": server.access_key_id, "secret": server.secret_access_key}
    for source in (repo, bare_clone):
        target = tmp_path / f"from-{source.name}"
        target.mkdir()
        for artifact, name in (("cnn-lstm", "model.keras"), ("cnn-lstm-onnx", "model.onnx")):
            dvc_with(target, "artifacts", "get", str(source), artifact, "--rev", "v1.0.0", "-o", name, **keys)
            assert (target / name).read_bytes() == (repo / "models" / name).read_bytes()
        loaded = run([sys.executable, "-c", LOAD_BOTH, str(target / "model.keras"), str(target / "model.onnx")], Path(__file__).parents[1])
        assert loaded.stdout.split() == [str(loaded.stdout.split()[0]), "frames"] and int(loaded.stdout.split()[0]) > 0
