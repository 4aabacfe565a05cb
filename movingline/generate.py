"""The generate_train and generate_test stages: one implementation, two params sections."""

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from movingline.chunks import encode_paths
from movingline.dataset import write_dataset
from movingline.outputs import atomic_outputs, check_destinations
from movingline.params import load_params
from movingline.plots import save_frame_strip
from movingline.resources import (
    DEFLATE_BEST_RATIO,
    require_disk,
    require_memory,
    require_paths_fit,
    require_training_fits,
    sequence_bytes,
)
from movingline.sequences import Paths, render_frames, sample_paths

log = logging.getLogger(__name__)

# Samples are encoded in batches of at most this many, or fewer where the batch's frames
# (rendered only beyond size 181) would take more than RENDER_BATCH_BYTES. A batch's
# tokens take about 80 bytes per 258 bytes of frames: 13 MB at size 50.
MAX_BATCH_SAMPLES = 256
RENDER_BATCH_BYTES = 32 * 2**20
STRIP_SEQUENCES = 4


def encoding_batch_size(size: int) -> int:
    return max(1, min(MAX_BATCH_SAMPLES, RENDER_BATCH_BYTES // sequence_bytes(size)))


def progress_bar(total: int, label: str):
    """A tqdm bar on a terminal; elsewhere (DVC logs, CI) a silent stand-in, without importing tqdm."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(SimpleNamespace(update=lambda n: None))
    from tqdm import tqdm

    return tqdm(total=total, unit="seq", desc=label)


def encoded_batches(paths: Paths, batch_size: int) -> Iterator[tuple[list[bytes], np.ndarray]]:
    """Yields (compressed chunks, labels) for consecutive batches of at most ``batch_size`` samples."""
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        yield encode_paths(batch), batch.labels


def generate_dataset(
    path: Path, strip_path: Path, *, size: int, n_samples: int, seed: int, label: str = "sequences"
) -> None:
    """Writes ``n_samples`` sequences drawn with ``seed`` to ``path`` and a frame strip of the first few."""
    paths = sample_paths(np.random.default_rng(seed), n_samples, size)
    with progress_bar(n_samples, label) as bar:

        def batches() -> Iterator[tuple[list[bytes], np.ndarray]]:
            for chunks, labels in encoded_batches(paths, encoding_batch_size(size)):
                yield chunks, labels
                bar.update(len(labels))

        write_dataset(path, batches(), size=size, n_samples=n_samples, seed=seed)
    shown = paths[:STRIP_SEQUENCES]
    save_frame_strip(render_frames(shown), shown.labels, strip_path)


def main(section: str, default_output: str, default_strip: str) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m stages.{section}",
        description=f"Generate moving-line sequences from params.yaml's '{section}' section into an HDF5 file.",
    )
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: %(default)s)")
    parser.add_argument("--output", default=default_output, type=Path, help="dataset to write (default: %(default)s)")
    parser.add_argument("--strip", default=default_strip, type=Path, help="PNG of a few sequences (default: %(default)s)")
    args = parser.parse_args()

    check_destinations(args.output, args.strip)
    params = load_params(args.params)
    require_training_fits(params, args.params)
    size = params.data.size
    settings = getattr(params, section)
    blame = f"{args.params}: data.size = {size}"
    require_memory(max(encoding_batch_size(size), STRIP_SEQUENCES) * sequence_bytes(size) * 3, "encoding one batch", blame)
    require_paths_fit(settings.n_samples, size, f"{args.params}: {section}.n_samples = {settings.n_samples}")
    require_disk(
        settings.n_samples * sequence_bytes(size) // DEFLATE_BEST_RATIO,
        args.output.parent,
        f"{settings.n_samples} compressed sequences",
        f"{args.params}: data.size = {size}, {section}.n_samples = {settings.n_samples}",
    )

    with atomic_outputs(args.output, args.strip) as (dataset_path, strip_path):
        generate_dataset(
            dataset_path,
            strip_path,
            size=size,
            n_samples=settings.n_samples,
            seed=settings.seed,
            label=str(args.output),
        )
    log.info("wrote %s: %d sequences of %dx%d, seed %d", args.output, settings.n_samples, size, size, settings.seed)
