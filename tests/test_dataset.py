"""The HDF5 format: round trip, the layout of docs/data-format.md, same arguments => same bytes, and the
reader's refusal of bad files with one exact message naming the file."""

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from movingline.data.dataset import FORMAT_NAME, FORMAT_VERSION, GZIP_LEVEL, DatasetReader, write_dataset
from movingline.errors import InputError
from movingline.data.sequences import iter_frame_batches, render_frames, sample_walks
from tests.badfiles import (
    delete,
    flip_byte_in_chunk,
    replace_dataset,
    replace_with_group,
    set_attribute,
    truncate,
    write_foreign_hdf5,
    write_good_dataset,
)


def write(path, seed=3, n=17, size=6, batch=4):
    walks = sample_walks(np.random.default_rng(seed), n, size)
    write_dataset(path, iter_frame_batches(walks, batch), size=size, n_samples=n, seed=seed)
    return walks


def test_round_trip(tmp_path):
    walks = write(tmp_path / "d.h5")
    with DatasetReader(tmp_path / "d.h5") as reader:
        assert len(reader) == 17
        assert (reader.info.size, reader.info.seed, reader.info.has_labels) == (6, 3, True)
        assert np.array_equal(reader.read_frames(0, 17), render_frames(walks))
        assert np.array_equal(reader.read_frames(5, 9), render_frames(walks[5:9]))
        assert np.array_equal(reader.read_labels(), walks.labels)


def test_iter_batches_covers_the_file_in_order(tmp_path):
    walks = write(tmp_path / "d.h5")
    with DatasetReader(tmp_path / "d.h5") as reader:
        batches = list(reader.iter_batches(5))
    assert [len(frames) for frames, _ in batches] == [5, 5, 5, 2]
    assert np.array_equal(np.concatenate([frames for frames, _ in batches]), render_frames(walks))
    assert np.array_equal(np.concatenate([labels for _, labels in batches]), walks.labels)


def test_layout_follows_the_spec(tmp_path):
    write(tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5") as file:
        frames = file["frames"]
        assert frames.dtype == np.uint8 and frames.shape == (17, 6, 6, 6, 1)
        assert frames.chunks == (1, 6, 6, 6, 1)
        assert (frames.compression, frames.compression_opts) == ("gzip", GZIP_LEVEL)
        assert frames.fletcher32 and not frames.shuffle
        assert file["labels"].dtype == np.uint8 and file["labels"].shape == (17,)
        assert dict(file.attrs) == {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "size": 6,
            "n_samples": 17,
            "seed": 3,
        }


def test_same_arguments_give_the_same_bytes_whatever_the_batch_size(tmp_path):
    write(tmp_path / "a.h5", batch=4)
    write(tmp_path / "b.h5", batch=17)
    write(tmp_path / "c.h5", seed=4)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert (tmp_path / "a.h5").read_bytes() != (tmp_path / "c.h5").read_bytes()


def test_compression_keeps_a_size_50_sequence_small(tmp_path):
    # 125,000 bytes of frames; gzip level 1 stores about 1,460 (docs/data-format.md).
    write(tmp_path / "d.h5", n=20, size=50, batch=5)
    with h5py.File(tmp_path / "d.h5") as file:
        chunk_bytes = [file["frames"].id.get_chunk_info(i).size for i in range(20)]
    assert 1000 < np.mean(chunk_bytes) < 1600


def test_writing_more_or_fewer_samples_than_announced_is_refused(tmp_path):
    frames = np.zeros((3, 4, 4, 4, 1), np.uint8)
    labels = np.zeros(3, np.uint8)
    with pytest.raises(ValueError, match=r"d\.h5: more than the 2 samples announced$"):
        write_dataset(tmp_path / "d.h5", [(frames, labels)], size=4, n_samples=2, seed=0)
    with pytest.raises(ValueError, match=r"e\.h5: wrote 3 samples, expected 4$"):
        write_dataset(tmp_path / "e.h5", [(frames, labels)], size=4, n_samples=4, seed=0)


def test_reader_without_labels_refuses_to_invent_them(tmp_path):
    write(tmp_path / "d.h5")
    delete(tmp_path / "d.h5", "labels")
    with DatasetReader(tmp_path / "d.h5", require_labels=False) as reader:
        assert not reader.info.has_labels
        assert reader.read_frames(0, 2).shape == (2, 6, 6, 6, 1)
        assert [labels for _, labels in reader.iter_batches(10)] == [None, None]
        with pytest.raises(InputError) as caught:
            reader.read_labels()
    assert str(caught.value) == f"{tmp_path / 'd.h5'}: has no 'labels' dataset"


# ---------------------------------------------------------------------------------------
# Bad files: (id, how to spoil a good file, the message after "<file>: ")

SHAPE_NOTE = "(sample, time, row, column, channel for size = 4, n_samples = {n})"
NOT_HDF5 = f"not an HDF5 file (expected a {FORMAT_NAME} dataset, as generate_train writes)"

READER_CASES: list[tuple[str, Callable[[Path], object], str]] = [
    ("missing", lambda p: p.unlink(), "file not found"),
    ("a directory", lambda p: (p.unlink(), p.mkdir()), "not a file"),
    ("empty", lambda p: p.write_bytes(b""), NOT_HDF5),
    ("not HDF5", lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), NOT_HDF5),
    ("text", lambda p: p.write_text("index,label\n0,1\n"), NOT_HDF5),
    (
        "another layout",
        write_foreign_hdf5,
        f"not a {FORMAT_NAME} dataset (has no 'format' attribute, expected '{FORMAT_NAME}')",
    ),
    (
        "another format",
        lambda p: set_attribute(p, "format", "images"),
        f"not a {FORMAT_NAME} dataset (attribute 'format' is 'images', expected '{FORMAT_NAME}')",
    ),
    (
        "format version 2",
        lambda p: set_attribute(p, "format_version", 2),
        "format version 2 is not supported (expected 1); regenerate the file",
    ),
    ("no size attribute", lambda p: delete(p, "size", attribute=True), "attribute 'size' is missing"),
    (
        "size attribute not an integer",
        lambda p: set_attribute(p, "size", "four"),
        "attribute 'size' is 'four', expected an integer of at least 2",
    ),
    (
        "no samples",
        lambda p: set_attribute(p, "n_samples", 0),
        "attribute 'n_samples' is 0, expected an integer of at least 1",
    ),
    ("no frames", lambda p: delete(p, "frames"), "dataset 'frames' is missing"),
    ("frames a group", lambda p: replace_with_group(p, "frames"), "'frames' is a Group, expected a dataset"),
    (
        "frames float32",
        lambda p: replace_dataset(p, "frames", np.zeros((6, 4, 4, 4, 1), np.float32)),
        "'frames' has dtype float32, expected uint8",
    ),
    (
        "frames without channel axis",
        lambda p: replace_dataset(p, "frames", np.zeros((6, 4, 4, 4), np.uint8)),
        "'frames' has shape (6, 4, 4, 4), expected (6, 4, 4, 4, 1) " + SHAPE_NOTE.format(n=6),
    ),
    (
        "frames not square",
        lambda p: replace_dataset(p, "frames", np.zeros((6, 4, 4, 5, 1), np.uint8)),
        "'frames' has shape (6, 4, 4, 5, 1), expected (6, 4, 4, 4, 1) " + SHAPE_NOTE.format(n=6),
    ),
    (
        "fewer frames than n_samples",
        lambda p: set_attribute(p, "n_samples", 9),
        "'frames' has shape (6, 4, 4, 4, 1), expected (9, 4, 4, 4, 1) " + SHAPE_NOTE.format(n=9),
    ),
    ("no labels", lambda p: delete(p, "labels"), "dataset 'labels' is missing (expected uint8 of shape (6,))"),
    (
        "labels int64",
        lambda p: replace_dataset(p, "labels", np.zeros(6, np.int64)),
        "'labels' has dtype int64, expected uint8",
    ),
    (
        "labels too short",
        lambda p: replace_dataset(p, "labels", np.zeros(5, np.uint8)),
        "'labels' has shape (5,), expected (6,)",
    ),
    (
        "label 2",
        lambda p: replace_dataset(p, "labels", np.array([0, 1, 2, 0, 1, 0], np.uint8)),
        "'labels' must hold only 0 (left) and 1 (right), found 2",
    ),
]


