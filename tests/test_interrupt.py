"""A stage stopped by Ctrl-C (SIGINT) or SIGTERM mid-work leaves its earlier outputs byte for
byte, or none if there were none, and no hidden temporary file: real stages, real signals."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import stage_env, tiny_params, wait_until, write_params

pytestmark = [pytest.mark.slow, pytest.mark.full]

# Long enough to be caught mid-write (about ten seconds here), small on disk (about 100 MB).
SLOW_GENERATE = tiny_params(data={"size": 50}, generate_train={"n_samples": 100_000})
# A few hundred tiny epochs: about half a minute of training.
SLOW_TRAIN = tiny_params(train={"epochs": 400})
TIMEOUT_S = 60
PREVIOUS = b"the previous output\n"


def partial_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if "partial" in path.name]


def finish(process: subprocess.Popen) -> str:
    """Waits for the process to exit; returns its stderr."""
    try:
        _, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the stage did not stop after the signal")
    return stderr


def start(stage: str, cwd: Path, *args: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    command = [sys.executable, "-m", f"stages.{stage}", *args]
    env = {**stage_env(), "PYTHONUNBUFFERED": "1"}
    # SIGINT as Ctrl-C sends it: a suite started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then keeps ignoring it in the stage.
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def assert_stopped_cleanly(process: subprocess.Popen, signum: int, outputs: dict[Path, bytes | None]) -> None:
    stderr = finish(process)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1] == f"error: interrupted by {name}; no partial output was left"
    assert "Traceback" not in stderr
    for path, content in outputs.items():
        if content is None:
            assert not path.exists(), f"{path} was written"
        else:
            assert path.read_bytes() == content, f"{path} was changed"
        assert not partial_files(path.parent), partial_files(path.parent)


@pytest.mark.parametrize(
    ("signum", "had_outputs"),
    [(signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGTERM, earlier outputs", "SIGINT, no outputs"],
)
def test_generate_stopped_mid_write(project, signum, had_outputs):
    write_params(project / "params.yaml", SLOW_GENERATE)
    dataset, strip = project / "data" / "train.h5", project / "plots" / "train_sequences.png"
    dataset.parent.mkdir(exist_ok=True)
    strip.parent.mkdir(exist_ok=True)
    if had_outputs:
        dataset.write_bytes(PREVIOUS)
        strip.write_bytes(PREVIOUS + b"png")
    process = start("generate_train", project)
    # The dataset is written to a hidden temporary file first: once it exists, the stage is mid-write.
    wait_until(lambda: partial_files(dataset.parent), "a temporary file appears", TIMEOUT_S, process, interval=0.01)
    time.sleep(0.3)
    process.send_signal(signum)
    assert_stopped_cleanly(
        process,
        signum,
        {dataset: PREVIOUS if had_outputs else None, strip: PREVIOUS + b"png" if had_outputs else None},
    )


@pytest.mark.parametrize(
    ("signum", "had_outputs"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["SIGINT, earlier outputs", "SIGTERM, no outputs"],
)
def test_train_stopped_mid_fit(built_project, tmp_path, signum, had_outputs):
    params = write_params(tmp_path / "params.yaml", SLOW_TRAIN)
    model, curve = tmp_path / "out" / "model.keras", tmp_path / "out" / "training.csv"
    model.parent.mkdir()
    if had_outputs:
        model.write_bytes((built_project / "models" / "model.keras").read_bytes())
        curve.write_bytes(PREVIOUS)
    before = {path: path.read_bytes() if path.exists() else None for path in (model, curve)}
    log = tmp_path / "stdout.txt"
    with open(log, "w") as stdout:
        # Its own checkpoint folder: the shared project's would let the second case resume the first.
        process = start(
            "train", built_project, "--params", str(params), "--model", str(model), "--curve", str(curve),
            "--checkpoints", str(tmp_path / "checkpoints"), stdout=stdout,
        )
        # Keras prints "Epoch N/400" as it trains (unbuffered here), so the log shows it is mid-fit.
        wait_until(lambda: "Epoch 3/" in log.read_text(), "training reaches its third epoch", TIMEOUT_S, process, interval=0.01)
        process.send_signal(signum)
        assert_stopped_cleanly(process, signum, before)
    assert (tmp_path / "checkpoints" / "train.npz").is_file(), "no checkpoint was saved on the way out"
    assert f"Epoch {SLOW_TRAIN['train']['epochs']}/" not in log.read_text(), "training ran to the end"
