"""The user's repository as a sweep sees it: where the sweep keeps its files, and what is done.

An experiment is done when its ref, refs/exps/<baseline>/<name>, is in the user's repository.
A Slurm task writes that ref last, with one `git push` of a finished experiment, so a ref is
never half there: a task cancelled before it leaves nothing in the repository's refs.
"""

import subprocess
from pathlib import Path

# Under .dvc/tmp, which git and DVC ignore (DVC's own queue works in .dvc/tmp/exps). On a
# cluster the repository sits on a shared file system, so a requeued task finds its
# workspace, and the checkpoint in it, on whichever node it lands.
SWEEP_DIR = Path(".dvc/tmp/sweep")
WORK_DIR = SWEEP_DIR / "work"
LOG_DIR = SWEEP_DIR / "logs"
PLAN_DIR = SWEEP_DIR / "plans"


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {repo} failed: {result.stderr.strip()}")
    return result


def exp_ref(baseline: str, name: str) -> str:
    """DVC's ref for experiment ``name`` of commit ``baseline``."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def is_done(repo: Path, baseline: str, name: str) -> bool:
    return git(repo, "show-ref", "--verify", "--quiet", exp_ref(baseline, name), check=False).returncode == 0


def log_path(repo: Path, name: str) -> Path:
    """Where a Slurm task appends the output of its experiment's `dvc exp run` (every attempt)."""
    return repo / LOG_DIR / f"{name}.log"


def workspace(repo: Path, baseline: str, name: str) -> Path:
    """The clone one experiment runs in; no other task writes there."""
    return repo / WORK_DIR / f"{name}-{baseline[:8]}"
