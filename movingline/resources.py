"""Checks, before any work starts, that a dataset or a batch fits in memory and on disk."""

import os
import shutil
from pathlib import Path

from movingline.errors import InputError

# Deflate cannot compress better than about 1032:1, so a gzip-compressed dataset takes
# at least this fraction of its raw size on disk.
DEFLATE_BEST_RATIO = 1032


def human_bytes(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def available_memory() -> int:
    """Memory the kernel could give this process now (MemAvailable), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def require_memory(n_bytes: int, what: str, blame: str) -> None:
    """Raises InputError naming ``blame`` (a file and key) if ``n_bytes`` will not fit in memory."""
    available = available_memory()
    if n_bytes > available:
        raise InputError(
            f"{blame}: {what} needs {human_bytes(n_bytes)} of memory, "
            f"but only {human_bytes(available)} is available"
        )


def require_disk(n_bytes: int, directory: Path, what: str, blame: str) -> None:
    """Raises InputError naming ``blame`` if ``n_bytes`` will not fit in ``directory``'s file system."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if n_bytes > free:
        raise InputError(
            f"{blame}: {what} needs at least {human_bytes(n_bytes)} on disk, "
            f"but {directory} has only {human_bytes(free)} free"
        )


def sequence_bytes(size: int) -> int:
    """Raw bytes of one uint8 sequence: size frames of size x size pixels."""
    return size**4
