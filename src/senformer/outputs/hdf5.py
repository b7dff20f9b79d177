"""HDF5 files that a full disk, an I/O error or a read-only file system cannot crash.

HDF5 buffers writes and reports a failed one only as it frees an object (h5py prints "Exception ignored" and
goes on) or at ``flush``/``close``; a file whose close failed is closed again by the library as the process
ends, and that crashed it (exit 139). So senformer never lets HDF5 see a failed write: every byte goes
through :class:`senformer.outputs.faults.GuardedFile`, which records the first failure and from then on keeps
the bytes it could not write in memory, telling HDF5 they were written. The file on disk stays as it was
(a writer counts a row only after a successful flush), HDF5's state stays consistent and it closes cleanly,
and :func:`check` (after each flush, and :func:`close`) raises the recorded failure, which
:func:`senformer.outputs.writing` turns into one line naming the file.
"""

from __future__ import annotations

import atexit
import contextlib
import os

from .faults import GuardedFile

_OPEN_MODES = {"w": "w+b", "a": "r+b", "r+": "r+b"}


def open_hdf5(path: str | os.PathLike, mode: str):
    """An ``h5py.File`` (mode ``"w"`` or ``"a"``) written through a :class:`GuardedFile` (:func:`guard_of`);
    flush it with :func:`check`, close it with :func:`close`."""
    import h5py

    guard = GuardedFile(path, _OPEN_MODES[mode])
    try:
        handle = h5py.File(guard, "w" if mode == "w" else "r+")
    except BaseException:
        guard.close()
        raise
    _open[id(handle.id)] = handle, guard
    return handle


_open: dict[int, tuple[object, GuardedFile]] = {}  # guarded files not yet closed, by their HDF5 id


def guard_of(handle) -> GuardedFile | None:
    entry = _open.get(id(handle.id))
    return None if entry is None else entry[1]


@atexit.register
def _close_left_open() -> None:
    """A file left open by an error is closed before the interpreter frees its guard (HDF5 would call it)."""
    for handle, _ in list(_open.values()):
        with contextlib.suppress(Exception):
            close(handle)


def check(handle) -> None:
    """Flush ``handle`` to the device and raise the first write failure of its file (an ``OSError``)."""
    handle.flush()
    guard = guard_of(handle)
    if guard is not None:
        guard.raise_fault()


def close(handle) -> OSError | None:
    """Close ``handle`` and its file once; returns the write failure its file met (None: every byte written)."""
    guard = _open.pop(id(handle.id), (None, None))[1]
    try:
        handle.close()
    finally:
        if guard is not None:
            guard.close()
    return None if guard is None else guard.fault
