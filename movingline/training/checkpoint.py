"""The train stage's checkpoint, in one place: the file, its key, and when to save and resume.

A run saves every ``interval_s`` seconds and before it stops on a signal; a run with the same
key resumes from it, bit-identical to an uninterrupted run (the session calls ``resume`` once
and ``save_if_due`` after each step; the stage removes the file once its outputs are written).

A checkpoint holds the model's weights, the optimiser's variables (Adam's iteration counter,
learning rate and moments), the number of steps taken, the curve so far, the best
validation weights, loss and step, the validations since the best, and the training
seconds so far, with the fingerprint of the run that made it. Training reads its data in
order (no shuffling) and draws no random numbers after building the model, so the step
count says where to go on.

The format is NumPy's .npz (a zip of .npy arrays, each with a CRC-32), read back with
``allow_pickle=False``: raw float32 bits in, the same bits out, and a truncated or damaged
file fails its CRC or its zip directory instead of loading half. It is written as
every output is (movingline/outputs.py): to a temporary file renamed into place, so a
checkpoint is always whole. Under N workers only the chief reads and writes it; the same bytes
reach the others through the team (``Team.from_chief``), so that every worker resumes alike.

The key (``run_key``) is a hash of what determines the run: the data file's bytes, the model and
train params and the frame size, the number of workers and of threads, the code the train
stage runs (its script and every project module it imports, found by reading the imports,
so the list cannot drift from the code), and the TensorFlow and Keras versions. A checkpoint with another fingerprint is
ignored, with a line naming what differs.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from movingline.errors import one_line
from movingline.outputs import atomic_outputs, remove_stale_temporaries
from movingline.params import Params
from movingline.training.state import CurveRow, TrainingState

if TYPE_CHECKING:
    from movingline.training.team import Team

log = logging.getLogger(__name__)

FILE_NAME = "train.npz"
FORMAT = "movingline-train-checkpoint"
VERSION = 1
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("movingline", "stages")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def code_files(entry: Path) -> list[Path]:
    """``entry`` and every project module it imports, directly or through others, with the
    ``__init__.py`` of every package on the way (Python runs those too), sorted: the code a run
    executes, which is what dvc.yaml lists as the stage's deps."""
    entry = entry.resolve()
    found, pending = set(), [entry]
    found.add(entry)
    _add_modules(found, pending, ".".join(entry.relative_to(PROJECT_ROOT).with_suffix("").parts))
    while pending:
        for name in _imported_names(pending.pop()):
            _add_modules(found, pending, name)
    return sorted(found)


def _add_modules(found: set[Path], pending: list[Path], name: str) -> None:
    """Adds the project's files that importing ``name`` runs: each package's __init__.py, then the module."""
    if name.split(".")[0] not in PACKAGES:
        return
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        stem = PROJECT_ROOT.joinpath(*parts[:depth])
        for path in (stem / "__init__.py", stem.with_suffix(".py")):
            if path.is_file() and path not in found:
                found.add(path)
                pending.append(path)


