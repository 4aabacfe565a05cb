"""Measures HDF5's gzip levels on the default training set; prints the table of docs/data-format.md.

Writes the 5,000 sequences of the default params (size 50) as movingline.data.dataset does (one
sample per chunk, Fletcher-32) at each level, then reads every chunk back. Times are this
process's CPU seconds, which other jobs on the machine disturb far less than wall time:

    python -m scripts.measure_gzip
"""

import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from bench.machine import commit
from movingline.environment import describe_cpu
from movingline.data.generate import render_batch_size
from movingline.data.sequences import render_frames, sample_walks

N_SAMPLES, SIZE, SEED = 5000, 50, 1
SETTINGS = [(1, False), (2, False), (4, False), (6, False), (9, False), (1, True)]


def measure(path: Path, walks, level: int, shuffle: bool) -> tuple[float, float]:
    batch = render_batch_size(SIZE)
    start = time.process_time()
    with h5py.File(path, "w") as file:
        frames = file.create_dataset(
            "frames", shape=(N_SAMPLES, SIZE, SIZE, SIZE, 1), dtype=np.uint8, chunks=(1, SIZE, SIZE, SIZE, 1),
            compression="gzip", compression_opts=level, shuffle=shuffle, fletcher32=True,
        )
        for first in range(0, N_SAMPLES, batch):
            frames[first:first + batch] = render_frames(walks[first:first + batch])
    written = time.process_time() - start
    out = np.empty((1, SIZE, SIZE, SIZE, 1), dtype=np.uint8)
    start = time.process_time()
    with h5py.File(path, "r") as file:
        for index in range(N_SAMPLES):
            file["frames"].read_direct(out, np.s_[index:index + 1])
    return written, time.process_time() - start


def main() -> None:
    print(f"{describe_cpu()}, commit {commit()}, {datetime.now(timezone.utc):%Y-%m-%d}")
    print()
    print("| gzip level | write, CPU s | read, CPU s | bytes a sequence | train.h5 |")
    print("|---|---|---|---|---|")
    walks = sample_walks(np.random.default_rng(SEED), N_SAMPLES, SIZE)
    with tempfile.TemporaryDirectory() as folder:
        for level, shuffle in SETTINGS:
            path = Path(folder) / f"level{level}{'-shuffle' if shuffle else ''}.h5"
            written, read = measure(path, walks, level, shuffle)
            size = path.stat().st_size
            name = f"{level} with shuffle" if shuffle else str(level)
            print(f"| {name} | {written:.2f} | {read:.2f} | {size / N_SAMPLES:,.0f} | {size / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
