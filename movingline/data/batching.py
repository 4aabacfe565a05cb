"""Consecutive batches of samples: the one batching rule that every reader and writer follows."""

from collections.abc import Iterator


def batch_bounds(n_samples: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most ``batch_size`` samples covering 0 .. n_samples-1."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, n_samples, batch_size):
        yield start, min(start + batch_size, n_samples)
