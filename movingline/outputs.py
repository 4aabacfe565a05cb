"""Outputs appear whole or not at all.

Each output is written to a hidden temporary file beside its destination, and all of a
stage's outputs are renamed into place together once every one is complete. On an error,
Ctrl-C or SIGTERM the temporary files are removed and earlier outputs stay as they were.
"""

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


def temporary_path(destination: Path) -> Path:
    # Keep the suffix: Keras and matplotlib choose the file format from it.
    return destination.with_name(f".{destination.stem}.partial-{os.getpid()}{destination.suffix}")


@contextlib.contextmanager
def atomic_outputs(*destinations: str | Path) -> Iterator[list[Path]]:
    """Yields temporary paths to write; renames them all to ``destinations`` on success."""
    destinations = [Path(d) for d in destinations]
    temporaries = [temporary_path(d) for d in destinations]
    for destination in destinations:
        destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temporaries
        missing = [str(d) for d, t in zip(destinations, temporaries) if not t.exists()]
        if missing:
            raise RuntimeError(f"the stage did not write {', '.join(missing)}")
        with _signals_deferred():
            for temporary, destination in zip(temporaries, destinations):
                os.replace(temporary, destination)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back during the renames, so the set is never half-moved."""
    signals = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
