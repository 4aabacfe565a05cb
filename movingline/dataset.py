"""The HDF5 dataset format: the only module that imports h5py.

A file holds ``frames`` (uint8, (n, s, s, s, 1), one gzip-compressed chunk per sample
with a Fletcher-32 checksum) and ``labels`` (uint8, (n,), 1 = right, 0 = left; optional
in files given to predict), plus attributes naming the format, its version, ``size``,
``n_samples`` and ``seed``. Readers check all of it and raise InputError naming the file.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from movingline.errors import InputError

FORMAT_NAME = "movingline-sequences"
FORMAT_VERSION = 1
GZIP_LEVEL = 4


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

    The same arguments always give the same bytes: h5py records no times by default.
    """
    shape = (n_samples, size, size, size, 1)
    with h5py.File(path, "w") as file:
        file.attrs["format"] = FORMAT_NAME
        file.attrs["format_version"] = FORMAT_VERSION
        file.attrs["size"] = size
        file.attrs["n_samples"] = n_samples
        file.attrs["seed"] = seed
        frames = file.create_dataset(
            "frames",
            shape=shape,
            dtype=np.uint8,
            chunks=(1, size, size, size, 1),
            compression="gzip",
            compression_opts=GZIP_LEVEL,
            fletcher32=True,
        )
        labels = file.create_dataset("labels", shape=(n_samples,), dtype=np.uint8)
        written = 0
        for frame_batch, label_batch in batches:
            stop = written + len(frame_batch)
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
            except OSError as error:
                raise InputError(
                    f"{self.path}: sample {index} is corrupt (its checksum or compression failed: {error})"
                ) from None
        return out

    def read_labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self._labels is None:
            raise InputError(f"{self.path}: has no 'labels' dataset")
        return self._labels[start:stop]


def _open_hdf5(path: Path) -> h5py.File:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        reason = "truncated or damaged HDF5 file" if h5py.is_hdf5(path) else "not an HDF5 file"
        raise InputError(f"{path}: {reason} ({error})") from None


def _validate(path: Path, file: h5py.File, require_labels: bool) -> DatasetInfo:
    found_format = file.attrs.get("format")
    if isinstance(found_format, bytes):
        found_format = found_format.decode(errors="replace")
    if found_format != FORMAT_NAME:
        raise InputError(
            f"{path}: not a {FORMAT_NAME} dataset (attribute 'format' is {found_format!r}, "
            f"expected {FORMAT_NAME!r})"
        )
    version = file.attrs.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path}: format version {version!r} is not supported (expected {FORMAT_VERSION})")
    for key in ("size", "n_samples", "seed"):
        if key not in file.attrs:
            raise InputError(f"{path}: attribute '{key}' is missing")
    size, n_samples = int(file.attrs["size"]), int(file.attrs["n_samples"])
    if "frames" not in file or not isinstance(file["frames"], h5py.Dataset):
        raise InputError(f"{path}: dataset 'frames' is missing")
    frames = file["frames"]
    expected_shape = (n_samples, size, size, size, 1)
    if frames.shape != expected_shape:
        raise InputError(f"{path}: 'frames' has shape {frames.shape}, expected {expected_shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"{path}: 'frames' has dtype {frames.dtype}, expected uint8")
    has_labels = "labels" in file
    if has_labels:
        labels = file["labels"]
        if not isinstance(labels, h5py.Dataset) or labels.shape != (n_samples,) or labels.dtype != np.uint8:
            raise InputError(
                f"{path}: 'labels' must be uint8 of shape ({n_samples},), "
                f"found {getattr(labels, 'dtype', '?')} {getattr(labels, 'shape', '?')}"
            )
        if np.any(labels[()] > 1):
            raise InputError(f"{path}: 'labels' must hold only 0 (left) and 1 (right)")
    elif require_labels:
        raise InputError(f"{path}: dataset 'labels' is missing")
    return DatasetInfo(size=size, n_samples=n_samples, seed=int(file.attrs["seed"]), has_labels=has_labels)
