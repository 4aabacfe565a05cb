"""The HDF5 dataset format: the only module that imports h5py.

A file holds ``frames`` (uint8, (n, s, s, s, 1), one gzip-compressed chunk per sample
with a Fletcher-32 checksum) and ``labels`` (uint8, (n,), 1 = right, 0 = left; optional
in files given to predict), plus attributes naming the format, its version, ``size``,
``n_samples`` and ``seed``. Readers check all of it and raise InputError naming the file.
"""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import h5py
import numpy as np

from movingline.data.batching import batch_bounds
from movingline.errors import InputError, one_line

FORMAT_NAME = "movingline-sequences"
FORMAT_VERSION = 1
# HDF5's gzip level for the frames: the fastest to write, chosen by measurement
# (docs/data-format.md, "The gzip level"); at 7 MB for the training set, the smaller files
# of higher levels are not worth their time.
GZIP_LEVEL = 1


@dataclass(frozen=True)
class DatasetInfo:
    size: int
    n_samples: int
    seed: int
    has_labels: bool


def write_dataset(
    path: Path,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    size: int,
    n_samples: int,
    seed: int,
) -> None:
    """Writes (frames, labels) batches, in order, into a new file at ``path``.

    Frames are uint8 (n, s, s, s, 1). The same arguments give the same bytes whatever the
    batch size: h5py records no times by default, and chunks are written in sample order.
    """
    with h5py.File(path, "w") as file:
        file.attrs["format"] = FORMAT_NAME
        file.attrs["format_version"] = FORMAT_VERSION
        file.attrs["size"] = size
        file.attrs["n_samples"] = n_samples
        file.attrs["seed"] = seed
        # One sample per chunk, deflated, then a Fletcher-32 checksum of the compressed chunk,
        # so that a damaged byte fails on read and names its sample. No shuffle filter: with
        # one-byte elements it would not change the bytes, only cost time.
        frames = file.create_dataset(
            "frames",
            shape=(n_samples, size, size, size, 1),
            dtype=np.uint8,
            chunks=(1, size, size, size, 1),
            compression="gzip",
            compression_opts=GZIP_LEVEL,
            fletcher32=True,
        )
        # Written now, so that its place in the file comes before every chunk's.
        labels = file.create_dataset("labels", data=np.zeros(n_samples, dtype=np.uint8))
        written = 0
        for frame_batch, label_batch in batches:
            stop = written + len(frame_batch)
            if stop > n_samples:
                raise ValueError(f"{path}: more than the {n_samples} samples announced")
            frames[written:stop] = frame_batch
            labels[written:stop] = label_batch
            written = stop
        if written != n_samples:
            raise ValueError(f"{path}: wrote {written} samples, expected {n_samples}")


class DatasetReader:
    """An open, validated dataset file. Use as a context manager; reads batches on demand."""

    def __init__(self, path: str | Path, *, require_labels: bool = True):
        self.path = Path(path)
        self._file = _open_hdf5(self.path)
        try:
            self.info = _validate(self.path, self._file, require_labels)
        except BaseException:
            self._file.close()
            raise
        self._frames = self._file["frames"]
        self._labels = self._file["labels"] if self.info.has_labels else None

    def __enter__(self) -> "DatasetReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return self.info.n_samples

    def read_frames(self, start: int, stop: int) -> np.ndarray:
        """Frames of samples start .. stop-1, uint8 (stop-start, s, s, s, 1)."""
        out = np.empty((stop - start, *self._frames.shape[1:]), dtype=np.uint8)
        for offset, index in enumerate(range(start, stop)):
            # One whole chunk per call: faster than a multi-chunk slice, and a checksum
            # failure can name the sample.
            try:
                self._frames.read_direct(out, np.s_[index], np.s_[offset])
            except (OSError, RuntimeError) as error:
                self._fail(
                    f"sample {index} is corrupt: its data fails the checksum or does not decompress "
                    f"(HDF5: {_hdf5_reason(error)}); regenerate the file"
                )
        # A cheap pass next to the decompression, and the only place that sees every pixel.
        if out.max(initial=0) > 1:
            bad = int(np.flatnonzero(out.reshape(len(out), -1).max(axis=1) > 1)[0])
            self._fail(f"sample {start + bad} holds pixel value {out[bad].max()}, expected only 0 and 1")
        return out

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yields (frames, labels) for consecutive batches; labels are None in a file without them."""
        for start, stop in batch_bounds(len(self), batch_size):
            labels = self.read_labels(start, stop) if self.info.has_labels else None
            yield self.read_frames(start, stop), labels

    def read_labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self._labels is None:
            raise InputError(f"{self.path}: has no 'labels' dataset")
        try:
            return self._labels[start:stop]
        except (OSError, RuntimeError) as error:
            self._fail(f"'labels' cannot be read (HDF5: {_hdf5_reason(error)}); regenerate the file")

    def _fail(self, problem: str) -> NoReturn:
        raise InputError(f"{self.path}: {problem}")


def _hdf5_reason(error: Exception) -> str:
    """HDF5's innermost reason, e.g. 'filter returned failure during read', without its preamble."""
    reasons = re.findall(r"\(([^()]+)\)", str(error))
    return reasons[-1] if reasons else one_line(str(error))


