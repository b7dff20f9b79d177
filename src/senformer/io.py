"""Writing outputs: atomic writers, one lock per output, and one rule for outputs that already exist.

Atomic writers
    Every file is written to a temporary name beside it and renamed when complete, so a reader sees either
    the previous complete file or the new complete one: :func:`write_json` (one serialiser,
    :func:`jsonable`, for numpy scalars and arrays, tensors, paths, dataclasses and tuples; NaN and
    infinities become ``null`` so the file is strict JSON), :func:`write_csv`, :func:`write_npz`,
    :func:`save_figure`, all built on :func:`atomic_path`.

One writer per output: :func:`output_lock`
    A run that writes ``OUT`` (a file or a directory; ``train``'s run folder) holds an exclusive ``fcntl``
    lock on ``OUT.lock`` for the whole run; the file names the holder's host and pid. A second run is
    refused with one line naming that holder. The kernel drops the lock when its holder dies, even by
    ``kill -9``, so a lock is never stale; the holder deletes ``OUT.lock`` as it finishes. Files that a run
    leaves behind (``OUT.partial``, temporary ``.NAME.*.partial`` files) are deleted only by a run holding
    the lock, so no file another process is writing is ever removed.

Existing outputs: :func:`plan_output`, called under the lock before any model is loaded or data read
    Every result has a run record (:mod:`senformer.record`) whose ``fingerprint`` is one SHA-256
    (:func:`senformer.fingerprint.value_digest`) of everything the result depends on: input file digests, weights digest, and the
    settings that change numbers. The record lies at ``OUT/run.json`` for a directory and at
    ``OUT.run.json`` beside a file. A run writes into ``OUT.partial`` (a file or directory of the same kind,
    its record at ``OUT.partial.run.json`` or ``OUT.partial/run.json``, written by :func:`start_partial`
    before the first result), and :func:`finish_output` moves it onto ``OUT`` and writes ``OUT``'s record
    last. So a record with a fingerprint proves that its output is complete and from those inputs. Then:

    - ``OUT`` complete, recorded fingerprint equal to this run's: "up to date"; the command prints
      ``OUT is up to date`` and exits 0 without computing (``--overwrite`` computes it again).
    - ``OUT`` with another fingerprint or none, or a path of the wrong kind (a directory where a file is
      due, or the reverse): refused with one line unless ``--overwrite``. A non-empty directory without a
      run record is never replaced, even with ``--overwrite``: senformer did not write it. An empty
      directory where a directory is due counts as absent.
    - ``OUT.partial`` with this run's fingerprint: the run resumes it.
    - ``OUT.partial`` with another fingerprint or none: deleted, with one line saying so, and written anew.
    The old ``OUT`` stays in place until the new one is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import errno
import fcntl
import json
import math
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Iterator

import numpy as np

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        if temporary_path.exists():  # mkstemp makes 0600 files; give the usual umask-based mode instead
            temporary_path.chmod(0o666 & ~_umask())
        os.replace(temporary_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


# Reading ---------------------------------------------------------------------------------------------
def load_torch_file(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only, never code.

    Every failure is one :class:`UserError` line naming ``path`` and ``what`` it should have been; a file
    holding other pickled objects (an old format, or a crafted file) is refused before any of them runs.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            # Older senformer files pickled numpy arrays; a crafted file pickles anything: neither is read.
            raise UserError(
                f"{path} holds pickled Python objects, which are never loaded: it predates the safe {what} "
                "format or was not written by senformer"
            ) from None
        raise UserError(f"{path} is not a readable {what} ({_first_line(error)})") from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise UserError(f"{path} is not a readable {what} ({type(error).__name__}: {_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# JSON ---------------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: the one serialiser behind every JSON file senformer writes.

    numpy scalars and arrays, torch tensors, dtypes and devices, paths, enums, dates, dataclasses (through
    their ``to_dict`` when they have one), tuples and sets are converted; non-finite floats become ``None``
    (an undefined metric, such as the Pearson r of a constant track, is ``null``, never a bare ``NaN``).
    Anything else raises ``TypeError`` naming its type rather than being written as its ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {_json_key(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(item) for item in value), key=repr)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if callable(getattr(value, "to_dict", None)):
            return jsonable(value.to_dict())
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    torch = sys.modules.get("torch")  # only present if the caller imported it; never imported here
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return jsonable(value.detach().cpu().tolist())
        if isinstance(value, (torch.dtype, torch.device)):
            return str(value)
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__} is not JSON serialisable")


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    converted = jsonable(key)
    return converted if isinstance(converted, str) else json.dumps(converted)


def json_text(value: Any, indent: int | None = 2) -> str:
    """``value`` as strict JSON text (see :func:`jsonable`); one line when ``indent`` is None."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> Path:
    """Write ``value`` as strict JSON (see :func:`jsonable`) atomically, with a final newline."""
    atomic_write_text(path, json_text(value, indent) + "\n")
    return Path(path)


