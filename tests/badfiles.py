"""Files to feed the code in bad-input tests: a good dataset, and ways to spoil one."""

import os
import zipfile
from pathlib import Path

import h5py
import numpy as np

from movingline.data.dataset import write_dataset


def write_good_dataset(path: Path, size: int = 4, n_samples: int = 6, seed: int = 5) -> Path:
    """A valid dataset of random 0/1 frames."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 2, size=(n_samples, size, size, size, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, size=n_samples, dtype=np.uint8)
    write_dataset(path, [(frames, labels)], size=size, n_samples=n_samples, seed=seed)
    return path


def flip_byte_in_chunk(path: Path, sample: int) -> None:
    """Flips one byte inside the compressed data of ``sample``'s chunk, as a bad disk would."""
    with h5py.File(path, "r") as file:
        chunk = file["frames"].id.get_chunk_info(sample)
    with open(path, "r+b") as raw:
        raw.seek(chunk.byte_offset + chunk.size // 2)
        byte = raw.read(1)[0]
        raw.seek(-1, os.SEEK_CUR)
        raw.write(bytes([byte ^ 0xFF]))


def replace_dataset(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "r+") as file:
        del file[name]
        file.create_dataset(name, data=data)


def replace_with_group(path: Path, name: str) -> None:
    with h5py.File(path, "r+") as file:
        del file[name]
        file.create_group(name)


def set_attribute(path: Path, key: str, value) -> None:
    with h5py.File(path, "r+") as file:
        file.attrs[key] = value


def delete(path: Path, name: str, *, attribute: bool = False) -> None:
    with h5py.File(path, "r+") as file:
        del (file.attrs if attribute else file)[name]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_foreign_hdf5(path: Path) -> None:
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=np.zeros((3, 4, 4), dtype=np.float32))


def write_zip_that_is_not_a_model(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    return path


def assert_one_line(message: str, *needles: str) -> None:
    """For messages with a part that varies (HDF5's wording, sizes): one line holding each needle."""
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
