"""Generating a dataset: random walks drawn once, frames rendered and written in batches."""

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from movingline.data.dataset import write_dataset
from movingline.data.pictures import save_frame_strip
from movingline.preflight import sequence_bytes
from movingline.data.sequences import iter_frame_batches, render_frames, sample_walks

# Samples are rendered and written in batches of at most this many, or fewer where the
# batch's frames would take more than RENDER_BATCH_BYTES (beyond size 50), so that memory
# stays flat whatever the number of samples.
MAX_BATCH_SAMPLES = 256
RENDER_BATCH_BYTES = 32 * 2**20
STRIP_SEQUENCES = 4


def render_batch_size(size: int) -> int:
    """Samples per rendered batch at frame size ``size``."""
    return max(1, min(MAX_BATCH_SAMPLES, RENDER_BATCH_BYTES // sequence_bytes(size)))


def most_rendered_at_once(size: int) -> int:
    """The most sequences whose frames are held at once: a batch, or the strip's few."""
    return max(render_batch_size(size), STRIP_SEQUENCES)


def progress_bar(total: int, label: str):
    """A tqdm bar on a terminal; elsewhere (DVC logs, CI) a silent stand-in, without importing tqdm."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(SimpleNamespace(update=lambda n: None))
    from tqdm import tqdm

    return tqdm(total=total, unit="seq", desc=label)


def generate_dataset(
    path: Path, strip_path: Path, *, size: int, n_samples: int, seed: int, label: str = "sequences"
) -> None:
    """Writes ``n_samples`` sequences drawn with ``seed`` to ``path`` and a frame strip of the first few."""
    walks = sample_walks(np.random.default_rng(seed), n_samples, size)
    with progress_bar(n_samples, label) as bar:

        def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for frames, labels in iter_frame_batches(walks, render_batch_size(size)):
                yield frames, labels
                bar.update(len(labels))

        write_dataset(path, batches(), size=size, n_samples=n_samples, seed=seed)
    shown = walks[:STRIP_SEQUENCES]
    save_frame_strip(render_frames(shown), shown.labels, strip_path)