@pytest.mark.parametrize(("case_id", "spoil", "message"), READER_CASES, ids=[case[0] for case in READER_CASES])
def test_reader_refuses_bad_files_naming_the_file_and_the_problem(tmp_path, case_id, spoil, message):
    path = write_good_dataset(tmp_path / "d.h5")
    spoil(path)
    with pytest.raises(InputError) as caught:
        DatasetReader(path).close()
    assert str(caught.value) == f"{path}: {message}"


def test_reader_names_a_truncated_file_and_both_sizes(tmp_path):
    path = write_good_dataset(tmp_path / "d.h5")
    full = path.stat().st_size
    truncate(path)
    with pytest.raises(InputError) as caught:
        DatasetReader(path)
    assert str(caught.value) == f"{path}: truncated HDF5 file ({full // 2} bytes, but its header says {full}); regenerate it"


def test_reader_names_the_sample_whose_chunk_fails_its_checksum(tmp_path):
    path = write_good_dataset(tmp_path / "d.h5", n_samples=6)
    flip_byte_in_chunk(path, 4)
    with DatasetReader(path) as reader:
        assert reader.read_frames(0, 4).shape == (4, 4, 4, 4, 1)  # the samples before are fine
        with pytest.raises(InputError) as caught:
            reader.read_frames(2, 6)
    assert str(caught.value) == (
        f"{path}: sample 4 is corrupt: its data fails the checksum or does not decompress "
        "(HDF5: filter returned failure during read); regenerate the file"
    )


def test_reader_refuses_pixels_other_than_0_and_1(tmp_path):
    path = write_good_dataset(tmp_path / "d.h5")
    frames = np.zeros((6, 4, 4, 4, 1), np.uint8)
    frames[3, 1, 2, 2, 0] = 7
    with h5py.File(path, "r+") as file:
        file["frames"][...] = frames
    with DatasetReader(path) as reader, pytest.raises(InputError) as caught:
        reader.read_frames(0, 6)
    assert str(caught.value) == f"{path}: sample 3 holds pixel value 7, expected only 0 and 1"
