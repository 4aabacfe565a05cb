"""The user's repository as the runner sees it, through the dvc and git beside this interpreter.

Every dvc and git command goes through ``run()``: dvc from the project's environment
whatever PATH says, and on failure one InputError naming the command and the last line it
printed. An experiment is done when its ref, refs/exps/<baseline>/<name>, is in the
repository; ``experiments()`` reads what `dvc exp show` says of each.
"""

import json
import subprocess
import sys
from pathlib import Path

from movingline.errors import InputError

DVC = str(Path(sys.executable).parent / "dvc")
# Seconds a `dvc exp show` gets: once, in a queue poll while a worker removed its temporary
# copy of the repository, one waited on a lock for good (DVC 3).
EXP_SHOW_TIMEOUT = 300


def run(program: str, *args: str, cwd: Path | None = None, check: bool = True, detached: bool = False,
        env: dict[str, str] | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Runs `dvc ARGS` or `git ARGS` in ``cwd`` (default: here) and returns its output; one
    still running after ``timeout`` seconds is killed and fails.

    ``detached`` gives the command no pipes: what it leaves running (the queue's workers)
    inherits its stdout and stderr, and read through pipes the call would only return once
    those exit.
    """
    executable = DVC if program == "dvc" else program
    if detached:
        streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    else:
        streams = {"capture_output": True}
    try:
        result = subprocess.run([executable, *args], cwd=cwd, env=env, text=True, timeout=timeout, **streams)
    except subprocess.TimeoutExpired:
        raise InputError(f"`{program} {' '.join(args)}` failed: still running after {timeout:g} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()
        where = f" in {cwd}" if cwd is not None else ""
        raise InputError(f"`{program} {' '.join(args)}` failed{where}: "
                         f"{detail[-1] if detail else f'exit {result.returncode}'}")
    return result


def dvc(*args: str, **options) -> subprocess.CompletedProcess:
    return run("dvc", *args, **options)


def git(*args: str, **options) -> subprocess.CompletedProcess:
    return run("git", *args, **options)


def check_workspace(outputs: list[Path]) -> str:
    """The commit experiments will start from; refuses a workspace with uncommitted changes
    (other than the command's own ``outputs``), since the experiments would carry them."""
    if not (Path("dvc.yaml").is_file() and Path("params.yaml").is_file()):
        raise InputError(f"{Path.cwd()}: not the project root (no dvc.yaml and params.yaml here)")
    changed = git("status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    ours = {str(path) for path in outputs}
    changed = [line[3:] for line in changed if line[3:] not in ours]
    if changed:
        raise InputError(
            f"{changed[0]}: uncommitted change; commit or stash it first, so that every experiment "
            "runs the committed code"
        )
    return git("rev-parse", "HEAD").stdout.strip()


def experiments(baseline: str) -> dict[str, dict]:
    """Experiments based on ``baseline`` by name: state, params and metrics (as `dvc exp show --json`)."""
    found = {}
    for entry in json.loads(dvc("exp", "show", "--json", "--no-fetch", timeout=EXP_SHOW_TIMEOUT).stdout):
        if entry.get("rev") != baseline:
            continue
        for experiment in entry.get("experiments") or []:
            data = experiment["revs"][0].get("data") or {}
            found[experiment["name"]] = {
                "state": (experiment.get("executor") or {}).get("state") or "success",
                "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {},
                "metrics": ((data.get("metrics") or {}).get("metrics.json") or {}).get("data") or {},
            }
    return found


def exp_ref(baseline: str, name: str) -> str:
    """DVC's ref for experiment ``name`` of commit ``baseline``."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def is_done(repo: Path, baseline: str, name: str) -> bool:
    return git("show-ref", "--verify", "--quiet", exp_ref(baseline, name), cwd=repo, check=False).returncode == 0