def _imported_names(path: Path) -> list[str]:
    """The modules a file imports, as dotted names (``from movingline import cli`` gives movingline.cli)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def run_key(data: Path, params: Params, n_workers: int, setup: dict[str, str], code: list[Path]) -> dict[str, str]:
    """What a run's checkpoint must match to be continued, by part (each a short hash or value).

    Of ``params`` it keys what training reads (the model and train sections and the frame
    size); ``setup`` is this process's TensorFlow set-up (runtime.Setup.as_dict()): its thread
    count, CPU kernel path and versions; ``code`` the files the run executes (code_files()).
    """
    read = {"data.size": params.data.size, "model": dataclasses.asdict(params.model), "train": dataclasses.asdict(params.train)}
    digest = hashlib.sha256()
    for path in code:
        digest.update(path.resolve().relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return {
        "data file": _sha256_file(data)[:16],
        "params": hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()[:16],
        "workers": str(n_workers),
        **setup,
        "training code": digest.hexdigest()[:16],
    }


def _curve_arrays(curve: list[CurveRow]) -> dict[str, np.ndarray]:
    def column(name: str) -> np.ndarray:
        values = [getattr(row, name) for row in curve]
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)

    arrays = {f"curve_{name}": column(name) for name in ("loss", "accuracy", "val_loss", "val_accuracy")}
    arrays["curve_step"] = np.array([row.step for row in curve], dtype=np.int64)
    arrays["curve_epoch"] = np.array([row.epoch for row in curve], dtype=np.int64)
    return arrays


def _curve_rows(arrays) -> list[CurveRow]:
    def value(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    columns = [arrays[f"curve_{name}"] for name in ("step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy")]
    return [
        CurveRow(int(step), int(epoch), float(loss), float(accuracy), value(val_loss), value(val_accuracy))
        for step, epoch, loss, accuracy, val_loss, val_accuracy in zip(*columns)
    ]


def encode(state: TrainingState, key: dict[str, str]) -> bytes:
    """``state`` and the key of the run that made it, as the .npz bytes of a checkpoint file."""
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": key,
        "step": state.step,
        "best_loss": state.best_loss,
        "best_step": state.best_step,
        "since_best": state.since_best,
        "seconds": state.seconds,
        "n_weights": len(state.weights),
        "n_optimizer": len(state.optimizer),
        "has_best": state.best_weights is not None,
    }
    arrays = {f"weight_{i}": w for i, w in enumerate(state.weights)}
    arrays |= {f"optimizer_{i}": v for i, v in enumerate(state.optimizer)}
    arrays |= {f"best_{i}": w for i, w in enumerate(state.best_weights or [])}
    arrays |= _curve_arrays(state.curve)
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode(data: bytes | io.IOBase) -> tuple[TrainingState, dict[str, str]]:
    """The state and key that ``encode`` wrote; ValueError (or a zip or key error) if they are not whole."""
    with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as archive:
        metadata = json.loads(archive["metadata"].tobytes())
        if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} train checkpoint")
        state = TrainingState(
            step=int(metadata["step"]),
            weights=[archive[f"weight_{i}"] for i in range(metadata["n_weights"])],
            optimizer=[archive[f"optimizer_{i}"] for i in range(metadata["n_optimizer"])],
            curve=_curve_rows(archive),
            best_weights=[archive[f"best_{i}"] for i in range(metadata["n_weights"])] if metadata["has_best"] else None,
            best_loss=metadata["best_loss"],
            best_step=metadata["best_step"],
            since_best=int(metadata["since_best"]),
            seconds=float(metadata["seconds"]),
        )
    return state, metadata["fingerprint"]


@dataclass
class Checkpoint:
    """The train stage's checkpoint file, the key a run must match to continue from it, and how
    often to save it."""

    path: Path
    key: dict[str, str]
    interval_s: float
    last_save: float = field(default_factory=time.monotonic)

    def load(self) -> TrainingState | None:
        """The state saved at ``path`` if it was made with this key and reads back whole, else None.

        A checkpoint that cannot be used is ignored with one log line saying why; it is
        replaced at this run's first save.
        """
        if not self.path.exists():
            return None
        try:
            with open(self.path, "rb") as file:
                state, theirs = decode(file)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
            reason = one_line(str(error), 200) or type(error).__name__
            log.info("train: ignoring the checkpoint %s: it cannot be read (%s)", self.path, reason)
            return None
        differ = [part for part in self.key if theirs.get(part) != self.key[part]]
        if differ:
            log.info("train: ignoring the checkpoint %s: it was made from other inputs (%s differ)", self.path, ", ".join(differ))
            return None
        if len(state.curve) != state.step:
            log.info("train: ignoring the checkpoint %s: it holds %d curve rows for %d steps", self.path, len(state.curve), state.step)
            return None
        return state

    def save(self, state: TrainingState) -> None:
        """Writes ``state`` whole or not at all (a temporary file beside it, then a rename)."""
        with atomic_outputs(self.path) as (temporary,), open(temporary, "wb") as file:
            file.write(encode(state, self.key))
            file.flush()
            os.fsync(file.fileno())
        self.last_save = time.monotonic()

    def due(self, stopping: bool) -> bool:
        """Whether to save now: every ``interval_s`` seconds, and before stopping."""
        return stopping or time.monotonic() - self.last_save >= self.interval_s

    def remove(self) -> None:
        """Removes the checkpoint and any temporary file a killed save left beside it."""
        self.path.unlink(missing_ok=True)
        remove_stale_temporaries(self.path)


def resume(checkpoint: Checkpoint | None, team: Team, weights: list, slots: list) -> TrainingState:
    """The state training starts from, restored into the model's ``weights`` and the optimiser's
    ``slots``: the checkpoint's (read by the chief and handed to every worker), or step 0."""
    state = _usable(checkpoint, weights, slots) if checkpoint is not None and team.is_chief else None
    if team.count > 1:
        payload = team.from_chief(encode(state, {}) if state is not None else b"")
        state = decode(payload)[0] if payload else None
    if state is None:
        return TrainingState(0, [], [])
    restore(weights + slots, state.weights + state.optimizer)
    if team.is_chief:
        log.info("train: resuming from the checkpoint %s at step %d", checkpoint.path, state.step)
    return state


def _usable(checkpoint: Checkpoint, weights: list, slots: list) -> TrainingState | None:
    state = checkpoint.load()
    if state is None:
        return None
    if not (fits(weights, state.weights) and fits(slots, state.optimizer)):
        log.info("train: ignoring the checkpoint %s: its variables do not fit this model", checkpoint.path)
        return None
    if state.best_weights is not None and not fits(weights, state.best_weights):
        log.info("train: ignoring the checkpoint %s: its best weights do not fit this model", checkpoint.path)
        return None
    return state


def snapshot(variables: list) -> list[np.ndarray]:
    """The values of TensorFlow ``variables``, copied out."""
    return [np.array(variable.numpy()) for variable in variables]


def restore(variables: list, values: list[np.ndarray]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def fits(variables: list, values: list[np.ndarray]) -> bool:
    return len(variables) == len(values) and all(
        tuple(v.shape) == w.shape and np.dtype(v.dtype) == w.dtype for v, w in zip(variables, values)
    )
