"""Pre-flight checks: what each stage's main() verifies before any work starts.

That the data, batches and model fit in memory and on disk, and that the files a stage is
given agree with each other and with params.yaml. Each check raises InputError naming the
file or key to fix; the library code that runs afterwards takes only what it computes with.
Nothing here loads TensorFlow.
"""

import os
import shutil
from pathlib import Path

from movingline.errors import InputError
from movingline.params import ModelParams, Params

# Deflate cannot compress better than about 1032:1, so a gzip-compressed dataset takes
# at least this fraction of its raw size on disk.
DEFLATE_BEST_RATIO = 1032


def human_bytes(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000:
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1000
    return f"{n_bytes:.1f} PB"


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


def training_bytes(size: int, model: ModelParams, batch_size: int) -> int:
    """A rough peak for training, in bytes, all float32: the weights, their gradients and
    Adam's two moments; a batch of frames with room for copies; every convolution's outputs
    and their gradients."""
    weights = 4 * 4 * model.parameter_count(size)
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
        f"training ({params.model.parameter_count(params.data.size):,} weights)",
        f"{params_path}: the model section with data.size = {params.data.size}, "
        f"train.batch_size = {params.train.batch_size}",
    )


def require_generation_fits(params: Params, params_path: Path, section: str, output: Path, batch_samples: int) -> None:
    """Refuses, before any work, a set whose walks, render batches or file would not fit here.

    ``batch_samples`` is the number of sequences rendered at once (generate.most_rendered_at_once).
    """
    size, n_samples = params.data.size, getattr(params, section).n_samples
    # The batch's frames, h5py's copy of a chunk and the compressor's buffers.
    batch_bytes = batch_samples * sequence_bytes(size) * 3
    require_memory(batch_bytes, "rendering one batch", f"{params_path}: data.size = {size}")
    require_walks_fit(n_samples, size, f"{params_path}: {section}.n_samples = {n_samples}")
    require_disk(
        n_samples * sequence_bytes(size) // DEFLATE_BEST_RATIO,
        output.parent,
        f"{n_samples} compressed sequences",
        f"{params_path}: data.size = {size}, {section}.n_samples = {n_samples}",
    )


def require_size(data: Path, data_size: int, params_path: Path, size: int) -> None:
    """Refuses a dataset whose frames are ``data_size`` when params' data.size is ``size``."""
    if data_size != size:
        raise InputError(
            f"{data}: holds {data_size}x{data_size} frames, but {params_path} sets "
            f"data.size = {size} (regenerate it with `dvc repro generate_train`)"
        )


def require_model_size(model_path: Path, model_size: int, size: int, source: Path, *, from_params: bool = False) -> None:
    """Refuses a model built for frames of ``model_size`` when the frames to score are ``size``.

    ``source`` is the dataset holding those frames or, with ``from_params``, the params file
    whose data.size it is.
    """
    if model_size == size:
        return
    if from_params:
        found = f"{source} sets data.size = {size} (retrain it with `dvc repro train`)"
    else:
        found = f"{source} holds {size}x{size} frames (retrain it, or give data of that size)"
    raise InputError(f"{model_path}: the model was trained on {model_size}x{model_size} frames, but {found}")


def require_training_sequences(n_samples: int, validation_sequences: int, params_path: Path, data: Path) -> None:
    """Refuses a validation set that would leave nothing to train on."""
    if validation_sequences >= n_samples:
        raise InputError(
            f"{params_path}: train.validation_sequences: {validation_sequences} would hold out all of the "
            f"{n_samples} sequences of {data}; keep it below {n_samples}"
        )


def require_training_data(data: Path, data_size: int, n_samples: int, params: Params, params_path: Path) -> None:
    """The train stage's checks of its training set against params: the frame size, enough
    sequences left after validation's, and one training batch that fits in memory."""
    require_size(data, data_size, params_path, params.data.size)
    require_training_sequences(n_samples, params.train.validation_sequences, params_path, data)
    n_train = n_samples - params.train.validation_sequences
    require_training_fits(params, params_path, min(params.train.batch_size, n_train))


def require_fresh_predictions_fit(params: Params, params_path: Path, batch_size: int) -> None:
    """The predict stage's checks before it draws ``predict.n_samples`` fresh sequences in batches of ``batch_size``."""
    size, n_samples = params.data.size, params.predict.n_samples
    require_training_fits(params, params_path)
    require_prediction_fits(batch_size, size, f"{params_path}: data.size = {size}")
    require_walks_fit(n_samples, size, f"{params_path}: predict.n_samples = {n_samples}")
