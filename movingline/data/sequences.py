"""The moving-line problem: random walks and the cumulative frames that draw them.

A walk (the line's row at every step) is drawn first for every sample (a few bytes
each), then frames are rendered in batches, so the random draws do not depend on the
batch size and memory does not grow with the number of samples beyond the walks.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from movingline.data.batching import batch_bounds
from movingline.data.labels import RIGHT

# Samples whose uniforms are drawn at once by sample_walks: 4,096 x 49 float64 is 1.6 MB.
WALK_BLOCK_SAMPLES = 4096


@dataclass(frozen=True)
class Walks:
    """Where the line is at every step: ``rows[i, t]`` is its row at step (column) t."""

    rows: np.ndarray  # (n, size), uint16
    labels: np.ndarray  # (n,), uint8, RIGHT or LEFT

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return self.rows.shape[1]

    def __getitem__(self, index: slice) -> "Walks":
        return Walks(self.rows[index], self.labels[index])


def sample_walks(rng: np.random.Generator, n_samples: int, size: int) -> Walks:
    """Draws directions, start rows and row steps for ``n_samples`` sequences.

    The direction is right with probability 1/2; the start row is uniform; each later
    row is the previous one minus one, the same or plus one, uniform over those inside
    the frame (two choices of 1/2 at an edge, three of 1/3 elsewhere).
    """
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    labels = rng.integers(0, 2, size=n_samples, dtype=np.uint8)
    rows = np.empty((n_samples, size), dtype=np.uint16)
    rows[:, 0] = rng.integers(0, size, size=n_samples)
    # The uniforms are drawn a block of samples at a time, in the same order as one draw of
    # all of them, so that memory does not grow with n_samples beyond the uint16 rows.
    for start, stop in batch_bounds(n_samples, WALK_BLOCK_SAMPLES):
        block = rows[start:stop]
        _walk_rows(block, rng.random((len(block), size - 1)))
    return Walks(rows, labels)


def _walk_rows(rows: np.ndarray, uniforms: np.ndarray) -> None:
    """Fills ``rows[:, 1:]`` from ``rows[:, 0]``, one step per uniform draw."""
    size = rows.shape[1]
    previous = rows[:, 0].astype(np.int64)
    for t in range(1, size):
        at_top = previous == 0
        at_bottom = previous == size - 1
        n_choices = 3 - at_top - at_bottom
        # Choice k in 0 .. n_choices-1 maps to steps -1, 0, +1, shifted up by one at the top edge.
        choice = (uniforms[:, t - 1] * n_choices).astype(np.int64)
        previous = previous + choice - 1 + at_top
        rows[:, t] = previous


def columns(labels: np.ndarray, size: int) -> np.ndarray:
    """The column drawn at each step: ``t`` moving right, ``size-1-t`` moving left. Shape (n, size)."""
    steps = np.arange(size)
    return np.where(labels[:, None] == RIGHT, steps[None, :], size - 1 - steps[None, :])


def render_frames(walks: Walks) -> np.ndarray:
    """Cumulative frames of shape (n, size, size, size, 1), uint8 0/1: frame t holds t+1 pixels."""
    n, size = len(walks), walks.size
    # Each pixel records the step at which it is drawn; `size` means never. Every column
    # is drawn exactly once, so no two steps write the same pixel.
    step_type = np.uint8 if size < 255 else np.uint32
    first_step = np.full((n, size, size), size, dtype=step_type)
    samples = np.arange(n)[:, None]
    first_step[samples, walks.rows, columns(walks.labels, size)] = np.arange(size, dtype=step_type)[None, :]
    # One frame at a time, written in place: no boolean temporary as large as the result.
    frames = np.empty((n, size, size, size, 1), dtype=np.uint8)
    for step in range(size):
        np.less_equal(first_step, step, out=frames[:, step, :, :, 0].view(bool))
    return frames


def iter_frame_batches(walks: Walks, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields (frames, labels) for consecutive batches of at most ``batch_size`` samples."""
    for start, stop in batch_bounds(len(walks), batch_size):
        batch = walks[start:stop]
        yield render_frames(batch), batch.labels


def drawing_times(frames: np.ndarray) -> np.ndarray:
    """For sequences (n, t, s, s, 1): the frame in which each pixel first appears, NaN where none does."""
    n_frames = frames.shape[1]
    appearances = frames[..., 0].sum(axis=1, dtype=np.int32)
    return np.where(appearances > 0, n_frames - appearances, np.nan)
