"""Faults while writing end in one line: a full disk, an I/O error, a read-only file system, a dying HDF5 file.

A writer wraps each write of a result in :func:`writing` (or :meth:`senformer.outputs.Output.writing`): an
``OSError`` raised there (``ENOSPC``, ``EIO``, ``EROFS``, ``EDQUOT``...; h5py raises ``OSError`` for HDF5's
own write errors too) becomes one :class:`~senformer.errors.UserError` naming the file and what was being
written, so the command exits 2. The output rule keeps the rest safe: the result stays in ``OUT.partial``
(resumed by a rerun once there is room), nothing appears at ``OUT``, and an existing ``OUT`` is untouched.

HDF5 buffers writes and reports some failures only at ``flush``/``close``, after which the file object must
not be used again (closing it twice is where the C library crashed): :func:`close_quietly` closes a handle
once, whatever state a fault left it in.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError

# Faults of the place being written, not of the program: each ends the run in one line (exit 2).
WRITE_FAULTS = {errno.ENOSPC: "no space left on the device", errno.EIO: "input/output error",
                errno.EROFS: "read-only file system", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file too large", errno.ENOMEM: "out of memory"}


def describe(error: OSError) -> str:
    """A write fault in a few words: the errno's meaning, else the first line of HDF5's message."""
    if error.errno in WRITE_FAULTS:
        return WRITE_FAULTS[error.errno]
    text = " ".join(str(error).split())
    lowered = text.lower()
    if "no space" in lowered or "errno = 28" in lowered:
        return WRITE_FAULTS[errno.ENOSPC]
    if "read-only" in lowered or "errno = 30" in lowered:
        return WRITE_FAULTS[errno.EROFS]
    if "errno = 5," in lowered or "input/output error" in lowered:
        return WRITE_FAULTS[errno.EIO]
    return text[:200] or type(error).__name__


def fault(path: str | os.PathLike, what: str, error: OSError) -> UserError:
    return UserError(f"{path}: cannot write {what} ({describe(error)}); the partial output is kept and a rerun "
                     "resumes it once the fault is cleared")


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into one :class:`UserError` line naming ``path`` and ``what``."""
    try:
        yield
    except UserError:
        raise
    except OSError as error:
        raise fault(path, what, error) from None


def close_quietly(handle) -> BaseException | None:
    """Close ``handle`` (a file or HDF5 file) once; returns the error a fault raised instead of raising it."""
    try:
        handle.close()
    except Exception as error:  # noqa: BLE001 (the first fault is the one reported)
        return error
    return None


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a directory's entries') data to the device; raises ``OSError`` on a fault."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(path: Path) -> None:
    """``fsync`` a file, or every file and folder under a directory (its entries included)."""
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and not child.is_symlink():
                fsync_path(child)
        for folder in [path, *sorted(p for p in path.rglob("*") if p.is_dir())]:
            fsync_path(folder)
    else:
        fsync_path(path)


def first_non_finite(values: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first value that is not finite (None when all are): the one finite check."""
    values = np.asarray(values)
    if values.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])
