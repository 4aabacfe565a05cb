"""Compressed chunks built from paths: exact frames, HDF5's own checksum, and a damaged byte caught on read."""

import zlib

import h5py
import numpy as np
import pytest

from movingline.chunks import MAX_ENCODED_SIZE, encode_frames, encode_paths, fletcher32
from movingline.dataset import DatasetReader, write_dataset
from movingline.errors import InputError
from movingline.generate import encoded_batches
from movingline.sequences import iter_frame_batches, render_frames, sample_paths


@pytest.mark.parametrize("size", [2, 3, 4, 5, 8, 13, 50, MAX_ENCODED_SIZE])
def test_chunks_decompress_to_exactly_the_rendered_frames(size):
    # Small sizes hit every edge: runs of zeros and copies of 0, 1 and 2 bytes, matches split at 258.
    n = 3 if size == MAX_ENCODED_SIZE else 200
    paths = sample_paths(np.random.default_rng(size), n, size)
    frames = render_frames(paths)
    for sample, chunk in zip(frames, encode_paths(paths)):
        stream, checksum = chunk[:-4], int.from_bytes(chunk[-4:], "little")
        assert zlib.decompress(stream) == sample.tobytes()  # zlib also checks the Adler-32
        assert checksum == fletcher32(stream)


def test_chunks_keep_a_size_50_sequence_under_1_kb():
    paths = sample_paths(np.random.default_rng(0), 100, 50)
    assert np.mean([len(chunk) for chunk in encode_paths(paths)]) < 1000


@pytest.mark.parametrize("data", [b"", b"\x01", b"\xff" * 721, b"\xff" * 5000, bytes(range(256)) * 7 + b"\x07"])
def test_fletcher32_matches_what_hdf5_stores(tmp_path, data):
    # All-0xFF data makes HDF5's second sum wrap at 32 bits; odd lengths take its last-byte path.
    if not data:
        assert fletcher32(data) == 0
        return
    with h5py.File(tmp_path / "f.h5", "w") as file:
        file.create_dataset("d", data=np.frombuffer(data, dtype=np.uint8), chunks=(len(data),), fletcher32=True)
    with h5py.File(tmp_path / "f.h5") as file:
        _, stored = file["d"].id.read_direct_chunk((0,))
    assert stored[:-4] == data
    assert int.from_bytes(stored[-4:], "little") == fletcher32(data)


def write_generated(path, paths, batch_size):
    size = paths.size
    write_dataset(path, encoded_batches(paths, batch_size), size=size, n_samples=len(paths), seed=0)


def test_files_read_back_identically_through_hdf5(tmp_path):
    paths = sample_paths(np.random.default_rng(5), 40, 12)
    write_generated(tmp_path / "paths.h5", paths, batch_size=7)
    write_dataset(tmp_path / "frames.h5", iter_frame_batches(paths, 9), size=12, n_samples=40, seed=0)
    for name in ("paths.h5", "frames.h5"):
        with h5py.File(tmp_path / name) as file:
            assert np.array_equal(file["frames"][()], render_frames(paths))
    with DatasetReader(tmp_path / "paths.h5") as reader:
        assert np.array_equal(reader.read_frames(0, 40), render_frames(paths))


def test_same_paths_give_the_same_file_bytes_whatever_the_batch_size(tmp_path):
    paths = sample_paths(np.random.default_rng(6), 30, 9)
    write_generated(tmp_path / "a.h5", paths, batch_size=4)
    write_generated(tmp_path / "b.h5", paths, batch_size=30)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_a_flipped_byte_in_a_chunk_fails_its_checksum_on_read(tmp_path):
    paths = sample_paths(np.random.default_rng(7), 5, 10)
    write_generated(tmp_path / "d.h5", paths, batch_size=5)
    with h5py.File(tmp_path / "d.h5") as file:
        offset = file["frames"].id.get_chunk_info(3).byte_offset
    data = bytearray((tmp_path / "d.h5").read_bytes())
    data[offset + 10] ^= 0x01
    (tmp_path / "d.h5").write_bytes(bytes(data))
    with DatasetReader(tmp_path / "d.h5") as reader:
        assert np.array_equal(reader.read_frames(0, 3), render_frames(paths[:3]))
        with pytest.raises(InputError, match="sample 3"):
            reader.read_frames(3, 4)


def test_encode_frames_compresses_any_frames():
    frames = np.random.default_rng(8).integers(0, 2, size=(3, 4, 4, 4, 1), dtype=np.uint8)
    for sample, chunk in zip(frames, encode_frames(frames)):
        assert zlib.decompress(chunk[:-4]) == sample.tobytes()
        assert int.from_bytes(chunk[-4:], "little") == fletcher32(chunk[:-4])