# Tables, arrays, figures --------------------------------------------------------------------------
def write_csv(path: str | os.PathLike, frame, index: bool = False, **to_csv: Any) -> Path:
    """Write a pandas DataFrame atomically (without its index unless ``index``); ``sep="\\t"`` for TSV."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=index, **to_csv)
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write ``arrays`` (name -> array) to a compressed ``.npz`` atomically; the name is used as given."""
    with atomic_path(path) as temporary:
        # Through a handle: given a path, numpy appends ".npz" to the temporary name.
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return Path(path)


def save_figure(path: str | os.PathLike, figure, dpi: int = 110) -> Path:
    """Render a matplotlib figure to ``path`` atomically (format from the suffix, PNG by default) and close it."""
    path = Path(path)
    file_format = path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=file_format, dpi=dpi)
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:  # figures made with pyplot stay registered (and in memory) until closed
            pyplot.close(figure)
    return path


# One writer per output ----------------------------------------------------------------------------
LOCK_SUFFIX = ".lock"


def lock_path(out: str | os.PathLike) -> Path:
    """``OUT.lock``: beside ``OUT`` whether ``OUT`` is a file or a directory."""
    out = Path(out)
    return out.with_name(out.name + LOCK_SUFFIX)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``OUT.lock`` for the block; a second holder gets one :class:`UserError` line.

    The lock is ``flock``-based: it belongs to this open file, so a second attempt from the same process is
    refused as well, and the kernel releases it when the process dies (no stale locks after ``kill -9``).
    """
    out = Path(out)
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(f"{out} is being written by another run ({holder}, lock {path}); wait for it to end "
                            "or choose another output") from None
        # The previous holder deletes the file as it ends: if it did so between our open and our flock, we
        # hold a lock on a deleted file that nobody else can see, so open the path again.
        if _same_file(descriptor, path):
            break
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        yield path
    finally:
        # Unlink while still holding the lock, so no other run can have locked this same file meanwhile.
        with contextlib.suppress(FileNotFoundError):
            if _same_file(descriptor, path):
                path.unlink()
        os.close(descriptor)


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


# Existing outputs ---------------------------------------------------------------------------------
FILE, DIRECTORY = "file", "directory"
RUN_RECORD = "run.json"
PARTIAL_SUFFIX = ".partial"
UP_TO_DATE, WRITE, RESUME = "up to date", "write", "resume"


def partial_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def record_path(out: str | os.PathLike, kind: str) -> Path:
    """Where the run record of ``out`` lies: ``OUT/run.json`` for a directory, ``OUT.run.json`` for a file."""
    out = Path(out)
    _check_kind(kind)
    return out / RUN_RECORD if kind == DIRECTORY else out.with_name(f"{out.name}.{RUN_RECORD}")


def recorded_fingerprint(out: str | os.PathLike, kind: str) -> str | None:
    """The ``fingerprint`` in ``out``'s run record; None when there is no readable record or no fingerprint."""
    try:
        record = json.loads(record_path(out, kind).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = record.get("fingerprint") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """What a run does with ``out``: ``action`` is ``"up to date"``, ``"write"`` or ``"resume"``.

    ``partial`` is where the run writes; ``notice`` is one line for the user (a replaced partial) or None.
    """

    out: Path
    kind: str
    fingerprint: str
    action: str
    partial: Path
    notice: str | None = None

    @property
    def up_to_date(self) -> bool:
        return self.action == UP_TO_DATE

    @property
    def resume(self) -> bool:
        return self.action == RESUME


def plan_output(out: str | os.PathLike, kind: str, fingerprint: str, overwrite: bool = False) -> OutputPlan:
    """Apply the existing-output rule (module docstring) to ``out``; call it holding :func:`output_lock`.

    Raises :class:`UserError` (one line) when ``out`` must not be replaced; deletes a partial output of
    other inputs, and the leftovers of an interrupted replacement.
    """
    out, partial = Path(out), partial_path(out)
    _check_kind(kind)
    for leftover in out.parent.glob(f".{out.name}.replaced-*"):
        _remove(leftover)
    found = _kind_of(out)
    if found is not None and not (found == DIRECTORY == kind and not any(out.iterdir())):
        recorded = recorded_fingerprint(out, found)
        if found == kind and recorded == fingerprint and not overwrite:
            return OutputPlan(out, kind, fingerprint, UP_TO_DATE, partial)
        if found == DIRECTORY and recorded is None:
            raise UserError(f"{out} is a directory that senformer did not write (it has no {RUN_RECORD}); "
                            "remove it or choose another output")
        if not overwrite:
            if found != kind:
                reason = f"is a {found}, but a {kind} is due there"
            elif recorded is None:
                reason = "exists without a run record"
            else:
                reason = f"was written from other inputs (fingerprint {recorded[:12]}, this run {fingerprint[:12]})"
            raise UserError(f"{out} {reason}; pass --overwrite to replace it")
    notice = None
    found_partial = _kind_of(partial)
    if found_partial is not None:
        recorded = recorded_fingerprint(partial, found_partial)
        if found_partial == kind and recorded == fingerprint:
            return OutputPlan(out, kind, fingerprint, RESUME, partial)
        if found_partial == DIRECTORY and recorded is None and any(partial.iterdir()):
            raise UserError(f"{partial} is a directory that senformer did not write (it has no {RUN_RECORD}); "
                            "remove it or choose another output")
        _remove(partial)
        notice = f"{partial} was written from other inputs: starting it again"
    with contextlib.suppress(FileNotFoundError):
        record_path(partial, FILE).unlink()
    return OutputPlan(out, kind, fingerprint, WRITE, partial, notice)


def start_partial(plan: OutputPlan, record: Mapping[str, Any]) -> Path:
    """Create ``plan.partial``'s run record (with ``plan.fingerprint``) before the first result is written.

    For a directory output this also creates the ``OUT.partial`` directory. Returns ``plan.partial``.
    """
    record = {**record, "fingerprint": plan.fingerprint}
    if plan.kind == DIRECTORY:
        plan.partial.mkdir(parents=True, exist_ok=True)
    write_json(record_path(plan.partial, plan.kind), record)
    return plan.partial


def finish_output(plan: OutputPlan, record: Mapping[str, Any]) -> Path:
    """Move the complete ``plan.partial`` onto ``plan.out`` and write its run record last; returns ``out``.

    Every step leaves either the old output, or the new one, with a record only where the output is
    complete, so an interrupted finish never makes a stale output look up to date.
    """
    out, partial = plan.out, plan.partial
    record = {**record, "fingerprint": plan.fingerprint}
    found = _kind_of(out)
    if found is not None:
        # The old record goes first: a kill after this point leaves no record claiming the old content.
        with contextlib.suppress(FileNotFoundError):
            record_path(out, found).unlink()
    if plan.kind == DIRECTORY:
        write_json(partial / RUN_RECORD, record)  # the directory is complete once renamed
        if found is not None:
            aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            os.replace(out, aside)
            os.replace(partial, out)
            _remove(aside)
        else:
            os.replace(partial, out)
        return out
    if found == DIRECTORY:
        aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, aside)
        _remove(aside)
    os.replace(partial, out)
    write_json(record_path(out, FILE), record)
    with contextlib.suppress(FileNotFoundError):
        record_path(partial, FILE).unlink()
    return out


def _check_kind(kind: str) -> None:
    if kind not in (FILE, DIRECTORY):
        raise ValueError(f"output kind {kind!r} is not {FILE!r} or {DIRECTORY!r}")


def _kind_of(path: Path) -> str | None:
    if path.is_dir():
        return DIRECTORY
    if path.exists() or path.is_symlink():
        return FILE
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
