"""Checks, before any work starts, that a dataset or a batch fits in memory and on disk."""

import os
import shutil
from pathlib import Path

from movingline.errors import InputError
from movingline.params import ModelParams, Params

# Deflate cannot compress better than about 1032:1, so a gzip-compressed dataset takes
# at least this fraction of its raw size on disk.
DEFLATE_BEST_RATIO = 1032


def human_bytes(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def available_memory() -> int:
    """Memory the kernel could give this process now (MemAvailable), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def require_memory(n_bytes: int, what: str, blame: str) -> None:
    """Raises InputError naming ``blame`` (a file and key) if ``n_bytes`` will not fit in memory."""
    available = available_memory()
    if n_bytes > available:
        raise InputError(
            f"{blame}: {what} needs {human_bytes(n_bytes)} of memory, "
            f"but only {human_bytes(available)} is available"
        )


def require_disk(n_bytes: int, directory: Path, what: str, blame: str) -> None:
    """Raises InputError naming ``blame`` if ``n_bytes`` will not fit in ``directory``'s file system."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if n_bytes > free:
        raise InputError(
            f"{blame}: {what} needs at least {human_bytes(n_bytes)} on disk, "
            f"but {directory} has only {human_bytes(free)} free"
        )


def sequence_bytes(size: int) -> int:
    """Raw bytes of one uint8 sequence: size frames of size x size pixels."""
    return size**3


def walks_bytes(n_samples: int, size: int) -> int:
    """Peak bytes of drawing ``n_samples`` random walks: int64 rows and uniforms while drawing, uint16 rows kept."""
    return n_samples * (size * (8 + 8 + 2) + 32)


def require_walks_fit(n_samples: int, size: int, blame: str) -> None:
    """Refuses a number of sequences whose random walks (drawn before any frame) would not fit in memory."""
    require_memory(walks_bytes(n_samples, size), f"drawing {n_samples} random walks", blame)


def prediction_bytes(batch_size: int, size: int) -> int:
    """A rough peak for predicting one batch: the frames as uint8 and float32, plus the convolution's activations."""
    return batch_size * sequence_bytes(size) * 12


def require_prediction_fits(batch_size: int, size: int, blame: str) -> None:
    """Refuses a prediction batch that would not fit in memory, before TensorFlow loads."""
    require_memory(prediction_bytes(batch_size, size), f"one prediction batch of {batch_size} sequences", blame)


def parameter_count(size: int, model: ModelParams) -> int:
    """Weights of the CNN-LSTM that model.build_model builds (240,661 for the reference at size 50)."""
    first_conv = model.kernel_size * model.kernel_size * model.filters + model.filters
    later_conv = model.kernel_size * model.kernel_size * model.filters * model.filters + model.filters
    conv = first_conv + (model.conv_layers - 1) * later_conv
    lstm = 4 * model.lstm_units * (model.features(size) + model.lstm_units + 1)
    return conv + lstm + model.lstm_units + 1


def training_bytes(size: int, model: ModelParams, batch_size: int) -> int:
    """A rough peak for training, in bytes, all float32: the weights, their gradients and
    Adam's two moments; a batch of frames with room for copies; every convolution's outputs
    and their gradients."""
    weights = 4 * 4 * parameter_count(size, model)
    frames = 4 * 4 * batch_size * sequence_bytes(size)
    conv_outputs = sum(conv_side * conv_side for conv_side, _ in model.block_sides(size))
    activations = 4 * 3 * batch_size * size * conv_outputs * model.filters
    return weights + frames + activations


def require_training_fits(params: Params, params_path: Path, batch_size: int | None = None) -> None:
    """Refuses params whose training could not fit in memory here, whichever stage is starting.

    Every stage runs this right after reading params.yaml, so an impossible ``data.size``
    or model stops the pipeline at its first stage rather than at training.
    """
    batch_size = params.train.batch_size if batch_size is None else batch_size
    require_memory(
        training_bytes(params.data.size, params.model, batch_size),
        f"training ({parameter_count(params.data.size, params.model):,} weights)",
        f"{params_path}: the model section with data.size = {params.data.size}, "
        f"train.batch_size = {params.train.batch_size}",
    )
