"""The one lock helper: an exclusive ``flock`` on a lock file, for an output (``OUT.lock``) or a short section.

The lock belongs to the open file, so a second attempt from the same process is refused as well, and the
kernel releases it when its holder dies, even by ``kill -9``: a lock is never stale. The holder writes its host
and pid into the file and deletes the file as it ends; a waiter that wakes on a deleted file opens the path
again, so two holders never hold two different files of one name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from ..errors import UserError

LOCK_SUFFIX = ".lock"


def lock_path(out: str | os.PathLike) -> Path:
    """``OUT.lock``: beside ``OUT`` whether ``OUT`` is a file or a directory."""
    out = Path(out)
    return out.with_name(out.name + LOCK_SUFFIX)


@contextlib.contextmanager
def hold(path: str | os.PathLike, *, wait: bool = False, owner: str | os.PathLike | None = None,
         remove: bool = True) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``path`` for the block.

    ``wait=False``: a lock held elsewhere is one :class:`UserError` line naming ``owner`` (what the lock
    guards; default ``path``) and the holder's host and pid. ``wait=True``: block until it is free (short
    critical sections, such as checking and merging the parts of a sharded output). ``remove``: delete the
    lock file as the block ends (while still holding it, so no other run can have locked that same file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as error:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(f"{owner or path} is being written by another run ({holder}, lock {path}); wait for it "
                            "to end or choose another output") from None
        # The previous holder deletes the file as it ends: if it did so between our open and our flock, we
        # hold a lock on a deleted file that nobody else can see, so open the path again.
        if _same_file(descriptor, path):
            break
        os.close(descriptor)
    try:
        with contextlib.suppress(OSError):  # the holder's name is a courtesy: a full disk does not stop the run
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        yield path
    finally:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                if _same_file(descriptor, path):
                    path.unlink()
        os.close(descriptor)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold ``OUT.lock`` for the block; a second holder gets one :class:`UserError` line naming ``out``."""
    with hold(lock_path(out), owner=out) as path:
        yield path


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _read_holder(descriptor: int) -> str:
    parts = os.pread(descriptor, 256, 0).decode("utf-8", errors="replace").split()
    if len(parts) == 4 and parts[0] == "host" and parts[2] == "pid":
        return f"pid {parts[3]} on host {parts[1]}"
    return "a process that has not yet written its name"
