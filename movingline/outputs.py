"""Outputs appear whole or not at all.

Each output is written to a hidden temporary file beside its destination, and all of a
stage's outputs are renamed into place together once every one is complete. On an error,
Ctrl-C or SIGTERM the temporary files are removed and earlier outputs stay as they were.
"""

import contextlib
import glob
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from movingline.errors import InputError


def temporary_path(destination: Path, pid: int | None = None) -> Path:
    """The hidden file beside ``destination`` that process ``pid`` (default: this one) writes first."""
    # Keep the suffix: Keras and matplotlib choose the file format from it.
    return destination.with_name(f".{destination.stem}.partial-{pid or os.getpid()}{destination.suffix}")


def remove_stale_temporaries(destination: Path) -> None:
    """Removes temporaries of ``destination`` left by runs killed outright (SIGKILL, a crash).

    Those of a process still running are left alone: it may be writing them now.
    """
    prefix, suffix = f".{destination.stem}.partial-", destination.suffix
    for candidate in destination.parent.glob(glob.escape(prefix) + "*" + glob.escape(suffix)):
        pid = candidate.name[len(prefix) : len(candidate.name) - len(suffix)]
        if pid.isdigit() and candidate == temporary_path(destination, int(pid)) and not _running(int(pid)):
            candidate.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: running
    return True


@contextlib.contextmanager
def atomic_outputs(*destinations: str | Path) -> Iterator[list[Path]]:
    """Yields temporary paths to write; renames them all to ``destinations`` on success."""
    destinations = [Path(d) for d in destinations]
    temporaries = [temporary_path(d) for d in destinations]
    for destination in destinations:
        _prepare(destination)
    try:
        yield temporaries
        missing = [str(d) for d, t in zip(destinations, temporaries) if not t.exists()]
        if missing:
            raise RuntimeError(f"the stage did not write {', '.join(missing)}")
        with _signals_deferred():
            for temporary, destination in zip(temporaries, destinations):
                os.replace(temporary, destination)
    finally:
        # A second Ctrl-C must not stop the cleanup half-way.
        with _signals_deferred():
            for temporary in temporaries:
                temporary.unlink(missing_ok=True)


def write_json(data: object, path: Path) -> None:
    """``data`` as indented JSON with a final newline: stable bytes for git and DVC."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def check_destinations(*destinations: str | Path) -> None:
    """Refuses output paths that could never be written, so a stage fails before its work."""
    for destination in map(Path, destinations):
        if destination.is_dir():
            raise InputError(f"{destination}: is a directory, expected the path of a file to write")
        if any(parent.exists() and not parent.is_dir() for parent in destination.parents):
            raise InputError(f"{destination}: a folder on its path is a file")


def _prepare(destination: Path) -> None:
    """Makes the destination's folder, and refuses now what would make a rename fail half-way."""
    check_destinations(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{destination}: cannot create its folder {destination.parent} ({error.strerror})") from None
    remove_stale_temporaries(destination)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back during the renames, so the set is never half-moved."""
    signals = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
