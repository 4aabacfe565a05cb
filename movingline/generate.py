"""The generate_train and generate_test stages: one implementation, two params sections."""

import argparse
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from movingline.dataset import write_dataset
from movingline.outputs import atomic_outputs
from movingline.params import load_params
from movingline.plots import save_frame_strip
from movingline.resources import DEFLATE_BEST_RATIO, require_disk, require_memory, sequence_bytes
from movingline.sequences import iter_frame_batches, render_frames, sample_paths

log = logging.getLogger(__name__)

# Frames are rendered this many bytes at a time (at least one sequence per batch).
RENDER_BATCH_BYTES = 32 * 2**20
STRIP_SEQUENCES = 4


def render_batch_size(size: int) -> int:
    return max(1, RENDER_BATCH_BYTES // sequence_bytes(size))


def generate_dataset(path: Path, strip_path: Path, *, size: int, n_samples: int, seed: int) -> None:
    """Writes ``n_samples`` sequences drawn with ``seed`` to ``path`` and a frame strip of the first few."""
    paths = sample_paths(np.random.default_rng(seed), n_samples, size)
    with tqdm(total=n_samples, unit="seq", desc=path.name, disable=None) as progress:

        def batches():
            for frames, labels in iter_frame_batches(paths, render_batch_size(size)):
                yield frames, labels
                progress.update(len(labels))

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

    params = load_params(args.params)
    size = params.data.size
    settings = getattr(params, section)
    blame = f"{args.params}: data.size = {size}"
    require_memory(
        max(render_batch_size(size), STRIP_SEQUENCES) * sequence_bytes(size) * 3, "rendering one batch", blame
    )
    require_disk(
        settings.n_samples * sequence_bytes(size) // DEFLATE_BEST_RATIO,
        args.output.parent,
        f"{settings.n_samples} compressed sequences",
        f"{args.params}: data.size = {size}, {section}.n_samples = {settings.n_samples}",
    )

    with atomic_outputs(args.output, args.strip) as (dataset_path, strip_path):
        generate_dataset(dataset_path, strip_path, size=size, n_samples=settings.n_samples, seed=settings.seed)
    log.info("wrote %s: %d sequences of %dx%d, seed %d", args.output, settings.n_samples, size, size, settings.seed)
