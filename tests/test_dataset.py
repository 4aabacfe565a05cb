"""The HDF5 format: round trip, layout of the SPEC, and same arguments => same bytes."""

import h5py
import numpy as np
import pytest

from movingline.dataset import FORMAT_NAME, FORMAT_VERSION, DatasetReader, write_dataset
from movingline.errors import InputError
from movingline.sequences import iter_frame_batches, render_frames, sample_paths


def write(path, seed=3, n=17, size=6, batch=4):
    paths = sample_paths(np.random.default_rng(seed), n, size)
    write_dataset(path, iter_frame_batches(paths, batch), size=size, n_samples=n, seed=seed)
    return paths


def test_round_trip(tmp_path):
    paths = write(tmp_path / "d.h5")
    with DatasetReader(tmp_path / "d.h5") as reader:
        assert len(reader) == 17
        assert (reader.info.size, reader.info.seed, reader.info.has_labels) == (6, 3, True)
        assert np.array_equal(reader.read_frames(0, 17), render_frames(paths))
        assert np.array_equal(reader.read_frames(5, 9), render_frames(paths[5:9]))
        assert np.array_equal(reader.read_labels(), paths.labels)


def test_layout_follows_the_spec(tmp_path):
    write(tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5") as file:
        frames = file["frames"]
        assert frames.dtype == np.uint8 and frames.shape == (17, 6, 6, 6, 1)
        assert frames.chunks == (1, 6, 6, 6, 1)
        assert frames.compression == "gzip" and frames.fletcher32
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
    write(tmp_path / "d.h5", n=20, size=50, batch=5)
    assert (tmp_path / "d.h5").stat().st_size / 20 < 1500


def test_reader_without_labels_refuses_to_invent_them(tmp_path):
    write(tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5", "a") as file:
        del file["labels"]
    with pytest.raises(InputError, match="'labels' is missing"):
        DatasetReader(tmp_path / "d.h5")
    with DatasetReader(tmp_path / "d.h5", require_labels=False) as reader:
        assert not reader.info.has_labels
        assert reader.read_frames(0, 2).shape == (2, 6, 6, 6, 1)
