"""The generator against every rule of the problem (README.md, docs/data-format.md), and its distributions."""

import numpy as np
import pytest

from movingline.data.labels import LABEL_NAMES, LEFT, RIGHT
from movingline.data.sequences import Walks, columns, iter_frame_batches, render_frames, sample_walks


def walks_for(seed: int, n: int, size: int) -> Walks:
    return sample_walks(np.random.default_rng(seed), n, size)


@pytest.fixture(scope="module")
def small() -> tuple[Walks, np.ndarray]:
    walks = walks_for(0, 300, 7)
    return walks, render_frames(walks)


def test_frames_have_the_model_input_layout(small):
    walks, frames = small
    assert frames.shape == (300, 7, 7, 7, 1)
    assert frames.dtype == np.uint8
    assert set(np.unique(frames)) == {0, 1}
    assert walks.labels.dtype == np.uint8 and set(np.unique(walks.labels)) == {LEFT, RIGHT}


def test_frame_t_holds_exactly_t_plus_one_pixels(small):
    _, frames = small
    counts = frames.sum(axis=(2, 3, 4))
    assert (counts == np.arange(1, 8)[None, :]).all()


def test_frames_are_cumulative(small):
    _, frames = small
    # Each frame contains the previous one: nothing is ever erased.
    assert (frames[:, 1:] >= frames[:, :-1]).all()


def test_each_step_adds_the_pixel_of_its_column_in_the_path_row(small):
    walks, frames = small
    size = walks.size
    new_pixels = np.diff(frames[..., 0].astype(np.int8), axis=1, prepend=0)
    for i in range(len(walks)):
        for t in range(size):
            column = t if walks.labels[i] == RIGHT else size - 1 - t
            assert np.flatnonzero(new_pixels[i, t].any(axis=0)).tolist() == [column]
            assert np.flatnonzero(new_pixels[i, t].any(axis=1)).tolist() == [walks.rows[i, t]]


def test_frame_zero_starts_at_the_edge_the_line_moves_away_from(small):
    walks, frames = small
    first_columns = np.argmax(frames[:, 0, :, :, 0].any(axis=1), axis=1)
    assert (first_columns[walks.labels == RIGHT] == 0).all()
    assert (first_columns[walks.labels == LEFT] == walks.size - 1).all()


def test_rows_stay_inside_and_move_at_most_one_per_step(small):
    walks, _ = small
    rows = walks.rows.astype(int)
    assert rows.min() >= 0 and rows.max() <= walks.size - 1
    assert np.abs(np.diff(rows, axis=1)).max() <= 1


def test_columns_follow_the_direction():
    labels = np.array([RIGHT, LEFT], dtype=np.uint8)
    assert columns(labels, 4).tolist() == [[0, 1, 2, 3], [3, 2, 1, 0]]


def test_same_seed_same_walks_other_seed_other_walks():
    a, b, c = walks_for(5, 50, 10), walks_for(5, 50, 10), walks_for(6, 50, 10)
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.rows, c.rows)


def test_batches_do_not_change_the_frames():
    walks = walks_for(1, 23, 6)
    batches = list(iter_frame_batches(walks, batch_size=5))
    assert [len(labels) for _, labels in batches] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate([frames for frames, _ in batches]), render_frames(walks))
    assert np.array_equal(np.concatenate([labels for _, labels in batches]), walks.labels)


def test_size_below_two_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        sample_walks(np.random.default_rng(0), 3, 1)


# Distributions, checked with a chi-square statistic against a threshold that a correct
# generator exceeds with probability about 1e-4 (fixed seeds make the tests repeatable).
CHI2_LIMIT = {1: 15.1, 2: 18.4, 3: 21.1, 9: 33.7}


def chi_square(counts: np.ndarray, expected: np.ndarray) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.fixture(scope="module")
def many() -> Walks:
    return walks_for(2024, 40_000, 10)


def test_labels_are_balanced(many):
    counts = np.bincount(many.labels, minlength=2)
    assert chi_square(counts, np.full(2, len(many) / 2)) < CHI2_LIMIT[1]


def test_start_row_is_uniform(many):
    counts = np.bincount(many.rows[:, 0], minlength=many.size)
    assert chi_square(counts, np.full(many.size, len(many) / many.size)) < CHI2_LIMIT[9]


def step_counts(walks: Walks, where: np.ndarray) -> np.ndarray:
    rows = walks.rows.astype(int)
    steps = np.diff(rows, axis=1)[where[:, :-1]]
    return np.array([(steps == -1).sum(), (steps == 0).sum(), (steps == 1).sum()])


def test_interior_steps_are_uniform_over_minus_one_zero_plus_one(many):
    rows = many.rows.astype(int)
    counts = step_counts(many, (rows > 0) & (rows < many.size - 1))
    assert chi_square(counts, np.full(3, counts.sum() / 3)) < CHI2_LIMIT[2]


@pytest.mark.parametrize("edge, allowed", [("top", [1, 2]), ("bottom", [0, 1])])
def test_edge_steps_are_half_and_half(many, edge, allowed):
    rows = many.rows.astype(int)
    at_edge = rows == (0 if edge == "top" else many.size - 1)
    counts = step_counts(many, at_edge)
    forbidden = [i for i in range(3) if i not in allowed]
    assert counts[forbidden].sum() == 0, "a step left the frame"
    kept = counts[allowed]
    assert chi_square(kept, np.full(2, kept.sum() / 2)) < CHI2_LIMIT[1]


def test_label_names_are_left_for_0_and_right_for_1():
    assert (LEFT, RIGHT) == (0, 1)
    assert LABEL_NAMES == {0: "left", 1: "right"}
