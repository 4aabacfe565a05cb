"""The one batching rule."""

import pytest

from movingline.data.batching import batch_bounds


@pytest.mark.parametrize(
    ("n_samples", "batch_size", "expected"),
    [
        (10, 4, [(0, 4), (4, 8), (8, 10)]),
        (8, 4, [(0, 4), (4, 8)]),
        (3, 10, [(0, 3)]),
        (0, 5, []),
        (2, 1, [(0, 1), (1, 2)]),
    ],
)
def test_batches_are_consecutive_and_cover_every_sample(n_samples, batch_size, expected):
    assert list(batch_bounds(n_samples, batch_size)) == expected


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="^batch_size must be at least 1, got 0$"):
        list(batch_bounds(5, 0))