def _open_hdf5(path: Path) -> h5py.File:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{path}: {_open_failure(path, error)}") from None


def _open_failure(path: Path, error: OSError) -> str:
    """Why h5py could not open ``path``, in words."""
    if not h5py.is_hdf5(path):
        return f"not an HDF5 file (expected a {FORMAT_NAME} dataset, as generate_train writes)"
    truncated = re.search(r"\beof = (\d+).*stored_eof = (\d+)", str(error))
    if truncated:
        found, expected = truncated.groups()
        return f"truncated HDF5 file ({found} bytes, but its header says {expected}); regenerate it"
    return f"damaged HDF5 file (HDF5: {_hdf5_reason(error)}); regenerate it"


def _validate(path: Path, file: h5py.File, require_labels: bool) -> DatasetInfo:
    """Checks the attributes, datasets, dtypes and shapes; raises InputError naming the first problem."""
    try:
        return _validate_layout(path, file, require_labels)
    except (OSError, RuntimeError, KeyError) as error:
        # Damaged metadata surfaces only when an object is opened.
        raise InputError(f"{path}: damaged HDF5 file (HDF5: {_hdf5_reason(error)}); regenerate it") from None


def _validate_layout(path: Path, file: h5py.File, require_labels: bool) -> DatasetInfo:
    found_format = _attribute(file, "format")
    if found_format != FORMAT_NAME:
        found = "has no 'format' attribute" if found_format is None else f"attribute 'format' is {found_format!r}"
        raise InputError(f"{path}: not a {FORMAT_NAME} dataset ({found}, expected {FORMAT_NAME!r})")
    version = _attribute(file, "format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{path}: format version {version!r} is not supported (expected {FORMAT_VERSION}); regenerate the file"
        )
    size = _integer_attribute(path, file, "size", minimum=2)
    n_samples = _integer_attribute(path, file, "n_samples", minimum=1)
    seed = _integer_attribute(path, file, "seed", minimum=0)
    frames = _dataset(path, file, "frames")
    if frames.dtype != np.uint8:
        raise InputError(f"{path}: 'frames' has dtype {frames.dtype}, expected uint8")
    expected_shape = (n_samples, size, size, size, 1)
    if frames.shape != expected_shape:
        raise InputError(
            f"{path}: 'frames' has shape {frames.shape}, expected {expected_shape} "
            f"(sample, time, row, column, channel for size = {size}, n_samples = {n_samples})"
        )
    has_labels = "labels" in file
    if has_labels:
        labels = _dataset(path, file, "labels")
        if labels.dtype != np.uint8:
            raise InputError(f"{path}: 'labels' has dtype {labels.dtype}, expected uint8")
        if labels.shape != (n_samples,):
            raise InputError(f"{path}: 'labels' has shape {labels.shape}, expected ({n_samples},)")
        if np.any(labels[()] > 1):
            raise InputError(f"{path}: 'labels' must hold only 0 (left) and 1 (right), found {labels[()].max()}")
    elif require_labels:
        raise InputError(f"{path}: dataset 'labels' is missing (expected uint8 of shape ({n_samples},))")
    return DatasetInfo(size=size, n_samples=n_samples, seed=seed, has_labels=has_labels)


def _attribute(file: h5py.File, key: str) -> object:
    value = file.attrs.get(key)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    # Scalars come back as NumPy types; compare and print them as Python ones.
    return value.item() if isinstance(value, np.generic) else value


def _integer_attribute(path: Path, file: h5py.File, key: str, minimum: int) -> int:
    if key not in file.attrs:
        raise InputError(f"{path}: attribute '{key}' is missing")
    value = _attribute(file, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{path}: attribute '{key}' is {value!r}, expected an integer of at least {minimum}")
    return value


def _dataset(path: Path, file: h5py.File, key: str) -> h5py.Dataset:
    if key not in file:
        raise InputError(f"{path}: dataset '{key}' is missing")
    item = file[key]
    if not isinstance(item, h5py.Dataset):
        raise InputError(f"{path}: '{key}' is a {type(item).__name__}, expected a dataset")
    return item
