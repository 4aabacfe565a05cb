"""The train stage's checkpoint: one .npz file holding everything a bit-identical continuation needs.

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
checkpoint is always whole.

The fingerprint is a hash of what determines the run: the data file's bytes, the model and
train params and the frame size, the number of workers and of threads, the code the train
stage runs (its script and every project module it imports, found by reading the imports,
so the list cannot drift from the code), and the TensorFlow and Keras versions. A checkpoint with another fingerprint is
ignored, with a line naming what differs.
"""

import ast
import dataclasses
import hashlib
import json
import logging
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from movingline.errors import one_line
from movingline.outputs import atomic_outputs, remove_stale_temporaries
from movingline.params import Params
from movingline.state import CurveRow, TrainingState

log = logging.getLogger(__name__)

FILE_NAME = "train.npz"
FORMAT = "movingline-train-checkpoint"
VERSION = 1
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("movingline", "stages")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def code_files(entry: Path) -> list[Path]:
    """``entry`` and every project module it imports, directly or through others, sorted: the
    code a run executes, which is what dvc.yaml lists as the stage's deps."""
    found, pending = {entry.resolve()}, [entry.resolve()]
    while pending:
        for name in _imported_names(pending.pop()):
            path = PROJECT_ROOT / (name.replace(".", "/") + ".py")
            if name.split(".")[0] in PACKAGES and path.is_file() and path not in found:
                found.add(path)
                pending.append(path)
    return sorted(found)


def _imported_names(path: Path) -> list[str]:
    """The modules a file imports, as dotted names (``from movingline import cli`` gives movingline.cli)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def fingerprint(data: Path, params: Params, n_workers: int, setup: dict[str, str], code: list[Path]) -> dict[str, str]:
    """What a run's checkpoint must match to be continued, by part (each a short hash or value).

    Of ``params`` it keys what training reads (the model and train sections and the frame
    size); ``setup`` is this process's TensorFlow set-up (runtime.setup()): its thread count,
    CPU kernel path and versions; ``code`` the files the run executes (code_files()).
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


def save_checkpoint(path: Path, state: TrainingState, run_fingerprint: dict[str, str]) -> None:
    """Writes ``state`` to ``path`` whole or not at all (a temporary file beside it, then a rename)."""
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": run_fingerprint,
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
    with atomic_outputs(path) as (temporary,), open(temporary, "wb") as file:
        np.savez(file, **arrays)
        file.flush()
        os.fsync(file.fileno())


def load_checkpoint(path: Path, run_fingerprint: dict[str, str]) -> TrainingState | None:
    """The state saved at ``path`` if it was made by this run's inputs and reads back whole, else None.

    A checkpoint that cannot be used is ignored with one log line saying why; it is
    replaced at this run's first save.
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            metadata = json.loads(archive["metadata"].tobytes())
            if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
                raise ValueError(f"not a version {VERSION} train checkpoint")
            theirs = metadata["fingerprint"]
            differ = [part for part in run_fingerprint if theirs.get(part) != run_fingerprint[part]]
            if differ:
                log.info("train: ignoring the checkpoint %s: it was made from other inputs (%s differ)", path, ", ".join(differ))
                return None
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
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        reason = one_line(str(error), 200) or type(error).__name__
        log.info("train: ignoring the checkpoint %s: it cannot be read (%s)", path, reason)
        return None
    if len(state.curve) != state.step:
        log.info("train: ignoring the checkpoint %s: it holds %d curve rows for %d steps", path, len(state.curve), state.step)
        return None
    return state


def remove_checkpoint(path: Path) -> None:
    """Removes the checkpoint and any temporary file a killed save left beside it."""
    path.unlink(missing_ok=True)
    remove_stale_temporaries(path)
