"""Faults while writing end in one line: a full disk, an I/O error, a read-only file system, a dying HDF5 file.

A writer wraps each write of a result in :func:`writing` (or :meth:`senformer.outputs.Output.writing`): an
``OSError`` raised there (``ENOSPC``, ``EIO``, ``EROFS``, ``EDQUOT``...; h5py raises ``OSError`` for HDF5's
own write errors too) becomes one :class:`~senformer.errors.UserError` naming the file and what was being
written, so the command exits 2. The output rule keeps the rest safe: the result stays in ``OUT.partial``
(resumed by a rerun once there is room), nothing appears at ``OUT``, and an existing ``OUT`` is untouched.

HDF5 files are written through :mod:`senformer.outputs.hdf5`, so that HDF5 itself never sees a failed write
(it crashed on one); :func:`close_quietly` closes any other handle once, whatever state a fault left it in.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError

# Faults of the place being written, not of the program: each ends the run in one line (exit 2).
WRITE_FAULTS = {errno.ENOSPC: "no space left on the device", errno.EIO: "input/output error",
                errno.EROFS: "read-only file system", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file too large", errno.ENOMEM: "out of memory"}


def describe(error: BaseException) -> str:
    """A write fault in a few words: the errno's meaning, else the first line of HDF5's message."""
    if getattr(error, "errno", None) in WRITE_FAULTS:
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


def fault(path: str | os.PathLike, what: str, error: BaseException) -> UserError:
    return UserError(f"{path}: cannot write {what} ({describe(error)}); what is done is kept: run the command "
                     "again once the fault is cleared")


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into one :class:`UserError` line naming ``path`` and ``what``."""
    try:
        yield
    except UserError:
        raise
    except OSError as error:
        raise fault(path, what, error) from None
    except RuntimeError as error:  # torch.save (and h5py outside a guard) report write failures so
        if not is_io_error(error):
            raise
        raise fault(path, what, error) from None


def is_io_error(error: BaseException) -> bool:
    """Whether a library's ``RuntimeError`` is a failed write of the file (a full disk, a dying device)."""
    text = str(error)
    return "errno =" in text or "write failed" in text


class GuardedFile(io.RawIOBase):
    """A binary file whose first write failure is recorded (``fault``) instead of raised. From then on the
    bytes that could not be written are kept in memory, page by page, and read back from there, so a writer
    in C that re-reads what it wrote (HDF5's metadata) sees a consistent file and ends without crashing; the
    file on disk stays as it was before the failure. Then :meth:`raise_fault` reports it (HDF5, ``torch.save``:
    writers that lose the failure's errno, or crash on it)."""

    PAGE = 1 << 16

    def __init__(self, path: str | os.PathLike, mode: str):
        super().__init__()
        self.path = os.fspath(path)
        self.file = open(path, mode, buffering=0)
        self.fault: OSError | None = None
        self.position = 0
        self.size = os.fstat(self.file.fileno()).st_size
        self.pages: dict[int, bytearray] = {}  # after a fault: what could not be written, by page

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: 0, 1: self.position, 2: self.size}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def _page(self, index: int) -> bytearray:
        if index not in self.pages:
            self.file.seek(index * self.PAGE)
            stored = self.file.read(self.PAGE) or b""
            self.pages[index] = bytearray(stored) + bytearray(self.PAGE - len(stored))
        return self.pages[index]

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self.size - self.position))
        done = 0
        while done < count:
            offset = self.position + done
            index, start = divmod(offset, self.PAGE)
            take = min(count - done, self.PAGE - start)
            if index in self.pages:
                view[done : done + take] = self.pages[index][start : start + take]
            else:
                self.file.seek(offset)
                stored = self.file.read(take)
                view[done : done + len(stored)] = stored
                view[done + len(stored) : done + take] = bytes(take - len(stored))
            done += take
        self.position += count
        return count

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.fault is None:
            try:
                self.file.seek(self.position)
                done = 0
                while done < len(view):
                    done += self.file.write(view[done:])
            except OSError as error:
                self.fault = error
                self.pages.clear()
        if self.fault is not None:
            done = 0
            while done < len(view):
                index, start = divmod(self.position + done, self.PAGE)
                take = min(len(view) - done, self.PAGE - start)
                self._page(index)[start : start + take] = view[done : done + take]
                done += take
        self.position += len(view)
        self.size = max(self.size, self.position)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.position if size is None else size
        if self.fault is None:
            try:
                self.file.truncate(size)
            except OSError as error:
                self.fault = error
        self.size = size
        return size

    def flush(self) -> None:
        """Nothing is buffered here; :meth:`raise_fault` syncs the bytes to the device."""

    def sync(self) -> None:
        if self.fault is None:
            try:
                os.fsync(self.file.fileno())
            except OSError as error:
                self.fault = error

    def raise_fault(self) -> None:
        """Sync the bytes to the device; raise the first write failure (an ``OSError``) if there was one."""
        self.sync()
        if self.fault is not None:
            raise self.fault

    def close(self) -> None:
        if not self.closed:
            self.file.close()
            self.pages.clear()
        super().close()


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
